import json

import dagster as dg

from pipeline_project.assets.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    SOURCE_FILES_TAG,
    materialized_stages,
    run_request,
    songs_partitions,
    stage_keys,
)
from pipeline_project.audio.ingest import scan_incoming
from pipeline_project.jobs import contributions_job, song_pipeline_job
from pipeline_project.planning import keys_in_range, plan_new_songs, plan_split, stages_lacking
from pipeline_project.recovery import recover_dead_runs
from pipeline_project.resources import SongRunsResource, StorageResource


@dg.sensor(job=song_pipeline_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def new_songs_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource, song_runs: SongRunsResource
) -> dg.SensorResult:
    """Adds a `songs` partition for every new content hash in the drop folder and requests its run.
    The same content under two names is one partition."""
    found = scan_incoming(storage.fetch(storage.incoming))
    files = {key: str(paths[0].relative_to(storage.incoming)) for key, paths in found.items()}
    new_keys, runs = plan_new_songs(
        files, context.instance.get_dynamic_partitions(songs_partitions.name), song_runs.songs_per_run
    )
    if not new_keys:
        return dg.SensorResult(skip_reason=f"no new songs in {storage.incoming} ({len(found)} known)")
    context.log.info(f"{len(new_keys)} new songs: {', '.join(found[k][0].name for k in new_keys)}")
    return dg.SensorResult(
        run_requests=[run_request(run) for run in runs],
        dynamic_partitions_requests=[songs_partitions.build_add_request(new_keys)],
    )


@dg.run_failure_sensor(
    request_job=song_pipeline_job, default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30
)
def split_failed_batches(context: dg.RunFailureSensorContext):
    """When a run over a batch of songs fails (one bad song stops its batch at that stage), requests one run
    per song of the batch for the stages it still lacks: the bad song then fails on its own partition, with its
    own file and reason, and the others finish."""
    run = context.dagster_run
    start, end = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
    if not start or not end or not (run.asset_selection or set()) <= set(stage_keys()):
        return dg.SkipReason(f"run {run.run_id} covered one song or other assets: nothing to split")
    keys = keys_in_range(context.instance.get_dynamic_partitions(songs_partitions.name), start, end)
    if keys is None:
        return dg.SkipReason(f"run {run.run_id}: its songs are no longer partitions")
    runs = plan_split(
        run.run_id,
        keys,
        stages_lacking(keys, materialized_stages(context.instance)),
        json.loads(run.tags.get(SOURCE_FILES_TAG, "{}")),
    )
    context.log.info(f"batch run {run.run_id} failed: {len(runs)} of its {len(keys)} songs go on one to a run")
    return [run_request(plan) for plan in runs]


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def dead_runs_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SkipReason:
    """Finds runs whose process died (killed, out of memory) but which still look STARTED and hold pool slots:
    marks them failed, frees their slots and deletes what they left half-written (see `recovery`)."""
    recovered = recover_dead_runs(context.instance, storage.song_dir, say=context.log.warning)
    return dg.SkipReason(
        f"recovered {len(recovered)} dead runs: {', '.join(recovered)}" if recovered else "no dead runs"
    )


@dg.sensor(job=contributions_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def contributions_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
    """Requests a review run when submissions wait in `contributions/incoming/`; the run validates each one,
    accepts or rejects it with a report, and rebuilds the contributed training pool."""
    inbox = storage.inbox()
    storage.fetch(inbox.incoming)
    waiting = inbox.waiting()
    if not waiting:
        return dg.SensorResult(skip_reason=f"no submissions in {inbox.incoming}")
    # lstat: a link is a submission of its own (rejected as a link); its target is never looked at.
    run_key = "|".join(f"{p.name}:{p.lstat().st_size}:{p.lstat().st_mtime_ns}" for p in waiting)
    context.log.info(f"{len(waiting)} submissions waiting: {', '.join(p.name for p in waiting)}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=run_key, tags={"pipeline_project/submissions": str(len(waiting))})]
    )


AUTOMATION_INTERVAL_SECONDS = 60


def automation_sensor(
    minimum_interval_seconds: int = AUTOMATION_INTERVAL_SECONDS,
) -> dg.AutomationConditionSensorDefinition:
    """Keeps the synthetic examples and the datasets up to date in the UI: rendered once when missing, datasets
    rebuilt after new songs are analysed; the training assets retrain on their own when their dataset has grown
    10 % since the champion's (beside the weekly schedule); the song index, the collection's grades and its
    report follow new songs and champions.

    Evaluated on the code server (`use_user_code_server`), not in the daemon: the growth trigger is a custom
    Python condition (automation.DatasetGrewSinceChampion), which the daemon cannot deserialize and so would
    never evaluate."""
    return dg.AutomationConditionSensorDefinition(
        "datasets_automation_sensor",
        target=dg.AssetSelection.groups("synthesis", "datasets", "training", "identification", "collection"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        use_user_code_server=True,
    )
