"""A backfill of many short songs on one machine: orchestration overhead per partition and memory per worker.

Two passes over the same songs, each into a fresh data root:
- the peer, **bare compute**: the bodies of the four per-song assets (`song_audio`, `song_stems`,
  `song_analysis`, `song_theory`) called in a plain loop with a minimal context: no run, no event log, no
  instance. This is the stages' own compute.
- **the pipeline**: `python -m pipeline_project run --songs-only` against a real instance (SQLite in a
  temporary DAGSTER_HOME, as on a laptop): a drop this large is a backfill, so each Dagster run covers a
  batch of `PIPELINE_SONGS_PER_RUN` (25) song partitions; resuming logic included.

Overhead per partition = (pipeline wall - bare wall) / songs. Targets: overhead at most 10 % of compute, and
the worker's memory flat in the number of partitions (the peak over the last quarter of partitions within
10 % of the peak over the first quarter). Songs are rendered drum-and-bass grooves, each copy scaled by its
own gain so every file has its own content hash; separation is whichever separator the machine has
(the DSP fallback without Demucs weights).

    .venv/bin/python benchmarks/bench_backfill.py [--songs 1000] [--seconds 8] [--instance-yaml FILE]

`--instance-yaml` runs the pipeline pass on another instance file, e.g. `deploy/postgres/dagster.yaml` with
its DAGSTER_PG_* variables set and the database migrated (see the README).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import soundfile as sf

from pipeline_project.settings import Settings
from pipeline_project.synthesis.grooves import groove_only
from pipeline_project.synthesis.performance import STEADY_TEMPO, perform
from pipeline_project.synthesis.render import render

OVERHEAD_TARGET = 0.10
MEMORY_TARGET = 1.10
STYLES = ("rock", "funk", "rock", "funk", "rock", "funk")


def write_songs(incoming: Path, count: int, seconds: float) -> None:
    incoming.mkdir(parents=True, exist_ok=True)
    grooves = []
    for index, style in enumerate(STYLES):
        tempo = 100 + 8 * index
        bars = max(1, round(seconds * tempo / 240))
        grooves.append(
            render(
                perform(
                    groove_only(style, bars, index + 1, key="C:major"), tempo, seed=index, humanization=STEADY_TEMPO
                )
            )
        )
    for index in range(count):
        audio = grooves[index % len(grooves)]
        gain = 0.9 - 0.5 * index / max(1, count)  # a distinct gain per copy: a distinct content hash
        sf.write(incoming / f"song-{index:05d}.flac", audio.mix.T * gain, audio.sample_rate)


def bare_compute(data_root: Path) -> float:
    """The per-song assets' own bodies, called without Dagster; returns the wall time of the loop."""
    from pipeline_project.assets.analysis import song_analysis, song_theory
    from pipeline_project.assets.ingestion import song_audio
    from pipeline_project.assets.partitions import SOURCE_FILE_TAG
    from pipeline_project.assets.separation import song_stems
    from pipeline_project.audio.ingest import scan_incoming
    from pipeline_project.definitions import default_resources

    resources = default_resources(str(data_root))
    log = logging.getLogger("bench_backfill")
    bodies = [
        (asset.op.compute_fn.decorated_fn, sorted(k for k in asset.required_resource_keys if k in resources))
        for asset in (song_audio, song_stems, song_analysis, song_theory)
    ]
    found = scan_incoming(data_root / "incoming")
    started = time.perf_counter()
    for key in sorted(found):
        # The source file's name, as the CLI and the sensor tag their runs, so no pass rescans the folder.
        tags = {SOURCE_FILE_TAG: found[key][0].name}
        context = SimpleNamespace(
            partition_key=key, partition_keys=[key], log=log, run=SimpleNamespace(tags=tags), retry_number=0
        )
        for body, needed in bodies:
            body(context, **{name: resources[name] for name in needed})
    return time.perf_counter() - started


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pipeline_run(data_root: Path, home: Path, instance_yaml: str | None) -> tuple[float, int, list[tuple[int, int]]]:
    """`run --songs-only` on a fresh instance; returns its wall time, the number of Dagster runs it took and
    (songs done, resident bytes) samples."""
    import dagster as dg

    from pipeline_project import cli

    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(
        Path(instance_yaml).read_text() if instance_yaml else "telemetry:\n  enabled: false\n"
    )
    os.environ["DAGSTER_HOME"] = str(home)
    songs = data_root / "lake" / "songs"
    samples: list[tuple[int, int]] = []
    finished = threading.Event()

    def sample():
        while not finished.wait(0.25):
            done = sum(1 for _ in songs.glob("*/theory.json")) if songs.is_dir() else 0
            samples.append((done, resident_bytes()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        exit_code = cli.run(str(data_root), songs_only=True)
    wall = time.perf_counter() - started
    runs = dg.DagsterInstance.get().get_runs_count()
    finished.set()
    sampler.join()
    if exit_code != 0:
        raise SystemExit(f"the pipeline run failed (exit code {exit_code})")
    return wall, runs, samples


def peak_between(samples: list[tuple[int, int]], low: int, high: int) -> int:
    return max((rss for done, rss in samples if low <= done <= high), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each song")
    parser.add_argument("--instance-yaml", help="dagster.yaml for the pipeline pass (default: SQLite)")
    args = parser.parse_args()
    logging.getLogger("bench_backfill").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"rendering {args.songs} songs of {args.seconds:.0f} s ...", flush=True)
        write_songs(tmp / "songs", args.songs, args.seconds)
        lengths = [sf.info(path).duration for path in (tmp / "songs").iterdir()]
        mean_length = sum(lengths) / len(lengths)
        for name in ("warmup", "bare", "pipeline"):
            (tmp / name / "incoming").mkdir(parents=True)
        for index, path in enumerate(sorted((tmp / "songs").iterdir())):
            for name in ("bare", "pipeline"):
                os.link(path, tmp / name / "incoming" / path.name)
            if index < 2:
                os.link(path, tmp / "warmup" / "incoming" / path.name)
        bare_compute(tmp / "warmup")  # imports and JIT compilation, paid by neither pass
        print("bare compute ...", flush=True)
        bare = bare_compute(tmp / "bare")
        print("pipeline (Dagster runs) ...", flush=True)
        wall, runs, samples = pipeline_run(tmp / "pipeline", tmp / "dagster_home", args.instance_yaml)

    songs = args.songs
    overhead = (wall - bare) / songs
    compute = bare / songs
    quarter = max(1, songs // 4)
    first, last = peak_between(samples, 0, quarter), peak_between(samples, songs - quarter, songs)
    mib = 1 << 20
    print(
        f"\n{songs} songs of {mean_length:.1f} s on average in {runs} Dagster runs (up to {Settings.from_environment().songs_per_run} songs a run), "
        f"instance: {args.instance_yaml or 'SQLite (default)'}"
    )
    print(f"{'':<34}{'total s':>10}{'per song ms':>14}")
    print(f"{'bare compute (peer)':<34}{bare:>10.1f}{1000 * compute:>14.0f}")
    print(f"{'pipeline (Dagster runs)':<34}{wall:>10.1f}{1000 * wall / songs:>14.0f}")
    print(f"{'orchestration overhead':<34}{wall - bare:>10.1f}{1000 * overhead:>14.0f}")
    ratio = overhead / compute
    print(
        f"overhead / compute: {ratio:.2f} (target <= {OVERHEAD_TARGET:.2f}): {'PASS' if ratio <= OVERHEAD_TARGET else 'FAIL'}"
    )
    growth = last / first if first else float("nan")
    print(
        f"worker peak RSS: first quarter {first / mib:.0f} MiB, last quarter {last / mib:.0f} MiB, "
        f"ratio {growth:.2f} (target <= {MEMORY_TARGET:.2f}): {'PASS' if growth <= MEMORY_TARGET else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
