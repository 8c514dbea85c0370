"""The `songs` partitions, and how one run covers one song or a batch of them.

A few new songs get a run each: the best isolation, and runs in parallel. A backfill (from the UI, or more
than `songs_per_run` new songs at once for the sensor or `run`) covers up to `songs_per_run` songs a run (a
setting, 25 by default), which keeps Dagster's fixed cost per run (its events and instance writes) small beside
the songs' own compute. Within a batch each stage processes the songs in turn; a song that fails stops the batch
at that stage, and the batch's songs are then run one to a run, so the failure ends up on its own partition and
no other song is held back. Which runs to start is `planning`'s to say; this module turns its plans into
Dagster's run requests and tags.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import dagster as dg

from pipeline_project.assets.metadata import markdown_table
from pipeline_project.planning import PER_SONG_STAGES, SongRun

# One partition per song, keyed by a short content hash of its file (see audio.io.content_hash).
songs_partitions = dg.DynamicPartitionsDefinition(name="songs")

# Run tags naming the songs' files (relative to the drop folder), so a run need not hash the whole folder:
# the file of a one-song run, or {partition key: file} for a batch.
SOURCE_FILE_TAG = "pipeline_project/source_file"
SOURCE_FILES_TAG = "pipeline_project/source_files"
# Dagster's tags for a run over a range of partitions, and for the sensor and run key a run was requested under.
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
SENSOR_NAME_TAG, RUN_KEY_TAG = "dagster/sensor_name", "dagster/run_key"
# Runs that are materializing their songs, and runs that will once a daemon starts them: `run` leaves their
# songs to them (waiting ones only while a daemon is alive, i.e. its heartbeat is recent).
RUNNING_STATUSES = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)
WAITING_STATUSES = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)
DAEMON_HEARTBEAT_S = 120
PROGRESS_EVERY = 5


def song_batches_policy(songs_per_run: int) -> dg.BackfillPolicy:
    """How a backfill from the UI splits the per-song assets' partitions into runs (see `settings.songs_per_run`)."""
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=songs_per_run)


def stage_keys(stages=PER_SONG_STAGES) -> list[dg.AssetKey]:
    return [dg.AssetKey(stage) for stage in stages]


def materialized_stages(instance, stages=PER_SONG_STAGES) -> dict[str, set[str]]:
    """{stage: the song partitions it has materialized}."""
    return {stage: set(instance.get_materialized_partitions(dg.AssetKey(stage))) for stage in stages}


def songs_in_flight(instance) -> dict[str, str]:
    """{song partition: run id} for every song a running per-song run covers, or a queued one while a daemon
    is alive to start it (a run queued from the UI with no daemon left would otherwise hold its songs for ever)."""
    import time

    from pipeline_project.recovery import partition_keys

    heartbeats = instance.get_daemon_heartbeats().values()
    daemon_alive = any(time.time() - beat.timestamp < DAEMON_HEARTBEAT_S for beat in heartbeats)
    statuses = [*RUNNING_STATUSES, *(WAITING_STATUSES if daemon_alive else ())]
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="song_pipeline_job", statuses=statuses))
    return {key: run.run_id for run in runs for key in partition_keys(instance, run)}


def file_tags(plan: SongRun) -> dict[str, str]:
    """Tags naming a planned run's files: the file of one song, or {key: file} and the partition range of a batch."""
    if plan.is_batch:
        return {
            RANGE_START_TAG: plan.keys[0],
            RANGE_END_TAG: plan.keys[-1],
            SOURCE_FILES_TAG: json.dumps(dict(plan.files), separators=(",", ":")),
        }
    return {SOURCE_FILE_TAG: plan.files[plan.keys[0]]} if plan.keys[0] in plan.files else {}


def plan_tags(plan: SongRun) -> dict[str, str]:
    """Tags of a planned run that `run` starts itself: its files, and the run key under the name of the sensor it
    stands for. The daemon creates no run for a request whose key a run of that sensor already carries, so
    the sensor cannot start a song again that `run` has started."""
    return {**file_tags(plan), SENSOR_NAME_TAG: plan.sensor, RUN_KEY_TAG: plan.run_key}


def run_request(plan: SongRun) -> dg.RunRequest:
    """A planned run as a sensor's request (the daemon adds the sensor's name and the run key as tags)."""
    return dg.RunRequest(
        partition_key=None if plan.is_batch else plan.keys[0],
        run_key=plan.run_key,
        asset_selection=stage_keys(plan.stages) if plan.stages else None,
        tags=file_tags(plan),
    )


def source_file_hint(context, key: str) -> str | None:
    tags = context.run.tags
    if SOURCE_FILES_TAG in tags:
        return json.loads(tags[SOURCE_FILES_TAG]).get(key)
    return tags.get(SOURCE_FILE_TAG) if len(context.partition_keys) == 1 else None


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
        rows.append(
            {
                "song": key,
                **{
                    name: value
                    for name, value in metadata.items()
                    if isinstance(value, (str, int, float, bool)) and name != "partition_key"
                },
            }
        )
        if index % PROGRESS_EVERY == 0 or index == len(keys):  # every log line is an event in the instance
            context.log.info(f"{index} of {len(keys)} songs done")
    columns = list(dict.fromkeys(name for row in rows for name in row))
    table = markdown_table(columns, [[row.get(name, "") for name in columns] for row in rows])
    return dg.MaterializeResult(metadata={"songs": len(keys), "batch": table})
