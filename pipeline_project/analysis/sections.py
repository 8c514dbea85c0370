"""Sections (verse, chorus, bridge-like parts) from self-similarity of beat-synchronous timbre and harmony.

Boundaries are peaks of Foote's novelty: a checkerboard kernel slid along the diagonal of the beat-level
self-similarity matrix. Sections are then labelled A, B, C... by clustering their mean features, so a part
that comes back gets its letter again. Each boundary's confidence is its novelty relative to the highest.
"""

from __future__ import annotations

import numpy as np

KERNEL_BEATS = 8  # half-width of the checkerboard kernel: changes are judged over 8 beats on each side
MIN_SECTION_BEATS = 8
SAME_SECTION_DISTANCE = 0.35  # cosine distance under which two sections get the same letter


def _checkerboard(half: int) -> np.ndarray:
    sign = np.sign(np.arange(-half, half) + 0.5)
    gauss = np.exp(-0.5 * (np.arange(-half, half) + 0.5) ** 2 / (half / 2) ** 2)
    return np.outer(sign * gauss, sign * gauss)


NOVELTY_CHUNK_BEATS = 4096  # beats whose neighbourhoods are compared at a time (about 36 MB)


def novelty(features: np.ndarray) -> np.ndarray:
    """Foote novelty per beat of (dims, beats) features. The kernel sees only the self-similarity of beats
    within its half-width of each other, so only that band of the matrix is computed (the edge beats repeated
    past either end): a whole song's matrix would grow with the square of its length."""
    normed = features / (np.linalg.norm(features, axis=0, keepdims=True) + 1e-9)
    beats = normed.shape[1]
    half = min(KERNEL_BEATS, max(1, beats // 4))
    kernel = _checkerboard(half)
    curve = np.empty(beats)
    for first in range(0, beats, NOVELTY_CHUNK_BEATS):
        centres = np.arange(first, min(beats, first + NOVELTY_CHUNK_BEATS))
        around = np.clip(centres[:, None] + np.arange(-half, half)[None, :], 0, beats - 1)  # (chunk, 2 half)
        vectors = normed.T[around]  # (chunk, 2 half, dims)
        curve[centres] = np.einsum("cad,cbd,ab->c", vectors, vectors, kernel, optimize=True)
    return np.clip(curve, 0.0, None)


def find_sections(features: np.ndarray, beat_times: list[float], duration: float) -> list[dict]:
    """[{start, end, label, confidence}] covering the song, from (dims, beats) beat-synchronous features."""
    beats = features.shape[1]
    # Standardized per dimension, so similarity reflects how a beat differs from the song's average.
    features = (features - features.mean(axis=1, keepdims=True)) / (features.std(axis=1, keepdims=True) + 1e-9)
    if beats < 2 * MIN_SECTION_BEATS:
        return [{"start": 0.0, "end": round(duration, 3), "label": "A", "confidence": 1.0}]
    curve = novelty(features)
    peak = curve.max() or 1.0
    candidates = [
        i
        for i in range(MIN_SECTION_BEATS, beats - MIN_SECTION_BEATS + 1)
        if curve[i] >= curve[max(0, i - 2) : i + 3].max() and curve[i] > 0.2 * peak
    ]
    boundaries: list[int] = []
    for index in sorted(candidates, key=lambda i: -curve[i]):
        if all(abs(index - b) >= MIN_SECTION_BEATS for b in boundaries):
            boundaries.append(index)
    edges = [0, *sorted(boundaries), beats]
    means = [features[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])]
    labels: list[str] = []
    prototypes: list[np.ndarray] = []
    for mean in means:
        unit = mean / (np.linalg.norm(mean) + 1e-9)
        distances = [1 - float(unit @ p) for p in prototypes]
        if distances and min(distances) < SAME_SECTION_DISTANCE:
            labels.append(chr(ord("A") + int(np.argmin(distances))))
        else:
            prototypes.append(unit)
            labels.append(chr(ord("A") + len(prototypes) - 1))
    times = [0.0, *[float(beat_times[min(b, len(beat_times) - 1)]) for b in sorted(boundaries)], duration]
    sections = []
    for index, label in enumerate(labels):
        confidence = 1.0 if index == 0 else float(curve[edges[index]] / peak)
        sections.append(
            {
                "start": round(times[index], 3),
                "end": round(times[index + 1], 3),
                "label": label,
                "confidence": round(confidence, 3),
            }
        )
    return sections
