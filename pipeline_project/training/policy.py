"""What every model family's training shares: what a training run is given, when it is skipped, and what it
reports. The families (`drum_classifier`, `genre_classifier`, `embedding`, `analysis_registry`,
`separator_registry`) train and register through these; the Dagster assets only read the inputs and turn an
`Outcome` into a materialization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from pipeline_project.training.registry import CHALLENGER, CHAMPION, RegistrationResult, Registry, snapshot_input


class NotTrainable(Exception):
    """The snapshot cannot train this family at all (an empty split): an error to show, not a skip."""


@dataclass(frozen=True)
class TrainingRequest:
    """One training run of a family on one dataset snapshot."""

    registry: Registry
    experiment: str
    manifest: dict  # the snapshot's manifest (name, snapshot_id, rows ...)
    table: pd.DataFrame  # the snapshot's rows
    code_version: str  # the family's code version: the semver's MAJOR, and part of "already trained"
    run_tags: dict[str, str]  # what made it: dagster_run_id, dagster_asset
    seed: int = 7
    # A new version takes `champion` only when its test score beats the champion's, re-scored on the same
    # split, by at least this much.
    minimum_gain: float = 0.01
    force: bool = False  # train even when the latest version saw this very snapshot with this code
    log: Callable[[str], None] = print

    @property
    def snapshot_id(self) -> str:
        return self.manifest["snapshot_id"]

    @property
    def major(self) -> int:
        return int(self.code_version or 1)

    def split(self, name: str) -> pd.DataFrame:
        return self.table[self.table["split"] == name]

    def tags(self, **more: str) -> dict[str, str]:
        """The version's tags: the snapshot it was trained on, what trained it, and `more` inputs."""
        return {
            "dataset": self.manifest["name"],
            "dataset_snapshot": self.snapshot_id,
            "dataset_rows": str(self.manifest["rows"]),
            **self.run_tags,
            "code_version": self.code_version,
            **more,
        }

    def inputs(self) -> list:
        """The snapshot as the MLflow run's training input."""
        return [snapshot_input(self.manifest, self.table)]


@dataclass
class Outcome:
    """What a training run did: registered a version (`result`), or skipped and why; with what the family wants
    shown beside it (`details`: plain values; `tables`: JSON; `markdown`: text and images)."""

    model_name: str
    score_name: str
    result: RegistrationResult | None = None
    skipped: str | None = None
    details: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    markdown: dict = field(default_factory=dict)


def already_trained(
    request: TrainingRequest, model_name: str, other_inputs: dict[str, str] | None = None
) -> str | None:
    """Why training would learn nothing new (the latest version saw this snapshot, and these other inputs, with
    this code), else None."""
    if request.force:
        return None
    versions = request.registry.versions(model_name)
    if not versions:
        return None
    latest = versions[-1]
    same_inputs = all(latest.tags.get(tag) == value for tag, value in (other_inputs or {}).items())
    if (
        latest.tags.get("dataset_snapshot") == request.snapshot_id
        and same_inputs
        and latest.tags.get("code_version") == request.code_version
    ):
        champion = request.registry.champion_version(model_name)
        alias = CHAMPION if champion is not None and champion.version == latest.version else CHALLENGER
        return (
            f"version {latest.version} ({alias}, {latest.tags.get('semver', '?')}) was already trained on "
            f"{request.manifest['name']} snapshot {request.snapshot_id} with code version {request.code_version}: "
            "no new data, so no new version and no new champion (set force to retrain anyway)"
        )
    return None


def champion_rows(registry: Registry, model_name: str) -> int | str:
    """How many rows the champion's dataset had (what the growth trigger compares with), or "none"."""
    champion = registry.champion_version(model_name)
    return int(champion.tags.get("dataset_rows", 0)) if champion is not None else "none"


def champion_human_labels(registry: Registry, model_name: str) -> int:
    """How many of people's labels the champion was trained and scored with (0 without a champion)."""
    champion = registry.champion_version(model_name)
    return int(champion.tags.get("human_labels", 0)) if champion is not None else 0


def human_label_counts(table: pd.DataFrame) -> dict[str, int]:
    """People's labels in a training table (`label_source` human), in all and in the train split."""
    if "label_source" not in table:
        return {"human_labels": 0, "human_labels_train": 0}
    human = table["label_source"] == "human"
    return {"human_labels": int(human.sum()), "human_labels_train": int((human & (table["split"] == "train")).sum())}
