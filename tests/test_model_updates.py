"""`pipeline-project models check` and `models pull` against a second MLflow store, a real server on loopback: a
better champion there is taken and promoted here with its hi-hat presets, a worse one stays challenger, and a
file whose checksum differs from its model card is refused."""

import json
import time

import numpy as np
import pandas as pd
import pytest
from servers import mlflow_server

from pipeline_project import cli
from pipeline_project.analysis.drum_hits import FEATURE_NAMES
from pipeline_project.datasets.snapshots import write_snapshot
from pipeline_project.definitions import default_resources
from pipeline_project.training import families
from pipeline_project.training.families import DRUM_MODEL_NAME
from pipeline_project.training.hihat_rules import CLOSED, OPEN
from pipeline_project.training.policy import TrainingRequest
from pipeline_project.training.registry import Registry

CLASSES = ("kick", "snare", CLOSED, OPEN)


def hits(rows: int = 320, seed: int = 5) -> pd.DataFrame:
    """Hits of four classes whose features tell them apart, in 16 songs, a fifth of them in the test split."""
    rng = np.random.default_rng(seed)
    labels = np.array(CLASSES)[rng.integers(0, len(CLASSES), rows)]
    centre = {label: 1.0 + index for index, label in enumerate(CLASSES)}
    table = pd.DataFrame(
        {"label": labels, **{name: [abs(centre[x] * 3 + rng.normal()) * 100 for x in labels] for name in FEATURE_NAMES}}
    )
    table["group_id"] = [f"g{i % 16}" for i in range(rows)]
    table["split"] = np.where(np.arange(rows) % 5 == 0, "test", "train")
    table["hit_id"] = np.arange(rows, dtype=np.int64)
    return table


def shuffled(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same hits with their labels shuffled: a model trained on them is worse on the real labels."""
    return table.assign(label=np.random.default_rng(seed).permutation(table["label"].to_numpy()))


def train(registry: Registry, table: pd.DataFrame, snapshot: str, trees: int, force: bool = False):
    request = TrainingRequest(
        registry,
        "pipeline_project",
        {"name": "drum_hits", "snapshot_id": snapshot, "rows": len(table)},
        table,
        code_version="2",
        run_tags={"dagster_run_id": f"run-{snapshot}"},
        force=force,
        log=lambda message: None,
    )
    return families.train_drum_classifier(request, pd.DataFrame(), "none", n_estimators=trees).result


@pytest.fixture
def local(tmp_path, monkeypatch):
    """A data root whose drum_hits snapshot holds the real labels, and a weak local champion."""
    data_root = tmp_path / "data"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PIPELINE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PIPELINE_SECRET_DIR", str(tmp_path / "keys"))
    table = hits()
    written = write_snapshot(table, data_root / "datasets" / "drum_hits", "drum_hits", code_version="2", sources={})
    registry = default_resources(str(data_root))["mlflow"].registry()
    assert train(registry, shuffled(table, 1), written.snapshot_id, trees=3).promoted
    return data_root, registry, table


def test_models_check_and_pull_take_a_better_champion_keep_a_worse_one_challenger_and_refuse_a_bad_file(
    local, tmp_path, capsys
):
    data_root, registry, table = local
    root = ["--data-root", str(data_root)]
    with mlflow_server(tmp_path / "remote") as url:
        remote = Registry(url)
        assert train(remote, table, "theirs-1", trees=40).promoted

        assert cli.main(["models", "check", "--from", url, *root]) == 0
        out = capsys.readouterr().out
        assert f"{DRUM_MODEL_NAME}: newer there" in out and "neither store has a champion" in out
        assert "trained on drum_hits theirs-1, 320 rows" in out

        # Better on the local test split: taken, and promoted here.
        assert cli.main(["models", "pull", "--from", url, "--family", DRUM_MODEL_NAME, *root]) == 0
        out = capsys.readouterr().out
        champion = registry.champion_version(DRUM_MODEL_NAME)
        assert str(champion.version) == "2" and champion.tags["pulled_from"] == url and "champion" in out
        presets = json.loads((tmp_path / "config" / "hihat_presets.json").read_text())
        assert presets["version"] == "2" and set(presets["presets"]) == {"simple", "balanced", "robust"}
        assert cli.main(["models", "check", "--from", url, *root]) == 0
        assert f"{DRUM_MODEL_NAME}: older there" in capsys.readouterr().out  # the copy here is newer

        # A newer champion there that is worse here: registered as challenger, the champion stays.
        time.sleep(1.1)  # model cards say when a version was released, to the second
        worse = train(remote, shuffled(table, 2), "theirs-2", trees=3, force=True)
        remote.client.set_registered_model_alias(DRUM_MODEL_NAME, "champion", worse.version)
        assert cli.main(["models", "pull", "--from", url, *root]) == 0
        out = capsys.readouterr().out
        assert "challenger" in out and str(registry.champion_version(DRUM_MODEL_NAME).version) == "2"
        assert [str(v.version) for v in registry.versions(DRUM_MODEL_NAME)] == ["1", "2", "3"]

        # A file that differs from the card: refused, nothing registered.
        time.sleep(1.1)
        tampered = train(remote, table, "theirs-3", trees=60, force=True)
        assert tampered.promoted
        model_file = next(
            path
            for path in (tmp_path / "remote" / "served").rglob("model.skops")
            if remote.client.get_model_version(DRUM_MODEL_NAME, tampered.version).source.split("/")[-1] in str(path)
        )
        model_file.write_bytes(model_file.read_bytes() + b"\0")
        assert cli.main(["models", "pull", "--from", url, *root]) == 1
        out = capsys.readouterr().out
        assert "refused" in out and "model.skops" in out
        assert len(registry.versions(DRUM_MODEL_NAME)) == 3


def test_the_daily_check_observes_each_family_with_a_newer_champion_elsewhere(local, tmp_path):
    import dagster as dg

    from pipeline_project.resources import MlflowResource
    from pipeline_project.schedules import model_updates_job, model_updates_schedule
    from pipeline_project.training.registry import sqlite_tracking_uri

    data_root, registry, table = local
    time.sleep(1.1)
    other = Registry(sqlite_tracking_uri(tmp_path / "other"), str(tmp_path / "other" / "artifacts"))
    assert train(other, table, "theirs", trees=20).promoted
    assert model_updates_schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # opt-in
    mlflow = MlflowResource(
        tracking_uri=registry.tracking_uri, artifact_root=registry.artifact_root, update_source=other.tracking_uri
    )
    result = model_updates_job.execute_in_process(resources={"mlflow": mlflow}, instance=dg.DagsterInstance.ephemeral())
    observed = {event.asset_key.to_user_string(): event for event in result.get_asset_observation_events()}
    assert list(observed) == [DRUM_MODEL_NAME]
    metadata = observed[DRUM_MODEL_NAME].event_specific_data.asset_observation.metadata
    assert metadata["take_it_with"].value.endswith(f"--family {DRUM_MODEL_NAME}")
    alone = MlflowResource(tracking_uri=registry.tracking_uri, artifact_root=registry.artifact_root)
    quiet = model_updates_job.execute_in_process(resources={"mlflow": alone}, instance=dg.DagsterInstance.ephemeral())
    assert quiet.success and not quiet.get_asset_observation_events()
