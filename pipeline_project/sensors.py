import dagster as dg

from pipeline_project.assets.partitions import SOURCE_FILE_TAG, songs_partitions
from pipeline_project.audio.ingest import scan_incoming
from pipeline_project.jobs import contributions_job, song_pipeline_job
from pipeline_project.resources import StorageResource


@dg.sensor(job=song_pipeline_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def new_songs_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
    """Adds a `songs` partition for every new content hash in the drop folder and requests its run.
    The same content under two names is one partition."""
    known = set(context.instance.get_dynamic_partitions(songs_partitions.name))
    found = scan_incoming(storage.fetch(storage.incoming))
    new_keys = sorted(set(found) - known)
    if not new_keys:
        return dg.SensorResult(skip_reason=f"no new songs in {storage.incoming} ({len(found)} known)")
    context.log.info(f"{len(new_keys)} new songs: {', '.join(found[k][0].name for k in new_keys)}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=key, run_key=key,
                          tags={SOURCE_FILE_TAG: str(found[key][0].relative_to(storage.incoming))})
            for key in new_keys
        ],
        dynamic_partitions_requests=[songs_partitions.build_add_request(new_keys)],
    )


@dg.sensor(job=contributions_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def contributions_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
    """Requests a review run when submissions wait in `contributions/incoming/`; the run validates each one,
    accepts or rejects it with a report, and rebuilds the contributed training pool."""
    incoming = storage.fetch(storage.contributions / "incoming")
    waiting = sorted(p for p in incoming.iterdir() if p.is_file() and not p.name.startswith(".")) if incoming.is_dir() else []
    if not waiting:
        return dg.SensorResult(skip_reason=f"no submissions in {incoming}")
    run_key = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in waiting)
    context.log.info(f"{len(waiting)} submissions waiting: {', '.join(p.name for p in waiting)}")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key, tags={"pipeline_project/submissions": str(len(waiting))})])


# Keeps the synthetic examples and the datasets up to date in the UI: rendered once when missing, datasets
# rebuilt after new songs are analysed. Training stays on its weekly schedule.
datasets_automation_sensor = dg.AutomationConditionSensorDefinition(
    "datasets_automation_sensor",
    # Training assets retrain on their own only when their dataset has grown 10% since the champion's.
    target=dg.AssetSelection.groups("synthesis", "datasets", "training"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
