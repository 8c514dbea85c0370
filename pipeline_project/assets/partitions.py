import dagster as dg

# One partition per song, keyed by a short content hash of its file (see audio.io.content_hash).
songs_partitions = dg.DynamicPartitionsDefinition(name="songs")
