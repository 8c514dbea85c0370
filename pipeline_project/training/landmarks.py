"""Landmark fingerprints, the method of Wang (2003, "An industrial-strength audio search algorithm") that
Shazam and audfprint use: the peer the song embedding is measured against.

A track becomes a constellation of spectrogram peaks (local maxima that stand above their neighbourhood);
each peak is paired with a few later peaks in a target zone, and each pair (anchor frequency, frequency
difference, time difference) is hashed into one integer, kept with the anchor's time. A query's hashes are
looked up in the catalog; a track whose matching hashes agree on one time offset (catalog time - query time)
is the answer, and how many agree is its score. Peaks survive noise and reverberation better than the
spectrum around them, and time offsets that agree are improbable by chance.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import soxr


@dataclass(frozen=True)
class LandmarkSettings:
    sample_rate: int = 11_025
    n_fft: int = 512  # 46 ms; frequency bins of 21.5 Hz
    hop: int = 256  # 23 ms a frame
    neighbourhood: tuple[int, int] = (15, 11)  # (bins, frames) a peak must be the maximum of
    peaks_per_second: float = 30.0  # the densest constellation kept
    fan_out: int = 5  # pairs per anchor
    max_dt: int = 63  # frames (1.5 s) a target may follow its anchor
    max_df: int = 31  # bins a target may lie above or below its anchor
    # Frames a landmark's time offset may differ from the others' and still count: reverberation moves peaks
    # by a frame. On concert renders (5 s queries) it took top-1 from 0.72 to 0.75 at +10 dB, 0.47 to 0.50 at
    # 0 dB, and from 0.72 to 0.84 and 0.47 to 0.63 with a denser constellation.
    offset_tolerance: int = 1


def constellation(audio: np.ndarray, rate: int, settings: LandmarkSettings = LandmarkSettings()) -> np.ndarray:
    """(frame, bin) of the spectrogram peaks of mono or (channels, samples) `audio`, in time order: local maxima
    over `settings.neighbourhood`, 10 dB above the median level, the strongest `peaks_per_second` kept."""
    from scipy.ndimage import maximum_filter

    mono = np.asarray(audio, dtype=np.float32)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    if rate != settings.sample_rate:
        mono = soxr.resample(mono, rate, settings.sample_rate, quality="HQ")
    if len(mono) < settings.n_fft:
        return np.zeros((0, 2), dtype=np.int32)
    frames = np.lib.stride_tricks.sliding_window_view(mono, settings.n_fft)[:: settings.hop]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(settings.n_fft), axis=1)).T  # (bins, frames)
    level = 20 * np.log10(spectrum + 1e-10)
    is_peak = (level == maximum_filter(level, size=settings.neighbourhood)) & (level > np.median(level) + 10.0)
    bins, times = np.nonzero(is_peak)
    keep = int(settings.peaks_per_second * len(mono) / settings.sample_rate)
    if len(times) > keep:
        strongest = np.argsort(level[bins, times])[::-1][:keep]
        bins, times = bins[strongest], times[strongest]
    order = np.lexsort((bins, times))
    return np.stack([times[order], bins[order]], axis=1).astype(np.int32)


def landmarks(peaks: np.ndarray, settings: LandmarkSettings = LandmarkSettings()) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, anchor frames) of the peak pairs: each anchor with up to `fan_out` of the next peaks within
    `max_dt` frames and `max_df` bins. A hash packs anchor bin (8 bits), frequency difference (6) and time
    difference (6)."""
    hashes, anchors = [], []
    for i, (t1, f1) in enumerate(peaks):
        paired = 0
        for t2, f2 in peaks[i + 1 :]:
            dt = t2 - t1
            if dt > settings.max_dt or paired == settings.fan_out:
                break
            if dt < 1 or abs(f2 - f1) > settings.max_df:
                continue
            hashes.append(((int(f1) & 0xFF) << 12) | ((int(f2 - f1) & 0x3F) << 6) | (int(dt) & 0x3F))
            anchors.append(int(t1))
            paired += 1
    return np.asarray(hashes, dtype=np.int64), np.asarray(anchors, dtype=np.int32)


class LandmarkIndex:
    """Tracks' landmarks by hash; a query is answered by the tracks whose hashes agree on a time offset."""

    def __init__(self, settings: LandmarkSettings = LandmarkSettings()):
        self.settings = settings
        self.tracks: list[str] = []
        self.postings: dict[int, list[tuple[int, int]]] = defaultdict(list)  # hash -> [(track, anchor frame)]

    def add(self, track: str, audio: np.ndarray, rate: int) -> int:
        """Index a track; returns how many landmarks it has."""
        number = len(self.tracks)
        self.tracks.append(track)
        hashes, anchors = landmarks(constellation(audio, rate, self.settings), self.settings)
        for value, anchor in zip(hashes.tolist(), anchors.tolist()):
            self.postings[value].append((number, anchor))
        return len(hashes)

    def scores(self, audio: np.ndarray, rate: int) -> dict[str, int]:
        """Each track's count of query landmarks that agree on its most common time offset (tracks with none
        left out), in catalog order."""
        hashes, anchors = landmarks(constellation(audio, rate, self.settings), self.settings)
        offsets: dict[int, list[int]] = defaultdict(list)
        for value, anchor in zip(hashes.tolist(), anchors.tolist()):
            for track, catalog_anchor in self.postings.get(value, ()):
                offsets[track].append(catalog_anchor - anchor)
        window = np.ones(2 * self.settings.offset_tolerance + 1, dtype=np.int64)
        return {
            self.tracks[track]: int(np.convolve(np.bincount(np.asarray(found) - min(found)), window).max())
            for track, found in sorted(offsets.items())
        }

    def ranked(self, audio: np.ndarray, rate: int) -> list[tuple[str, int]]:
        """The tracks by score, best first; ties in catalog order (a stable sort of `scores`)."""
        return sorted(self.scores(audio, rate).items(), key=lambda item: -item[1])
