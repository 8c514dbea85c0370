"""The `songs` partitions, and how one run covers one song or a batch of them.

A few new songs get a run each: the best isolation, and runs in parallel. A backfill (from the UI, or more
than `SONGS_PER_RUN` new songs at once for the sensor or `run`) covers up to `SONGS_PER_RUN` songs a run,
which keeps Dagster's fixed cost per run (its events and instance writes) small beside the songs' own compute. Within a batch each stage processes the songs in turn;
a song that fails stops the batch at that stage, and the batch's songs are then run one to a run (see
`sensors.split_failed_batches` and the CLI), so the failure ends up on its own partition and no other song
is held back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import dagster as dg

from pipeline_project.assets.metadata import markdown_table

# One partition per song, keyed by a short content hash of its file (see audio.io.content_hash).
songs_partitions = dg.DynamicPartitionsDefinition(name="songs")

# The per-song stages, in pipeline order.
PER_SONG_STAGES = ("song_audio", "song_stems", "song_analysis", "song_theory")

# Run tags naming the songs' files (relative to the drop folder), so a run need not hash the whole folder:
# the file of a one-song run, or {partition key: file} for a batch.
SOURCE_FILE_TAG = "pipeline_project/source_file"
SOURCE_FILES_TAG = "pipeline_project/source_files"
# Dagster's tags for a run over a range of partitions.
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

SONGS_PER_RUN = int(os.environ.get("PIPELINE_SONGS_PER_RUN", "25"))
PROGRESS_EVERY = 5
SONG_BATCHES = dg.BackfillPolicy.multi_run(max_partitions_per_run=SONGS_PER_RUN)


def songs_per_run(new_songs: int) -> int:
    """Songs per run for a drop of `new_songs`: one each for a few, batches for a backfill."""
    return SONGS_PER_RUN if new_songs > SONGS_PER_RUN else 1


def stages_lacking(instance, keys, stages: list[dg.AssetKey]) -> dict[str, list[dg.AssetKey]]:
    """For each song partition in `keys`, the `stages` (in the order given) it has no materialization of."""
    done = {stage: set(instance.get_materialized_partitions(stage)) for stage in stages}
    return {key: [stage for stage in stages if key not in done[stage]] for key in keys}


def source_file_hint(context, key: str) -> str | None:
    tags = context.run.tags
    if SOURCE_FILES_TAG in tags:
        return json.loads(tags[SOURCE_FILES_TAG]).get(key)
    return tags.get(SOURCE_FILE_TAG) if len(context.partition_keys) == 1 else None


def batch_tags(files: dict[str, str]) -> dict[str, str]:
    """Run tags for songs {partition key: file relative to the drop folder}, one song or a batch; a batch
    covers the keys from first to last in the partitions' order."""
    keys = list(files)
    if len(keys) == 1:
        return {SOURCE_FILE_TAG: files[keys[0]]}
    return {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1], SOURCE_FILES_TAG: json.dumps(files, separators=(",", ":"))}


def for_each_song(context, process: Callable[[str], dict]) -> dg.MaterializeResult:
    """Run a stage's `process(partition key) -> metadata` for every song of the run. One song keeps its own
    metadata (plots, tables); a batch gets a table with a row per song, since Dagster records one
    materialization for the whole range."""
    keys = context.partition_keys
    if len(keys) == 1:
        return dg.MaterializeResult(metadata=process(keys[0]))
    rows = []
    for index, key in enumerate(keys, 1):
        metadata = process(key)
        rows.append({"song": key, **{name: value for name, value in metadata.items()
                                     if isinstance(value, (str, int, float, bool)) and name != "partition_key"}})
        if index % PROGRESS_EVERY == 0 or index == len(keys):  # every log line is an event in the instance
            context.log.info(f"{index} of {len(keys)} songs done")
    columns = list(dict.fromkeys(name for row in rows for name in row))
    table = markdown_table(columns, [[row.get(name, "") for name in columns] for row in rows])
    return dg.MaterializeResult(metadata={"songs": len(keys), "batch": table})
