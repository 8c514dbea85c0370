"""Inputs and training targets of the learned analysers, on two fixed frame grids.

- The beat grid: 100.2 frames a second (hop 220 at 22 050 Hz), log-mel spectrogram. Beats need ~10 ms.
- The harmony grid: 10.8 frames a second (hop 2048), a log-frequency spectrum with three bins per semitone
  from C2 to C7, made from one 8192-point FFT per frame (a constant-Q transform costs 25x more for a song and
  resolves nothing more above C2).

Targets come from a render's labels (`Performance.labels()`), which are exact: beat and downbeat (the frame
nearest each, its neighbours at half weight), chord (root x quality, or N), the lowest sounding pitch class,
and the local key of each bar from a key-finding pass over the score's notes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from pipeline_project.analysis.decoding import viterbi_segments
from pipeline_project.analysis.mir import key_profile_scores
from pipeline_project.pitches import PITCH_CLASS, PITCH_NAMES

RATE = 22_050
BEAT_HOP = 220
BEAT_FPS = RATE / BEAT_HOP
MEL_BANDS = 80
MEL_FFT = 2048
HARMONY_HOP = 2048
HARMONY_FPS = RATE / HARMONY_HOP
HARMONY_FFT = 8192
BINS_PER_SEMITONE = 3
LOWEST_MIDI = 36  # C2
SEMITONES = 60  # five octaves, to C7
HARMONY_BINS = SEMITONES * BINS_PER_SEMITONE
# The triad a seventh chord stands on: it still sounds (and is scored, by mir_eval's majmin) as that triad.
TRIAD_OF_SEVENTH = {"7": "maj", "maj7": "maj", "min7": "min", "hdim7": "dim", "dim7": "dim"}
# The chord vocabulary: every root with these qualities, then N (no chord). Other qualities are not scored.
QUALITIES = ("maj", "min", "dim", "aug", "sus4", "7", "maj7", "min7")
# Qualities of the labels that the vocabulary folds into one of its own: the sevenths it has no class for.
FOLDED_QUALITIES = {quality: triad for quality, triad in TRIAD_OF_SEVENTH.items() if quality not in QUALITIES}
NO_CHORD = len(QUALITIES) * 12
CHORD_CLASSES = NO_CHORD + 1
# The triads the chord path runs over (`triad_log_probabilities`); dim, aug and sus4 are triads of their own.
TRIADS = ("maj", "min", "dim", "aug", "sus4")
NO_TRIAD = len(TRIADS) * 12
# For each triad, the qualities built on it (indices into QUALITIES).
QUALITIES_ON_TRIAD = tuple(
    tuple(index for index, quality in enumerate(QUALITIES) if TRIAD_OF_SEVENTH.get(quality, quality) == triad)
    for triad in TRIADS
)
NO_BASS = 12
KEY_CLASSES = 24  # 0-11 major on C..B, 12-23 minor
IGNORE = -100  # torch's cross-entropy ignore_index: frames whose label the vocabulary cannot say
KEY_WINDOW_BARS = 2  # a bar's local key weighs the notes of two bars either side, at decreasing weight
KEY_CHANGE_PENALTY = 1.0  # in profile correlation units: a modulation must pay off over a few bars


def beat_frames(duration_s: float) -> int:
    return int(np.ceil(duration_s * BEAT_FPS))


def harmony_frames(duration_s: float) -> int:
    return int(np.ceil(duration_s * HARMONY_FPS))


def beat_features(mono: np.ndarray) -> np.ndarray:
    """(frames, MEL_BANDS) float32 log-mel spectrogram of 22 050 Hz mono audio on the beat grid."""
    import librosa

    power = librosa.feature.melspectrogram(
        y=mono, sr=RATE, n_fft=MEL_FFT, hop_length=BEAT_HOP, n_mels=MEL_BANDS, fmin=30.0, fmax=11_000.0
    )
    return np.log1p(1000.0 * power).T.astype(np.float32)[: beat_frames(len(mono) / RATE)]


@lru_cache(maxsize=1)
def _log_frequency_filterbank() -> np.ndarray:
    """(HARMONY_BINS, FFT bins) triangular filters centred on each third of a semitone."""
    fft_hz = np.arange(HARMONY_FFT // 2 + 1) * RATE / HARMONY_FFT
    centres = 440.0 * 2 ** ((LOWEST_MIDI - 69 + (np.arange(HARMONY_BINS + 2) - 1) / BINS_PER_SEMITONE) / 12)
    bank = np.zeros((HARMONY_BINS, len(fft_hz)), dtype=np.float32)
    for i in range(HARMONY_BINS):
        low, centre, high = centres[i], centres[i + 1], centres[i + 2]
        rising = (fft_hz - low) / (centre - low)
        falling = (high - fft_hz) / (high - centre)
        bank[i] = np.clip(np.minimum(rising, falling), 0.0, None)
        if bank[i].sum() == 0:  # narrower than one FFT bin: take the nearest bin
            bank[i, int(np.argmin(np.abs(fft_hz - centre)))] = 1.0
        bank[i] /= bank[i].sum()
    return bank


def harmony_features(mono: np.ndarray) -> np.ndarray:
    """(frames, HARMONY_BINS) float32 log-frequency magnitude spectrum on the harmony grid."""
    import librosa

    magnitude = np.abs(librosa.stft(mono, n_fft=HARMONY_FFT, hop_length=HARMONY_HOP, window="hann"))
    spectrum = _log_frequency_filterbank() @ magnitude
    return np.log1p(100.0 * spectrum).T.astype(np.float32)[: harmony_frames(len(mono) / RATE)]


def pitch_class_energy(harmony: np.ndarray) -> np.ndarray:
    """(frames, 12) magnitude per pitch class (C first) of `harmony_features` frames: every octave's bins of
    a pitch class summed. A key profile of the sound, beside what the networks hear."""
    magnitude = np.expm1(np.asarray(harmony, dtype=np.float64)) / 100.0
    octaves = magnitude.reshape(len(magnitude), SEMITONES // 12, 12, BINS_PER_SEMITONE).sum(axis=(1, 3))
    return np.roll(octaves, LOWEST_MIDI % 12, axis=1)  # column 0 is the lowest bin's pitch class


def shift_pitch(features: np.ndarray, semitones: int) -> np.ndarray:
    """Harmony features (frames, HARMONY_BINS) moved up by `semitones` along the log-frequency axis; the bins
    moved in from outside the range are silent."""
    shift = semitones * BINS_PER_SEMITONE
    moved = np.zeros_like(features)
    if shift >= 0:
        moved[:, shift:] = features[:, : features.shape[1] - shift]
    else:
        moved[:, :shift] = features[:, -shift:]
    return moved


def shift_classes_back(values: np.ndarray, semitones: int) -> np.ndarray:
    """Per-frame values over classes laid out in blocks of twelve roots (chords: a block per quality, then N;
    bass notes: one block, then none; keys: major, then minor), read from features moved up by `semitones`,
    moved back: each root takes the value of the root `semitones` above it. Columns after the last whole
    block (N, no bass) stay where they are."""
    back = values.copy()
    for first in range(0, values.shape[-1] - values.shape[-1] % 12, 12):
        back[..., first : first + 12] = np.roll(values[..., first : first + 12], -semitones, axis=-1)
    return back


def chord_class(label: str) -> int:
    """Index of a chord label in the vocabulary; N -> NO_CHORD; IGNORE for a quality it cannot say."""
    if label in ("N", ""):
        return NO_CHORD
    root, quality = label.split(":", 1)
    quality = FOLDED_QUALITIES.get(quality, quality)
    if quality not in QUALITIES or root not in PITCH_CLASS:
        return IGNORE
    return QUALITIES.index(quality) * 12 + PITCH_CLASS[root]


def triad_log_probabilities(chord_log_probs: np.ndarray) -> np.ndarray:
    """(..., NO_TRIAD + 1) log-probabilities of each triad (root x TRIADS, then N) from those of each chord
    (..., CHORD_CLASSES): a triad's probability is the sum over the chords built on it."""
    triads = np.empty(chord_log_probs.shape[:-1] + (NO_TRIAD + 1,))
    for position, qualities in enumerate(QUALITIES_ON_TRIAD):
        blocks = [chord_log_probs[..., index * 12 : index * 12 + 12] for index in qualities]
        triads[..., position * 12 : position * 12 + 12] = np.logaddexp.reduce(blocks, axis=0)
    triads[..., NO_TRIAD] = chord_log_probs[..., NO_CHORD]
    return triads


