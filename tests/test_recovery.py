"""Crash recovery with real processes: `run` killed with SIGKILL in the middle of `song_stems` (as the
out-of-memory killer would) leaves a run that looks alive and holds the `separation` pool's only slot; the next
`run` must notice, free it and finish every song on its own. And SIGTERM must end a `run` that waits for a slot."""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
from conftest import render_groove_song

from pipeline_project.settings import PROJECT_ROOT

POOL = "separation"


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / ".dagster" / "dagster.yaml", home / "dagster.yaml")  # the pool limits `make run` uses
    return home


def _start(data_root: Path, home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline_project", "run", "--data-root", str(data_root), "--songs-only"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "DAGSTER_HOME": str(home),
            "PIPELINE_LEARNED_SEPARATOR": "never",
            "PIPELINE_DEMUCS_WEIGHTS": "never",
        },
    )


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def test_a_run_killed_in_song_stems_is_recovered_by_the_next_run(data_root, tmp_path):
    home = _home(tmp_path)
    render_groove_song(data_root / "incoming" / "long_enough.mp3", "rock", bars=40, tempo=120, seed=1)
    first = _start(data_root, home)
    partials = data_root / "lake" / "songs"
    deadline = time.monotonic() + 300
    while not list(partials.glob("*/stems/*.partial")):  # song_stems is writing its stems
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.02)
    first.kill()
    first.wait()
    first.stdout.close()
    with _instance(home) as instance:
        stuck = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert len(stuck) == 1 and instance.event_log_storage.get_concurrency_info(POOL).claimed_slots

    second = _start(data_root, home)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output
    assert f"run {stuck[0].run_id[:8]} (song_pipeline_job) was left running by a process that is gone" in output
    assert "songs processed this run: 1 (long_enough.mp3)" in output
    assert not list(partials.rglob("*.partial"))
    assert [p.name for p in partials.glob("*/theory.json")] == ["theory.json"]
    with _instance(home) as instance:
        assert instance.get_run_by_id(stuck[0].run_id).status == dg.DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info(POOL).claimed_slots


def test_sigterm_ends_a_run_that_waits_for_a_pool_slot(data_root, tmp_path):
    home = _home(tmp_path)
    render_groove_song(data_root / "incoming" / "waiting.mp3", "funk", bars=3, tempo=100, seed=2)
    with _instance(home) as instance:  # another live process holds the only separation slot
        instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
        holder = str(uuid.uuid4())
        assert instance.event_log_storage.claim_concurrency_slot(POOL, holder, "song_stems").is_claimed
    waiting = _start(data_root, home)
    lines, deadline = [], time.monotonic() + 300
    while not any("waits for a free slot of pool 'separation' since" in line for line in lines):
        line = waiting.stdout.readline()
        assert line or waiting.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        lines.append(line)
    sent = time.monotonic()
    waiting.send_signal(signal.SIGTERM)
    rest, _ = waiting.communicate(timeout=30)
    assert time.monotonic() - sent < 10, "".join(lines) + rest
    assert waiting.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in rest, "".join(lines) + rest
    assert "Traceback" not in "".join(lines) + rest
    with _instance(home) as instance:
        runs = instance.get_runs()
        assert runs and all(run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE) for run in runs)
        holders = {slot.run_id for slot in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots}
        assert holders == {holder}  # only the other process's slot: the stopped run holds none
