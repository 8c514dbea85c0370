"""Concert-robust song embedding: a small CNN maps one second of log-mel spectrogram to a unit vector, trained
with NT-Xent so that a window of a clean track and the same moment heard through a concert (PA, arena,
crowd or noise) land together and apart from everything else in the batch.

Inputs are (n_mels, WINDOW_FRAMES) log-mel windows in dB (`audio.features.log_mel` settings); the network
normalizes each window itself, so a query's level and the catalog's never need to agree. Retrieval over a
catalog and the ONNX exports live in `training.retrieval`.

The network sees each window twice: as it is, and with every frame's spectral envelope taken out
(`spectral_contrast`). A crowd or an arena raises whole regions of the spectrum, and a window normalized as
a whole is then mostly that; the contrast view keeps the partials and drum hits that stick out of their
neighbourhood, which is what tells one moment of music from another. On the retrieval benchmark's
development set this view alone took top-1 at 0 dB from 0.26 to 0.53 at equal training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WINDOW_FRAMES = 43  # one second at the default log-mel settings (22,050 Hz, hop 512)


@dataclass(frozen=True)
class EmbeddingSettings:
    """dim: embedding size; width: channels of the first convolution (doubling twice); steps, batch_size,
    learning_rate, temperature: NT-Xent training; max_shift: frames a positive may be offset from its anchor,
    so a query need not start on a catalog window; seed: every random choice in training."""

    dim: int = 64
    width: int = 32
    steps: int = 400
    batch_size: int = 64
    learning_rate: float = 2e-3
    temperature: float = 0.05
    max_shift: int = 4
    seed: int = 7

    def to_dict(self) -> dict:
        return asdict(self)


CONTRAST_BANDS = 7  # the neighbourhood a mel band is compared with: about a third of an octave above 1 kHz


def spectral_contrast(windows, bands: int = CONTRAST_BANDS):
    """(batch, n_mels, frames) dB -> each value minus the mean of the `bands` mel bands around it in the same
    frame: a smooth spectral envelope (EQ, a room's colour, broadband noise) becomes zero, peaks stay."""
    batch, n_mels, frames = windows.shape
    columns = windows.transpose(1, 2).reshape(batch * frames, 1, n_mels)
    envelope = F.avg_pool1d(columns, bands, stride=1, padding=bands // 2, count_include_pad=False)
    return windows - envelope.reshape(batch, frames, n_mels).transpose(1, 2)


def _standardized(x):
    return (x - x.mean(dim=(1, 2), keepdim=True)) / (x.std(dim=(1, 2), keepdim=True) + 1e-3)


class SongEmbedder(nn.Module):
    """(batch, n_mels, WINDOW_FRAMES) dB windows -> (batch, dim) unit vectors. Defined at module level so
    MLflow can save and load it by reference."""

    def __init__(self, n_mels: int, dim: int, width: int):
        super().__init__()

        def block(cin: int, cout: int) -> list:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

        # Halving the mel axis first costs little accuracy and a quarter of the compute of every layer after.
        self.features = nn.Sequential(
            nn.AvgPool2d((2, 1)),
            *block(2, width),
            *block(width, 2 * width),
            *block(2 * width, 4 * width),
            *block(4 * width, 4 * width),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * width * (n_mels // 32) * (WINDOW_FRAMES // 16), 4 * width),
            nn.ReLU(),
            nn.Linear(4 * width, dim),
        )

    def forward(self, windows):
        views = torch.stack([_standardized(spectral_contrast(windows)), _standardized(windows)], dim=1)
        embedding = self.head(self.features(views))
        return embedding / (embedding.norm(dim=1, keepdim=True) + 1e-8)


def build_model(n_mels: int, settings: EmbeddingSettings = EmbeddingSettings()) -> SongEmbedder:
    torch.manual_seed(settings.seed)
    return SongEmbedder(n_mels, settings.dim, settings.width)


def nt_xent(anchors, positives, temperature: float):
    """Normalized-temperature cross entropy over the 2N views of a batch of N pairs."""
    views = torch.cat([anchors, positives])
    similarity = views @ views.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    n = anchors.shape[0]
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(similarity, targets)


def _crops(
    clean: np.ndarray, degraded: np.ndarray, rng: np.random.Generator, max_shift: int
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned one-second crops of (batch, n_mels, frames) pairs, the positive offset by up to max_shift frames."""
    frames = clean.shape[2]
    start = rng.integers(0, frames - WINDOW_FRAMES + 1, len(clean))
    shift = rng.integers(-max_shift, max_shift + 1, len(clean))
    moved = np.clip(start + shift, 0, frames - WINDOW_FRAMES)
    index = np.arange(WINDOW_FRAMES)
    rows = np.arange(len(clean))[:, None]
    anchors = clean.transpose(0, 2, 1)[rows, start[:, None] + index].transpose(0, 2, 1)
    positives = degraded.transpose(0, 2, 1)[rows, moved[:, None] + index].transpose(0, 2, 1)
    return np.ascontiguousarray(anchors), np.ascontiguousarray(positives)


def _spread_batch(groups: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` pair indices drawn from as many groups as possible: every group once before any group twice."""
    order = np.concatenate([rng.permutation(len(groups)) for _ in range(-(-size // len(groups)))])[:size]
    chosen = [
        rng.choice(groups[g], size=count, replace=count > len(groups[g]))
        for g, count in zip(*np.unique(order, return_counts=True))
    ]
    return np.concatenate(chosen)


def train_embedding(
    clean: np.ndarray,
    degraded: np.ndarray,
    settings: EmbeddingSettings = EmbeddingSettings(),
    tracks: np.ndarray | None = None,
    log=None,
) -> tuple[object, list[float]]:
    """Train on (pairs, n_mels, frames >= WINDOW_FRAMES) clean and degraded windows of the same moments;
    returns the model (in eval mode) and the loss every 50 steps.

    `tracks` names the track of each pair. A batch then spreads over as many tracks as it can: every other
    pair in a batch is a negative, and two pairs of one track (often the same moment through two concerts)
    would be pushed apart where retrieval wants them together. On the retrieval benchmark's development set,
    one pair per track took top-1 at 0 dB from 0.66 to 0.72 at equal training."""
    if len(clean) < 2:
        raise ValueError(f"contrastive training needs at least 2 pairs, got {len(clean)}")
    if clean.shape[2] < WINDOW_FRAMES:
        raise ValueError(f"windows of {clean.shape[2]} frames are shorter than the model's {WINDOW_FRAMES}")
    rng = np.random.default_rng(settings.seed)
    model = build_model(clean.shape[1], settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.learning_rate, total_steps=settings.steps)
    batch = min(settings.batch_size, len(clean))
    owners = np.arange(len(clean)) if tracks is None else np.asarray(tracks)
    by_owner = np.argsort(owners, kind="stable")
    groups = np.split(by_owner, np.unique(owners[by_owner], return_index=True)[1][1:])
    losses, running = [], []
    model.train()
    for step in range(settings.steps):
        chosen = _spread_batch(groups, batch, rng)
        anchors, positives = _crops(clean[chosen], degraded[chosen], rng, settings.max_shift)
        loss = nt_xent(model(torch.from_numpy(anchors)), model(torch.from_numpy(positives)), settings.temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(float(loss.detach()))
        if (step + 1) % 50 == 0 or step + 1 == settings.steps:
            losses.append(round(float(np.mean(running)), 4))
            running = []
            if log:
                log(f"embedding step {step + 1}/{settings.steps}: NT-Xent loss {losses[-1]}")
    model.eval()
    return model, losses


def embed(model, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(n, n_mels, WINDOW_FRAMES) windows -> (n, dim) float32 unit vectors, with a torch model or anything
    that has `embed` (the ONNX runners)."""
    if hasattr(model, "embed"):
        return model.embed(windows)
    out = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            out.append(
                model(
                    torch.from_numpy(np.ascontiguousarray(windows[start : start + batch_size], dtype=np.float32))
                ).numpy()
            )
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
