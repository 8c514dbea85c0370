"""Analysis accuracy of the pipeline beside librosa's defaults, on rendered chorales with exact labels.

Each piece is a music21 chorale (none of them used by the demo songs, the synthetic examples or the tests)
with a generated rhythm section, rendered by FluidSynth with human timing. The pipeline's path is the one
the assets take: separation (Demucs when weights are on this machine, else the DSP fallback), then
`analysis.mir.analyze` on the stems. The peer is what a user gets from librosa with default settings on the
mix: `librosa.beat.beat_track`, Krumhansl-Kessler key templates on `chroma_stft`, and major/minor chord
templates on beat-synchronous `chroma_stft`. Scores are mir_eval's.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/bench_analysis_demo.py [--pieces N]
"""

from __future__ import annotations

import argparse
import time

import librosa
import mir_eval
import numpy as np

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


def mir_chord(label: str) -> str:
    if label == "N":
        return "N"
    root, quality = label.split(":")
    return f"{root}:{quality}" if quality in ("maj", "min", "dim", "aug") else "X"


def score(result: dict, labels: dict, duration: float) -> dict:
    reference_beats = np.array(labels["beats"])
    beats = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(reference_beats), mir_eval.beat.trim_beats(np.array(result["beat_times"])))
    tempo_ok = abs(result["tempo_bpm"] - labels["tempo_bpm"]) / labels["tempo_bpm"] <= 0.04
    tonic, mode = labels["key"].split(":")
    key = mir_eval.key.weighted_score(f"{tonic} {mode}", f"{result['key_tonic']} {result['key_mode']}")
    ref_intervals = np.array([[s, e] for s, e, _ in labels["chords"]])
    ref_labels = [mir_chord(c) for _, _, c in labels["chords"]]
    times = [c["time"] for c in result["chords"]]
    if len(times) < 2:
        return {"beat_f": beats, "tempo_ok": tempo_ok, "key": key, "chord_majmin": 0.0}
    est_intervals = np.array([[t, n] for t, n in zip(times, times[1:] + [duration])])
    est_labels = [c["chord"] for c in result["chords"]]
    est_intervals, est_labels = mir_eval.util.adjust_intervals(est_intervals, est_labels, ref_intervals.min(), ref_intervals.max(),
                                                               mir_eval.chord.NO_CHORD, mir_eval.chord.NO_CHORD)
    merged, ref, est = mir_eval.util.merge_labeled_intervals(ref_intervals, ref_labels, est_intervals, est_labels)
    durations = mir_eval.util.intervals_to_durations(merged)
    chord = mir_eval.chord.weighted_accuracy(mir_eval.chord.majmin(ref, est), durations)
    return {"beat_f": beats, "tempo_ok": tempo_ok, "key": key, "chord_majmin": chord}


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
        ours.append(score(result, labels, performance.duration))
        peer.append(score(baseline, labels, performance.duration))
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
