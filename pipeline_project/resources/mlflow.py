"""A thin resource around the MLflow client (tracking and registry share one URI)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import dagster as dg

from pipeline_project.locks import exclusive
from pipeline_project.training.registry import Registry


class MlflowResource(dg.ConfigurableResource):
    """MLflow store.

    tracking_uri: e.g. `sqlite:///.../data/mlflow/mlflow.db` (default) or `http://host:5000`.
    artifact_root: folder for artifacts of new experiments (default: `artifacts/` beside the SQLite file).
    experiment: experiment that training runs are logged to.
    record_machine: keep what MLflow records about the machine on runs and logged models (user name, script
    path, git branch and remote); off by default, so models can be shared.
    update_source: another MLflow store whose champions the opt-in `model_updates` schedule compares with
    these (PIPELINE_MODEL_SOURCE); None: nothing to compare with.
    """

    tracking_uri: str
    artifact_root: str | None = None
    experiment: str = "pipeline_project"
    record_machine: bool = False
    update_source: str | None = None

    def registry(self) -> Registry:
        if self.tracking_uri.startswith("sqlite:///"):
            # MLflow creates and migrates a SQLite store on first connect; two processes doing it at once (song
            # runs on parallel workers) fail the loser's migration. One at a time; later connects find it done.
            with exclusive(Path(self.tracking_uri[len("sqlite:///") :]).parent / ".connect.lock"):
                registry = Registry(self.tracking_uri, self.artifact_root, self.record_machine)
                registry.client.search_registered_models(max_results=1)  # the registry's tables, made here too
                return registry
        return Registry(self.tracking_uri, self.artifact_root, self.record_machine)

    def model_cache(self) -> Path:
        """Local folder for downloaded champion networks (versions never change, so each is fetched once):
        beside the SQLite store, or in the temp folder per tracking server."""
        if self.tracking_uri.startswith("sqlite:///"):
            return Path(self.tracking_uri[len("sqlite:///") :]).parent / "model_cache"
        return (
            Path(tempfile.gettempdir())
            / "pipeline_project_models"
            / hashlib.sha256(self.tracking_uri.encode()).hexdigest()[:12]
        )

    def analysis_models(self, log=print):
        """The learned analysers' champions as one model set, or None where no family has one (the DSP path
        then runs). The first call on a new store registers the shipped set (`training.analysis_registry`)."""
        from pipeline_project.training import analysis_registry

        return analysis_registry.pipeline_models(self.registry(), self.experiment, self.model_cache(), log)

    def stem_separator(self, log=print):
        """The learned separator's champion (`separation.learned.LoadedSeparator`), or None where the family has
        none. The first call on a new store registers the shipped one (`training.separator_registry`)."""
        from pipeline_project.training import separator_registry

        return separator_registry.pipeline_separator(self.registry(), self.experiment, self.model_cache(), log)
