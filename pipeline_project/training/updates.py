"""Taking a better model from another registry (`pipeline-project models check` and `models pull`).

`compare` sets each family's champion here beside the champion of another MLflow store (a shared server, or a
colleague's store): versions, what each was trained on, its score, and whether they are the same model. `pull`
takes the other champion safely: its files are downloaded and checked against the sha256 its model card lists
(a file that differs is refused and nothing is registered), the verified files are loaded, scored here on the
local test split beside the local champion, and registered here through the same gate as a trained version:
challenger, and champion only when it is better by the minimum gain. Hi-hat presets the version carries come
back with it, for the caller to write to the user's config file.

Pulling is for the families scored on a local dataset's test split (`PULLABLE`); the families trained and scored
on renders (the learned analysers, the separator, the embedding) are compared but not pulled.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline_project.training import drum_classifier, genre_classifier
from pipeline_project.training.families import DRUM_MODEL_NAME, EMBEDDING_MODEL_NAME, GENRE_MODEL_NAME
from pipeline_project.training.registry import (
    MODEL_CARD,
    RegistrationResult,
    Registry,
    file_checksums,
    load_model,
    reload_checks,
)

HIHAT_RULES = "hihat_rules.json"
# The run metric each family is scored by, as its versions log it.
FAMILY_SCORE = {
    DRUM_MODEL_NAME: "macro_f1",
    GENRE_MODEL_NAME: "macro_f1",
    EMBEDDING_MODEL_NAME: "torch_top1",
    "beat_tracker": "validation_beat_f",
    "chord_recognizer": "validation_chord_majmin",
    "key_tracker": "validation_key",
    "stem_separator": "validation_mean_sdr",
}
FAMILIES = tuple(FAMILY_SCORE)
PULLABLE = (DRUM_MODEL_NAME, GENRE_MODEL_NAME)


def public_uri(uri: str) -> str:
    """A store's URI without any user name or password in it, to name it in tags and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))
    return uri


class ChecksumMismatch(Exception):
    """A downloaded model file differs from what its model card says, or the card lists files that are missing."""


@dataclass(frozen=True)
class Champion:
    """One store's champion of a family, as `models check` shows it."""

    version: str
    semver: str
    released: str
    dataset: str
    dataset_snapshot: str
    dataset_rows: str
    human_labels: str
    score: float | None
    sha256: dict[str, str]

    def trained_on(self) -> str:
        rows = f", {self.dataset_rows} rows" if self.dataset_rows else ""
        labels = f", {self.human_labels} human labels" if self.human_labels not in ("", "0") else ""
        return f"{self.dataset or '?'} {self.dataset_snapshot or '?'}{rows}{labels}"


@dataclass(frozen=True)
class Comparison:
    family: str
    local: Champion | None
    remote: Champion | None

    @property
    def verdict(self) -> str:
        if self.remote is None:
            return "neither store has a champion" if self.local is None else "the other store has no champion"
        if self.local is None:
            return "newer there: no champion here"
        if self.local.sha256 == self.remote.sha256:
            return "the same model"
        if self.remote.released > self.local.released:
            return "newer there"
        return "older there"

    @property
    def newer_there(self) -> bool:
        return self.verdict.startswith("newer there")


def champion_of(registry: Registry, family: str) -> Champion | None:
    """The family's champion in `registry`, with its card, or None."""
    from mlflow.exceptions import MlflowException

    try:
        version = registry.champion_version(family)
    except MlflowException:
        return None
    if version is None:
        return None
    try:
        card = registry.model_card(family, version.version)
    except (MlflowException, OSError):
        card = {}
    metric = registry.client.get_run(version.run_id).data.metrics.get(FAMILY_SCORE.get(family, ""))
    tags = version.tags
    return Champion(
        version=str(version.version),
        semver=tags.get("semver", card.get("version", "?")),
        released=card.get("released", ""),
        dataset=tags.get("dataset", ""),
        dataset_snapshot=tags.get("dataset_snapshot", card.get("dataset_snapshot") or ""),
        dataset_rows=tags.get("dataset_rows", ""),
        human_labels=tags.get("human_labels", ""),
        score=round(float(metric), 4) if metric is not None else None,
        sha256=card.get("sha256", {}),
    )


def compare(local: Registry, remote: Registry, families: tuple[str, ...] = FAMILIES) -> list[Comparison]:
    return [Comparison(family, champion_of(local, family), champion_of(remote, family)) for family in families]


