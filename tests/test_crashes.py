"""Crashes lose nothing: a run killed with SIGKILL in the middle of a dataset snapshot or of a separation leaves
nothing half-written where a reader looks, and the re-run finishes without redoing what was done."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import render_groove_song

from pipeline_project.datasets.snapshots import (
    SNAPSHOTS,
    latest_manifest,
    prune,
    read_snapshot,
    write_snapshot,
)
from pipeline_project.files import BUILDING_PREFIX, PARTIAL_SUFFIX
from pipeline_project.separation.separator import STEM_NAMES


def big_table(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({f"f{i}": rng.normal(size=rows) for i in range(8)} | {"label": rng.integers(0, 5, rows)})


def kill_when(process: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL `process` as soon as `ready()` holds: no cleanup handler, no finally block runs."""
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None, f"the child finished before it could be killed: {process.communicate()}"
        assert time.time() < deadline, "the child never reached the point to kill it at"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_snapshot_killed_half_way_is_never_visible_and_the_rerun_writes_it_whole(tmp_path):
    root = tmp_path / "dataset"
    before = write_snapshot(pd.DataFrame({"f0": [1.0], "label": [1]}), root, "demo")
    rows = 3_000_000
    child_code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_crashes import big_table; "
        f"from pipeline_project.datasets.snapshots import write_snapshot; "
        f"write_snapshot(big_table({rows}), {str(root)!r}, 'demo')"
    )
    child = subprocess.Popen([sys.executable, "-c", child_code])

    def building():
        return [p for p in (root / SNAPSHOTS).glob(f"{BUILDING_PREFIX}*") if any(p.rglob("*.parquet"))]

    kill_when(child, lambda: bool(building()))

    assert latest_manifest(root)["snapshot_id"] == before.snapshot_id
    assert [p.name for p in (root / SNAPSHOTS).iterdir() if not p.name.startswith(".")] == [before.snapshot_id]
    assert len(read_snapshot(root)) == 1
    left_behind = building()
    assert left_behind and str(child.pid) in left_behind[0].name

    # A live build of this process is another run's work in progress: pruning leaves it alone.
    live = root / SNAPSHOTS / f"{BUILDING_PREFIX}{socket.gethostname()}-{os.getpid()}-0000beef"
    live.mkdir()
    prune(root, keep=5)
    assert live.exists() and not any(p.exists() for p in left_behind)
    live.rmdir()

    again = write_snapshot(big_table(rows), root, "demo")
    assert latest_manifest(root)["snapshot_id"] == again.snapshot_id and again.manifest["rows"] == rows
    assert not list((root / SNAPSHOTS).glob(f"{BUILDING_PREFIX}*"))


def files_with_times(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_run_killed_during_separation_leaves_no_stem_and_the_rerun_redoes_nothing(data_root, dagster_home):
    render_groove_song(data_root / "incoming" / "first.mp3", "rock", bars=8, tempo=120, seed=3)
    render_groove_song(data_root / "incoming" / "second.mp3", "funk", bars=8, tempo=100, seed=4)
    songs = data_root / "lake" / "songs"
    command = [sys.executable, "-m", "pipeline_project", "run", "--songs-only", "--data-root", str(data_root)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def second_song_separating() -> bool:
        finished = [d for d in songs.glob("*") if (d / "theory.json").exists()]
        return bool(finished) and any(songs.glob(f"*/stems/*{PARTIAL_SUFFIX}"))

    kill_when(child, second_song_separating)
    (killed,) = [d for d in songs.iterdir() if not (d / "theory.json").exists()]
    (finished,) = [d for d in songs.iterdir() if d != killed]
    assert (killed / "audio.flac").exists() and not (killed / "stems.json").exists()
    assert not list((killed / "stems").glob("*.flac")), "a stem a reader could take for whole"
    before = files_with_times(finished)
    decoded_before = files_with_times(killed)["audio.flac"]

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "1 to process, 1 already done" in rerun.stdout
    assert "resuming at song_stems, song_analysis, song_theory" in rerun.stdout
    assert files_with_times(finished) == before, "the finished song was touched"
    assert files_with_times(killed)["audio.flac"] == decoded_before, "the decoded song was decoded again"
    assert sorted(p.name for p in (killed / "stems").iterdir()) == [f"{stem}.flac" for stem in sorted(STEM_NAMES)]
    assert (killed / "theory.json").exists()
