"""The learned offline separator (model family `stem_separator`): a small mask network the pipeline trains on its
own rendered multitracks (`training.train_separator`), for machines without pretrained Demucs weights.

How it separates a stereo mix:
1. STFT of both channels (`N_FFT`, `HOP`, at `SAMPLE_RATE`; other rates are resampled there and back);
2. features: log magnitudes of the mid (L+R) and side (L-R) signals, so centre-panned voices can be told apart;
3. `MaskNetwork` gives one mask per stem and bin, softmax-normalised over the four stems, so the stems always
   sum back to the mix, as the DSP fallback's do;
4. each mask times both channels' spectra, inverse STFT.

`MaskNetwork` has two paths whose logits add up:
- local: fixed cues at every bin, at full resolution: how far the bin stands out of the nine frames around it
  (a hit stands out along time), of the nine bins around it (a partial stands out along frequency), and how far
  it is panned (side over mid); the cue harmonic/percussive separation and the fallback's centre mask use;
- context: each frame's spectrum projected to `width` features, dilated convolutions at half the frame rate
  hearing about three seconds on either side, then a per-bin logit for every stem and a per-frame weighting of
  the local cues (so the context decides how the cues are read: a hit in a bar with drums, a consonant in one
  without). Convolutions rather than a recurrent layer: a GRU's backward pass took most of a training step on
  two cores.
The network is exported to ONNX and run with onnxruntime, as the learned analysers are.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline_project.separation.separator import STEM_NAMES, Separation

log = logging.getLogger(__name__)

SAMPLE_RATE = 44_100
N_FFT = 2048
HOP = 512
BINS = N_FFT // 2 + 1
LOG_FLOOR = 1e-4
SHIPPED_SEPARATOR = Path(__file__).resolve().parent.parent / "models" / "stem_separator.onnx"
NAME = "learned"  # stems.json: separator "learned", model_name "stem_separator", its version and sha256
# Dilations of the context convolutions, at half the STFT frame rate: about 3 s heard on either side.
CONTEXT_DILATIONS = (1, 2, 4, 8, 16, 32, 64)


def features(spectra: np.ndarray) -> np.ndarray:
    """(2 channels, BINS, frames) complex spectra -> (1, 2, BINS, frames) float32 log magnitudes of mid and side."""
    mid, side = 0.5 * (spectra[0] + spectra[1]), 0.5 * (spectra[0] - spectra[1])
    return np.log(np.stack([np.abs(mid), np.abs(side)]) + LOG_FLOOR).astype(np.float32)[None]


def network(width: int = 256):
    """The torch module; imported lazily so inference needs only onnxruntime."""
    import torch
    from torch import nn
    from torch.nn import functional

    stems, cues = len(STEM_NAMES), 3

    class MaskNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.project = nn.Sequential(nn.Linear(2 * BINS, width), nn.LayerNorm(width), nn.Tanh())
            self.context = nn.ModuleList(
                nn.Sequential(nn.Conv1d(width, width, 3, dilation=d, padding=d), nn.GELU()) for d in CONTEXT_DILATIONS
            )
            self.per_bin = nn.Sequential(
                nn.Linear(2 * width, width // 2), nn.GELU(), nn.Linear(width // 2, stems * BINS)
            )
            self.weighting = nn.Linear(2 * width, stems * cues)
            self.cue_by_bin = nn.Parameter(torch.zeros(stems, cues, BINS, 1))
            with torch.no_grad():  # start near uniform masks and near-identity context layers: a stable start
                self.weighting.weight.mul_(0.1)
                self.per_bin[-1].weight.mul_(0.1)
                for layer in self.context:
                    layer[0].weight.mul_(0.1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """(batch, 2, BINS, frames) log magnitudes -> (batch, 4, BINS, frames) masks summing to one."""
            batch, _, bins, frames = x.shape
            mid, side = x[:, :1], x[:, 1:]
            hit_like = mid - functional.avg_pool2d(mid, (1, 9), 1, (0, 4), count_include_pad=False)  # out of its frames
            partial_like = mid - functional.avg_pool2d(
                mid, (9, 1), 1, (4, 0), count_include_pad=False
            )  # out of its bins
            # (batch, cues, bins, frames), scaled and bounded so no cue can saturate the softmax on its own
            local = torch.tanh(0.2 * torch.cat([hit_like, partial_like, side - mid], 1))
            projected = self.project(x.permute(0, 3, 1, 2).reshape(batch, frames, 2 * bins))
            # The context runs at half the frame rate (its job is seconds of context, the cues keep the detail).
            heard = functional.avg_pool1d(projected.transpose(1, 2), 2, 2, ceil_mode=True)
            for layer in self.context:
                heard = heard + layer(heard)
            heard = heard.transpose(1, 2).repeat_interleave(2, dim=1)[:, :frames]
            state = torch.cat([projected, heard], -1)  # (batch, frames, 2 width)
            logits = self.per_bin(state).view(batch, frames, stems, bins).permute(0, 2, 3, 1)
            weights = self.weighting(state).view(batch, frames, stems, cues).permute(0, 2, 3, 1)  # (b, s, c, t)
            for cue in range(cues):
                logits = logits + local[:, cue : cue + 1] * (
                    weights[:, :, cue : cue + 1] + self.cue_by_bin[:, cue][None]
                )
            return torch.softmax(logits, dim=1)

    return MaskNetwork()


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
    """(4, BINS, frames) masks of one window's (2, BINS, frames) spectra."""
    session = _session(str(loaded.path), loaded.sha256)
    return session.run(None, {"log_magnitudes": features(spectra)})[0][0]


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
