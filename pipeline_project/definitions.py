"""The Dagster code location: the whole graph on one screen."""

from __future__ import annotations

import os

import dagster as dg

from pipeline_project.assets.analysis import song_analysis, song_theory
from pipeline_project.assets.collection import collection_quality, collection_report, training_export
from pipeline_project.assets.datasets import (
    concert_pairs,
    contributed_hits,
    contribution_stats,
    drum_hits,
    review_queue,
    song_features,
    synthetic_examples,
)
from pipeline_project.assets.identification import song_index
from pipeline_project.assets.ingestion import song_audio, song_quality
from pipeline_project.assets.labeling import genre_queue, human_labels, labels_job, labels_sensor
from pipeline_project.assets.partitions import song_batches_policy
from pipeline_project.assets.separation import song_stems
from pipeline_project.assets.synthesis import augmented_examples, rendered_examples
from pipeline_project.assets.training import (
    analysis_models,
    drum_hit_classifier,
    genre_classifier_model,
    song_embedding,
    stem_separator,
)
from pipeline_project.checks import accuracy_checks, privacy_checks, validation_checks
from pipeline_project.jobs import (
    contributions_job,
    datasets_and_training_job,
    rollback_job,
    song_pipeline_job,
    synthesis_job,
    training_job,
)
from pipeline_project.resources import (
    DatasetsResource,
    MlflowResource,
    RendererResource,
    SeparatorResource,
    SongRunsResource,
    StorageResource,
)
from pipeline_project.schedules import model_updates_job, model_updates_schedule, weekly_retraining_schedule
from pipeline_project.sensors import (
    AUTOMATION_INTERVAL_SECONDS,
    automation_sensor,
    contributions_sensor,
    dead_runs_sensor,
    new_songs_sensor,
    split_failed_batches,
)
from pipeline_project.separation.demucs_download import DEMUCS_REMOTE_URL
from pipeline_project.settings import SECRET_ENV, Settings
from pipeline_project.training.registry import sqlite_tracking_uri


def default_resources(data_root: str | os.PathLike | None = None, settings: Settings | None = None) -> dict:
    """The resources, from `settings` (by default read from the environment, with `data_root` overriding
    PIPELINE_DATA_ROOT; see `settings.Settings` and the README's settings table). The defaults work offline on
    one machine."""
    settings = settings or Settings.from_environment(data_root=data_root)
    secret = dg.EnvVar(SECRET_ENV) if settings.anon_secret_set else None
    storage = StorageResource(
        data_root=settings.data_root, mirror_dir=settings.mirror_dir, secret_dir=settings.secret_dir, anon_secret=secret
    )
    return {
        "storage": storage,
        "separator": SeparatorResource(
            model_name=settings.demucs_model,
            model_dir=settings.demucs_model_dir,
            weights=settings.demucs_weights,
            weights_url=settings.demucs_weights_url or DEMUCS_REMOTE_URL,
            learned=settings.learned_separator,
            device=settings.demucs_device,
        ),
        "renderer": RendererResource(soundfont_dir=settings.soundfont_dir or str(storage.soundfonts)),
        "datasets": DatasetsResource(snapshots_to_keep=settings.snapshots_to_keep, k_anonymity=settings.k_anonymity),
        "mlflow": mlflow_resource(storage, settings),
        "song_runs": SongRunsResource(songs_per_run=settings.songs_per_run),
    }


def mlflow_resource(storage: StorageResource, settings: Settings) -> MlflowResource:
    """SQLite in `<data root>/mlflow` with artifacts beside it, or the server or store of MLFLOW_TRACKING_URI,
    which then decides where artifacts go itself. With an object-store data root the artifacts go to
    `<data root>/mlflow/artifacts` in the store and the SQLite file stays in this machine's mirror: runs on
    several machines need MLFLOW_TRACKING_URI to name a shared server."""
    if settings.mlflow_tracking_uri:
        return MlflowResource(
            tracking_uri=settings.mlflow_tracking_uri,
            record_machine=settings.mlflow_record_machine,
            update_source=settings.model_source,
        )
    return MlflowResource(
        tracking_uri=sqlite_tracking_uri(storage.mlflow),
        artifact_root=storage.location(storage.mlflow / "artifacts"),
        record_machine=settings.mlflow_record_machine,
        update_source=settings.model_source,
    )


