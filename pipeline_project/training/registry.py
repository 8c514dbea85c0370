"""MLflow tracking and registry: log a run, register a version, move `champion` only to a better model.

The store is whatever tracking URI is given (by default a SQLite file with artifacts beside it); the model
lifecycle uses aliases (`champion`, `challenger`), never the deprecated stages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHAMPION, CHALLENGER = "champion", "challenger"
# Tree ensembles are saved with skops; their node arrays are trusted because this pipeline wrote them.
TRUSTED_SKOPS_TYPES = ["sklearn.tree._tree.Tree"]


@dataclass
class RegistrationResult:
    run_id: str
    experiment_id: str
    model_name: str
    version: str
    score: float
    champion_score_before: float | None
    promoted: bool
    alias: str


def sqlite_tracking_uri(store_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(store_dir).resolve() / 'mlflow.db'}"


class Registry:
    def __init__(self, tracking_uri: str, artifact_root: str | None = None):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = Path(self.artifact_root).resolve().as_uri() + f"/{name}" if self.artifact_root else None
        return self.client.create_experiment(name, artifact_location=location)

    def champion_version(self, model_name: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(model_name, CHAMPION)
        except MlflowException:
            return None

    def load_version(self, model_name: str, version: str):
        import mlflow.sklearn

        return mlflow.sklearn.load_model(f"models:/{model_name}/{version}")

    def log_and_register(self, *, model, model_name: str, experiment: str, params: dict, metrics: dict,
                         tags: dict, input_example, score: float, score_champion, minimum_gain: float = 0.0,
                         json_artifacts: dict[str, dict] | None = None) -> RegistrationResult:
        """Log a run with the model, register it as a new version, then move `champion` to it only if it
        scores at least as well as the current champion (re-scored by `score_champion(model)` on the same
        test split); otherwise the version gets `challenger`. `json_artifacts` (file name -> content) are
        logged with the run."""
        import mlflow
        import mlflow.sklearn
        import sklearn
        from mlflow.models import infer_signature

        experiment_id = self.experiment_id(experiment)
        champion = self.champion_version(model_name)
        champion_score = None
        if champion is not None:
            champion_score = float(score_champion(self.load_version(model_name, champion.version)))

        with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            for name, content in (json_artifacts or {}).items():
                mlflow.log_dict(content, name)
            if champion_score is not None:
                mlflow.log_metric("champion_macro_f1_same_split", champion_score)
            signature = infer_signature(input_example, model.predict(input_example))
            info = mlflow.sklearn.log_model(
                model, name="model", signature=signature, input_example=input_example,
                registered_model_name=model_name,
                pip_requirements=[f"scikit-learn=={sklearn.__version__}"],  # skips slow dependency inference
                skops_trusted_types=TRUSTED_SKOPS_TYPES,
            )
        version = str(info.registered_model_version)
        for key, value in tags.items():
            self.client.set_model_version_tag(model_name, version, key, str(value))
        promoted = champion_score is None or score >= champion_score + minimum_gain
        alias = CHAMPION if promoted else CHALLENGER
        self.client.set_registered_model_alias(model_name, alias, version)
        self.client.set_model_version_tag(model_name, version, "promotion",
                                          "champion" if promoted else f"challenger: {score:.4f} < champion {champion_score:.4f}")
        return RegistrationResult(run.info.run_id, experiment_id, model_name, version, score, champion_score, promoted, alias)

    def versions(self, model_name: str) -> list:
        return list(self.client.search_model_versions(f"name='{model_name}'"))
