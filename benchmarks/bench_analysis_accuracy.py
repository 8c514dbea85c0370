"""Analysis accuracy of the pipeline beside librosa and Essentia, on rendered pieces whose labels are exact.

Each piece is a music21 chorale that no test, demo song or synthetic example uses, given a generated rhythm
section and rendered by FluidSynth with a sampled human performance (rubato, jitter, dynamics, detuning)
through one SoundFont per piece, taking turns over every SoundFont on this machine. Each rendering is
analysed clean, through a room, and through the concert chain (PA, arena, crowd or pink noise at -10 to
+10 dB SNR).

The pipeline's path is the assets' path: separation (Demucs when weights are on this machine, else the DSP
fallback), then `analysis.mir.analyze` on the stems. The peers get the mix: librosa with default settings
and Essentia's RhythmExtractor2013, KeyExtractor and ChordsDetection (see `peers.py`). Scores are
mir_eval's: beat F-measure, tempo within 4 %, key weighted score, chord majmin; for the pipeline alone (the
peers do not estimate them) downbeat F-measure and time-signature accuracy.
Targets: beat F >= 0.90, key >= 0.85, chord majmin >= 0.75, each at least Essentia's.

    make bench-setup
    .venv/bin/python benchmarks/bench_analysis_accuracy.py [--pieces 12] [--conditions clean room concert]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from peers import essentia_available, essentia_extractors, librosa_defaults

from pipeline_project.analysis.accuracy import TARGETS, score_analysis
from pipeline_project.analysis.mir import analyze
from pipeline_project.augmentation.chains import apply_chain, sample_chain
from pipeline_project.resources import SeparatorResource
from pipeline_project.synthesis.arrangement import from_corpus
from pipeline_project.synthesis.grooves import GROOVE_STYLES, with_rhythm_section
from pipeline_project.synthesis.performance import perform, sample_humanization
from pipeline_project.synthesis.render import available_soundfonts, render

PIECES = ("bach/bwv1.6", "bach/bwv2.6", "bach/bwv3.6", "bach/bwv4.8", "bach/bwv5.7", "bach/bwv6.6",
          "bach/bwv8.6", "bach/bwv9.7", "bach/bwv11.6", "bach/bwv13.6", "bach/bwv14.5", "bach/bwv16.6",
          "bach/bwv17.7", "bach/bwv18.5", "bach/bwv20.11", "bach/bwv24.6")
CONDITIONS = {"clean": (), "room": ("room",), "concert": ("concert",)}
METRICS = ("beat_f", "tempo_ok", "key", "chord_majmin", "downbeat_f", "meter_ok")  # the last two: pipeline only


def styles_for(meter: tuple[int, int]) -> list[str]:
    return [name for name, style in GROOVE_STYLES.items() if style["meter"] == meter]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    parser.add_argument("--verbose", action="store_true", help="one line per piece and condition")
    args = parser.parse_args()
    separator = SeparatorResource()
    catalog = available_soundfonts()
    soundfonts = sorted(catalog)
    peers = {"librosa": librosa_defaults}
    if essentia_available():
        peers["essentia"] = essentia_extractors
    else:
        print("Essentia is not installed (make bench-setup): its column is left out")
    systems = ["pipeline", *peers]
    scores: dict[tuple[str, str], list[dict]] = {(s, c): [] for s in systems for c in args.conditions}
    seconds = {s: 0.0 for s in systems}
    audio_seconds = 0.0
    separator_name = ""
    for index, name in enumerate(PIECES[: args.pieces]):
        rng = np.random.default_rng(index)
        score = from_corpus(name)
        meter = tuple(int(x) for x in score.time_signature.split("/"))
        candidates = styles_for(meter) or styles_for((4, 4))
        arrangement = with_rhythm_section(score, candidates[index % len(candidates)], seed=index)
        soundfont = soundfonts[index % len(soundfonts)]
        performance = perform(arrangement, float(rng.integers(72, 132)), seed=index,
                              humanization=sample_humanization(rng), soundfont=soundfont)
        rendered = render(performance, catalog)
        labels = performance.labels()
        for condition in args.conditions:
            mix = rendered.mix
            if CONDITIONS[condition]:
                mix = apply_chain(mix, rendered.sample_rate, sample_chain(CONDITIONS[condition], seed=index)).audio
            audio_seconds += performance.duration
            started = time.perf_counter()
            separation = separator.separate(mix, rendered.sample_rate)
            result = analyze(separation.stems, rendered.sample_rate)
            seconds["pipeline"] += time.perf_counter() - started
            separator_name = separation.separator + (f" ({separation.model_name})" if separation.model_name else "")
            results = {"pipeline": result}
            for peer, run in peers.items():
                started = time.perf_counter()
                results[peer] = run(mix, rendered.sample_rate)
                seconds[peer] += time.perf_counter() - started
            for system, estimate in results.items():
                scores[system, condition].append(score_analysis(estimate, labels, performance.duration))
            if args.verbose:
                line = " ".join(f"{s} {r['key_tonic']}:{r['key_mode']} {r['tempo_bpm']:.0f}" for s, r in results.items())
                print(f"{name:<14} {soundfont:<16} {condition:<8} key {labels['key']:<9} tempo {labels['tempo_bpm']:.0f} | {line}")

    print(f"\n{min(args.pieces, len(PIECES))} pieces x {len(args.conditions)} conditions, {audio_seconds / 60:.1f} min of audio; "
          f"SoundFonts: {', '.join(soundfonts)}; separator: {separator_name}")
    header = f"{'metric':<14}{'condition':<10}" + "".join(f"{s:>10}" for s in systems) + f"{'target':>9}  verdict"
    print(header)
    for metric in METRICS:
        for condition in [*args.conditions, "all"]:
            chosen = args.conditions if condition == "all" else [condition]
            means = {s: float(np.mean([r[metric] for c in chosen for r in scores[s, c] if metric in r] or [np.nan])) for s in systems}
            row = f"{metric:<14}{condition:<10}" + "".join(f"{means[s]:>10.3f}" if np.isfinite(means[s]) else f"{'-':>10}" for s in systems)
            if condition == "all" and metric in TARGETS:
                ok = means["pipeline"] >= TARGETS[metric] and means["pipeline"] >= means.get("essentia", 0.0)
                row += f"{TARGETS[metric]:>9.2f}  {'PASS' if ok else 'FAIL'}"
            print(row)
    print(f"{'x real time':<24}" + "".join(f"{seconds[s] / audio_seconds:>10.3f}" for s in systems)
          + "   (pipeline includes separation)")


if __name__ == "__main__":
    main()
