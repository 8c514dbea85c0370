"""Rhythm descriptors of an analysed song, from its onsets against the beat and bar grid: syncopation,
metric hierarchy and rhythmic complexity."""

from __future__ import annotations

import numpy as np

SUBDIVISIONS = 4  # sixteenth notes per beat in simple metre


def beat_positions(onset_times: list[float], beat_times: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beat index, position inside the beat in 0..1) of every onset that falls between two beats, and
    which onsets those are."""
    beats = np.asarray(beat_times, dtype=float)
    onsets = np.asarray(onset_times, dtype=float)
    if len(beats) < 2 or not len(onsets):
        return np.empty(0, dtype=int), np.empty(0), np.zeros(len(onsets), dtype=bool)
    index = np.searchsorted(beats, onsets, side="right") - 1
    inside = (index >= 0) & (index < len(beats) - 1)
    index = index[inside]
    phase = (onsets[inside] - beats[index]) / (beats[index + 1] - beats[index])
    return index, phase, inside


def syncopation_index(onset_times: list[float], beat_times: list[float]) -> float:
    """Mean metric weight of onsets: 0 on the beat, 0.5 on the off-beat eighth, 1 on sixteenth positions."""
    _, phase, _ = beat_positions(onset_times, beat_times)
    if not len(phase):
        return 0.0
    slot = np.rint(phase * SUBDIVISIONS).astype(int) % SUBDIVISIONS
    weights = np.where(slot == 0, 0.0, np.where(slot == 2, 0.5, 1.0))
    return round(float(weights.mean()), 4)


def metric_levels(beats_per_bar: int) -> np.ndarray:
    """Theoretical metric weight of each sixteenth slot of a bar (Lerdahl and Jackendoff's grid): 4 on the
    downbeat, 3 on the bar's middle beat when it has an even number of beats, 2 on other beats, 1 on
    eighths, 0 on sixteenths."""
    levels = np.zeros(beats_per_bar * SUBDIVISIONS)
    levels[SUBDIVISIONS // 2 :: SUBDIVISIONS] = 1
    levels[::SUBDIVISIONS] = 2
    if beats_per_bar % 2 == 0 and beats_per_bar > 2:
        levels[beats_per_bar // 2 * SUBDIVISIONS] = 3
    levels[0] = 4
    return levels


def metric_hierarchy(
    onset_times: list[float],
    onset_strengths: list[float] | None,
    beat_times: list[float],
    beats_per_bar: int,
    downbeat_phase: int = 0,
) -> dict:
    """How onset strength spreads over the sixteenth slots of the bar, and how closely that follows the
    theoretical hierarchy (Pearson correlation: near 1 when strong onsets sit on strong positions, near 0
    or below for music that plays against the metre)."""
    index, phase, inside = beat_positions(onset_times, beat_times)
    slots = beats_per_bar * SUBDIVISIONS
    if not len(index):
        return {"profile": [0.0] * slots, "hierarchy_correlation": 0.0}
    strengths = np.ones(len(onset_times)) if onset_strengths is None else np.asarray(onset_strengths, dtype=float)
    kept = strengths[inside]
    beat_in_bar = (index - downbeat_phase) % beats_per_bar
    slot = (beat_in_bar * SUBDIVISIONS + np.rint(phase * SUBDIVISIONS).astype(int)) % slots
    profile = np.bincount(slot, weights=kept, minlength=slots)
    profile = profile / (profile.sum() + 1e-12)
    levels = metric_levels(beats_per_bar)
    correlation = float(np.corrcoef(profile, levels)[0, 1]) if profile.std() > 0 else 0.0
    return {"profile": [round(float(v), 4) for v in profile], "hierarchy_correlation": round(correlation, 4)}


def rhythmic_complexity(onset_times: list[float], beat_times: list[float]) -> dict:
    """Entropy (bits) of the inter-onset intervals measured in sixteenths of a beat (capped at two beats),
    onsets per beat, and a 0..1 complexity: that entropy over its maximum."""
    index, phase, _ = beat_positions(onset_times, beat_times)
    if len(index) < 3:
        return {"ioi_entropy_bits": 0.0, "onsets_per_beat": 0.0, "complexity": 0.0}
    grid = index * SUBDIVISIONS + np.rint(phase * SUBDIVISIONS)
    intervals = np.clip(np.diff(np.unique(grid)), 1, 2 * SUBDIVISIONS).astype(int)
    counts = np.bincount(intervals, minlength=2 * SUBDIVISIONS + 1)[1:]
    share = counts[counts > 0] / counts.sum()
    entropy = float(-(share * np.log2(share)).sum())
    beats = max(1, int(index.max() - index.min() + 1))
    return {
        "ioi_entropy_bits": round(entropy, 4),
        "onsets_per_beat": round(len(np.unique(grid)) / beats, 4),
        "complexity": round(float(entropy / np.log2(2 * SUBDIVISIONS)), 4),
    }


def swing_ratio(onset_times: list[float], beat_times: list[float]) -> float:
    """Share of off-beat onsets that sit on the swung (2/3) position rather than the straight (1/2) one."""
    _, phase, _ = beat_positions(onset_times, beat_times)
    straight = int(np.sum(np.abs(phase - 0.5) < 0.07))
    swung = int(np.sum(np.abs(phase - 2 / 3) < 0.07))
    return round(swung / (straight + swung), 4) if straight + swung else 0.0
