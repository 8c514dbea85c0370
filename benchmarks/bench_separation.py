"""The separation asset's path beside raw `demucs.apply.apply_model`, and its memory on long songs.

Speed: the same 3-minute rendered song and the same model, once through `demucs.apply.apply_model` on the
whole song in memory (normalized like the demucs CLI), once through what `song_stems` runs: windowed
separation read from and streamed to FLAC (`separation.streaming.separate_file`). Target: at most 1.05x the
raw time. The model is the pretrained `--model` when its weights are on this machine (see README), else a
randomly initialized network of the same architecture and segment length, which costs the same to run.

Memory: peak resident memory of that path on a 3-minute and a 30-minute song, each in its own process,
with a small Hybrid Demucs so that 30 minutes run quickly. Target: flat (30-minute peak within 10 % of the
3-minute peak).

    .venv/bin/python benchmarks/bench_separation.py [--seconds 180] [--model htdemucs] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline_project.audio.io import write_audio
from pipeline_project.separation.demucs_models import LoadedModel, load_demucs
from pipeline_project.separation.separator import demucs_chunk_seconds, separate_with_demucs
from pipeline_project.separation.streaming import DEFAULT_CHUNK_S, DEFAULT_CROSSFADE_S, separate_file
from pipeline_project.synthesis.examples import all_sources, example_specs, render_example
from pipeline_project.synthesis.render import available_soundfonts, soundfont_presets

RATE = 44_100


def song(seconds: float) -> np.ndarray:
    """Rendered examples end to end, repeated up to `seconds`."""
    catalog = available_soundfonts()
    presets = soundfont_presets(catalog)
    mixes = []
    for spec in example_specs(all_sources(), seed=11, renderings_per_source=1, score_bars=8, groove_bars=8)[:12]:
        mixes.append(render_example(spec, catalog, presets).audio.mix)
    audio = np.concatenate(mixes, axis=1)
    return np.tile(audio, (1, int(np.ceil(seconds * RATE / audio.shape[1]))))[:, : int(seconds * RATE)]


def model_for(name: str) -> LoadedModel:
    loaded = load_demucs(name, None)
    if loaded is not None:
        return loaded
    import torch
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    sources = ["drums", "bass", "other", "vocals"]
    # The pretrained htdemucs runs 7.8 s segments (39/5 s, its training length), not the constructor's
    # default of 10 s: the stand-in must split songs the same way to cost the same.
    model = (
        HDemucs(channels=4, sources=sources) if name == "small" else HTDemucs(sources=sources, segment=Fraction(39, 5))
    )
    model.eval()
    return LoadedModel(model, f"{name} (random weights)", "none", "", [])


def raw_apply_model(audio: np.ndarray, loaded: LoadedModel) -> float:
    import torch
    from demucs.apply import apply_model

    started = time.perf_counter()
    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    reference = wav.mean(0)
    mean, std = reference.mean(), reference.std() + 1e-8
    with torch.no_grad():
        apply_model(
            loaded.model, ((wav - mean) / std)[None], device="cpu", shifts=0, split=True, overlap=0.25, progress=False
        )
    return time.perf_counter() - started


def asset_path(source: Path, out_dir: Path, loaded: LoadedModel) -> float:
    started = time.perf_counter()
    chunk = demucs_chunk_seconds(loaded, DEFAULT_CHUNK_S, DEFAULT_CROSSFADE_S, 0.25)
    separate_file(
        source,
        out_dir,
        lambda window, rate: separate_with_demucs(window, rate, loaded, "cpu"),
        chunk,
        DEFAULT_CROSSFADE_S,
    )
    return time.perf_counter() - started


def peak_memory_child(seconds: float) -> None:
    """Run in a subprocess: separate a song of `seconds` with the small model, print peak RSS in MiB."""
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "song.flac"
        clip = song(60.0)
        import soundfile as sf

        with sf.SoundFile(str(source), "w", RATE, 2, subtype="PCM_24", format="FLAC") as out:
            for _ in range(int(seconds // 60)):
                out.write(np.clip(clip, -1, 1).T)
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        asset_path(source, Path(tmp) / "stems", model_for("small"))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "before_mib": baseline / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--model", default="htdemucs")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        peak_memory_child(args.memory_child)
        return
    import torch

    torch.set_num_threads(2)
    loaded = model_for(args.model)
    audio = song(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "song.flac"
        write_audio(source, audio, RATE)
        raw_apply_model(audio[:, : 10 * RATE], loaded)  # warm-up: first calls allocate and pick kernels
        raw = raw_apply_model(audio, loaded)
        ours = asset_path(source, Path(tmp) / "stems", loaded)
    print(f"model {loaded.name}, {args.seconds:.0f} s song, CPU, 2 threads")
    print(f"raw apply_model      {raw:8.1f} s  ({raw / args.seconds:.2f}x real time)")
    print(f"separation asset     {ours:8.1f} s  ({ours / args.seconds:.2f}x real time)")
    ratio = ours / raw
    print(f"ratio asset / raw: {ratio:.3f} (target <= 1.05): {'PASS' if ratio <= 1.05 else 'FAIL'}")
    if args.skip_memory:
        return
    peaks = {}
    for seconds in (180.0, 1800.0):
        output = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(seconds)], check=True, capture_output=True, text=True
        )
        peaks[seconds] = json.loads(output.stdout.strip().splitlines()[-1])["peak_mib"]
    growth = peaks[1800.0] / peaks[180.0]
    print(
        f"peak memory: 3 min {peaks[180.0]:.0f} MiB, 30 min {peaks[1800.0]:.0f} MiB, ratio {growth:.2f} "
        f"(target <= 1.10): {'PASS' if growth <= 1.10 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
