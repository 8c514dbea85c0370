"""Model inputs: log-mel spectrograms and fixed-length windows at random offsets."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LogMelSettings:
    """sample_rate: audio is resampled to this first; n_fft, hop_length, n_mels, fmin, fmax: the mel
    spectrogram (librosa, power 2); top_db: dynamic range kept below the loudest bin."""

    sample_rate: int = 22_050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 30.0
    fmax: float = 11_025.0
    top_db: float = 80.0

    def to_dict(self) -> dict:
        return asdict(self)


def log_mel(audio: np.ndarray, sample_rate: int, settings: LogMelSettings = LogMelSettings()) -> np.ndarray:
    """(n_mels, frames) float32 log-mel spectrogram in dB of the channel mean."""
    import librosa

    mono = np.asarray(audio, dtype=np.float32)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    if sample_rate != settings.sample_rate:
        mono = librosa.resample(mono, orig_sr=sample_rate, target_sr=settings.sample_rate, res_type="soxr_hq")
    mel = librosa.feature.melspectrogram(
        y=mono,
        sr=settings.sample_rate,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        n_mels=settings.n_mels,
        fmin=settings.fmin,
        fmax=settings.fmax,
    )
    return librosa.power_to_db(mel, ref=np.max, top_db=settings.top_db).astype(np.float32)


def random_windows(
    duration_s: float, seed: int, count: int, min_s: float = 1.0, max_s: float = 3.0
) -> list[tuple[float, float]]:
    """`count` (start, length) windows of min_s..max_s seconds at random offsets inside the audio."""
    if not 0 < min_s <= max_s:
        raise ValueError("window lengths need 0 < min_s <= max_s")
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(count):
        length = float(min(rng.uniform(min_s, max_s), duration_s))
        start = float(rng.uniform(0.0, max(0.0, duration_s - length)))
        windows.append((round(start, 4), round(length, 4)))
    return windows
