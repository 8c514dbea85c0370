"""The model families' training runs without Dagster: the skip policy, the champion gate, the hi-hat presets
and the review queue, on a real MLflow store."""

import numpy as np
import pandas as pd
import pytest
from test_registry import synthetic_hits

from pipeline_project.training import families
from pipeline_project.training.hihat_rules import CLOSED, OPEN, RULE_FEATURES
from pipeline_project.training.policy import NotTrainable, TrainingRequest
from pipeline_project.training.registry import Registry, sqlite_tracking_uri


def drum_hits(seed: int = 3) -> pd.DataFrame:
    table = synthetic_hits(240, 3.0, seed)
    table["group_id"] = [f"g{i % 12}" for i in range(len(table))]
    table["split"] = np.where(np.arange(len(table)) % 5 == 0, "test", "train")
    table["hit_id"] = [f"h{i}" for i in range(len(table))]
    return table


def request_for(registry, table, snapshot="snap-1", force=False) -> TrainingRequest:
    manifest = {"name": "drum_hits", "snapshot_id": snapshot, "rows": len(table)}
    return TrainingRequest(
        registry,
        "tests",
        manifest,
        table,
        code_version="2",
        run_tags={"dagster_run_id": "r1"},
        force=force,
        log=lambda message: None,
    )


@pytest.fixture
def registry(tmp_path):
    return Registry(sqlite_tracking_uri(tmp_path / "mlflow"), str(tmp_path / "mlflow" / "artifacts"))


def test_a_snapshot_already_trained_on_is_skipped_with_its_reason_unless_forced(registry):
    table = drum_hits()
    first = families.train_drum_classifier(request_for(registry, table), pd.DataFrame(), "none", n_estimators=10)
    assert first.result.promoted and first.result.semver == "2.0.0"
    assert first.result.card["dataset_snapshot"] == "snap-1"
    again = families.train_drum_classifier(request_for(registry, table), pd.DataFrame(), "none", n_estimators=10)
    assert again.result is None and "already trained on drum_hits snapshot snap-1" in again.skipped
    # New contributions are new data for the hi-hat rules: the same snapshot trains again.
    changed = families.train_drum_classifier(request_for(registry, table), pd.DataFrame(), "c-2", n_estimators=10)
    assert changed.result is not None
    forced = families.train_drum_classifier(request_for(registry, table, force=True), pd.DataFrame(), "c-2", 10)
    assert forced.result is not None and forced.result.semver == "2.2.0"  # the drum family counts every run as new data


def test_an_empty_split_cannot_train(registry):
    table = drum_hits().assign(split="train")
    with pytest.raises(NotTrainable, match="0 test rows"):
        families.train_drum_classifier(request_for(registry, table), pd.DataFrame(), "none", n_estimators=10)


def test_hihat_presets_need_both_kinds_of_hit_and_are_scored_on_the_test_split():
    rng = np.random.default_rng(0)
    open_hits = pd.DataFrame({"SustainMs": rng.normal(300, 20, 40), "SizzleE": rng.normal(900, 50, 40), "label": OPEN})
    closed = pd.DataFrame({"SustainMs": rng.normal(60, 10, 40), "SizzleE": rng.normal(300, 50, 40), "label": CLOSED})
    hits = pd.concat([open_hits, closed], ignore_index=True)
    for column in set(RULE_FEATURES) - {"SustainMs", "SizzleE"}:
        hits[column] = rng.normal(100, 5, len(hits))
    hits["group_id"] = [f"g{i % 8}" for i in range(len(hits))]
    presets = families.hihat_rule_presets(hits, hits)
    assert set(presets) == {"simple", "balanced", "robust"}
    assert all(preset["test"]["balanced_accuracy"] > 0.9 for preset in presets.values())
    assert families.hihat_rule_presets(hits[hits["label"] == OPEN], hits) == {}


def test_the_review_queue_holds_the_hits_the_champion_is_unsure_about(registry):
    table = drum_hits()
    families.train_drum_classifier(request_for(registry, table), pd.DataFrame(), "none", n_estimators=10)
    champion, model = registry.load_champion(families.DRUM_MODEL_NAME)
    queue = families.review_queue_table(model, champion.version, table, band=(0.0, 1.0))
    assert len(queue) == len(table) and set(queue["model_version"]) == {str(champion.version)}
    assert list(queue.columns[:7]) == [
        "hit_id",
        "group_id",
        "split",
        "label",
        "predicted",
        "confidence",
        "model_version",
    ]
    assert families.review_queue_table(model, champion.version, table, band=(1.1, 1.2)).empty


def test_the_review_queue_judges_train_hits_by_forests_that_never_saw_their_song(registry):
    """A forest is sure of the hits it trained on; the queue's confidence for them comes from out-of-fold forests,
    so train hits the model could not tell apart reach a person too."""
    table = drum_hits(seed=4)
    table["label"] = np.where(np.arange(len(table)) % 7 == 0, "snare", table["label"])  # some hard, noisy hits
    families.train_drum_classifier(request_for(registry, table), pd.DataFrame(), "none", n_estimators=50)
    champion, model = registry.load_champion(families.DRUM_MODEL_NAME)
    everything = families.review_queue_table(model, champion.version, table, band=(0.0, 1.0))
    train = everything[everything["split"] == "train"]
    seen = model.predict_proba(families.drum_classifier.feature_matrix(table))[(table["split"] == "train").to_numpy()]
    assert train["confidence"].mean() < seen.max(axis=1).mean() - 0.05
    assert set(train["predicted"]) <= set(model.classes_)
