"""MLflow tracking and registry: log a run, register a version with a model card, move `champion` only to a
better model that passed its checks, and roll `champion` back.

The store is whatever tracking URI is given (by default a SQLite file with artifacts beside it, or an MLflow
server); the lifecycle uses aliases (`champion`, `challenger`), never the deprecated stages. Every version
carries tags that lead back to what made it: `semver`, `dataset_snapshot`, `dagster_run_id` (and the run id
MLflow keeps itself), and a `model_card.json` in its run with the sha256 of every model file.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline_project.files import sha256_of

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_CARD = "model_card.json"
CHAMPION_HISTORY = "champion_history"  # registered-model tag: JSON list of versions, oldest first
# Tree ensembles are saved with skops; their node arrays are trusted because this pipeline wrote them.
TRUSTED_SKOPS_TYPES = ["sklearn.tree._tree.Tree"]
FLAVORS = ("sklearn", "pytorch", "onnx")


@dataclass
class RegistrationResult:
    run_id: str
    experiment_id: str
    model_name: str
    version: str
    semver: str
    score: float
    champion_score_before: float | None
    promoted: bool
    alias: str
    reason: str
    card: dict = field(default_factory=dict)


def sqlite_tracking_uri(store_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(store_dir).resolve() / 'mlflow.db'}"


def file_checksums(folder: str | os.PathLike) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder`."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha256_of(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def next_semver(previous: list[str], major: int, new_data: bool) -> str:
    """MAJOR is the model family's code version (a new input contract or architecture); MINOR counts versions
    trained on new data; PATCH counts retrainings on the same data."""
    same_major = sorted(
        (tuple(int(x) for x in v.split(".")) for v in previous if v.split(".")[0] == str(major)), reverse=True
    )
    if not same_major:
        return f"{major}.0.0"
    _, minor, patch = same_major[0]
    return f"{major}.{minor + 1}.0" if new_data else f"{major}.{minor}.{patch + 1}"


def render_card_params(card: dict, version_param: str) -> dict:
    """The run parameters of a network trained on renders, from its card: seed, the commit of the code that
    trained it, network, its own version (as `version_param`), and the renders and SoundFonts it was trained and
    validated on."""
    return {
        "seed": card.get("seed"),
        "source_commit": card.get("source_commit"),  # the code that trained it (see training.reproduce)
        "network": card.get("network"),
        version_param: card.get("version"),
        "training_renders": card.get("training_renders"),
        "validation_renders": card.get("validation_renders"),
        "training_soundfonts": ",".join(card.get("training_soundfonts", [])),
        "validation_soundfonts": ",".join(card.get("validation_soundfonts", [])),
    }


def render_card_checks(card: dict, predict, example, prediction, metrics: dict, minimum_renders: int) -> dict:
    """`checks` and `training_stats` for `log_and_register` of an ONNX network trained on renders: it reloads and
    predicts as trained on `example`, and was validated on at least `minimum_renders` renders."""
    renders = int(card.get("validation_renders", 0))
    return {
        "checks": reload_checks("onnx", predict, example, prediction, metrics, renders, minimum_renders),
        "training_stats": {
            "samples": card.get("training_renders"),
            "conditions": card.get("conditions"),
            "soundfonts": card.get("training_soundfonts"),
        },
    }


def snapshot_input(manifest: dict, table):
    """A dataset snapshot as an MLflow dataset, to log as an input of the run trained on it: MLflow's UI then
    shows on the run which snapshot (its name, its id as the digest, its columns and rows) trained the version.
    The source is the snapshot's place inside the data root, never a path on this machine."""
    import warnings

    import mlflow.data

    with warnings.catch_warnings():
        # A relative path matches two of MLflow's local-artifact sources, which are one and the same kind.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        # The schema shown beside the snapshot is a description, never enforced on inputs: its integer columns
        # need no advice about missing values.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        return mlflow.data.from_pandas(
            table,
            source=f"datasets/{manifest['name']}/snapshots/{manifest['snapshot_id']}",
            name=manifest["name"],
            digest=manifest["snapshot_id"],
        )


def load_model(flavor: str, uri: str):
    """A logged model (a `models:/` or `runs:/` URI, or a downloaded folder) through its MLflow flavor."""
    return importlib.import_module(f"mlflow.{flavor}").load_model(uri)


