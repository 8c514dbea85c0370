"""Tempo, beats, key, chords per beat and loudness from separated stems.

Rhythm is tracked on drums + bass (where the pulse lives), harmony on bass + other + vocals (drums only add
noise to chroma). Key uses the Albrecht-Shanahan profiles; chords are major/minor triad templates matched
to beat-synchronous chroma.
"""

from __future__ import annotations

import numpy as np

from pipeline_project.analysis.sections import find_sections
from pipeline_project.audio.loudness import integrated_loudness

ANALYSIS_RATE = 22_050
HOP = 512
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Albrecht & Shanahan (2013) key profiles: on rendered chorales they confuse a key with its dominant less
# often than the Krumhansl-Kessler profiles do.
MAJOR_PROFILE = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
MINOR_PROFILE = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])
KEY_SOFTMAX_TEMPERATURE = 0.05
NO_CHORD_ENERGY = 1e-3


def _mono(stereo: np.ndarray, sample_rate: int) -> np.ndarray:
    import librosa

    mono = stereo.mean(axis=0) if stereo.ndim == 2 else stereo
    if sample_rate != ANALYSIS_RATE:
        mono = librosa.resample(mono, orig_sr=sample_rate, target_sr=ANALYSIS_RATE, res_type="soxr_hq")
    return mono.astype(np.float32)


def estimate_key(chroma_profile: np.ndarray) -> tuple[str, str, float, list[float]]:
    """(tonic, mode, confidence, correlations) for a 12-bin chroma profile.

    Confidence is the softmax weight of the best of the 24 key correlations.
    """
    correlations = []
    for mode_profile in (MAJOR_PROFILE, MINOR_PROFILE):
        for tonic in range(12):
            correlations.append(float(np.corrcoef(chroma_profile, np.roll(mode_profile, tonic))[0, 1]))
    scores = np.nan_to_num(np.array(correlations), nan=-1.0)
    weights = np.exp((scores - scores.max()) / KEY_SOFTMAX_TEMPERATURE)
    best = int(np.argmax(scores))
    mode = "major" if best < 12 else "minor"
    return PITCH_NAMES[best % 12], mode, float(weights[best] / weights.sum()), correlations


def triad_templates() -> tuple[list[str], np.ndarray]:
    labels, templates = [], []
    for quality, intervals in (("maj", (0, 4, 7)), ("min", (0, 3, 7))):
        for root in range(12):
            template = np.zeros(12)
            template[[(root + i) % 12 for i in intervals]] = 1.0
            labels.append(f"{PITCH_NAMES[root]}:{quality}")
            templates.append(template / np.linalg.norm(template))
    return labels, np.array(templates)


def chords_per_beat(chroma: np.ndarray, beat_frames: np.ndarray) -> list[dict]:
    """One chord label per beat interval, with the template's cosine similarity as confidence."""
    import librosa

    labels, templates = triad_templates()
    # sync() pads: column 0 is the stretch before the first beat, column i + 1 starts at beat i.
    synced = librosa.util.sync(chroma, beat_frames, aggregate=np.median, pad=True)
    chords = []
    for column in synced.T[1: len(beat_frames) + 1]:
        energy = float(np.linalg.norm(column))
        if energy < NO_CHORD_ENERGY:
            chords.append({"chord": "N", "confidence": 1.0})
            continue
        similarity = templates @ (column / energy)
        best = int(np.argmax(similarity))
        chords.append({"chord": labels[best], "confidence": round(float(similarity[best]), 4)})
    return chords


def song_loudness(mix: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS; -70 (the BS.1770 absolute gate) for silence."""
    value = integrated_loudness(mix, sample_rate)
    return value if np.isfinite(value) else -70.0


def analyze(stems: dict[str, np.ndarray], sample_rate: int) -> dict:
    """Analysis of one song from its stems; every estimate comes with a confidence."""
    import librosa

    rhythm = _mono(stems["drums"] + stems["bass"], sample_rate)
    harmony = _mono(stems["bass"] + stems["other"] + stems["vocals"], sample_rate)
    mix = np.sum([stems[name] for name in stems], axis=0)

    onset_envelope = librosa.onset.onset_strength(y=rhythm, sr=ANALYSIS_RATE, hop_length=HOP)
    tempo, beat_frames = librosa.beat.beat_track(onset_envelope=onset_envelope, sr=ANALYSIS_RATE, hop_length=HOP)
    tempo = float(np.atleast_1d(tempo)[0])
    beat_times = librosa.frames_to_time(beat_frames, sr=ANALYSIS_RATE, hop_length=HOP)
    # Pulse clarity: how much of the onset energy sits on the tracked beats.
    on_beat = onset_envelope[beat_frames].mean() if len(beat_frames) else 0.0
    tempo_confidence = float(np.clip(on_beat / (onset_envelope.mean() * 3 + 1e-9), 0.0, 1.0))

    onset_frames = librosa.onset.onset_detect(onset_envelope=onset_envelope, sr=ANALYSIS_RATE, hop_length=HOP)
    onset_times = librosa.frames_to_time(onset_frames, sr=ANALYSIS_RATE, hop_length=HOP)

    chroma = librosa.feature.chroma_cqt(y=harmony, sr=ANALYSIS_RATE, hop_length=HOP)
    tonic, mode, key_confidence, _ = estimate_key(chroma.mean(axis=1))
    chords = chords_per_beat(chroma, beat_frames)
    full = _mono(mix, sample_rate)
    timbre = librosa.feature.mfcc(y=full, sr=ANALYSIS_RATE, hop_length=HOP, n_mfcc=13)[1:]
    per_beat = librosa.util.sync(np.vstack([chroma, timbre / (np.abs(timbre).max() + 1e-9)]), beat_frames, aggregate=np.mean)
    sections = find_sections(per_beat, [0.0, *beat_times], mix.shape[1] / sample_rate)

    return {
        "duration_s": round(mix.shape[1] / sample_rate, 3),
        "tempo_bpm": round(tempo, 2),
        "tempo_confidence": round(tempo_confidence, 4),
        "beat_times": [round(float(t), 4) for t in beat_times],
        "onset_times": [round(float(t), 4) for t in onset_times],
        "key_tonic": tonic,
        "key_mode": mode,
        "key_confidence": round(key_confidence, 4),
        "chords": [{"time": round(float(t), 4), **c} for t, c in zip(beat_times, chords)],
        "loudness_lufs": round(song_loudness(mix, sample_rate), 2),
        "sections": sections,
    }
