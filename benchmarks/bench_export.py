"""The training export's speed against its library alone: 1,000 short songs (a mix and four stems of 2 s,
FLAC, with labels) written as WebDataset shards by `collection.export.write_export` (artist splits, grade
filter, manifest, checksums, a staging folder renamed into place) and by a bare `webdataset.ShardWriter` loop
writing the same samples to the same number of shards. The figure is the bare loop's time over the export's
(1.0: no overhead).

Target (issue 23): ratio >= 0.8.

    .venv/bin/python benchmarks/bench_export.py [--songs 1000] [--seconds 2]    (about 2 min, 1 GB of disk)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import webdataset as wds

from pipeline_project.collection.export import ExportSettings, SongFiles, sample_of, write_export
from pipeline_project.separation.separator import STEM_NAMES

RATE = 44_100
TARGET = 0.8


def make_songs(folder: Path, count: int, seconds: float) -> list[SongFiles]:
    """Songs with tonal stems (FLAC compresses them as it does music, about 2:1), 40 artists, a few poor."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    songs = []
    for number in range(count):
        key = f"{number:016x}"
        (folder / key / "stems").mkdir(parents=True)
        files = {}
        for name in ("mix", *STEM_NAMES):
            tone = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(60, 2000, 4)) * 0.1
            audio = np.stack([tone, tone * 0.8]).T + rng.normal(0, 0.01, (len(t), 2))
            path = folder / key / ("audio.flac" if name == "mix" else f"stems/{name}.flac")
            sf.write(path, audio, RATE, subtype="PCM_24")
            files[name] = path
        beats = np.round(np.arange(0.25, seconds, 0.5), 4).tolist()
        analysis = {
            "duration_s": seconds,
            "tempo_bpm": 120.0,
            "beat_times": beats,
            "downbeat_times": beats[::4],
            "key_tonic": "C",
            "key_mode": "major",
            "chords": [{"time": b, "label": "C:maj", "bass": "C"} for b in beats],
            "sections": [{"start": 0.0, "end": seconds, "label": "A"}],
        }
        record = {"title": f"Song {number}", "artist": f"Artist {number % 40}", "duration_s": seconds}
        grade = "poor" if number % 25 == 0 else "good"
        songs.append(
            SongFiles(
                key,
                files["mix"],
                {s: files[s] for s in STEM_NAMES},
                record,
                analysis,
                {"cadences": []},
                {"separator": "dsp"},
                {"grade": grade, "reasons": []},
            )
        )
    return songs


def bare_loop(songs: list[SongFiles], folder: Path, per_shard: int) -> None:
    """What the library alone does: the same samples (poor songs left out) into shards of the same size."""
    folder.mkdir(parents=True)
    with wds.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=per_shard, verbose=0, mtime=0.0) as sink:
        for song in songs:
            if song.quality["grade"] != "poor":
                sink.write(sample_of(song))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the fastest counts")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        started = time.perf_counter()
        songs = make_songs(work / "lake", args.songs, args.seconds)
        size = sum(f.stat().st_size for f in (work / "lake").rglob("*.flac"))
        print(
            f"{len(songs)} songs of {args.seconds:g} s made in {time.perf_counter() - started:.0f} s: {size / 1e6:.0f} MB of FLAC"
        )
        settings = ExportSettings()
        bare, ours = [], []
        for repeat in range(args.repeats):  # each first in turn, after a sync: neither pays the other's write-back
            for which in ("bare", "ours") if repeat % 2 == 0 else ("ours", "bare"):
                os.sync()
                tic = time.perf_counter()
                if which == "bare":
                    bare_loop(songs, work / "bare", settings.songs_per_shard)
                    bare.append(time.perf_counter() - tic)
                    shutil.rmtree(work / "bare")
                else:
                    folder, manifest = write_export(songs, work / "exports", settings)
                    ours.append(time.perf_counter() - tic)
                    shutil.rmtree(folder)
        exported = sum(len(part["songs"]) for part in manifest["splits"].values())
        shards = sum(len(part["shards"]) for part in manifest["splits"].values())
        print(
            f"export: {exported} songs ({len(manifest['left_out']['by_grade'])} poor left out) in {shards} shards, "
            f"{manifest['bytes'] / 1e6:.0f} MB, splits "
            + ", ".join(f"{split} {len(part['songs'])}" for split, part in manifest["splits"].items())
        )
        ratio = min(bare) / min(ours)
        print(
            f"bare webdataset.ShardWriter: {min(bare):.2f} s; write_export: {min(ours):.2f} s (fastest of {args.repeats})"
        )
        print(f"ratio {ratio:.2f} (target >= {TARGET}): {'PASS' if ratio >= TARGET else 'FAIL'}")
        print(f"export of {exported} songs: {min(ours):.2f} s, library alone {min(bare):.2f} s, ratio {ratio:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
