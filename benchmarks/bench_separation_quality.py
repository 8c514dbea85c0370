"""Separation quality on renders no separator was trained or tuned on, and what the stems do downstream.

The pieces are the test split of the music21 chorales and grooves (`training.analysis_corpus`, reserved pieces
never used), each rendered once through the held-out SoundFont at a tempo from 50 to 200 BPM, about half with
drums, and heard in four conditions: clean, a room, a room plus noise at 20 dB SNR, a concert (PA, arena, noise
at -10 to +10 dB SNR). The reference stems are the rendered stems as heard in the condition, without its noise
and limiter (`analysis_corpus.heard_stems`): the room is part of the music a separator should give back, the
noise is part of none of the stems.

Separators, on the same mixes:
- mixture: the mix itself as every stem (the floor any separator must clear);
- dsp-fallback: HPSS and band and mid/side masks (`separation.separator.separate_with_fallback`);
- learned: the learned separator (`separation.learned`), the shipped one or `--separator PATH.onnx`; trained on
  the training pieces through the training SoundFonts, selected on the validation ones, never on these;
- demucs: pretrained Demucs (`--demucs-model`), only where its weights are already on this machine.

Scores per stem: SDR and scale-invariant SDR (dB; a stem silent in the reference is skipped). Downstream, as
the pipeline uses stems: drum-hit F1 (onsets found on the drums stem, as `analysis.mir` finds them, against
the drum hits of the score, mir_eval's 50 ms window; pieces with drums only) and beat F-measure of the DSP
beat tracker fed the stems (`analysis.mir.analyze` without learned models).

The last lines: how long a separator configured to download weights (`weights=auto`) waits on a remote
that never answers before it falls back (a loopback port that accepts and stays silent: the worst offline
case; nothing leaves this machine), and the mean SDR gain over the DSP fallback of each other separator
measured (the learned separator's last), with its worst stem in its worst condition.

    make bench-setup
    .venv/bin/python benchmarks/bench_separation_quality.py [--pieces 8] [--conditions clean room ...]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline_project.analysis.accuracy import score_analysis, sdr, si_sdr
from pipeline_project.analysis.mir import ANALYSIS_RATE, HOP, analyze
from pipeline_project.resources import SeparatorResource
from pipeline_project.separation import learned
from pipeline_project.separation.separator import STEM_NAMES, separate_with_fallback
from pipeline_project.synthesis.render import available_soundfonts
from pipeline_project.training.analysis_corpus import (
    CONDITIONS,
    apply_condition,
    heard_stems,
    plan_renders,
    render_stems,
)


def drum_hit_f1(drums: np.ndarray, sample_rate: int, labels: dict) -> float | None:
    """F-measure of the onsets found on a drums stem against the score's drum hits; None without drums."""
    import librosa
    import mir_eval

    truth = np.unique(np.round([h["onset"] for h in labels.get("drum_hits", [])], 3))
    if len(truth) == 0:
        return None
    mono = librosa.resample(drums.mean(axis=0), orig_sr=sample_rate, target_sr=ANALYSIS_RATE)
    found = librosa.onset.onset_detect(y=mono, sr=ANALYSIS_RATE, hop_length=HOP, units="time")
    return float(mir_eval.onset.f_measure(truth, np.asarray(found), window=0.05)[0])


