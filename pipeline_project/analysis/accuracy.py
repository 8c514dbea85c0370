"""How accurate separation and analysis are, scored against rendered examples whose labels are exact.

Analysis is scored with mir_eval: beat F-measure, tempo within 4 %, key weighted score (MIREX), chord
majmin accuracy weighted by duration, and, where the estimate has them, downbeat F-measure and whether the
time signature is right. Separation is scored with the signal-to-distortion ratio used by the
music demixing challenges, 10 log10(|s|^2 / |s - s_hat|^2) over the whole stem, beside the same score for
the mixture used as every stem's estimate: a separator must beat that baseline to be doing anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

TARGETS = {"beat_f": 0.90, "key": 0.85, "chord_majmin": 0.75}
MIR_EVAL_QUALITIES = ("maj", "min", "dim", "aug", "sus4", "7", "maj7", "min7", "hdim7", "dim7")


def mir_chord(label: str) -> str:
    """Our chord labels in mir_eval's syntax; qualities it cannot compare become X (ignored)."""
    if label == "N":
        return "N"
    root, quality = label.split(":")
    return f"{root}:{quality}" if quality in MIR_EVAL_QUALITIES else "X"


def key_score(reference: str, tonic: str, mode: str) -> float:
    """MIREX weighted key score of an estimated key against a reference written `tonic:mode`."""
    import mir_eval

    reference_tonic, reference_mode = reference.split(":")
    return float(mir_eval.key.weighted_score(f"{reference_tonic} {reference_mode}", f"{tonic} {mode}"))


def score_analysis(result: dict, labels: dict, duration: float) -> dict[str, float]:
    """mir_eval scores of an `analysis.mir.analyze` result against an example's labels."""
    import mir_eval

    reference_beats = np.array(labels["beats"])
    beats = mir_eval.beat.f_measure(
        mir_eval.beat.trim_beats(reference_beats), mir_eval.beat.trim_beats(np.array(result["beat_times"]))
    )
    tempo_ok = float(abs(result["tempo_bpm"] - labels["tempo_bpm"]) / labels["tempo_bpm"] <= 0.04)
    meter = {}
    if "downbeat_times" in result and labels.get("downbeats"):
        meter = {
            "downbeat_f": float(
                mir_eval.beat.f_measure(
                    mir_eval.beat.trim_beats(np.array(labels["downbeats"])),
                    mir_eval.beat.trim_beats(np.array(result["downbeat_times"])),
                )
            ),
            "meter_ok": float(result["time_signature"] == labels["time_signature"]),
        }
    key = key_score(labels["key"], result["key_tonic"], result["key_mode"])
    ref_intervals = np.array([[s, e] for s, e, _ in labels["chords"]])
    ref_labels = [mir_chord(c) for _, _, c in labels["chords"]]
    times = [c["time"] for c in result["chords"]]
    if len(times) < 2 or not len(ref_intervals):
        return {"beat_f": float(beats), "tempo_ok": tempo_ok, "key": float(key), "chord_majmin": 0.0, **meter}
    est_intervals = np.array([[t, n] for t, n in zip(times, times[1:] + [duration])])
    est_labels = [c["chord"] for c in result["chords"]]
    est_intervals, est_labels = mir_eval.util.adjust_intervals(
        est_intervals,
        est_labels,
        ref_intervals.min(),
        ref_intervals.max(),
        mir_eval.chord.NO_CHORD,
        mir_eval.chord.NO_CHORD,
    )
    merged, ref, est = mir_eval.util.merge_labeled_intervals(ref_intervals, ref_labels, est_intervals, est_labels)
    durations = mir_eval.util.intervals_to_durations(merged)
    chord = mir_eval.chord.weighted_accuracy(mir_eval.chord.majmin(ref, est), durations)
    return {"beat_f": float(beats), "tempo_ok": tempo_ok, "key": float(key), "chord_majmin": float(chord), **meter}


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB of a whole (channels, frames) estimate; silent references score nan."""
    reference = reference.astype(np.float64)
    frames = min(reference.shape[-1], estimate.shape[-1])
    signal = float(np.sum(reference[..., :frames] ** 2))
    if signal < 1e-9:
        return float("nan")
    error = float(np.sum((reference[..., :frames] - estimate[..., :frames]) ** 2))
    return 10 * np.log10((signal + 1e-9) / (error + 1e-9))


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019) of a whole (channels, frames) estimate: the reference
    is first scaled to fit the estimate best, so a level change costs nothing; silent references score nan."""
    frames = min(reference.shape[-1], estimate.shape[-1])
    reference = reference[..., :frames].astype(np.float64).ravel()
    estimate = estimate[..., :frames].astype(np.float64).ravel()
    energy = float(reference @ reference)
    if energy < 1e-9:
        return float("nan")
    target = (float(estimate @ reference) / energy) * reference
    return 10 * np.log10((float(target @ target) + 1e-9) / (float(np.sum((estimate - target) ** 2)) + 1e-9))


def score_separation(
    references: dict[str, np.ndarray], estimates: dict[str, np.ndarray], mix: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per stem: the separator's SDR, the mixture-as-estimate SDR, and the improvement."""
    scores = {}
    for stem, reference in references.items():
        ours, baseline = sdr(reference, estimates[stem]), sdr(reference, mix)
        scores[stem] = {
            "sdr_db": round(ours, 2),
            "mixture_sdr_db": round(baseline, 2),
            "improvement_db": round(ours - baseline, 2),
        }
    return scores


@dataclass
class RenderedAccuracy:
    """Separation and analysis scored on rendered examples: the mean SDR figures per stem, the analysis scores
    per example, and the separator that made the stems."""

    keys: list[str]
    per_stem: dict[str, dict[str, float]]
    per_example: list[dict[str, float]]
    separator: str | None

    @property
    def mean_improvement_db(self) -> float:
        return float(np.nanmean([v["improvement_db"] for v in self.per_stem.values()]))

    def analysis_means(self) -> dict[str, float]:
        """Each metric's mean over the examples that have it (downbeat and metre only where labels have bars)."""
        metrics = dict.fromkeys(m for scores in self.per_example for m in scores)
        return {m: round(float(np.mean([s[m] for s in self.per_example if m in s])), 3) for m in metrics}


def accuracy_on_rendered(corpus, keys: list[str], separate, analyze) -> RenderedAccuracy:
    """Each rendered example's mix separated by `separate(mix, rate) -> Separation` and analysed by
    `analyze(stems, rate) -> analysis`, as a user's song would be, scored against its stems and labels."""
    from pipeline_project.audio.io import read_audio
    from pipeline_project.separation.separator import STEM_NAMES

    separations, analyses, used = [], [], None
    for key in keys:
        example = corpus.rendered_example(key)
        labels = json.loads(example.labels.read_text())
        references = {name: read_audio(example.stem(name))[0] for name in STEM_NAMES}
        mix, sample_rate = read_audio(example.mix)
        separation = separate(mix, sample_rate)
        used = separation.separator + (f" ({separation.model_name})" if separation.model_name else "")
        separations.append(score_separation(references, separation.stems, mix))
        analyses.append(score_analysis(analyze(separation.stems, sample_rate), labels, labels["duration"]))
    per_stem = {
        stem: {
            field: round(float(np.nanmean([s[stem][field] for s in separations])), 2)
            for field in ("sdr_db", "mixture_sdr_db", "improvement_db")
        }
        for stem in STEM_NAMES
    }
    return RenderedAccuracy(keys, per_stem, analyses, used)
