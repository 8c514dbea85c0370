"""The analysis peers the benchmarks compare with, each returning what `analysis.mir.analyze` returns
(tempo_bpm, beat_times, key_tonic, key_mode, chords) so one scorer serves all.

- librosa with default settings on the mix: `beat_track`, Krumhansl-Kessler key templates on
  `chroma_stft`, and major/minor triad templates on beat-synchronous `chroma_stft`.
- Essentia's standard extractors on the mix (the `bench` extra): RhythmExtractor2013 (multifeature),
  KeyExtractor, and ChordsDetectionBeats over HPCP frames between the beats RhythmExtractor2013 found (its
  beat-synchronous chord estimator; the frame-wise ChordsDetection scores about half as well on the same
  music, so it would make a weak peer).
"""

from __future__ import annotations

import numpy as np

from pipeline_project.analysis.mir import PITCH_NAMES, chords_per_beat

KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
ESSENTIA_CHORD_HOP = 2048
ESSENTIA_CHORD_FRAME = 8192
# Essentia spells a few roots with sharps where the pipeline and mir_eval labels use flats; both are fine for
# mir_eval, which compares pitch classes.
SHARP_TO_FLAT = {"D#": "Eb", "G#": "Ab", "A#": "Bb"}


def librosa_defaults(mix: np.ndarray, rate: int) -> dict:
    import librosa

    mono = librosa.resample(mix.mean(axis=0), orig_sr=rate, target_sr=22050)
    tempo, frames = librosa.beat.beat_track(y=mono, sr=22050)
    chroma = librosa.feature.chroma_stft(y=mono, sr=22050)
    profile = chroma.mean(axis=1)
    scores = [np.corrcoef(profile, np.roll(p, t))[0, 1] for p in (KK_MAJOR, KK_MINOR) for t in range(12)]
    best = int(np.argmax(scores))
    times = librosa.frames_to_time(frames, sr=22050)
    return {
        "tempo_bpm": float(np.atleast_1d(tempo)[0]),
        "beat_times": list(times),
        "key_tonic": PITCH_NAMES[best % 12],
        "key_mode": "major" if best < 12 else "minor",
        "chords": [{"time": t, **c} for t, c in zip(times, chords_per_beat(chroma, frames))],
    }


def essentia_available() -> bool:
    try:
        import essentia.standard  # noqa: F401
    except ImportError:
        return False
    return True


def _essentia_chord(label: str) -> str:
    minor = label.endswith("m")
    root = label[:-1] if minor else label
    return f"{SHARP_TO_FLAT.get(root, root)}:{'min' if minor else 'maj'}"


def essentia_extractors(mix: np.ndarray, rate: int) -> dict:
    import essentia.standard as es

    mono = np.ascontiguousarray(mix.mean(axis=0), dtype=np.float32)
    if rate != 44_100:
        mono = es.Resample(inputSampleRate=rate, outputSampleRate=44_100)(mono)
    bpm, ticks, _, _, _ = es.RhythmExtractor2013(method="multifeature")(mono)
    key, scale, _ = es.KeyExtractor()(mono)
    window = es.Windowing(type="blackmanharris62")
    spectrum = es.Spectrum()
    peaks = es.SpectralPeaks(
        orderBy="magnitude", magnitudeThreshold=1e-5, minFrequency=20, maxFrequency=3500, maxPeaks=60
    )
    hpcp = es.HPCP()
    frames = [
        hpcp(*peaks(spectrum(window(frame))))
        for frame in es.FrameGenerator(
            mono, frameSize=ESSENTIA_CHORD_FRAME, hopSize=ESSENTIA_CHORD_HOP, startFromZero=True
        )
    ]
    ticks = np.asarray(ticks, dtype=np.float32)
    if len(ticks) >= 2:
        chords, strengths = es.ChordsDetectionBeats(hopSize=ESSENTIA_CHORD_HOP, sampleRate=44_100)(
            np.array(frames, dtype=np.float32), ticks
        )
    else:
        chords, strengths = [], []
    return {
        "tempo_bpm": float(bpm),
        "beat_times": [float(t) for t in ticks],
        "key_tonic": SHARP_TO_FLAT.get(key, key),
        "key_mode": scale,
        "chords": [
            {"time": float(t), "chord": _essentia_chord(c), "confidence": float(s)}
            for t, c, s in zip(ticks, chords, strengths)
        ],
    }
