"""The Dagster code location: the whole graph on one screen."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from pipeline_project.assets.analysis import song_analysis, song_theory
from pipeline_project.assets.datasets import (
    concert_pairs,
    contributed_hits,
    contribution_stats,
    drum_hits,
    song_features,
    synthetic_examples,
)
from pipeline_project.assets.ingestion import song_audio
from pipeline_project.assets.separation import song_stems
from pipeline_project.assets.synthesis import augmented_examples, rendered_examples
from pipeline_project.assets.training import (
    analysis_models,
    drum_hit_classifier,
    genre_classifier_model,
    review_queue,
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
from pipeline_project.object_store import is_remote_url
from pipeline_project.resources import DatasetsResource, MlflowResource, RendererResource, SeparatorResource, StorageResource
from pipeline_project.schedules import weekly_retraining_schedule
from pipeline_project.sensors import (
    AUTOMATION_INTERVAL_SECONDS,
    automation_sensor,
    contributions_sensor,
    dead_runs_sensor,
    new_songs_sensor,
    split_failed_batches,
)
from pipeline_project.separation.demucs_download import DEMUCS_REMOTE_URL
from pipeline_project.training.registry import sqlite_tracking_uri

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_resources(data_root: str | os.PathLike | None = None) -> dict:
    """Resources from the environment, with defaults that work offline on one machine:
    PIPELINE_DATA_ROOT (default `data/`; a folder, or an object-store URL such as `s3://bucket/prefix` mirrored
    in PIPELINE_MIRROR_DIR), PIPELINE_SECRET_DIR (where the anonymization key is kept, default
    `~/.config/pipeline_project/keys`), PIPELINE_DEMUCS_MODEL (default `htdemucs`), PIPELINE_DEMUCS_MODEL_DIR (local
    model folder), PIPELINE_DEMUCS_WEIGHTS (auto, never or always: downloading pretrained weights on first
    use), PIPELINE_DEMUCS_WEIGHTS_URL (demucs's remote), PIPELINE_DEMUCS_DEVICE (auto), PIPELINE_LEARNED_SEPARATOR
    (auto: without Demucs weights, the learned separator; never: the DSP fallback), PIPELINE_SOUNDFONT_DIR (default `<data root>/soundfonts`),
    MLFLOW_TRACKING_URI (default SQLite in `<data root>/mlflow`), PIPELINE_MLFLOW_RECORD_MACHINE (1: keep MLflow's
    user name, script path and git branch and remote on runs), PIPELINE_SNAPSHOTS_TO_KEEP (default 5) and
    PIPELINE_K_ANONYMITY (default 5)."""
    chosen = str(data_root or os.environ.get("PIPELINE_DATA_ROOT") or PROJECT_ROOT / "data")
    if is_remote_url(chosen):
        storage = StorageResource(data_root=chosen, mirror_dir=os.environ.get("PIPELINE_MIRROR_DIR") or None,
                                  secret_dir=os.environ.get("PIPELINE_SECRET_DIR") or None)
    else:
        storage = StorageResource(data_root=str(Path(chosen).resolve()), secret_dir=os.environ.get("PIPELINE_SECRET_DIR") or None)
    return {
        "storage": storage,
        "separator": SeparatorResource(
            model_name=os.environ.get("PIPELINE_DEMUCS_MODEL", "htdemucs"),
            model_dir=os.environ.get("PIPELINE_DEMUCS_MODEL_DIR") or None,
            weights=os.environ.get("PIPELINE_DEMUCS_WEIGHTS", "auto"),
            weights_url=os.environ.get("PIPELINE_DEMUCS_WEIGHTS_URL") or DEMUCS_REMOTE_URL,
            learned=os.environ.get("PIPELINE_LEARNED_SEPARATOR", "auto"),
            device=os.environ.get("PIPELINE_DEMUCS_DEVICE", "auto"),
        ),
        "renderer": RendererResource(soundfont_dir=os.environ.get("PIPELINE_SOUNDFONT_DIR") or str(storage.soundfonts)),
        "datasets": DatasetsResource(
            snapshots_to_keep=int(os.environ.get("PIPELINE_SNAPSHOTS_TO_KEEP", "5")),
            k_anonymity=int(os.environ.get("PIPELINE_K_ANONYMITY", "5")),
        ),
        "mlflow": mlflow_resource(storage),
    }


def mlflow_resource(storage: StorageResource) -> MlflowResource:
    """SQLite in `<data root>/mlflow` with artifacts beside it, or the server or store of MLFLOW_TRACKING_URI,
    which then decides where artifacts go itself. With an object-store data root the artifacts go to
    `<data root>/mlflow/artifacts` in the store and the SQLite file stays in this machine's mirror: runs on
    several machines need MLFLOW_TRACKING_URI to name a shared server."""
    record_machine = os.environ.get("PIPELINE_MLFLOW_RECORD_MACHINE", "0") == "1"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return MlflowResource(tracking_uri=os.environ["MLFLOW_TRACKING_URI"], record_machine=record_machine)
    return MlflowResource(tracking_uri=sqlite_tracking_uri(storage.mlflow), artifact_root=storage.location(storage.mlflow / "artifacts"),
                          record_machine=record_machine)


ALL_ASSETS = [song_audio, song_stems, song_analysis, song_theory, rendered_examples, augmented_examples,
              song_features, synthetic_examples, drum_hits, concert_pairs, contributed_hits, contribution_stats,
              drum_hit_classifier, genre_classifier_model, song_embedding, analysis_models, stem_separator, review_queue]
ALL_CHECKS = [*privacy_checks, *validation_checks, *accuracy_checks]


EXECUTORS = ("multiprocess", "celery", "k8s")


def default_executor() -> dg.ExecutorDefinition:
    """PIPELINE_EXECUTOR: `multiprocess` (default: the steps of a run in processes on this machine), `celery`
    (steps sent through the broker at PIPELINE_CELERY_BROKER, default `redis://localhost:6379/0`, to Celery
    workers on any machine that shares the data root and the Dagster instance; see deploy/celery/) or `k8s`
    (one Kubernetes pod per step, sized by the assets' `dagster-k8s/config` tags; see deploy/kubernetes/).
    The assets are the same whichever runs them."""
    name = os.environ.get("PIPELINE_EXECUTOR", "multiprocess")
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError as error:
            raise RuntimeError("PIPELINE_EXECUTOR=celery needs the cluster extra: pip install -e '.[cluster]'") from error
        broker = os.environ.get("PIPELINE_CELERY_BROKER", "redis://localhost:6379/0")
        return celery_executor.configured({"broker": broker, "backend": broker}, name="celery")
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as error:
            raise RuntimeError("PIPELINE_EXECUTOR=k8s needs the cluster extra: pip install -e '.[cluster]'") from error
        return k8s_job_executor
    raise ValueError(f"PIPELINE_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)}")


def build_definitions(resources: dict | None = None,
                      automation_interval_seconds: int = AUTOMATION_INTERVAL_SECONDS,
                      loggers: dict | None = None) -> dg.Definitions:
    """The code location; `automation_interval_seconds` is how often the automation sensor evaluates; `loggers`
    replace Dagster's console logger (the CLI's run log)."""
    return dg.Definitions(
        loggers=loggers,
        assets=ALL_ASSETS,
        executor=default_executor(),
        asset_checks=ALL_CHECKS,
        jobs=[song_pipeline_job, synthesis_job, datasets_and_training_job, training_job, contributions_job, rollback_job],
        sensors=[new_songs_sensor, split_failed_batches, contributions_sensor, dead_runs_sensor,
                 automation_sensor(automation_interval_seconds)],
        schedules=[weekly_retraining_schedule],
        resources=resources or default_resources(),
    )


defs = build_definitions()


def song_pipeline_job_definition() -> dg.JobDefinition:
    """The per-song job as a reconstructable target (`dg.reconstructable(song_pipeline_job_definition)`), for
    executors whose steps run in other processes or on other machines."""
    return defs.resolve_job_def("song_pipeline_job")
