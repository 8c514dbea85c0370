"""The learned offline separator (model family `stem_separator`): a small mask network the pipeline trains on its
own rendered multitracks (`training.train_separator`), for machines without pretrained Demucs weights.

It starts from the DSP fallback and learns what to change. How it separates a stereo mix:
1. STFT of both channels on the fallback's grid (`N_FFT`, `HOP`, at `SAMPLE_RATE`; other rates are resampled
   there and back);
2. features: log magnitudes of the mid (L+R) and side (L-R) signals, so centre-panned voices can be told apart,
   and the fallback's four masks (`separator.fallback_masks`: HPSS, a bass band, a centre-panned vocal band);
3. `MaskNetwork` gives one mask per stem and bin, plus a fifth share for what belongs to no stem (crowd, hiss,
   the noise of a concert hall; trained towards the mix less the stems, so it stays empty where nothing is
   noise), softmax-normalised over the five; the fifth is dropped, so the stems sum back to the mix less what the
   network hears as noise;
4. each stem's mask times both channels' spectra, inverse STFT.

`MaskNetwork`'s logits are the sum of three parts:
- the fallback's masks, as log masks with a learned weight per stem and bin: the network starts as the fallback
  (same grid, same masks) and training moves it only where its renders say the fallback is wrong;
- local: fixed cues at every bin, at full resolution: how far the bin stands out of the nine frames around it
  (a hit stands out along time), of the nine bins around it (a partial stands out along frequency), and how far
  it is panned (side over mid), weighted frame by frame from the context;
- context: each frame's spectrum projected to `width` features, dilated convolutions at half the frame rate
  hearing about three seconds on either side, then a per-bin logit for every stem and for the noise share.
  Convolutions rather than a recurrent layer: a GRU's backward pass took most of a training step on two cores.
The network is exported to ONNX and run with onnxruntime, as the learned analysers are.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline_project.separation.separator import (
    FALLBACK_HOP,
    FALLBACK_N_FFT,
    STEM_NAMES,
    Separation,
    fallback_masks,
    harmonic_share,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 44_100
N_FFT = FALLBACK_N_FFT  # the fallback's grid, so its masks are the network's starting point bin for bin
HOP = FALLBACK_HOP
BINS = N_FFT // 2 + 1
LOG_FLOOR = 1e-4
PRIOR_FLOOR = 1e-3  # a fallback mask of zero still leaves the network room to open the bin
INPUTS = 6  # log |mid|, log |side|, the fallback's four masks
SHIPPED_SEPARATOR = Path(__file__).resolve().parent.parent / "models" / "stem_separator.onnx"
NAME = "learned"  # stems.json: separator "learned", model_name "stem_separator", its version and sha256
# Dilations of the context convolutions, at half the STFT frame rate: about 3 s heard on either side.
CONTEXT_DILATIONS = (1, 2, 4, 8, 16, 32)


def features_of(mid: np.ndarray, side: np.ndarray, harmonic: np.ndarray | None = None) -> np.ndarray:
    """(INPUTS, BINS, frames) float32 network input from the mid and side magnitudes (BINS, frames): their logs and
    the fallback's masks. `harmonic`: the mid's harmonic share where it is already known (training computes it
    once per render), else computed here."""
    if harmonic is None:
        harmonic = harmonic_share(mid)
    prior = fallback_masks(harmonic, mid**2, side**2, SAMPLE_RATE, N_FFT)
    return np.concatenate([np.log(np.stack([mid, side]) + LOG_FLOOR), prior]).astype(np.float32)


def features(spectra: np.ndarray) -> np.ndarray:
    """(2 channels, BINS, frames) complex spectra -> (1, INPUTS, BINS, frames) network input."""
    mid, side = 0.5 * (spectra[0] + spectra[1]), 0.5 * (spectra[0] - spectra[1])
    return features_of(np.abs(mid), np.abs(side))[None]


def network(width: int = 256):
    """The torch module; imported lazily so inference needs only onnxruntime."""
    import torch
    from torch import nn
    from torch.nn import functional

    stems, cues = len(STEM_NAMES), 3
    shares = stems + 1  # the stems, and what belongs to none of them

    class MaskNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.project = nn.Sequential(nn.Linear(2 * BINS, width), nn.LayerNorm(width), nn.Tanh())
            self.context = nn.ModuleList(
                nn.Sequential(nn.Conv1d(width, width, 3, dilation=d, padding=d), nn.GELU()) for d in CONTEXT_DILATIONS
            )
            self.per_bin = nn.Sequential(
                nn.Linear(2 * width, width // 2), nn.GELU(), nn.Linear(width // 2, shares * BINS)
            )
            self.weighting = nn.Linear(2 * width, stems * cues)
            self.cue_by_bin = nn.Parameter(torch.zeros(stems, cues, BINS, 1))
            self.prior_weight = nn.Parameter(torch.ones(stems, BINS, 1))
            # The noise share starts near nothing (e^-6 of the stems'), so the untrained network is the fallback.
            self.noise_bias = nn.Parameter(torch.full((1, BINS, 1), -6.0))
            with torch.no_grad():  # start at the fallback's masks, near-identity context layers: a stable start
                self.weighting.weight.mul_(0.1)
                self.per_bin[-1].weight.mul_(0.1)
                self.per_bin[-1].bias.zero_()
                for layer in self.context:
                    layer[0].weight.mul_(0.1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """(batch, INPUTS, BINS, frames) features -> (batch, 5, BINS, frames) shares summing to one: the four
            stems' masks, then the noise share (trained towards the mix less the stems; `stems_only` drops it)."""
            batch, _, bins, frames = x.shape
            mid, side, prior = x[:, :1], x[:, 1:2], x[:, 2:]
            hit_like = mid - functional.avg_pool2d(mid, (1, 9), 1, (0, 4), count_include_pad=False)  # out of its frames
            partial_like = mid - functional.avg_pool2d(
                mid, (9, 1), 1, (4, 0), count_include_pad=False
            )  # out of its bins
            # (batch, cues, bins, frames), scaled and bounded so no cue can saturate the softmax on its own
            local = torch.tanh(0.2 * torch.cat([hit_like, partial_like, side - mid], 1))
            projected = self.project(x[:, :2].permute(0, 3, 1, 2).reshape(batch, frames, 2 * bins))
            # The context runs at half the frame rate (its job is seconds of context, the cues keep the detail).
            heard = functional.avg_pool1d(projected.transpose(1, 2), 2, 2, ceil_mode=True)
            for layer in self.context:
                heard = heard + layer(heard)
            heard = heard.transpose(1, 2).repeat_interleave(2, dim=1)[:, :frames]
            state = torch.cat([projected, heard], -1)  # (batch, frames, 2 width)
            logits = self.per_bin(state).view(batch, frames, shares, bins).permute(0, 2, 3, 1)
            weights = self.weighting(state).view(batch, frames, stems, cues).permute(0, 2, 3, 1)  # (b, s, c, t)
            stem_logits = logits[:, :stems] + self.prior_weight[None] * torch.log(prior + PRIOR_FLOOR)
            for cue in range(cues):
                stem_logits = stem_logits + local[:, cue : cue + 1] * (
                    weights[:, :, cue : cue + 1] + self.cue_by_bin[:, cue][None]
                )
            noise_logit = logits[:, stems:] + self.noise_bias[None]
            return torch.softmax(torch.cat([stem_logits, noise_logit], 1), dim=1)

    return MaskNetwork()


