"""Song identification against the user's collection: the song index (the champion embedding's windows of
every song, searched approximately with FAISS) and the streaming recognizer that listens in hops and answers
with a song, a confidence, or no match."""
