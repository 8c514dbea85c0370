"""A thin resource around the MLflow client (tracking and registry share one URI)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import dagster as dg

from pipeline_project.training.registry import Registry


class MlflowResource(dg.ConfigurableResource):
    """MLflow store.

    tracking_uri: e.g. `sqlite:///.../data/mlflow/mlflow.db` (default) or `http://host:5000`.
    artifact_root: folder for artifacts of new experiments (default: `artifacts/` beside the SQLite file).
    experiment: experiment that training runs are logged to.
    """

    tracking_uri: str
    artifact_root: Optional[str] = None
    experiment: str = "pipeline_project"

    def registry(self) -> Registry:
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return Registry(self.tracking_uri, self.artifact_root)
