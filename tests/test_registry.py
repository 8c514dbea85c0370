import numpy as np
import pandas as pd
import pytest

from pipeline_project.analysis.drum_hits import FEATURE_NAMES
from pipeline_project.training.drum_classifier import evaluate, feature_matrix, train
from pipeline_project.training.registry import CHALLENGER, CHAMPION, Registry, sqlite_tracking_uri


def synthetic_hits(rows: int, separation: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.array(["kick", "snare", "closed_hihat"])[rng.integers(0, 3, rows)]
    centre = {"kick": 1.0, "snare": 2.0, "closed_hihat": 3.0}
    data = {name: [abs(centre[l] * separation + rng.normal()) * 100 for l in labels] for name in FEATURE_NAMES}
    return pd.DataFrame({"label": labels, **data})


@pytest.fixture
def registry(tmp_path):
    return Registry(sqlite_tracking_uri(tmp_path / "mlflow"), str(tmp_path / "mlflow" / "artifacts"))


def register(registry, model, test, version_tag):
    score = evaluate(model, test).macro_f1
    return registry.log_and_register(
        model=model, model_name="drum_hit_classifier", experiment="tests", params={"tag": version_tag},
        metrics={"macro_f1": score}, tags={"dataset_version": version_tag, "dagster_run_id": f"run-{version_tag}"},
        input_example=feature_matrix(test.head(3)), score=score,
        score_champion=lambda champion: evaluate(champion, test).macro_f1)


def test_champion_moves_only_to_a_model_at_least_as_good(registry):
    test = synthetic_hits(300, 3.0, seed=99)
    good = train(synthetic_hits(300, 3.0, seed=1), seed=0, n_estimators=30)
    bad = train(synthetic_hits(300, 3.0, seed=2).assign(label=lambda t: np.random.default_rng(0).permutation(t["label"].to_numpy())),
                seed=0, n_estimators=30)

    first = register(registry, good, test, "v1")
    assert first.promoted and first.alias == CHAMPION
    worse = register(registry, bad, test, "v2")
    assert not worse.promoted and worse.alias == CHALLENGER
    assert str(registry.champion_version("drum_hit_classifier").version) == first.version

    version = registry.client.get_model_version("drum_hit_classifier", worse.version)
    assert version.tags["dataset_version"] == "v2" and version.tags["dagster_run_id"] == "run-v2"
    assert "challenger" in version.tags["promotion"]
    reloaded = registry.load_version("drum_hit_classifier", first.version)
    assert list(reloaded.predict(feature_matrix(test.head(5)))) == list(good.predict(feature_matrix(test.head(5))))