def offline_fallback_seconds() -> float:
    """Seconds a weights=auto separator with no local weights waits on a silent remote before falling back."""
    previous = os.environ.get("TORCH_HOME")
    with tempfile.TemporaryDirectory() as cache, socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        os.environ["TORCH_HOME"] = cache  # an empty cache, so the download is tried
        try:
            separator = SeparatorResource(weights="auto", weights_url=f"http://127.0.0.1:{listener.getsockname()[1]}/")
            started = time.monotonic()
            assert separator.model() is None
            return time.monotonic() - started
        finally:
            os.environ.pop("TORCH_HOME") if previous is None else os.environ.update(TORCH_HOME=previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=8)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    parser.add_argument("--demucs-model", default="htdemucs")
    parser.add_argument(
        "--separator", type=Path, default=learned.SHIPPED_SEPARATOR, help="the learned separator's ONNX file"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    separators = {
        "mixture": lambda mix, rate: {name: mix for name in STEM_NAMES},
        "dsp-fallback": lambda mix, rate: separate_with_fallback(mix, rate).stems,
    }
    trained = learned.load_separator(args.separator)
    if trained is not None:
        separators["learned"] = lambda mix, rate: learned.separate_with_learned(mix, rate, trained).stems
    else:
        print(f"no learned separator at {args.separator}: its column is left out (make train-separator makes it)")
    demucs = SeparatorResource(model_name=args.demucs_model, weights="never")
    if demucs.model() is not None:
        separators["demucs"] = lambda mix, rate: demucs.separate(mix, rate).stems
    else:
        print(
            f"no local weights for Demucs {args.demucs_model!r}: its column is left out "
            "(see README 'Pretrained Demucs weights')"
        )
    catalog = available_soundfonts()
    plans = plan_renders("test", list(catalog), 1, args.seed, max_pieces=args.pieces, conditions=tuple(args.conditions))
    rows = {(s, c): [] for s in separators for c in args.conditions}
    seconds = dict.fromkeys(separators, 0.0)
    audio_seconds = 0.0
    for plan in plans:
        rendered, labels = render_stems(plan, catalog)
        rate = rendered.sample_rate
        tempo = 60.0 / float(np.median(np.diff(labels["beats"])))
        for condition in args.conditions:
            mix = apply_condition(rendered.mix, rate, condition, plan.seed)
            references = heard_stems(rendered.stems, rate, condition, plan.seed)
            audio_seconds += mix.shape[1] / rate
            for name, separate in separators.items():
                started = time.perf_counter()
                stems = separate(mix, rate)
                seconds[name] += time.perf_counter() - started
                row = {f"sdr_{stem}": sdr(references[stem], stems[stem]) for stem in STEM_NAMES}
                row |= {f"si_sdr_{stem}": si_sdr(references[stem], stems[stem]) for stem in STEM_NAMES}
                row["drum_hit_f1"] = drum_hit_f1(stems["drums"], rate, labels) if name != "mixture" else None
                analysis = analyze(stems, rate) if name != "mixture" else None
                row["beat_f"] = (
                    score_analysis(analysis, labels | {"tempo_bpm": tempo}, labels["duration"])["beat_f"]
                    if analysis
                    else None
                )
                rows[name, condition].append(row)
        print(
            f"{plan.piece:<34} {plan.groove or 'no drums':<12} "
            + " ".join(
                f"{c}: dsp {np.nanmean([rows['dsp-fallback', c][-1][f'sdr_{s}'] for s in STEM_NAMES]):+.1f} dB"
                for c in args.conditions
            ),
            flush=True,
        )

    def mean(name: str, conditions: list[str], metric: str) -> float:
        values = [r[metric] for c in conditions for r in rows[name, c] if r[metric] is not None]
        return float(np.nanmean(values)) if values and np.isfinite(values).any() else float("nan")

    fonts = sorted({f for p in plans for f in p.soundfonts})
    print(
        f"\n{len(plans)} held-out pieces ({sum(p.groove is not None for p in plans)} with drums) x {len(args.conditions)} "
        f"conditions, {audio_seconds / 60:.1f} min of audio; SoundFonts: {', '.join(fonts)}"
    )
    names = list(separators)
    metrics = (
        [f"sdr_{s}" for s in STEM_NAMES]
        + ["sdr_mean"]
        + [f"si_sdr_{s}" for s in STEM_NAMES]
        + ["drum_hit_f1", "beat_f"]
    )
    print(f"{'metric':<16}{'condition':<14}" + "".join(f"{n:>14}" for n in names))
    for metric in metrics:
        for condition in [*args.conditions, "all"]:
            chosen = args.conditions if condition == "all" else [condition]
            if metric == "sdr_mean":
                values = {n: float(np.nanmean([mean(n, chosen, f"sdr_{s}") for s in STEM_NAMES])) for n in names}
            else:
                values = {n: mean(n, chosen, metric) for n in names}
            print(
                f"{metric:<16}{condition:<14}"
                + "".join(f"{values[n]:>14.3f}" if np.isfinite(values[n]) else f"{'-':>14}" for n in names)
            )
    print(f"{'x real time':<30}" + "".join(f"{seconds[n] / audio_seconds:>14.3f}" for n in names))
    rivals = [n for n in names if n not in ("mixture", "dsp-fallback")]
    lines = []
    # The learned separator's line comes last: it is the one the acceptance reads (Demucs, where present, before it).
    for rival in sorted(rivals, key=lambda n: n == "learned"):
        gains = {
            s: min(mean(rival, [c], f"sdr_{s}") - mean("dsp-fallback", [c], f"sdr_{s}") for c in args.conditions)
            for s in STEM_NAMES
        }
        overall = float(
            np.nanmean(
                [
                    mean(rival, args.conditions, f"sdr_{s}") - mean("dsp-fallback", args.conditions, f"sdr_{s}")
                    for s in STEM_NAMES
                ]
            )
        )
        worst = min(gains, key=gains.get)
        print(f"{rival} against the DSP fallback: worst stem, in its worst condition, {worst}")
        lines.append(f"mean SDR gain over the DSP fallback: {overall:+.2f} dB (worst stem {gains[worst]:+.2f} dB)")
    print(f"offline fallback after: {offline_fallback_seconds():.1f} s")
    print(
        "\n".join(lines)
        or "mean SDR gain over the DSP fallback: none measured (no learned separator or Demucs weights on this machine)"
    )


if __name__ == "__main__":
    main()
