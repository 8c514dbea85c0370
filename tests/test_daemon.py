"""The automation as users run it: a real `dagster-daemon` on a temporary instance, with the project's code
location in its own code server, sees a dataset grow past 10 % and launches the retraining run itself; and
`run` beside the daemon leaves the songs the daemon's runs work on to them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from conftest import render_groove_song

from pipeline_project import cli
from pipeline_project.definitions import defs
from pipeline_project.training.families import DRUM_MODEL_NAME

TESTS = Path(__file__).resolve().parent
TIMEOUT_S = 90


def _wait_for(what: str, found, daemon: subprocess.Popen, log: Path, timeout: float = TIMEOUT_S):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = found()
        if result:
            return result
        assert daemon.poll() is None, f"the daemon exited ({daemon.returncode}):\n{log.read_text()[-3000:]}"
        time.sleep(1)
    raise AssertionError(f"no {what} within {timeout} s; daemon log:\n{log.read_text()[-3000:]}")


def _stop(daemon: subprocess.Popen) -> None:
    """The daemon and every process it started (code server, runs) belong to its own process group."""
    if daemon.poll() is None:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
    try:
        os.killpg(daemon.pid, signal.SIGKILL)  # what the daemon left behind (a code server, a run worker)
    except ProcessLookupError:
        pass


def _new_instance(tmp_path: Path, location: str) -> tuple[dg.DagsterInstance, Path]:
    """A new instance in `tmp_path` and a workspace serving the tests' code location file `location`; returns the
    instance and the data root."""
    home, data_root = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    (data_root / "incoming").mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "workspace.yaml").write_text(
        f"load_from:\n  - python_file:\n      relative_path: {TESTS / location}\n"
        f"      working_directory: {TESTS.parent}\n"
    )
    return dg.DagsterInstance.from_config(str(home)), data_root


def _start_daemon(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """The daemon on the instance and workspace `_new_instance` made; returns it and its log."""
    home, data_root = tmp_path / "dagster_home", tmp_path / "data"
    environment = {**os.environ, "DAGSTER_HOME": str(home), "PIPELINE_DATA_ROOT": str(data_root)}
    environment.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "daemon.log"
    with open(log, "wb") as output:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(tmp_path / "workspace.yaml")],
            cwd=tmp_path,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return daemon, log


def test_the_daemon_retrains_a_model_when_its_dataset_grew_ten_percent_or_people_labelled(tmp_path):
    instance, _ = _new_instance(tmp_path, "daemon_location.py")

    # Everything the automation sensor watches is already materialized (so nothing is "missing"), and the drum-hit
    # classifier's champion was trained on a 100-row drum_hits.
    watched = [
        node.key
        for node in defs.resolve_asset_graph().asset_nodes
        if node.group_name in ("synthesis", "datasets", "training")
    ]
    for key in watched:
        metadata = {"rows": 100, "champion_dataset_rows": 100}
        instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata=metadata))
    daemon, log = _start_daemon(tmp_path)
    try:
        model = dg.AssetKey(DRUM_MODEL_NAME)
        # The sensor's first evaluation only sets its baseline: nothing counts as updated before it.
        _wait_for(
            "first automation evaluation",
            lambda: instance.schedule_storage.get_auto_materialize_asset_evaluations(model, limit=1),
            daemon,
            log,
        )
        assert not instance.get_runs(), "nothing had grown, yet the daemon launched a run"

        instance.report_runless_asset_event(dg.AssetMaterialization("drum_hits", metadata={"rows": 112}))
        runs = _wait_for(
            "retraining run",
            lambda: [run for run in instance.get_runs() if run.asset_selection and model in run.asset_selection],
            daemon,
            log,
        )
        # The model whose dataset grew, and the review queue its champion makes (eager after the model): nothing else.
        assert runs[0].asset_selection == {model, dg.AssetKey("review_queue")}
        assert runs[0].tags.get("dagster/from_automation_condition") == "true"

        # Ten labels people gave on the labeling page retrain it too, with no growth: say the retrained champion
        # saw the 112 rows.
        _wait_for(
            "the first retraining run to end", lambda: instance.get_run_by_id(runs[0].run_id).is_finished, daemon, log
        )
        trained = {"champion_dataset_rows": 112, "champion_human_labels": 0}
        instance.report_runless_asset_event(dg.AssetMaterialization(DRUM_MODEL_NAME, metadata=trained))
        time.sleep(6)  # an automation evaluation in between: an update and its dependency's in one tick cancel out
        labels = {"rows": 10, "labels_drum_hits": 10}
        instance.report_runless_asset_event(dg.AssetMaterialization("human_labels", metadata=labels))
        _wait_for(
            "retraining run after people's labels",
            lambda: [
                run
                for run in instance.get_runs()
                if run.run_id != runs[0].run_id and run.asset_selection and model in run.asset_selection
            ],
            daemon,
            log,
        )
    finally:
        _stop(daemon)


def test_run_beside_the_daemon_never_starts_a_song_the_daemon_is_working_on(tmp_path, monkeypatch, capsys):
    incoming = tmp_path / "data" / "incoming"
    for seed, name in enumerate(("one.mp3", "two.mp3")):
        render_groove_song(incoming / name, "rock", bars=2, tempo=110 + 10 * seed, seed=40 + seed)
    instance, data_root = _new_instance(tmp_path, "daemon_songs_location.py")
    daemon, log = _start_daemon(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    try:
        # The daemon's sensor sees the two songs first and requests a run for each.
        runs = _wait_for(
            "the sensor's runs", lambda: len(instance.get_runs()) == 2 and instance.get_runs(), daemon, log
        )
        assert {run.tags.get("dagster/sensor_name") for run in runs} == {"new_songs_sensor"}
        assert cli.run(str(data_root), songs_only=True) == 0
        said = capsys.readouterr().out
        assert "2 being processed by runs the daemon started" in said and "songs processed this run: 0" in said
        finished = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
        _wait_for(
            "the daemon's runs to finish",
            lambda: all(run.status in finished for run in instance.get_runs()),
            daemon,
            log,
            timeout=300,
        )
    finally:
        _stop(daemon)
    runs = instance.get_runs()
    assert len(runs) == 2 and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(instance.get_dynamic_partitions("songs"))
