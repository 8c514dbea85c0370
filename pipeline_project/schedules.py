import dagster as dg

from pipeline_project.jobs import training_job

weekly_retraining_schedule = dg.ScheduleDefinition(
    name="weekly_retraining",
    job=training_job,
    cron_schedule="0 3 * * 1",  # Mondays 03:00
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retrains every model on the latest datasets each Monday at 03:00 UTC.",
)