def promotion_decision(
    score: float,
    champion_score: float | None,
    minimum_gain: float,
    failed_checks: list[str],
    baseline: tuple[str, float] | None = None,
    held_back: str | None = None,
) -> tuple[bool, str]:
    """Whether a new version takes `champion`, and why (or why not). Without a champion, a family that
    replaces a non-learned path (`baseline`: its name and score on the same split) must beat that instead.
    `held_back` is a reason the version's own card gives for staying a challenger whatever its score (worse
    than the non-learned path in a listening condition)."""
    if failed_checks:
        return False, f"failed blocking checks: {', '.join(failed_checks)}"
    if not math.isfinite(score):
        return False, f"score {score} is not a number"
    if held_back:
        return False, held_back
    rival = "champion's"
    if champion_score is None and baseline is not None:
        rival, champion_score = f"the {baseline[0]}'s", baseline[1]
    if champion_score is None:
        return True, "first version: no champion to beat"
    if score >= champion_score + minimum_gain:
        return (
            True,
            f"{score:.4f} beats {rival} {champion_score:.4f} on the same held-out split by at least {minimum_gain}",
        )
    return False, f"{score:.4f} does not beat {rival} {champion_score:.4f} on the same held-out split by {minimum_gain}"


def reload_checks(
    flavor: str, predict: Callable, input_example, trained_prediction, metrics: dict, test_rows: int, minimum_rows: int
) -> Callable[[Path, dict], dict[str, bool]]:
    """The checks a logged model must pass before it may become champion: it reloads through its flavor and
    predicts exactly as trained, its metrics are finite, and it was scored on enough rows."""
    import numpy as np

    def run(model_dir: Path, card: dict) -> dict[str, bool]:
        reloaded = load_model(flavor, str(model_dir))
        again = np.asarray(predict(reloaded, input_example))
        same = again.shape == np.asarray(trained_prediction).shape and (
            np.array_equal(again, trained_prediction)
            if again.dtype.kind in "OUS"
            else np.allclose(again, trained_prediction, atol=1e-5)
        )
        return {
            "reloads_and_predicts_as_trained": bool(same),
            "metrics_finite": all(math.isfinite(float(v)) for v in metrics.values()),
            f"test_split_has_{minimum_rows}_rows": test_rows >= minimum_rows,
        }

    return run


# MLflow records on every run and logged model who ran it and from where: the user name, the script's absolute
# path, the git branch and remote. A model meant to be shared carries none of that unless the user opts in
# (`record_machine`): the source is named neutrally and the git branch and remote are left out (the commit stays:
# it names code, not a machine).
NEUTRAL_SOURCE = {"mlflow.user": "pipeline_project", "mlflow.source.name": "pipeline_project"}
MACHINE_TAGS = ("mlflow.source.git.branch", "mlflow.source.git.repoURL")


@contextmanager
def _exports_without_source_locations():
    """While MLflow saves a PyTorch model as `model.pt2`, leave out each node's stack trace: torch.export records
    one per operation, with absolute paths of this machine's source files and packages. MLflow exports and
    saves in one call, so its `torch.export.save` is wrapped for the call; the graph itself is unchanged."""
    import torch

    save = torch.export.save

    def save_without_stack_traces(program, *args, **kwargs):
        for module in program.graph_module.modules():
            if isinstance(module, torch.fx.GraphModule):
                for node in module.graph.nodes:
                    node.meta.pop("stack_trace", None)
        return save(program, *args, **kwargs)

    torch.export.save = save_without_stack_traces
    try:
        yield
    finally:
        torch.export.save = save


def _flavor_arguments(flavor: str) -> dict:
    """What `log_model` of an sklearn or pytorch model is given beyond the common arguments. Naming the one
    requirement skips MLflow's slow dependency inference."""
    if flavor == "sklearn":
        import sklearn

        return {
            "pip_requirements": [f"scikit-learn=={sklearn.__version__}"],
            "skops_trusted_types": TRUSTED_SKOPS_TYPES,
        }
    import torch

    return {"pip_requirements": [f"torch=={torch.__version__.split('+')[0]}"]}


def _log_onnx(model, name: str, signature, input_example, tags: dict, registered_model_name: str | None = None):
    """Log an `onnx.ModelProto` in the active run as an ONNX model with its signature."""
    import mlflow.onnx
    import onnx

    return mlflow.onnx.log_model(
        model,
        name=name,
        signature=signature,
        input_example=input_example,
        registered_model_name=registered_model_name,
        tags=tags or None,
        pip_requirements=[f"onnx=={onnx.__version__}"],
        save_as_external_data=False,
        onnx_execution_providers=["CPUExecutionProvider"],
    )


