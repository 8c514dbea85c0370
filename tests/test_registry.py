import json
import os

import numpy as np
import pandas as pd
import pytest
from servers import mlflow_server

from pipeline_project.analysis.drum_hits import FEATURE_NAMES
from pipeline_project.training.drum_classifier import evaluate, feature_matrix, train
from pipeline_project.training.registry import (
    CHALLENGER,
    CHAMPION,
    Registry,
    file_checksums,
    next_semver,
    promotion_decision,
    snapshot_input,
    sqlite_tracking_uri,
)

MODEL = "drum_hit_classifier"


def synthetic_hits(rows: int, separation: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.array(["kick", "snare", "closed_hihat"])[rng.integers(0, 3, rows)]
    centre = {"kick": 1.0, "snare": 2.0, "closed_hihat": 3.0}
    data = {name: [abs(centre[label] * separation + rng.normal()) * 100 for label in labels] for name in FEATURE_NAMES}
    return pd.DataFrame({"label": labels, **data})


@pytest.fixture
def registry(tmp_path):
    return Registry(sqlite_tracking_uri(tmp_path / "mlflow"), str(tmp_path / "mlflow" / "artifacts"))


def register(registry, model, test, snapshot, checks=None):
    score = evaluate(model, test).macro_f1
    example = feature_matrix(test.head(3))
    return registry.log_and_register(
        model=model,
        flavor="sklearn",
        model_name=MODEL,
        experiment="tests",
        params={"snapshot": snapshot},
        metrics={"macro_f1": score},
        tags={"dataset_snapshot": snapshot, "dagster_run_id": f"run-{snapshot}"},
        input_example=example,
        predict=lambda m, x: m.predict(x),
        score=score,
        score_champion=lambda champion: evaluate(champion, test).macro_f1,
        minimum_gain=0.01,
        checks=checks,
        training_stats={"samples": 300, "songs": 10, "contributors": 0},
        inputs=[snapshot_input({"name": "drum_hits", "snapshot_id": snapshot}, test)],
    )


def shuffled_labels(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(label=np.random.default_rng(0).permutation(table["label"].to_numpy()))


def test_better_model_takes_champion_worse_stays_challenger_and_rollback_restores(registry, tmp_path):
    test = synthetic_hits(300, 3.0, seed=99)
    weak = train(synthetic_hits(300, 0.6, seed=1), seed=0, n_estimators=20)
    strong = train(synthetic_hits(300, 3.0, seed=2), seed=0, n_estimators=30)
    bad = train(shuffled_labels(synthetic_hits(300, 3.0, seed=3)), seed=0, n_estimators=30)

    first = register(registry, weak, test, "snap-a")
    assert first.promoted and first.alias == CHAMPION and first.semver == "1.0.0"
    better = register(registry, strong, test, "snap-b")
    assert better.promoted and better.score > first.score and better.champion_score_before == first.score
    assert str(registry.champion_version(MODEL).version) == better.version and better.semver == "1.1.0"
    worse = register(registry, bad, test, "snap-c")
    assert not worse.promoted and worse.alias == CHALLENGER and "does not beat" in worse.reason
    assert str(registry.champion_version(MODEL).version) == better.version

    version = registry.client.get_model_version(MODEL, worse.version)
    assert version.tags["dataset_snapshot"] == "snap-c" and version.tags["dagster_run_id"] == "run-snap-c"
    assert version.tags["semver"] == worse.semver and "does not beat" in version.tags["promotion"]
    assert version.run_id == worse.run_id

    assert registry.rollback(MODEL) == (better.version, first.version)
    assert str(registry.champion_version(MODEL).version) == first.version
    assert "rolled_back" in registry.client.get_model_version(MODEL, better.version).tags
    with pytest.raises(ValueError, match="no earlier champion"):
        registry.rollback(MODEL)


def test_the_registry_leaves_mlflows_global_settings_as_it_found_them(registry, tmp_path, monkeypatch):
    """MLflow exports the URI it is pointed at to the environment; a leaked one would pass for a user's
    MLFLOW_TRACKING_URI in every later resource of the process, and land artifacts in ./mlruns."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    before = mlflow.get_tracking_uri()
    test = synthetic_hits(200, 3.0, seed=7)
    register(registry, train(synthetic_hits(200, 3.0, seed=8), seed=0, n_estimators=10), test, "snap-a")
    assert registry.load_champion(MODEL)[1] is not None
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_tracking_uri() == before
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    # A user's own MLFLOW_TRACKING_URI stays theirs, and nothing is left behind once it is gone.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/elsewhere")
    assert registry.load_champion(MODEL)[1] is not None
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:9/elsewhere"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert not mlflow.is_tracking_uri_set() and mlflow.get_tracking_uri() == before


def test_model_cards_checksums_match_the_registered_files(registry, tmp_path):
    test = synthetic_hits(200, 3.0, seed=5)
    model = train(synthetic_hits(200, 3.0, seed=6), seed=0, n_estimators=10)
    result = register(registry, model, test, "snap-a")
    card = registry.model_card(MODEL, result.version)
    assert card["version"] == result.semver and card["registry_version"] == result.version
    assert card["dataset_snapshot"] == "snap-a" and card["training"]["samples"] == 300 and card["released"]
    # MLflow's own UI shows the snapshot as the run's training input.
    (dataset_input,) = registry.client.get_run(result.run_id).inputs.dataset_inputs
    assert (dataset_input.dataset.name, dataset_input.dataset.digest) == ("drum_hits", "snap-a")
    assert json.loads(dataset_input.dataset.source) == {"uri": "datasets/drum_hits/snapshots/snap-a"}
    assert [(tag.key, tag.value) for tag in dataset_input.tags] == [("mlflow.data.context", "training")]
    files = registry.model_files(MODEL, result.version, tmp_path / "download")
    assert card["sha256"] == file_checksums(files) and any(name.endswith((".skops", ".pkl")) for name in card["sha256"])
    champion, reloaded = registry.load_champion(MODEL)  # the first version: the champion
    assert str(champion.version) == result.version
    assert list(reloaded.predict(feature_matrix(test.head(5)))) == list(model.predict(feature_matrix(test.head(5))))


def test_a_version_that_fails_its_checks_is_never_champion(registry):
    test = synthetic_hits(200, 3.0, seed=5)
    result = register(
        registry,
        train(synthetic_hits(200, 3.0, seed=6), seed=0, n_estimators=10),
        test,
        "snap-a",
        checks=lambda folder, card: {"reloads_and_predicts_as_trained": True, "metrics_finite": False},
    )
    assert not result.promoted and result.alias == CHALLENGER and "metrics_finite" in result.reason
    assert registry.champion_version(MODEL) is None
    assert registry.model_card(MODEL, result.version)["checks"] == {
        "reloads_and_predicts_as_trained": True,
        "metrics_finite": False,
    }


def test_semver_and_promotion_rules():
    assert next_semver([], 2, True) == "2.0.0"
    assert next_semver(["1.0.0", "1.1.0"], 1, True) == "1.2.0"
    assert next_semver(["1.0.0", "1.1.0", "1.1.1"], 1, False) == "1.1.2"
    assert next_semver(["1.4.0"], 2, True) == "2.0.0"
    assert promotion_decision(0.80, 0.795, 0.01, [])[0] is False
    assert promotion_decision(0.81, 0.80, 0.01, [])[0] is True
    assert promotion_decision(float("nan"), None, 0.01, [])[0] is False
    assert promotion_decision(0.9, None, 0.01, ["metrics_finite"]) == (False, "failed blocking checks: metrics_finite")
    beats_dsp = promotion_decision(0.95, None, 0.005, [], ("DSP path", 0.92))
    assert beats_dsp[0] and "the DSP path's 0.9200" in beats_dsp[1]
    held = promotion_decision(0.95, None, 0.005, [], ("DSP path", 0.92), held_back="worse in the concert")
    assert held == (False, "worse in the concert")


@pytest.fixture
def tracking_server(tmp_path):
    with mlflow_server(tmp_path) as url:
        yield url


def test_a_tracking_server_works_the_same_way(tracking_server, tmp_path, monkeypatch):
    from pipeline_project.definitions import default_resources

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    resource = default_resources(str(tmp_path / "data"))["mlflow"]
    assert resource.tracking_uri == tracking_server and resource.artifact_root is None  # the server keeps artifacts
    registry = resource.registry()
    test = synthetic_hits(200, 3.0, seed=5)
    first = register(registry, train(synthetic_hits(200, 3.0, seed=6), seed=0, n_estimators=10), test, "snap-a")
    worse = register(
        registry, train(shuffled_labels(synthetic_hits(200, 3.0, seed=7)), seed=0, n_estimators=10), test, "snap-b"
    )
    assert first.promoted and not worse.promoted
    card = registry.model_card(MODEL, first.version)
    assert card["sha256"] == file_checksums(registry.model_files(MODEL, first.version, tmp_path / "download"))
    assert not (tmp_path / "data" / "mlflow").exists()
