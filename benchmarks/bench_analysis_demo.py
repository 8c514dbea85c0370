"""Analysis accuracy of the pipeline beside librosa's defaults, on rendered chorales with exact labels.

Each piece is a music21 chorale (none of them used by the demo songs, the synthetic examples or the tests)
with a generated rhythm section, rendered by FluidSynth with human timing. The pipeline's path is the one
the assets take: separation (Demucs when weights are on this machine, else the DSP fallback), then
`analysis.mir.analyze` on the stems. The peer is what a user gets from librosa with default settings on the
mix: `librosa.beat.beat_track`, Krumhansl-Kessler key templates on `chroma_stft`, and major/minor chord
templates on beat-synchronous `chroma_stft`. Scores are mir_eval's.

    make bench-setup
    .venv/bin/python benchmarks/bench_analysis_demo.py [--pieces N]
"""

from __future__ import annotations

import argparse
import time

import librosa
import numpy as np

from pipeline_project.analysis.accuracy import score_analysis
from pipeline_project.analysis.mir import PITCH_NAMES, analyze, chords_per_beat
from pipeline_project.resources import SeparatorResource
from pipeline_project.synthesis.arrangement import from_corpus
from pipeline_project.synthesis.grooves import with_rhythm_section
from pipeline_project.synthesis.performance import STEADY_TEMPO, perform
from pipeline_project.synthesis.render import render

PIECES = ("bach/bwv1.6", "bach/bwv2.6", "bach/bwv3.6", "bach/bwv4.8", "bach/bwv5.7", "bach/bwv6.6",
          "bach/bwv8.6", "bach/bwv9.7", "bach/bwv11.6", "bach/bwv13.6")
STYLES = ("rock", "funk", "disco", "jazz_ride")
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def librosa_defaults(mix: np.ndarray, rate: int) -> dict:
    mono = librosa.resample(mix.mean(axis=0), orig_sr=rate, target_sr=22050)
    tempo, frames = librosa.beat.beat_track(y=mono, sr=22050)
    chroma = librosa.feature.chroma_stft(y=mono, sr=22050)
    profile = chroma.mean(axis=1)
    scores = [np.corrcoef(profile, np.roll(p, t))[0, 1] for p in (KK_MAJOR, KK_MINOR) for t in range(12)]
    best = int(np.argmax(scores))
    return {"tempo_bpm": float(np.atleast_1d(tempo)[0]), "beat_times": list(librosa.frames_to_time(frames, sr=22050)),
            "key_tonic": PITCH_NAMES[best % 12], "key_mode": "major" if best < 12 else "minor",
            "chords": [{"time": t, **c} for t, c in zip(librosa.frames_to_time(frames, sr=22050), chords_per_beat(chroma, frames))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=6)
    args = parser.parse_args()
    separator = SeparatorResource()
    rng = np.random.default_rng(2026)
    ours, peer, seconds = [], [], {"ours": 0.0, "peer": 0.0, "audio": 0.0}
    for index, name in enumerate(PIECES[: args.pieces]):
        arrangement = with_rhythm_section(from_corpus(name), STYLES[index % len(STYLES)], seed=index)
        performance = perform(arrangement, float(rng.integers(80, 132)), seed=index, humanization=STEADY_TEMPO)
        audio = render(performance)
        labels = performance.labels()
        mix = audio.mix
        started = time.perf_counter()
        separation = separator.separate(mix, audio.sample_rate)
        result = analyze(separation.stems, audio.sample_rate)
        seconds["ours"] += time.perf_counter() - started
        started = time.perf_counter()
        baseline = librosa_defaults(mix, audio.sample_rate)
        seconds["peer"] += time.perf_counter() - started
        seconds["audio"] += performance.duration
        ours.append(score_analysis(result, labels, performance.duration))
        peer.append(score_analysis(baseline, labels, performance.duration))
        print(f"{name:<14} key {labels['key']:<9} ours {result['key_tonic']}:{result['key_mode']:<6} "
              f"librosa {baseline['key_tonic']}:{baseline['key_mode']:<6} tempo {labels['tempo_bpm']:.0f} "
              f"ours {result['tempo_bpm']:.1f} librosa {baseline['tempo_bpm']:.1f}")

    print(f"\nseparator: {separation.separator}" + (f" ({separation.model_name})" if separation.model_name else ""))
    print(f"{'metric':<16}{'pipeline':>10}{'librosa':>10}{'ratio':>8}")
    for metric in ("beat_f", "tempo_ok", "key", "chord_majmin"):
        a = float(np.mean([r[metric] for r in ours]))
        b = float(np.mean([r[metric] for r in peer]))
        print(f"{metric:<16}{a:>10.3f}{b:>10.3f}{(a / b if b else float('nan')):>8.2f}")
    print(f"{'x real time':<16}{seconds['ours'] / seconds['audio']:>10.3f}{seconds['peer'] / seconds['audio']:>10.3f}"
          f"{(seconds['ours'] / seconds['peer']):>8.2f}   (pipeline includes separation)")


if __name__ == "__main__":
    main()
