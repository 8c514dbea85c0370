"""Audio I/O: content hashing, decoding with quality checks, tags, atomic writes."""