def verified_files(remote: Registry, family: str, version: str, destination: Path) -> tuple[Path, dict]:
    """Download a version's model files and its card into `destination` and check every file against the sha256
    the card lists: (model folder, card). Raises ChecksumMismatch, naming the files, when any differs or is
    missing, or when the card lists no checksums at all."""
    card = remote.model_card(family, version)
    expected = card.get("sha256") or {}
    if not expected:
        raise ChecksumMismatch(f"{family} version {version}: its model card lists no checksums to verify the files by")
    folder = remote.model_files(family, version, destination)
    found = file_checksums(folder)
    wrong = sorted(name for name, digest in expected.items() if found.get(name) != digest)
    extra = sorted(set(found) - set(expected))
    if wrong or extra:
        details = [
            f"{name} (sha256 {found.get(name, 'missing')[:12]}, card says {expected[name][:12]})" for name in wrong
        ]
        details += [f"{name} (not in the card)" for name in extra]
        raise ChecksumMismatch(
            f"{family} version {version}: refused, files differ from its model card: {'; '.join(details)}"
        )
    return folder, card


@dataclass(frozen=True)
class LocalTest:
    """The local test split a pulled version is scored on, as the family's training run scores its versions."""

    rows: pd.DataFrame
    score: Callable[[object], float]
    features: Callable[[pd.DataFrame], pd.DataFrame]
    minimum_rows: int
    snapshot_id: str


def local_test(family: str, table: pd.DataFrame, snapshot_id: str) -> LocalTest:
    """The local test split of `table` (the family's dataset, people's labels merged) for `family`."""
    if family == DRUM_MODEL_NAME:
        rows = table[table["split"] == "test"]
        return LocalTest(
            rows, lambda m: drum_classifier.evaluate(m, rows).macro_f1, drum_classifier.feature_matrix, 10, snapshot_id
        )
    if family == GENRE_MODEL_NAME:
        rows = genre_classifier.labelled(genre_classifier.evaluation_rows(table))
        return LocalTest(
            rows,
            lambda m: genre_classifier.evaluate(m, rows).macro_f1,
            genre_classifier.feature_matrix,
            genre_classifier.MIN_TEST_SONGS,
            snapshot_id,
        )
    raise ValueError(f"{family} cannot be pulled: only {', '.join(PULLABLE)} are scored on a local test split")


@dataclass(frozen=True)
class Pulled:
    family: str
    remote_version: str
    result: RegistrationResult
    hihat_rules: dict | None  # the presets the version carries (drum-hit classifier), None when it has none


def pull(
    local: Registry,
    remote: Registry,
    family: str,
    test: LocalTest,
    *,
    experiment: str,
    minimum_gain: float,
    source: str,
) -> Pulled:
    """Take `remote`'s champion of `family`: verify its files, score it here on `test` beside the local champion,
    register it here as challenger, champion only when better by `minimum_gain`. `source` names the other store
    in the version's tags (no credentials)."""
    import mlflow

    version = remote.champion_version(family)
    if version is None:
        raise ValueError(f"{family}: the other store has no champion to pull")
    flavor = version.tags.get("flavor", "sklearn")
    if test.rows.empty:
        raise ValueError(f"{family}: the local test split is empty; nothing to score a pulled version on")
    with tempfile.TemporaryDirectory() as tmp:
        folder, card = verified_files(remote, family, version.version, Path(tmp) / "model")
        model = load_model(flavor, str(folder))  # the verified bytes, not a second download
        rules = None
        if family == DRUM_MODEL_NAME:
            try:
                rules_path = remote.client.download_artifacts(version.run_id, HIHAT_RULES, tmp)
                rules = json.loads(Path(rules_path).read_text())
            except (mlflow.exceptions.MlflowException, OSError):
                rules = None
    example = test.features(test.rows.head(5))
    score = float(test.score(model))
    predict = lambda m, x: m.predict(x)  # noqa: E731
    tags = {
        "pulled_from": source,
        "pulled_version": str(version.version),
        "pulled_semver": version.tags.get("semver", ""),
        "pulled_run_id": version.run_id,
        "dataset": version.tags.get("dataset", ""),
        "dataset_snapshot": test.snapshot_id,  # what it was scored on here
        "trained_on_snapshot": version.tags.get("dataset_snapshot", ""),
        "human_labels": version.tags.get("human_labels", "0"),
        "code_version": version.tags.get("code_version", ""),
    }
    result = local.log_and_register(
        model=model,
        flavor=flavor,
        model_name=family,
        experiment=experiment,
        params={"pulled_from": source, "pulled_version": str(version.version)},
        metrics={"macro_f1": score, "test_rows": float(len(test.rows))},
        tags=tags,
        input_example=example,
        predict=predict,
        score=score,
        score_champion=test.score,
        minimum_gain=minimum_gain,
        checks=reload_checks(
            flavor, predict, example, model.predict(example), {"macro_f1": score}, len(test.rows), test.minimum_rows
        ),
        json_artifacts={HIHAT_RULES: rules, "pulled_" + MODEL_CARD: card} if rules else {"pulled_" + MODEL_CARD: card},
        training_stats={**card.get("training", {}), "pulled_from": source},
        performance={"local_test_macro_f1": score, "card_performance": card.get("performance", {})},
        major=int(version.tags.get("code_version") or 1),
        new_data=True,
    )
    return Pulled(family, str(version.version), result, rules)
