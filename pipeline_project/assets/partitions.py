import dagster as dg

# One partition per song, keyed by a short content hash of its file (see audio.io.content_hash).
songs_partitions = dg.DynamicPartitionsDefinition(name="songs")

# Run tag naming the song's file (relative to the drop folder), so a run need not hash the whole folder.
SOURCE_FILE_TAG = "pipeline_project/source_file"
