"""The automation as users run it: a real `dagster-daemon` on a temporary instance, with the project's code
location in its own code server, sees a dataset grow past 10 % and launches the retraining run itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from pipeline_project.assets.training import DRUM_MODEL_NAME
from pipeline_project.definitions import defs

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


def test_the_daemon_retrains_a_model_when_its_dataset_grew_ten_percent(tmp_path):
    home, data_root = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    (data_root / "incoming").mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "workspace.yaml").write_text(
        f"load_from:\n  - python_file:\n      relative_path: {TESTS / 'daemon_location.py'}\n"
        f"      working_directory: {TESTS.parent}\n")
    instance = dg.DagsterInstance.from_config(str(home))

    # Everything the automation sensor watches is already materialized (so nothing is "missing"), and the drum-hit
    # classifier's champion was trained on a 100-row drum_hits.
    watched = [node.key for node in defs.resolve_asset_graph().asset_nodes
               if node.group_name in ("synthesis", "datasets", "training")]
    for key in watched:
        metadata = {"rows": 100, "champion_dataset_rows": 100}
        instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata=metadata))

    environment = {**os.environ, "DAGSTER_HOME": str(home), "PIPELINE_DATA_ROOT": str(data_root)}
    environment.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "daemon.log"
    with open(log, "wb") as output:
        daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(tmp_path / "workspace.yaml")],
                                  cwd=tmp_path, env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        model = dg.AssetKey(DRUM_MODEL_NAME)
        # The sensor's first evaluation only sets its baseline: nothing counts as updated before it.
        _wait_for("first automation evaluation",
                  lambda: instance.schedule_storage.get_auto_materialize_asset_evaluations(model, limit=1), daemon, log)
        assert not instance.get_runs(), "nothing had grown, yet the daemon launched a run"

        instance.report_runless_asset_event(dg.AssetMaterialization("drum_hits", metadata={"rows": 112}))
        runs = _wait_for("retraining run", lambda: [run for run in instance.get_runs()
                                                     if run.asset_selection and model in run.asset_selection], daemon, log)
        # The model whose dataset grew, and the review queue its champion makes (eager after the model): nothing else.
        assert runs[0].asset_selection == {model, dg.AssetKey("review_queue")}
        assert runs[0].tags.get("dagster/from_automation_condition") == "true"
    finally:
        _stop(daemon)
