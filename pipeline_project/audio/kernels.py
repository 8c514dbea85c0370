"""Compiling librosa's numba kernels once, alone, before any parallel work.

librosa's kernels are compiled by numba the first time they are imported or run and cached on disk, beside
librosa in site-packages; on 2 cores that first time costs about a minute. Two processes compiling the same
guvectorized kernel at once can leave cache files that crash, with a segmentation fault, every process that
loads them later (numba issue 10128). So `make setup` compiles them right after the install
(`python -m pipeline_project.audio.kernels`), and `run` calls `compile_kernels` before it starts other
processes: afterwards every process only loads them.

The warm-up runs the pipeline's own code paths (the DSP separator, the analysis on its DSP and learned paths,
log-mel features) on a few seconds of synthetic audio in the dtypes real songs have, so every kernel
signature they use is compiled.
"""

from __future__ import annotations

import time

import numpy as np

SAMPLE_RATE = 44_100
SECONDS = 6.0


def _test_song() -> np.ndarray:
    """A few seconds of stereo float32: a major triad and a click on every beat at 120 BPM."""
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    chord = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
    clicks = np.zeros_like(t)
    for beat in np.arange(0.0, SECONDS, 0.5):
        start = int(beat * SAMPLE_RATE)
        clicks[start : start + 400] = np.random.default_rng(int(beat * 10)).uniform(-0.5, 0.5, 400)
    mono = (chord + clicks).astype(np.float32)
    return np.stack([mono, 0.9 * mono])


def compile_kernels() -> float:
    """Run the pipeline's librosa code paths once; returns the seconds it took (little once cached)."""
    from pipeline_project.analysis import learned
    from pipeline_project.analysis.mir import analyze
    from pipeline_project.audio.features import log_mel
    from pipeline_project.separation.separator import separate_with_fallback

    started = time.perf_counter()
    song = _test_song()
    separation = separate_with_fallback(song, SAMPLE_RATE)
    analyze(separation.stems, SAMPLE_RATE)
    if learned.available():  # the learned path's beat decoder is a numba kernel of the project's own
        analyze(separation.stems, SAMPLE_RATE, learned.load(), use=frozenset(learned.MODEL_NAMES))
    log_mel(song, SAMPLE_RATE)
    return time.perf_counter() - started


if __name__ == "__main__":
    print(f"librosa's numba kernels compiled and cached ({compile_kernels():.0f} s)", flush=True)
