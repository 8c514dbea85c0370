"""Separate a stereo mix into drums, bass, other and vocals.

With Demucs weights the separation goes through `demucs.apply.apply_model`. Without them, the documented
fallback is a mask-based DSP separator:
  1. harmonic/percussive separation (median filtering, librosa.decompose.hpss) of the mid signal's spectrogram;
     the percussive part is the drums stem;
  2. the harmonic part below about 200 Hz (a smooth low-pass mask) is the bass stem;
  3. of the harmonic part above it, the centre-panned share (mid energy over mid+side energy) within the
     vocal band 200 Hz to 5 kHz is the vocals stem; everything left is the other stem.
The masks sum to one at every time-frequency bin, so the stems always sum back to the mix. It is a
placeholder for real separation: the metadata of every stem set says which separator made it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from pipeline_project.separation.demucs_models import LoadedModel

log = logging.getLogger(__name__)

STEM_NAMES = ("drums", "bass", "other", "vocals")
FALLBACK_NAME = "dsp-fallback (hpss + band and mid/side masks)"


@dataclass
class Separation:
    stems: dict[str, np.ndarray]  # stem -> (2, frames) float32 at the input sample rate
    separator: str  # "demucs", "learned" (separation.learned) or FALLBACK_NAME
    model_name: str | None = None
    weights_source: str | None = None
    weights_sha256: str | None = None
    device: str = "cpu"
    settings: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "separator": self.separator,
            "model_name": self.model_name,
            "weights_source": self.weights_source,
            "weights_sha256": self.weights_sha256,
            "device": self.device,
            **self.settings,
        }


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def separate_with_demucs(
    mix: np.ndarray,
    sample_rate: int,
    loaded: LoadedModel,
    device: str = "cpu",
    shifts: int = 0,
    overlap: float = 0.25,
    segment: float | None = None,
) -> Separation:
    """Run demucs.apply.apply_model on a (2, frames) mix, normalized the way the demucs CLI does it."""
    import torch
    from demucs.apply import apply_model

    model = loaded.model
    model_rate = int(model.samplerate)
    audio = mix
    if sample_rate != model_rate:
        import librosa

        audio = librosa.resample(mix, orig_sr=sample_rate, target_sr=model_rate, res_type="soxr_hq")
    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    reference = wav.mean(0)
    mean, std = reference.mean(), reference.std() + 1e-8
    with torch.no_grad():
        estimates = apply_model(
            model,
            ((wav - mean) / std)[None],
            device=device,
            shifts=shifts,
            split=True,
            overlap=overlap,
            progress=False,
            segment=segment,
        )[0]
    estimates = (estimates * std + mean).cpu().numpy()
    by_name = dict(zip(model.sources, estimates))
    stems = {name: by_name.get(name, np.zeros_like(estimates[0])) for name in STEM_NAMES}
    for extra in set(model.sources) - set(STEM_NAMES):  # e.g. guitar and piano of htdemucs_6s
        stems["other"] = stems["other"] + by_name[extra]
    if sample_rate != model_rate:
        import librosa

        stems = {
            k: librosa.resample(v, orig_sr=model_rate, target_sr=sample_rate, res_type="soxr_hq")
            for k, v in stems.items()
        }
    frames = mix.shape[1]
    stems = {k: _fit_length(v, frames).astype(np.float32) for k, v in stems.items()}
    return Separation(
        stems,
        "demucs",
        loaded.name,
        loaded.source,
        loaded.weights_sha256,
        device,
        {"shifts": shifts, "overlap": overlap, "segment": segment},
    )


def demucs_chunk_seconds(loaded: LoadedModel, chunk_s: float, crossfade_s: float, overlap: float) -> float:
    """The window length nearest `chunk_s` whose audio (window plus crossfade) is a whole number of Demucs
    strides. apply_model starts a segment at every stride of its input (offsets 0, stride, 2 stride, ... up
    to the input's length), so any other length pays for a segment that is mostly padding."""
    model = loaded.model
    segment = float(getattr(model, "segment", 0) or getattr(getattr(model, "models", [None])[0], "segment", 0) or 0)
    if segment <= 0:
        return chunk_s
    rate = int(model.samplerate)
    stride_s = int((1 - overlap) * int(rate * segment)) / rate  # the same integer arithmetic as apply_model
    strides = max(1, round((chunk_s + crossfade_s) / stride_s))
    while strides * stride_s <= 3 * crossfade_s:  # a window must be longer than its two crossfades
        strides += 1
    return strides * stride_s - crossfade_s


def _fit_length(audio: np.ndarray, frames: int) -> np.ndarray:
    if audio.shape[1] >= frames:
        return audio[:, :frames]
    return np.pad(audio, ((0, 0), (0, frames - audio.shape[1])))


FALLBACK_N_FFT = 4096  # about 10.8 Hz bins at 44.1 kHz: enough to tell a bass note from a kick
FALLBACK_HOP = 1024


def harmonic_share(mid_magnitude: np.ndarray) -> np.ndarray:
    """The harmonic share of every bin of a (bins, frames) magnitude spectrogram: librosa's median-filter HPSS
    masks, normalised so the harmonic and percussive shares sum to one (the percussive share is one minus it).
    The fallback's one costly step, so the learned separator's training computes it once per render."""
    import librosa

    harmonic, percussive = librosa.decompose.hpss(mid_magnitude, kernel_size=17, margin=1.0, mask=True)
    return (harmonic / (harmonic + percussive + 1e-10)).astype(np.float32)


def fallback_masks(
    harmonic: np.ndarray, mid_power: np.ndarray, side_power: np.ndarray, sample_rate: int, n_fft: int
) -> np.ndarray:
    """The fallback's four masks, (4, bins, frames) in `STEM_NAMES` order, from each bin's harmonic share and the
    mid and side power: drums are the percussive share, bass the harmonic share below about 200 Hz, vocals the
    centre-panned harmonic share within 200 Hz to 5 kHz, other the rest. They sum to one at every bin."""
    import librosa

    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)[:, None]
    low = 1.0 / (1.0 + (freqs / 200.0) ** 4)  # smooth low-pass around 200 Hz
    vocal_band = (1.0 - low) * (1.0 / (1.0 + (freqs / 5000.0) ** 4))
    centre = mid_power / (mid_power + side_power + 1e-10)
    drums = 1.0 - harmonic
    bass = harmonic * low
    vocals = harmonic * (1.0 - low) * vocal_band * centre
    other = np.clip(1.0 - drums - bass - vocals, 0.0, 1.0)
    masks = {"drums": drums, "bass": bass, "other": other, "vocals": vocals}
    return np.stack([np.broadcast_to(masks[name], harmonic.shape) for name in STEM_NAMES]).astype(np.float32)


def separate_with_fallback(
    mix: np.ndarray, sample_rate: int, n_fft: int = FALLBACK_N_FFT, hop: int = FALLBACK_HOP
) -> Separation:
    """The DSP fallback described in the module docstring."""
    import librosa

    spectra = np.stack([librosa.stft(channel, n_fft=n_fft, hop_length=hop) for channel in mix])  # (2, bins, frames)
    mid = 0.5 * (spectra[0] + spectra[1])
    side = 0.5 * (spectra[0] - spectra[1])
    masks = fallback_masks(harmonic_share(np.abs(mid)), np.abs(mid) ** 2, np.abs(side) ** 2, sample_rate, n_fft)
    frames = mix.shape[1]
    stems = {}
    for index, name in enumerate(STEM_NAMES):
        stems[name] = np.stack(
            [
                librosa.istft(spectra[c] * masks[index], hop_length=hop, n_fft=n_fft, length=frames)
                for c in range(mix.shape[0])
            ]
        ).astype(np.float32)
    return Separation(stems, FALLBACK_NAME, settings={"n_fft": n_fft, "hop": hop})