def stems_only(trained):
    """The module the pipeline runs (and ONNX holds): `trained`'s four stem masks, without the noise share."""
    from torch import nn

    class StemMasks(nn.Module):
        def __init__(self):
            super().__init__()
            self.network = trained

        def forward(self, x):
            return self.network(x)[:, : len(STEM_NAMES)]

    return StemMasks()


@dataclass(frozen=True)
class LoadedSeparator:
    path: Path
    card: dict
    sha256: str

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unregistered"))


def load_separator(path: Path = SHIPPED_SEPARATOR) -> LoadedSeparator | None:
    """The network at `path` and its card (`<name>.json` beside it), or None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    import hashlib

    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return LoadedSeparator(path, card, hashlib.sha256(path.read_bytes()).hexdigest())


@lru_cache(maxsize=4)
def _session(path: str, sha256: str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def masks(spectra: np.ndarray, loaded: LoadedSeparator) -> np.ndarray:
    """(4, BINS, frames) stem masks of one window's (2, BINS, frames) spectra (with the noise share, they sum to
    one)."""
    session = _session(str(loaded.path), loaded.sha256)
    return session.run(None, {"features": features(spectra)})[0][0]


def separate_with_learned(mix: np.ndarray, sample_rate: int, loaded: LoadedSeparator) -> Separation:
    """Separate a (2, frames) mix with the learned mask network."""
    import librosa

    frames = mix.shape[1]
    audio = mix if mix.shape[0] == 2 else np.repeat(mix[:1], 2, axis=0)
    if sample_rate != SAMPLE_RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    spectra = librosa.stft(np.ascontiguousarray(audio, dtype=np.float32), n_fft=N_FFT, hop_length=HOP)
    estimated = masks(spectra, loaded)
    length = audio.shape[1]
    stems = {
        name: librosa.istft(spectra * estimated[i][None], n_fft=N_FFT, hop_length=HOP, length=length)
        for i, name in enumerate(STEM_NAMES)
    }
    if sample_rate != SAMPLE_RATE:
        stems = {
            k: librosa.resample(v, orig_sr=SAMPLE_RATE, target_sr=sample_rate, res_type="soxr_hq")
            for k, v in stems.items()
        }
    stems = {k: np.ascontiguousarray(v[: mix.shape[0], :frames], dtype=np.float32) for k, v in stems.items()}
    return Separation(
        stems,
        NAME,
        model_name="stem_separator",
        weights_source=str(loaded.path),
        weights_sha256=loaded.sha256,
        settings={"version": loaded.version, "n_fft": N_FFT, "hop": HOP},
    )
