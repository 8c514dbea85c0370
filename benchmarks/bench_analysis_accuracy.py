"""Analysis accuracy of the pipeline (DSP path and learned analysers) beside Essentia and librosa, on music the
learned analysers never heard: held-out pieces rendered through held-out SoundFonts, in every condition.

The pieces are the test split of the music21 chorales (`synthesis.corpus_split`; reserved pieces are never
used), plus grooves over progressions in odd and compound metres; about half are played without drums.
Each is rendered once (a random tempo from 50 to 200 BPM, a sampled human performance, voices from the
evaluation SoundFonts only) and heard in four conditions: clean, a room, a room plus noise at 20 dB SNR,
and a concert (PA, arena, noise at -10 to +10 dB SNR).

Systems, all on the same audio:
- pipeline (dsp): separation (Demucs when weights are on this machine, else the DSP fallback), then
  `analysis.mir.analyze` on the stems, as `song_analysis` runs it without learned models;
- shipped: the same with the model set (pipeline_project/models unless --models names another) as
  `song_analysis` uses it: its promoted networks, the DSP path for the rest;
- learned: every network of the set (`analysis.learned`), promoted or not;
- Essentia: RhythmExtractor2013 (multifeature), KeyExtractor, ChordsDetectionBeats on its own beats;
- librosa: default beat_track, Krumhansl-Kessler key, triad templates on beat-synchronous chroma.

Scores (mir_eval): beat F-measure, beat AMLt (continuity at any metrical level: double, half or off-beat
counts), tempo within 4 %, tempo octave errors (the tempo off by 2x, 3x, 1/2 or 1/3), key weighted score,
chord majmin; for the pipeline also downbeat F-measure, and Roman numeral agreement: per beat, the numeral of
the estimated chord in the estimated local key against the numeral of the score's chord in the score's local
key (`analysis.frames.local_keys`). The last line is the smallest margin of the learned pipeline over
Essentia across conditions.

    make bench-setup
    .venv/bin/python benchmarks/bench_analysis_accuracy.py [--pieces 16] [--conditions clean room reverb_noise concert]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from peers import essentia_available, essentia_extractors, librosa_defaults

from pipeline_project.analysis import learned
from pipeline_project.analysis.accuracy import score_analysis
from pipeline_project.analysis.frames import local_keys
from pipeline_project.analysis.mir import analyze
from pipeline_project.analysis.theory import key_at, simple_numeral
from pipeline_project.resources import SeparatorResource
from pipeline_project.synthesis.render import available_soundfonts
from pipeline_project.training.analysis_corpus import CONDITIONS, apply_condition, plan_renders, render_clean

METRICS = ("beat_f", "beat_amlt", "tempo_ok", "octave_error", "key", "chord_majmin", "downbeat_f", "numerals")
PIPELINE_ONLY = ("downbeat_f", "numerals")
TARGETS = {"beat_f": 0.92, "chord_majmin": 0.85, "key": 0.95, "numerals": 0.70}


def octave_error(estimate_bpm: float, reference_bpm: float) -> float:
    ratio = estimate_bpm / reference_bpm
    return float(any(abs(ratio / factor - 1) <= 0.04 for factor in (2.0, 3.0, 0.5, 1 / 3)))


def any_level_continuity(result: dict, labels: dict) -> float:
    """AMLt (mir_eval): the share of beats tracked continuously at the reference's metrical level, at twice or
    half of it, or on the off-beat. Beside the F-measure it shows how much of a tracker's shortfall is a
    different but consistent metrical level rather than beats in the wrong place."""
    import mir_eval

    reference = mir_eval.beat.trim_beats(np.asarray(labels["beats"]))
    estimate = mir_eval.beat.trim_beats(np.asarray(result["beat_times"]))
    return float(mir_eval.beat.continuity(reference, estimate)[3])


def numeral_agreement(result: dict, labels: dict) -> float:
    """Share of beats whose Roman numeral (degree and quality, in the local key) matches the score's."""
    truth_keys = [
        {"start": s, "end": e, "tonic": k.split(":")[0], "mode": k.split(":")[1]} for s, e, k in local_keys(labels)
    ]
    song_tonic, song_mode = labels["key"].split(":")
    spans = result.get("local_keys") or []
    matches = []
    for chord in result["chords"]:
        time = chord["time"] + 0.05
        reference = next((c for s, e, c in labels["chords"] if s <= time < e), None)
        if reference is None or reference == "N" or reference.endswith(":other"):
            continue
        want = simple_numeral(reference, *key_at(truth_keys, time, song_tonic, song_mode))
        got = simple_numeral(chord["chord"], *key_at(spans, time, result["key_tonic"], result["key_mode"]))
        matches.append(want == got)
    return float(np.mean(matches)) if matches else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=16)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    parser.add_argument("--models", default=None, help="a model set folder (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="one line per piece and condition")
    args = parser.parse_args()
    separator = SeparatorResource(weights="never")  # Demucs only where its weights already are
    catalog = available_soundfonts()
    models = learned.load(args.models) if learned.available(args.models) else None
    systems = {"dsp": lambda mix, rate, stems: analyze(stems, rate)}
    if models is None:
        print("no learned analysers found (make train-analysis): the 'learned' column is left out")
    else:
        # As song_analysis runs it (the promoted networks, DSP for the rest), and every network learned.
        systems["shipped"] = lambda mix, rate, stems: analyze(stems, rate, models)
        systems["learned"] = lambda mix, rate, stems: analyze(stems, rate, models, use=frozenset(learned.MODEL_NAMES))
    systems["librosa"] = lambda mix, rate, stems: librosa_defaults(mix, rate)
    if essentia_available():
        systems["essentia"] = lambda mix, rate, stems: essentia_extractors(mix, rate)
    else:
        print("Essentia is not installed (make bench-setup): its column is left out")
    plans = plan_renders("test", list(catalog), 1, args.seed, max_pieces=args.pieces, conditions=tuple(args.conditions))
    scores = {(s, c): [] for s in systems for c in args.conditions}
    no_drums = {(s, c): [] for s in systems for c in args.conditions}
    seconds = {s: 0.0 for s in systems}
    audio_seconds, separator_name = 0.0, ""
    for plan in plans:
        clean, rate, labels = render_clean(plan, catalog)
        tempo = 60.0 / float(np.median(np.diff(labels["beats"])))
        for condition in args.conditions:
            mix = apply_condition(clean, rate, condition, plan.seed)
            audio_seconds += mix.shape[1] / rate
            separation = separator.separate(mix, rate)
            separator_name = separation.separator + (f" ({separation.model_name})" if separation.model_name else "")
            line = []
            for system, run in systems.items():
                started = time.perf_counter()
                result = run(mix, rate, separation.stems)
                seconds[system] += time.perf_counter() - started
                row = score_analysis(result, labels | {"tempo_bpm": tempo}, labels["duration"])
                row["octave_error"] = octave_error(result["tempo_bpm"], tempo)
                row["beat_amlt"] = any_level_continuity(result, labels)
                if system in ("dsp", "shipped", "learned"):
                    row["numerals"] = numeral_agreement(result, labels)
                scores[system, condition].append(row)
                if plan.groove is None:
                    no_drums[system, condition].append(row)
                line.append(f"{system} {row['beat_f']:.2f}/{row['chord_majmin']:.2f}/{result['tempo_bpm']:.0f}")
            if args.verbose:
                print(
                    f"{plan.piece:<34} {plan.groove or 'no drums':<12} {condition:<12} tempo {tempo:5.1f} | "
                    + " ".join(line),
                    flush=True,
                )

    fonts = sorted({f for p in plans for f in p.soundfonts})
    print(
        f"\n{len(plans)} held-out pieces ({sum(p.groove is None for p in plans)} without drums) x {len(args.conditions)} conditions, "
        f"{audio_seconds / 60:.1f} min of audio; SoundFonts: {', '.join(fonts)}; separator: {separator_name}"
    )
    if models is not None:
        print(
            f"learned analysers: {models.versions}; promoted (the 'shipped' column uses them): {sorted(models.promoted)}"
        )
    names = list(systems)
    print(f"{'metric':<14}{'condition':<14}" + "".join(f"{s:>10}" for s in names) + f"{'target':>9}")
    for metric in METRICS:
        for condition in [*args.conditions, "no drums", "all"]:
            if condition == "no drums":
                rows = {s: [r for c in args.conditions for r in no_drums[s, c]] for s in names}
            else:
                chosen = args.conditions if condition == "all" else [condition]
                rows = {s: [r for c in chosen for r in scores[s, c]] for s in names}
            means = {s: float(np.mean([r[metric] for r in rows[s] if metric in r] or [np.nan])) for s in names}
            line = f"{metric:<14}{condition:<14}" + "".join(
                f"{means[s]:>10.3f}" if np.isfinite(means[s]) else f"{'-':>10}" for s in names
            )
            if condition == "all" and metric in TARGETS:
                line += f"{TARGETS[metric]:>9.2f}"
            print(line)
    print(
        f"{'x real time':<28}"
        + "".join(f"{seconds[s] / audio_seconds:>10.3f}" for s in names)
        + "   (separation excluded)"
    )
    if "essentia" in systems and "learned" in systems:
        margins = {
            metric: min(
                np.mean([r[metric] for r in scores["learned", c]]) - np.mean([r[metric] for r in scores["essentia", c]])
                for c in args.conditions
            )
            for metric in ("beat_f", "chord_majmin")
        }
        print(
            f"worst margin over Essentia: beat F {margins['beat_f']:+.3f}, chord majmin {margins['chord_majmin']:+.3f}"
        )


if __name__ == "__main__":
    main()
