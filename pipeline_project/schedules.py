import dagster as dg

from pipeline_project.jobs import training_job
from pipeline_project.resources import MlflowResource

weekly_retraining_schedule = dg.ScheduleDefinition(
    name="weekly_retraining",
    job=training_job,
    cron_schedule="0 3 * * 1",  # Mondays 03:00
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retrains every model on the latest datasets each Monday at 03:00 UTC.",
)


@dg.op(description="Compare each model family's champion with the champion of another MLflow store.")
def check_model_updates(context: dg.OpExecutionContext, mlflow: MlflowResource) -> None:
    """Logs each family's comparison; a family whose champion is newer in the other store gets an observation on
    its asset saying so (take it with `pipeline-project models pull --from <store>`)."""
    from pipeline_project.training.registry import Registry
    from pipeline_project.training.updates import compare, public_uri

    if not mlflow.update_source:
        context.log.info("PIPELINE_MODEL_SOURCE is not set: no other store to compare with")
        return
    source = public_uri(mlflow.update_source)
    for comparison in compare(mlflow.registry(), Registry(mlflow.update_source)):
        context.log.info(f"{comparison.family}: {comparison.verdict}")
        if comparison.newer_there:
            context.log_event(
                dg.AssetObservation(
                    asset_key=comparison.family,
                    metadata={
                        "newer_version_at": source,
                        "their_version": comparison.remote.version,
                        "their_score": comparison.remote.score if comparison.remote.score is not None else "unknown",
                        "take_it_with": f"pipeline-project models pull --from {source} --family {comparison.family}",
                    },
                )
            )


@dg.job(description="Compare the local champions with another MLflow store's (PIPELINE_MODEL_SOURCE).")
def model_updates_job():
    check_model_updates()


model_updates_schedule = dg.ScheduleDefinition(
    name="model_updates",
    job=model_updates_job,
    cron_schedule="0 4 * * *",  # daily 04:00
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,  # opt-in: turn it on in the UI, with PIPELINE_MODEL_SOURCE set
    description="Daily, when turned on: says which model families have a newer champion in PIPELINE_MODEL_SOURCE.",
)
