"""What a person sees when `run` meets bad input: one line per failed song and a summary on the terminal, every
stack trace in the log file the summary names, and an exit status that tells a bad file from a broken pipeline."""

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import render_groove_song

from pipeline_project.settings import PROJECT_ROOT

TRACE_MARKERS = ("Traceback (most recent call last)", 'File "', "Stack Trace:")


def _run(data_root: Path, home: Path, **env) -> subprocess.CompletedProcess:
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run(
        [sys.executable, "-m", "pipeline_project", "run", "--data-root", str(data_root), "--songs-only"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DAGSTER_HOME": str(home), **env},
    )


def test_bad_input_prints_no_stack_trace_and_the_log_file_has_them(data_root, tmp_path):
    incoming = data_root / "incoming"
    render_groove_song(incoming / "fine.mp3", "rock", bars=3, tempo=120, seed=1)
    (incoming / "empty.mp3").write_bytes(b"")
    (incoming / "notes.mp3").write_text("these are liner notes, not audio\n" * 50)
    (incoming / "noise.flac").write_bytes(os.urandom(5000))
    whole = (incoming / "fine.mp3").read_bytes()
    (incoming / "cut_short.mp3").write_bytes(whole[: len(whole) // 50])

    done = _run(data_root, tmp_path / "home")
    terminal = done.stdout + done.stderr
    assert done.returncode == 0, terminal  # bad files are quarantined: that is the pipeline doing its job
    assert not [marker for marker in TRACE_MARKERS if marker in terminal], terminal
    for name in ("empty.mp3", "notes.mp3", "noise.flac", "cut_short.mp3"):
        assert (
            len(re.findall(rf"^\[pipeline\]     quarantined: {re.escape(name)}: ", done.stdout, re.MULTILINE)) == 1
        ), done.stdout
    log_file = Path(re.search(r"full log, with every stack trace: (\S+)", done.stdout).group(1))
    assert "Stack Trace:" in log_file.read_text() and "empty.mp3" in log_file.read_text()


def test_a_failure_that_is_not_a_bad_file_fails_the_run_and_says_which(data_root, tmp_path):
    render_groove_song(data_root / "incoming" / "fine.mp3", "rock", bars=3, tempo=120, seed=1)
    # Demucs weights demanded ("always") from a port nothing listens on: separation fails, the file is fine.
    done = _run(
        data_root,
        tmp_path / "home",
        PIPELINE_DEMUCS_WEIGHTS="always",
        PIPELINE_DEMUCS_WEIGHTS_URL="http://127.0.0.1:9/",
    )
    terminal = done.stdout + done.stderr
    assert done.returncode == 1, terminal
    assert (
        "songs failed:" in done.stdout
        and "exit status 1: songs that were not bad files (fine.mp3) failed" in done.stdout
    )
    assert not [marker for marker in TRACE_MARKERS if marker in terminal], terminal