class Registry:
    def __init__(self, tracking_uri: str, artifact_root: str | None = None, record_machine: bool = False):
        from pipeline_project.settings import apply_library_defaults

        apply_library_defaults()  # before MLflow is used: no telemetry, no progress bars in the run logs
        import mlflow

        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.record_machine = record_machine
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._fluent_blocks = 0  # how deep this registry is in `_fluent_api_on_this_store`

    @contextmanager
    def _fluent_api_on_this_store(self):
        """Point MLflow's module-level API (runs, `models:/` loads) at this store for the block, through MLflow's
        public API only. `set_tracking_uri` also exports MLFLOW_TRACKING_URI; afterwards the module-level URI is
        unset again (the project never leaves one set) and the variable is as it was: a user's own setting
        stays, and this store's URI never passes for one in a later resource of this process. The registry URI
        is never set: MLflow takes the tracking URI for it, so versions land in this store too."""
        import mlflow
        from mlflow.environment_variables import MLFLOW_TRACKING_URI

        if self._fluent_blocks:  # nested (a download inside a logging run): already pointed here
            yield
            return
        users = MLFLOW_TRACKING_URI.get() if MLFLOW_TRACKING_URI.defined else None
        mlflow.set_tracking_uri(self.tracking_uri)
        self._fluent_blocks += 1
        try:
            yield
        finally:
            self._fluent_blocks -= 1
            mlflow.set_tracking_uri(None)
            if users is not None:
                MLFLOW_TRACKING_URI.set(users)

    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.artifact_root:  # a folder, or an object-store URL such as s3://bucket/prefix/mlflow/artifacts
            base = self.artifact_root if "://" in self.artifact_root else Path(self.artifact_root).resolve().as_uri()
            location = f"{base.rstrip('/')}/{name}"
        return self.client.create_experiment(name, artifact_location=location)

    def champion_version(self, model_name: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(model_name, CHAMPION)
        except MlflowException:
            return None

    def load_champion(self, model_name: str):
        """(the champion's version, its model loaded through its flavor from `models:/<name>@champion`), or
        (None, None) without a champion."""
        champion = self.champion_version(model_name)
        if champion is None:
            return None, None
        with self._fluent_api_on_this_store():
            return champion, load_model(champion.tags.get("flavor", "sklearn"), f"models:/{model_name}@{CHAMPION}")

    def load_version(self, model_name: str, version: str):
        """One version's model, loaded through its flavor from `models:/<name>/<version>`."""
        model_version = self.client.get_model_version(model_name, str(version))
        with self._fluent_api_on_this_store():
            return load_model(model_version.tags.get("flavor", "sklearn"), f"models:/{model_name}/{version}")

    def versions(self, model_name: str) -> list:
        return sorted(self.client.search_model_versions(f"name='{model_name}'"), key=lambda v: int(v.version))

    def model_card(self, model_name: str, version: str) -> dict:
        run_id = self.client.get_model_version(model_name, version).run_id
        with tempfile.TemporaryDirectory() as tmp:
            return json.loads(Path(self.client.download_artifacts(run_id, MODEL_CARD, tmp)).read_text())

    def model_files(self, model_name: str, version: str, destination: str | os.PathLike) -> Path:
        """Download a version's model files (what its card's checksums cover) into `destination`."""
        import mlflow.artifacts

        with self._fluent_api_on_this_store():
            return Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{model_name}/{version}", dst_path=str(destination)
                )
            )

    def champion_history(self, model_name: str) -> list[str]:
        model = self.client.get_registered_model(model_name)
        return json.loads(model.tags.get(CHAMPION_HISTORY, "[]"))

    def _make_champion(self, model_name: str, version: str, history: list[str]) -> None:
        self.client.set_registered_model_alias(model_name, CHAMPION, version)
        self.client.set_registered_model_tag(model_name, CHAMPION_HISTORY, json.dumps(history))

    def log_and_register(
        self,
        *,
        model,
        flavor: str,
        model_name: str,
        experiment: str,
        params: dict,
        metrics: dict,
        tags: dict,
        input_example,
        predict: Callable,
        score: float,
        score_champion: Callable,
        minimum_gain: float = 0.01,
        checks: Callable[[Path, dict], dict[str, bool]] | None = None,
        json_artifacts: dict[str, dict] | None = None,
        inputs: list | None = None,
        onnx_exports: dict[str, str | os.PathLike] | None = None,
        files: dict[str, str | os.PathLike] | None = None,
        training_stats: dict | None = None,
        performance: dict | None = None,
        major: int = 1,
        new_data: bool = True,
        baseline: tuple[str, float] | None = None,
        held_back: str | None = None,
    ) -> RegistrationResult:
        """Log a run with the model, its card and artifacts, register it as a new version, then move
        `champion` to it only if it passes `checks` and beats the current champion, re-scored by
        `score_champion(model)` on the same test split, by `minimum_gain`; otherwise the version gets
        `challenger`. `checks(model folder, card)` returns {check name: passed} for the logged files;
        `files` (artifact name -> local path) are logged beside the model (exports, plots). `baseline` (name,
        score) is what a first version must beat where the family replaces a non-learned path; `held_back`, a
        reason its card gives for staying a challenger whatever its score. `inputs`
        (`snapshot_input`) are the dataset snapshots it was trained on. `onnx_exports` (name -> .onnx file) are
        exports of the model that take the same input: each is logged as an ONNX model of its own in the run, with
        the same signature. An `onnx` model is an `onnx.ModelProto`."""
        import mlflow
        from mlflow.models import infer_signature

        if flavor not in FLAVORS:
            raise ValueError(f"unknown model flavor {flavor!r}; choose from {FLAVORS}")
        experiment_id = self.experiment_id(experiment)
        champion, champion_model = self.load_champion(model_name)
        champion_score = None
        if champion is not None:
            champion_score = float(score_champion(champion_model))
        semver = next_semver(
            [v.tags["semver"] for v in self.versions(model_name) if "semver" in v.tags], major, new_data
        )

        neutral = {} if self.record_machine else NEUTRAL_SOURCE
        with (
            self._fluent_api_on_this_store(),
            mlflow.start_run(experiment_id=experiment_id, tags={**neutral, **tags}) as run,
        ):
            self._forget_machine(run.data.tags, lambda key: self.client.delete_tag(run.info.run_id, key))
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            for dataset in inputs or []:
                mlflow.log_input(dataset, context="training")
            for name, content in (json_artifacts or {}).items():
                mlflow.log_dict(content, name)
            for name, path in (files or {}).items():
                mlflow.log_artifact(str(path), artifact_path=name)
            if champion_score is not None:
                mlflow.log_metric("champion_score_same_split", champion_score)
            signature = infer_signature(input_example, predict(model, input_example))
            if flavor == "onnx":
                info = _log_onnx(model, "model", signature, input_example, neutral, registered_model_name=model_name)
            else:
                with (
                    nullcontext() if self.record_machine or flavor != "pytorch" else _exports_without_source_locations()
                ):
                    info = importlib.import_module(f"mlflow.{flavor}").log_model(
                        model,
                        name="model",
                        signature=signature,
                        input_example=input_example,
                        registered_model_name=model_name,
                        tags=neutral or None,
                        **_flavor_arguments(flavor),
                    )
            logged_ids = [info.model_id]
            for name, path in (onnx_exports or {}).items():
                import onnx

                logged_ids.append(_log_onnx(onnx.load(str(path)), name, signature, input_example, neutral).model_id)
            version = str(info.registered_model_version)
            for model_id in logged_ids:
                self._forget_machine(
                    self.client.get_logged_model(model_id).tags,
                    lambda key, model_id=model_id: self.client.delete_logged_model_tag(model_id, key),
                )
            with tempfile.TemporaryDirectory() as tmp:
                model_dir = self.model_files(model_name, version, tmp)
                card = {
                    "model_name": model_name,
                    "version": semver,
                    "registry_version": version,
                    "released": datetime.now(UTC).isoformat(timespec="seconds"),
                    "flavor": flavor,
                    "mlflow_run_id": run.info.run_id,
                    "dataset_snapshot": tags.get("dataset_snapshot"),
                    "dagster_run_id": tags.get("dagster_run_id"),
                    "training": training_stats or {},
                    "performance": performance or metrics,
                    "sha256": file_checksums(model_dir),
                }
                results = checks(model_dir, card) if checks else {}
            failed = [name for name, passed in results.items() if not passed]
            promoted, reason = promotion_decision(score, champion_score, minimum_gain, failed, baseline, held_back)
            card["checks"] = results
            card["promotion"] = {"promoted": promoted, "reason": reason}
            mlflow.log_dict(card, MODEL_CARD)

        for key, value in {**tags, "semver": semver, "flavor": flavor, "promotion": reason}.items():
            self.client.set_model_version_tag(model_name, version, key, str(value))
        if promoted:
            self._make_champion(model_name, version, [*self.champion_history(model_name), version])
        else:
            self.client.set_registered_model_alias(model_name, CHALLENGER, version)
        return RegistrationResult(
            run.info.run_id,
            experiment_id,
            model_name,
            version,
            semver,
            score,
            champion_score,
            promoted,
            CHAMPION if promoted else CHALLENGER,
            reason,
            card,
        )

    def _forget_machine(self, tags: dict, delete: Callable[[str], None]) -> None:
        if not self.record_machine:
            for key in MACHINE_TAGS:
                if key in tags:
                    delete(key)

    def rollback(self, model_name: str) -> tuple[str, str]:
        """Move `champion` back to the version that held it before the current one; returns (from, to)."""
        history = self.champion_history(model_name)
        current = self.champion_version(model_name)
        if current is None or len(history) < 2:
            raise ValueError(
                f"{model_name}: no earlier champion to roll back to (champion history: {history or 'empty'})"
            )
        rolled_back, restored = history[-1], history[-2]
        self._make_champion(model_name, restored, history[:-1])
        self.client.set_model_version_tag(
            model_name, rolled_back, "rolled_back", datetime.now(UTC).isoformat(timespec="seconds")
        )
        self.client.set_registered_model_alias(model_name, CHALLENGER, rolled_back)
        return rolled_back, restored
