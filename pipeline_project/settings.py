"""Every setting of the pipeline, read from the environment once, where the definitions are built.

`Settings.from_environment()` is the only place that reads the pipeline's environment variables (the CLI and
`definitions` call it); the values reach the code through the Dagster resources built from it, never through
`os.environ`. The anonymization key is handed over as `dg.EnvVar` (resolved when a run starts, never shown in
the UI). The README's "Settings" table lists them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXECUTORS = ("multiprocess", "celery", "k8s")
WEIGHT_POLICIES = ("auto", "never", "always")
SECRET_ENV = "PIPELINE_ANON_SECRET"


@dataclass(frozen=True)
class Settings:
    # Where the data lives: a folder, or an object-store URL (s3://bucket/prefix) mirrored in `mirror_dir`.
    data_root: str = str(PROJECT_ROOT / "data")
    mirror_dir: str | None = None
    # Where each data root's anonymization key is kept (default $XDG_CONFIG_HOME/pipeline_project/keys).
    secret_dir: str | None = None
    # Whether PIPELINE_ANON_SECRET is set: the key then comes from it, resolved when a run starts.
    anon_secret_set: bool = False
    demucs_model: str = "htdemucs"
    demucs_model_dir: str | None = None
    demucs_weights: str = "auto"
    demucs_weights_url: str | None = None  # None: demucs's own remote
    demucs_device: str = "auto"
    learned_separator: str = "auto"
    soundfont_dir: str | None = None  # None: <data root>/soundfonts
    snapshots_to_keep: int = 5
    k_anonymity: int = 5
    mlflow_tracking_uri: str | None = None  # None: SQLite in <data root>/mlflow
    mlflow_record_machine: bool = False
    executor: str = "multiprocess"
    celery_broker: str = "redis://localhost:6379/0"
    songs_per_run: int = 25
    # The user's own settings folder (default $XDG_CONFIG_HOME/pipeline_project): `models pull` writes the hi-hat
    # presets of a pulled champion there (hihat_presets.json).
    config_dir: str | None = None
    # Another MLflow store to compare the local champions with (`models check`, and the opt-in daily
    # `model_updates` schedule); None: no store, the schedule says so and does nothing.
    model_source: str | None = None

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, data_root: str | os.PathLike | None = None
    ) -> Settings:
        """The settings from `environ` (the process's environment by default); `data_root` (the CLI's
        --data-root) overrides PIPELINE_DATA_ROOT. A value that cannot be right fails here, naming the variable."""
        env = os.environ if environ is None else environ

        def text(name: str, default: str | None = None) -> str | None:
            return env.get(name) or default

        def number(name: str, default: int, minimum: int) -> int:
            raw = env.get(name)
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a whole number") from None
            if value < minimum:
                raise ValueError(f"{name}={value} must be at least {minimum}")
            return value

        def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
            value = env.get(name) or default
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")
            return value

        from pipeline_project.object_store import is_remote_url

        chosen = str(data_root or env.get("PIPELINE_DATA_ROOT") or cls.data_root)
        return cls(
            data_root=chosen if is_remote_url(chosen) else str(Path(chosen).resolve()),
            mirror_dir=text("PIPELINE_MIRROR_DIR"),
            secret_dir=text("PIPELINE_SECRET_DIR")
            or str(Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "pipeline_project" / "keys"),
            anon_secret_set=bool(env.get(SECRET_ENV)),
            demucs_model=text("PIPELINE_DEMUCS_MODEL", cls.demucs_model),
            demucs_model_dir=text("PIPELINE_DEMUCS_MODEL_DIR"),
            demucs_weights=choice("PIPELINE_DEMUCS_WEIGHTS", cls.demucs_weights, WEIGHT_POLICIES),
            demucs_weights_url=text("PIPELINE_DEMUCS_WEIGHTS_URL"),
            demucs_device=text("PIPELINE_DEMUCS_DEVICE", cls.demucs_device),
            learned_separator=choice("PIPELINE_LEARNED_SEPARATOR", cls.learned_separator, ("auto", "never")),
            soundfont_dir=text("PIPELINE_SOUNDFONT_DIR"),
            snapshots_to_keep=number("PIPELINE_SNAPSHOTS_TO_KEEP", cls.snapshots_to_keep, 1),
            k_anonymity=number("PIPELINE_K_ANONYMITY", cls.k_anonymity, 1),
            mlflow_tracking_uri=text("MLFLOW_TRACKING_URI"),
            mlflow_record_machine=env.get("PIPELINE_MLFLOW_RECORD_MACHINE", "0") == "1",
            executor=choice("PIPELINE_EXECUTOR", cls.executor, EXECUTORS),
            celery_broker=text("PIPELINE_CELERY_BROKER", cls.celery_broker),
            songs_per_run=number("PIPELINE_SONGS_PER_RUN", cls.songs_per_run, 1),
            config_dir=text("PIPELINE_CONFIG_DIR")
            or str(Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "pipeline_project"),
            model_source=text("PIPELINE_MODEL_SOURCE"),
        )


# What the libraries the pipeline drives read from the environment themselves, and no API sets: MLflow's
# telemetry (the pipeline works offline and reports nothing) and its per-file progress bars, which only clutter
# the run logs a user reads. A value the user set stays.
LIBRARY_DEFAULTS = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def apply_library_defaults() -> None:
    """Called where the registry is made, before MLflow reads them."""
    for name, value in LIBRARY_DEFAULTS.items():
        os.environ.setdefault(name, value)
