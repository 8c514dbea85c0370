"""Peak memory of the per-song stages on 10-, 60- and 180-minute songs: flat, whatever the length.

Each song is a rendered groove (the synthetic examples end to end, about two minutes, repeated up to the
length) encoded as a 192 kbps MP3 in its own drop folder, and goes through `python -m pipeline_project run
--songs-only` exactly as a user runs it: decode (`song_audio`), separate (`song_stems`), analyse
(`song_analysis`, with the shipped learned analysers) and `song_theory`, in a fresh process with a fresh data
root and Dagster instance. The peak resident memory of that process (and anything it started) comes from
`wait4`, the kernel's own account. The peer is the same command on a 10-minute song: memory must not grow
with length. Targets: the 180-minute peak at most 2,500 MiB and at most 1.2x the 10-minute peak.

The whole run's peak is the separation window's (the DSP fallback's two-minute windows, on this machine), so
the analysis of each song's stems is also run alone in a fresh process and its peak printed: what grows with
the song there (frame features, activations, the result) shows where a whole-run peak would hide it.

    .venv/bin/python benchmarks/bench_memory.py [--minutes 10 60 180]

About 45 minutes on 2 cores, most of it the 180-minute song.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE = 44_100
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def groove(seconds: float = 120.0) -> np.ndarray:
    """(2, frames) rendered examples end to end: drums, bass, chords and melody from the project's renderer."""
    from pipeline_project.synthesis.examples import all_sources, example_specs, render_example
    from pipeline_project.synthesis.render import available_soundfonts, soundfont_presets

    catalog = available_soundfonts()
    presets = soundfont_presets(catalog)
    mixes, total = [], 0
    for spec in example_specs(all_sources(), seed=11, renderings_per_source=1, score_bars=8, groove_bars=8):
        mix = render_example(spec, catalog, presets).audio.mix
        mixes.append(mix)
        total += mix.shape[1]
        if total >= seconds * RATE:
            break
    audio = np.concatenate(mixes, axis=1)
    return (audio / (np.abs(audio).max() + 1e-9) * 0.9).astype(np.float32)


def write_long_mp3(path: Path, clip: np.ndarray, minutes: float) -> None:
    """`clip` repeated up to `minutes`, encoded block by block (the benchmark never holds the whole song)."""
    from pedalboard.io import AudioFile

    wanted = int(minutes * 60 * RATE)
    with AudioFile(str(path), "w", RATE, 2, quality="192k") as out:
        written = 0
        while written < wanted:
            block = clip[:, : wanted - written]
            out.write(block)
            written += block.shape[1]


def run_song(minutes: float, clip: np.ndarray, workdir: Path) -> dict:
    """Run the per-song stages on one song in a fresh process; its peak RSS, wall time and what it found."""
    root = workdir / f"{minutes:g}min"
    incoming = root / "data" / "incoming"
    incoming.mkdir(parents=True)
    write_long_mp3(incoming / f"long_{minutes:g}min.mp3", clip, minutes)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(root / "dagster"),
        "PIPELINE_DATA_ROOT": str(root / "data"),
        "PIPELINE_SECRET_DIR": str(root / "secrets"),
    }
    env.pop("MLFLOW_TRACKING_URI", None)  # MLflow in the fresh data root
    started = time.perf_counter()
    with open(root / "run.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline_project", "run", "--songs-only"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"{minutes:g}-minute song: run failed, see {root / 'run.log'}:\n{(root / 'run.log').read_text()[-3000:]}"
        )
    (analysis_path,) = (root / "data" / "lake" / "songs").glob("*/analysis.json")
    analysis = json.loads(analysis_path.read_text())
    return {
        "minutes": minutes,
        "peak_mib": usage.ru_maxrss / 1024,
        "seconds": seconds,
        "analysis_alone_mib": analysis_alone(analysis_path.parent / "stems"),
        "beats": len(analysis["beat_times"]),
        "tempo_bpm": analysis["tempo_bpm"],
        "sections": len(analysis["sections"]),
        "duration_s": analysis["duration_s"],
    }


ANALYSIS_ALONE = """
import sys
from pipeline_project.analysis import learned
from pipeline_project.analysis.mir import analyze
from pipeline_project.analysis.streaming import StemFiles
from pipeline_project.separation.separator import STEM_NAMES
with StemFiles(sys.argv[1], STEM_NAMES) as stems:
    analyze(stems, models=learned.load())
"""


def analysis_alone(stems: Path) -> float:
    """Peak RSS in MiB of `analysis.mir.analyze` on the stem files with the shipped analysers, in a fresh process."""
    process = subprocess.Popen([sys.executable, "-c", ANALYSIS_ALONE, str(stems)], cwd=PROJECT_ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"analysis of {stems} failed")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0, 180.0])
    parser.add_argument("--keep", help="keep the data roots in this folder (default: a temporary folder)")
    args = parser.parse_args()
    clip = groove()
    print(f"song material: {clip.shape[1] / RATE:.0f} s of rendered examples, repeated; MP3 192 kbps, 44.1 kHz stereo")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        results = []
        for minutes in args.minutes:
            result = run_song(minutes, clip, workdir)
            results.append(result)
            print(
                f"{minutes:5g} min: peak RSS {result['peak_mib']:7.0f} MiB (analysis alone {result['analysis_alone_mib']:.0f} MiB), "
                f"{result['seconds']:6.0f} s "
                f"({result['seconds'] / (minutes * 60):.3f}x real time); {result['beats']} beats at {result['tempo_bpm']:.1f} BPM, "
                f"{result['sections']} sections, {result['duration_s']:.0f} s analysed",
                flush=True,
            )
    peaks = {r["minutes"]: r["peak_mib"] for r in results}
    print("analysis alone: " + ", ".join(f"{r['minutes']:g} min {r['analysis_alone_mib']:.0f} MiB" for r in results))
    if {10.0, 180.0} <= set(peaks):
        ratio = peaks[180.0] / peaks[10.0]
        verdict = "PASS" if peaks[180.0] <= 2500 and ratio <= 1.2 else "FAIL"
        print(f"180 min / 10 min: {ratio:.2f} (targets: 180 min <= 2500 MiB, ratio <= 1.2): {verdict}")
    print("peak RSS: " + ", ".join(f"{m:g} min {p:.0f} MiB" for m, p in peaks.items()))


if __name__ == "__main__":
    main()