def chord_on_triad(triad: int, chord_log_probs: np.ndarray) -> int:
    """The likeliest chord (index in the vocabulary) built on `triad` (index into triad_log_probabilities'
    classes), given one step's (CHORD_CLASSES,) log-probabilities."""
    if triad == NO_TRIAD:
        return NO_CHORD
    built_on = [index * 12 + triad % 12 for index in QUALITIES_ON_TRIAD[triad // 12]]
    return max(built_on, key=lambda chord: chord_log_probs[chord])


def chord_label(index: int) -> str:
    if index == NO_CHORD:
        return "N"
    return f"{PITCH_NAMES[index % 12]}:{QUALITIES[index // 12]}"


def key_label(index: int) -> tuple[str, str]:
    """(tonic, mode) of a key class."""
    return PITCH_NAMES[index % 12], "major" if index < 12 else "minor"


def key_class(label: str) -> int:
    tonic, mode = label.split(":")
    return PITCH_CLASS[tonic] + (12 if mode == "minor" else 0)


def _pulse_targets(times: list[float], frames: int) -> np.ndarray:
    target = np.zeros(frames, dtype=np.float32)
    for time in times:
        index = int(round(time * BEAT_FPS))
        for offset, weight in ((-1, 0.5), (1, 0.5), (0, 1.0)):
            if 0 <= index + offset < frames:
                target[index + offset] = max(target[index + offset], weight)
    return target


def local_keys(labels: dict) -> list[tuple[float, float, str]]:
    """(start, end, 'G:major') per stretch of bars in one key, found from the score's pitched notes: each bar's
    pitch-class durations, with its neighbours' at lower weight, matched to the key profiles, then smoothed so
    a modulation must hold for a few bars. Where the whole piece stays in one key, that key is the label's own
    (the score analysis of the whole piece)."""
    downbeats = list(labels.get("downbeats") or [])
    duration = float(labels["duration"])
    if len(downbeats) < 2:
        return [(0.0, duration, labels["key"])]
    edges = np.array([0.0, *downbeats[1:], duration]) if downbeats[0] > 0 else np.array([*downbeats, duration])
    bars = len(edges) - 1
    histogram = np.zeros((bars, 12))
    for note in labels["notes"]:
        if note["is_drum"]:
            continue
        start, end = note["onset"], note["offset"]
        first, last = np.searchsorted(edges, start, side="right") - 1, np.searchsorted(edges, end, side="left") - 1
        for bar in range(max(0, first), min(bars - 1, last) + 1):
            overlap = min(end, edges[bar + 1]) - max(start, edges[bar])
            if overlap > 0:
                histogram[bar, note["pitch"] % 12] += overlap
    weights = np.array([0.25, 0.5, 1.0, 0.5, 0.25])
    windowed = np.stack([np.convolve(histogram[:, pc], weights, mode="same") for pc in range(12)], axis=1)
    scores = key_profile_scores(windowed)
    # The piece's own key (from the whole score) is favoured a little: it is right far more often than not.
    scores[:, key_class(labels["key"])] += 0.05
    path = viterbi_segments(scores, KEY_CHANGE_PENALTY)
    if len(set(path.tolist())) == 1:
        # No modulation: the whole-score analysis names the key. Bar by bar, a loop such as vi-IV-I-V in F major
        # matches Bb major's profile better, and a minor chorale its relative major's.
        return [(0.0, duration, labels["key"])]
    spans: list[tuple[float, float, str]] = []
    for bar, key in enumerate(path):
        tonic, mode = key_label(int(key))
        name = f"{tonic}:{mode}"
        if spans and spans[-1][2] == name:
            spans[-1] = (spans[-1][0], float(edges[bar + 1]), name)
        else:
            spans.append((float(edges[bar]), float(edges[bar + 1]), name))
    return spans


def _labels_at(spans: list, times: np.ndarray, default: int, classify) -> np.ndarray:
    out = np.full(len(times), default, dtype=np.int64)
    for start, end, label in spans:
        out[(times >= start) & (times < end)] = classify(label)
    return out


def targets(labels: dict, duration_s: float) -> dict[str, np.ndarray]:
    """Every training target of one render on its grid: beat, downbeat (float, beat grid); chord, bass, key
    (class indices, harmony grid)."""
    beat_n, harmony_n = beat_frames(duration_s), harmony_frames(duration_s)
    centres = (np.arange(harmony_n) + 0.5) / HARMONY_FPS
    chords = _labels_at([tuple(c) for c in labels["chords"]], centres, NO_CHORD, chord_class)
    pitched = [n for n in labels["notes"] if not n["is_drum"]]
    bass = np.full(harmony_n, NO_BASS, dtype=np.int64)
    lowest = np.full(harmony_n, 999)
    for note in pitched:
        span = slice(int(np.ceil(note["onset"] * HARMONY_FPS - 0.5)), int(np.ceil(note["offset"] * HARMONY_FPS - 0.5)))
        lowest[span] = np.minimum(lowest[span], note["pitch"])
    bass[lowest < 999] = lowest[lowest < 999] % 12
    keys = _labels_at(local_keys(labels), centres, key_class(labels["key"]), key_class)
    return {
        "beat": _pulse_targets(labels["beats"], beat_n),
        "downbeat": _pulse_targets(labels["downbeats"], beat_n),
        "chord": chords,
        "bass": bass,
        "key": keys,
    }
