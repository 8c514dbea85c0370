"""Speed of analysis and music theory on a 3-minute song, separation excluded, beside Essentia.

The song is rendered chorales with a rhythm section, stems kept as rendered, so only `analysis.mir.analyze`
(tempo, beats, downbeats, metre, onsets, key, chords, bass, sections, loudness) and
`analysis.theory.analyze_theory` (numerals, cadences, progressions, rhythm, genre cues) are timed, as
`song_analysis` and `song_theory` run them: with the learned analysers when a model set is present (the
shipped one by default), and the DSP path beside it. The peer is Essentia's RhythmExtractor2013, KeyExtractor
and HPCP + ChordsDetectionBeats on the mix (`peers.py`), which give less (no downbeats, metre, sections,
loudness or theory). All are warmed up on a short clip first. Target: at most 0.05x real time on this
machine; the last line is the learned path's figure (the DSP path's where there is no model set).

    make bench-setup
    .venv/bin/python benchmarks/bench_analysis_speed.py [--seconds 180] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from peers import essentia_available, essentia_extractors

from pipeline_project.analysis import learned
from pipeline_project.analysis.mir import analyze
from pipeline_project.analysis.theory import analyze_theory
from pipeline_project.synthesis.arrangement import from_corpus
from pipeline_project.synthesis.grooves import with_rhythm_section
from pipeline_project.synthesis.performance import perform, sample_humanization
from pipeline_project.synthesis.render import available_soundfonts, render

PIECES = (
    "bach/bwv1.6",
    "bach/bwv8.6",
    "bach/bwv13.6",
    "bach/bwv16.6",
    "bach/bwv20.11",
    "bach/bwv24.6",
)  # none reserved
TARGET = 0.05


def song(seconds: float) -> tuple[dict[str, np.ndarray], int]:
    catalog = available_soundfonts()
    parts: list[dict[str, np.ndarray]] = []
    total, index, rate = 0.0, 0, 44_100
    while total < seconds:
        name = PIECES[index % len(PIECES)]
        rng = np.random.default_rng(index)
        performance = perform(
            with_rhythm_section(from_corpus(name), "rock", seed=index),
            float(rng.integers(90, 126)),
            seed=index,
            humanization=sample_humanization(rng),
        )
        audio = render(performance, catalog)
        parts.append(audio.stems)
        total += audio.mix.shape[1] / audio.sample_rate
        rate = audio.sample_rate
        index += 1
    frames = int(seconds * rate)
    return {stem: np.concatenate([p[stem] for p in parts], axis=1)[:, :frames] for stem in parts[0]}, rate


def timed(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=None, help="a model set folder (default: the shipped one)")
    args = parser.parse_args()
    stems, rate = song(args.seconds)
    mix = np.sum(list(stems.values()), axis=0)
    short = {stem: audio[:, : 10 * rate] for stem, audio in stems.items()}
    models = learned.load(args.models) if learned.available(args.models) else None
    analyze_theory(analyze(short, rate, models))

    print(f"{args.seconds:.0f} s song, {os.cpu_count()} cores, best of {args.repeats}")
    print(f"{'system':<34}{'seconds':>9}{'x real time':>13}")
    dsp = timed(lambda: analyze_theory(analyze(stems, rate)), args.repeats)
    print(f"{'pipeline (dsp) analysis + theory':<34}{dsp:>9.2f}{dsp / args.seconds:>13.4f}")
    seconds = dsp
    if models is not None:
        seconds = timed(lambda: analyze_theory(analyze(stems, rate, models)), args.repeats)
        print(f"{'pipeline (learned) + theory':<34}{seconds:>9.2f}{seconds / args.seconds:>13.4f}")
    else:
        print("no learned analysers (make train-analysis): the DSP path is what song_analysis runs")
    if essentia_available():
        essentia_extractors(mix[:, : 10 * rate], rate)
        peer = timed(lambda: essentia_extractors(mix, rate), args.repeats)
        print(f"{'Essentia rhythm + key + chords':<34}{peer:>9.2f}{peer / args.seconds:>13.4f}")
        print(f"ratio pipeline / Essentia: {seconds / peer:.2f}")
    else:
        print("Essentia is not installed (make bench-setup): no ratio")
    verdict = "PASS" if seconds / args.seconds <= TARGET else "FAIL"
    print(f"target <= {TARGET}x real time: {verdict}")
    print(f"analysis x real time: {seconds / args.seconds:.3f}")


if __name__ == "__main__":
    main()