PER_SONG_ASSETS = [song_audio, song_quality, song_stems, song_analysis, song_theory]
ALL_ASSETS = [
    song_audio,
    song_quality,
    song_stems,
    song_analysis,
    song_theory,
    rendered_examples,
    augmented_examples,
    song_features,
    synthetic_examples,
    drum_hits,
    concert_pairs,
    contributed_hits,
    contribution_stats,
    drum_hit_classifier,
    genre_classifier_model,
    song_embedding,
    analysis_models,
    stem_separator,
    review_queue,
    human_labels,
    genre_queue,
    song_index,
    collection_quality,
    collection_report,
    training_export,
]
ALL_CHECKS = [*privacy_checks, *validation_checks, *accuracy_checks]


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    """PIPELINE_EXECUTOR: `multiprocess` (default: the steps of a run in processes on this machine), `celery`
    (steps sent through the broker at PIPELINE_CELERY_BROKER, default `redis://localhost:6379/0`, to Celery
    workers on any machine that shares the data root and the Dagster instance; see deploy/celery/) or `k8s`
    (one Kubernetes pod per step, sized by the assets' `dagster-k8s/config` tags; see deploy/kubernetes/).
    The assets are the same whichever runs them."""
    if settings.executor == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError as error:
            raise RuntimeError(
                "PIPELINE_EXECUTOR=celery needs the cluster extra: pip install -e '.[cluster]'"
            ) from error
        return celery_executor.configured(
            {"broker": settings.celery_broker, "backend": settings.celery_broker}, name="celery"
        )
    if settings.executor == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as error:
            raise RuntimeError("PIPELINE_EXECUTOR=k8s needs the cluster extra: pip install -e '.[cluster]'") from error
        return k8s_job_executor
    return dg.multiprocess_executor


def build_definitions(
    resources: dict | None = None,
    automation_interval_seconds: int = AUTOMATION_INTERVAL_SECONDS,
    loggers: dict | None = None,
    settings: Settings | None = None,
) -> dg.Definitions:
    """The code location, from `settings` (read from the environment by default) and the `resources` made from
    them (`default_resources(settings=...)` by default); `automation_interval_seconds` is how often the
    automation sensor evaluates; `loggers` replace Dagster's console logger (the CLI's run log)."""
    settings = settings or Settings.from_environment()
    batches = song_batches_policy(settings.songs_per_run)
    return dg.Definitions(
        loggers=loggers,
        assets=[
            asset.with_attributes(backfill_policy=batches) if asset in PER_SONG_ASSETS else asset
            for asset in ALL_ASSETS
        ],
        executor=executor_for(settings),
        asset_checks=ALL_CHECKS,
        jobs=[
            song_pipeline_job,
            synthesis_job,
            datasets_and_training_job,
            training_job,
            contributions_job,
            labels_job,
            rollback_job,
            model_updates_job,
        ],
        sensors=[
            new_songs_sensor,
            split_failed_batches,
            contributions_sensor,
            dead_runs_sensor,
            labels_sensor,
            automation_sensor(automation_interval_seconds),
        ],
        schedules=[weekly_retraining_schedule, model_updates_schedule],
        resources=resources or default_resources(settings=settings),
    )


defs = build_definitions()


def song_pipeline_job_definition() -> dg.JobDefinition:
    """The per-song job as a reconstructable target (`dg.reconstructable(song_pipeline_job_definition)`), for
    executors whose steps run in other processes or on other machines."""
    return defs.resolve_job_def("song_pipeline_job")
