"""Per-hit drum features, including the hi-hat features of the drum-hit exchange format.

BodyE and SizzleE are the energies (mean power, scaled by 1e6) of a hit's body (150 Hz to 1 kHz) and sizzle
(5 kHz to 15 kHz) bands; GeoMean is their geometric mean; SustainMs is how long the hit stays within 20 dB
of its peak. Spectral centroid, flatness, bandwidth and the decay slope complete the description.
"""

from __future__ import annotations

import numpy as np

FEATURE_NAMES = (
    "BodyE",
    "SizzleE",
    "GeoMean",
    "SustainMs",
    "centroid_hz",
    "flatness",
    "bandwidth_hz",
    "decay_db_per_s",
    "peak_db",
    "low_energy",
)
BODY_BAND = (150.0, 1000.0)
SIZZLE_BAND = (5000.0, 15000.0)
LOW_BAND = (20.0, 150.0)
MAX_WINDOW_S = 0.3
MIN_WINDOW_S = 0.03
ENVELOPE_FRAME_S = 0.005
SUSTAIN_DROP_DB = 20.0
BACKGROUND_S = 0.03  # audio before an onset that describes what was already sounding
ENERGY_SCALE = 1e6


def _band_energy(power: np.ndarray, freqs: np.ndarray, band: tuple[float, float]) -> float:
    selected = (freqs >= band[0]) & (freqs < band[1])
    return float(power[selected].mean() * ENERGY_SCALE) if selected.any() else 0.0


def hit_features(segment: np.ndarray, sample_rate: int, before: np.ndarray | None = None) -> dict[str, float]:
    """Features of one hit: `segment` is mono audio from the onset to the next onset (or MAX_WINDOW_S).

    `before` is the audio just before the onset: what was already sounding (a ringing crash, the tail of the
    previous hit). Its spectrum is subtracted from the hit's, and the hit's sustain ends where it falls to
    that background, so a closed hi-hat over a crash still measures short.
    """
    windowed = segment * np.hanning(len(segment))
    power = np.abs(np.fft.rfft(windowed)) ** 2 / len(segment)
    freqs = np.fft.rfftfreq(len(segment), 1.0 / sample_rate)
    frame = max(1, int(ENVELOPE_FRAME_S * sample_rate))
    background_power = 0.0
    if before is not None and len(before) >= 16:
        before_power = np.abs(np.fft.rfft(before * np.hanning(len(before)), n=len(segment))) ** 2 / len(before)
        power = np.clip(power - before_power, 0.0, None)
        tail = before[len(before) % frame :].reshape(-1, frame)
        background_power = float((tail**2).mean(axis=1).min()) if len(tail) else 0.0
    body, sizzle = _band_energy(power, freqs, BODY_BAND), _band_energy(power, freqs, SIZZLE_BAND)
    total = power.sum() + 1e-20
    centroid = float((freqs * power).sum() / total)
    bandwidth = float(np.sqrt(((freqs - centroid) ** 2 * power).sum() / total))
    flatness = float(np.exp(np.mean(np.log(power + 1e-20))) / (power.mean() + 1e-20))

    usable = len(segment) // frame * frame
    # What was already sounding (its quietest recent level) is taken out of the hit's envelope.
    envelope_power = np.clip((segment[:usable].reshape(-1, frame) ** 2).mean(axis=1) - background_power, 0.0, None)
    envelope_db = 10 * np.log10(envelope_power + 1e-20)
    peak_index = int(np.argmax(envelope_db))
    below = np.nonzero(envelope_db[peak_index:] < envelope_db[peak_index] - SUSTAIN_DROP_DB)[0]
    sustain_frames = int(below[0]) if below.size else len(envelope_db) - peak_index
    tail = envelope_db[peak_index : peak_index + max(sustain_frames, 2)]
    decay = float(np.polyfit(np.arange(len(tail)) * ENVELOPE_FRAME_S, tail, 1)[0]) if len(tail) >= 2 else 0.0
    return {
        "BodyE": round(body, 4),
        "SizzleE": round(sizzle, 4),
        "GeoMean": round(float(np.sqrt(body * sizzle)), 4),
        "SustainMs": round(sustain_frames * ENVELOPE_FRAME_S * 1000.0, 2),
        "centroid_hz": round(centroid, 2),
        "flatness": round(flatness, 6),
        "bandwidth_hz": round(bandwidth, 2),
        "decay_db_per_s": round(decay, 2),
        "peak_db": round(float(envelope_db[peak_index]), 2),
        "low_energy": round(_band_energy(power, freqs, LOW_BAND), 4),
    }


def features_at_onsets(
    mono: np.ndarray, sample_rate: int, onsets: list[float], boundaries: list[float] | None = None
) -> list[dict[str, float]]:
    """Features for every onset. Each hit's window ends at the next onset among `boundaries` (every drum
    onset, when the hits measured are only some of them) so that no other hit leaks into it."""
    onsets = sorted(onsets)
    edges = np.array(sorted(set(boundaries or []) | set(onsets)))
    rows = []
    for onset in onsets:
        later = edges[edges > onset + 1e-6]
        end = min(onset + MAX_WINDOW_S, float(later[0]) if later.size else onset + MAX_WINDOW_S)
        end = max(end, onset + MIN_WINDOW_S)
        start_frame, end_frame = int(onset * sample_rate), min(len(mono), int(end * sample_rate))
        if end_frame - start_frame < int(MIN_WINDOW_S * sample_rate):
            continue
        before = mono[max(0, start_frame - int(BACKGROUND_S * sample_rate)) : start_frame]
        rows.append({"onset": onset, **hit_features(mono[start_frame:end_frame], sample_rate, before)})
    return rows


def isolated_hits(drum_notes: list[dict], min_gap_s: float = 0.05) -> list[tuple[float, str]]:
    """(onset, articulation) for every drum hit with no other hit starting within `min_gap_s`, so its
    features describe that hit alone and its label is unambiguous. A flam counts from its grace note;
    silent hi-hat chokes are not hits."""
    hits = []
    for note in drum_notes:
        if note.get("articulation") == "choke" or not note.get("articulation"):
            continue
        hits.append([note["onset"], note["articulation"]])
    hits.sort()
    merged: list[list] = []
    for onset, articulation in hits:
        if (
            merged
            and merged[-1][1] == "flam_grace"
            and articulation == "flam_snare"
            and onset - merged[-1][0] < min_gap_s
        ):
            merged[-1][1] = "flam_snare"
        else:
            merged.append([onset, articulation])
    onsets = [o for o, _ in merged]
    isolated = []
    for index, (onset, articulation) in enumerate(merged):
        before = onset - onsets[index - 1] if index else np.inf
        after = onsets[index + 1] - onset if index + 1 < len(onsets) else np.inf
        if min(before, after) >= min_gap_s and articulation != "flam_grace":
            isolated.append((float(onset), articulation))
    return isolated
