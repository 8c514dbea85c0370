"""The learned analysers: small torch networks trained on the renders' frame targets, exported to ONNX.

- `BeatNetwork`: log-mel frames -> beat and downbeat activations. A convolutional front end over time and
  frequency, then a temporal convolutional network of dilated 1-D convolutions (receptive field ~20 s),
  as in Böck & Davies' TCN beat trackers. Decoded by `analysis.decoding.decode_beats`.
- `HarmonyNetwork`: log-frequency frames -> chord (root x quality, or N), bass pitch class and local key.
  Convolutions over time and pitch (shared across transpositions), a linear projection per frame, then a
  bidirectional GRU so each frame hears the phrase around it. Decoded per beat and per bar by Viterbi.

Training draws random excerpts of the corpus and, for harmony, transposes each by -5..+6 semitones (the
log-frequency axis shifts by three bins a semitone, the labels' roots and keys move with it), so every key
is seen with every chord shape. Every random choice comes from the recorded seed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline_project.analysis import frames
from pipeline_project.files import atomic_path, write_text_atomic

BEAT_EXCERPT = 1000  # 10 s of beat frames
HARMONY_EXCERPT = 220  # 20 s of harmony frames


@dataclass(frozen=True)
class TrainingSettings:
    seed: int = 0
    steps: int = 2400  # a fixed count, not a time budget, so the same seed gives the same weights anywhere
    batch: int = 8
    learning_rate: float = 2e-3
    width: int = 32  # channels; a GPU can take 64 or more
    hidden: int = 64  # the harmony network's recurrent units each way; a GPU can take 256


# The harmony network's setting for a GPU (`make train-analysis TRAIN_ANALYSIS_ARGS="--harmony-size gpu
# --harmony-device cuda"`): the default network is underfit at 2 cores' budget (training loss = validation loss);
# measured on 2026-12-04 on one H200, validation chord majmin 0.894 against 0.850 for the default setting (five
# sizes and batches compared at about five minutes each: README "Learned analysers").
HARMONY_ON_GPU = {"steps": 8000, "batch": 64, "learning_rate": 2e-3, "width": 96, "hidden": 256}


def harmony_settings(size: str, seed: int, steps: int, width: int) -> TrainingSettings:
    """The harmony network's settings: the beat network's (`size` "cpu") or `HARMONY_ON_GPU` ("gpu")."""
    if size == "gpu":
        return TrainingSettings(seed=seed, **HARMONY_ON_GPU)
    if size != "cpu":
        raise ValueError(f"unknown harmony size {size!r}: cpu or gpu")
    return TrainingSettings(seed=seed, steps=steps, width=width)


class BeatNetwork(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        self.front = nn.Sequential(
            nn.Conv2d(1, 8, (3, 3), padding=(1, 1)),
            nn.ELU(),
            nn.MaxPool2d((1, 3)),
            nn.Dropout(0.1),
            nn.Conv2d(8, 16, (3, 3), padding=(1, 1)),
            nn.ELU(),
            nn.MaxPool2d((1, 3)),
            nn.Dropout(0.1),
            nn.Conv2d(16, width, (1, frames.MEL_BANDS // 9)),
            nn.ELU(),
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(width, width, 5, dilation=d, padding=2 * d), nn.ELU(), nn.Dropout(0.1))
            for d in (1, 2, 4, 8, 16, 32, 64, 128, 256)
        )
        self.head = nn.Conv1d(width, 2, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, MEL_BANDS) -> (batch, frames, 2) logits of beat and downbeat."""
        x = self.front(features.unsqueeze(1))  # (batch, width, frames, 1)
        x = x.squeeze(3)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x).transpose(1, 2)


class HarmonyNetwork(nn.Module):
    def __init__(self, width: int = 32, hidden: int = 64):
        super().__init__()
        # Thirds of a semitone are pooled to semitones at once: the finer bins only serve to catch notes
        # that are out of tune (detuned voices, a shifted concert pitch).
        self.front = nn.Sequential(
            nn.Conv2d(1, 8, (3, 3), padding=(1, 1)),
            nn.ELU(),
            nn.MaxPool2d((1, frames.BINS_PER_SEMITONE)),
            nn.Conv2d(8, 16, (3, 3), padding=(1, 1)),
            nn.ELU(),
            nn.Dropout(0.1),
            nn.Conv2d(16, width // 2, (3, 3), padding=(1, 1)),
            nn.ELU(),
            nn.Dropout(0.1),
        )
        self.project = nn.Sequential(nn.Linear(width // 2 * frames.SEMITONES, hidden * 2), nn.ELU(), nn.Dropout(0.2))
        self.recurrent = nn.GRU(hidden * 2, hidden, batch_first=True, bidirectional=True)
        self.chord = nn.Linear(hidden * 2, frames.CHORD_CLASSES)
        self.bass = nn.Linear(hidden * 2, frames.NO_BASS + 1)
        self.key = nn.Linear(hidden * 2, frames.KEY_CLASSES)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, frames, HARMONY_BINS) -> logits of chord, bass and key per frame."""
        x = self.front(features.unsqueeze(1))  # (batch, width, frames, SEMITONES)
        x = x.permute(0, 2, 1, 3).flatten(2)
        x, _ = self.recurrent(self.project(x))
        return self.chord(x), self.bass(x), self.key(x)


def _excerpt(length: int, wanted: int, rng: np.random.Generator) -> slice:
    start = int(rng.integers(0, max(1, length - wanted + 1)))
    return slice(start, start + wanted)


def _pad(array: np.ndarray, length: int, value) -> np.ndarray:
    if len(array) >= length:
        return array[:length]
    pad = [(0, length - len(array))] + [(0, 0)] * (array.ndim - 1)
    return np.pad(array, pad, constant_values=value)


def transpose_harmony(features: np.ndarray, chord: np.ndarray, bass: np.ndarray, key: np.ndarray, semitones: int):
    """The excerpt moved by `semitones`: features shift along the log-frequency axis (zeros fill in), roots,
    bass notes and keys move with them."""
    moved = frames.shift_pitch(features, semitones)
    chord = chord.copy()
    pitched = (chord >= 0) & (chord < frames.NO_CHORD)
    chord[pitched] = (chord[pitched] // 12) * 12 + (chord[pitched] % 12 + semitones) % 12
    bass = np.where(bass < frames.NO_BASS, (bass + semitones) % 12, bass)
    key = (key // 12) * 12 + (key % 12 + semitones) % 12
    return moved, chord, bass, key


def beat_batch(corpus: list[dict], size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    features, targets = [], []
    for index in rng.integers(0, len(corpus), size):
        example = corpus[index]
        window = _excerpt(len(example["beat_features"]), BEAT_EXCERPT, rng)
        features.append(_pad(example["beat_features"][window], BEAT_EXCERPT, 0.0))
        both = np.stack([example["beat"][window], example["downbeat"][window]], axis=1)
        targets.append(_pad(both, BEAT_EXCERPT, -1.0))  # -1: padding, not scored
    return torch.from_numpy(np.stack(features)), torch.from_numpy(np.stack(targets))


def harmony_batch(corpus: list[dict], size: int, rng: np.random.Generator, transpose: bool = True):
    features, chords, basses, keys = [], [], [], []
    for index in rng.integers(0, len(corpus), size):
        example = corpus[index]
        window = _excerpt(len(example["harmony_features"]), HARMONY_EXCERPT, rng)
        parts = [example[k][window] for k in ("harmony_features", "chord", "bass", "key")]
        if transpose:
            parts = transpose_harmony(*parts, int(rng.integers(-5, 7)))
        features.append(_pad(parts[0], HARMONY_EXCERPT, 0.0))
        chords.append(_pad(parts[1], HARMONY_EXCERPT, frames.IGNORE))
        basses.append(_pad(parts[2], HARMONY_EXCERPT, frames.IGNORE))
        keys.append(_pad(parts[3], HARMONY_EXCERPT, frames.IGNORE))
    return (
        torch.from_numpy(np.stack(features)),
        torch.from_numpy(np.stack(chords)),
        torch.from_numpy(np.stack(basses)),
        torch.from_numpy(np.stack(keys)),
    )


def beat_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    scored = target >= 0
    # Beats are ~1 frame in 50: weighting them up keeps the network from settling on "never a beat".
    weight = torch.where(target > 0, 8.0, 1.0)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target.clamp(min=0), weight=weight, reduction="none")
    return (loss * scored).sum() / scored.sum().clamp(min=1)


def harmony_loss(outputs, chord, bass, key) -> torch.Tensor:
    chord_logits, bass_logits, key_logits = outputs
    ce = nn.functional.cross_entropy
    return (
        ce(chord_logits.flatten(0, 1), chord.flatten(), ignore_index=frames.IGNORE)
        + 0.5 * ce(bass_logits.flatten(0, 1), bass.flatten(), ignore_index=frames.IGNORE)
        + 0.5 * ce(key_logits.flatten(0, 1), key.flatten(), ignore_index=frames.IGNORE)
    )


def train(
    kind: str,
    train_corpus: list[dict],
    validation_corpus: list[dict],
    settings: TrainingSettings,
    log=print,
    device: str = "cpu",
) -> tuple[nn.Module, dict]:
    """Train one network ('beat' or 'harmony') for settings.steps on `device` (batches are drawn on the CPU
    either way, so the same seed draws the same excerpts); the weights of the best validation loss are kept.
    Returns the network (on the CPU, eval mode) and a record of the run."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    validation_rng = np.random.default_rng(settings.seed + 1)
    network = BeatNetwork(settings.width) if kind == "beat" else HarmonyNetwork(settings.width, settings.hidden)
    network = network.to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    if kind == "beat":
        validation = [beat_batch(validation_corpus, settings.batch, validation_rng) for _ in range(4)]
    else:
        validation = [
            harmony_batch(validation_corpus, settings.batch, validation_rng, transpose=False) for _ in range(4)
        ]

    def step_loss(batch) -> torch.Tensor:
        batch = [part.to(device) for part in batch]
        if kind == "beat":
            return beat_loss(network(batch[0]), batch[1])
        return harmony_loss(network(batch[0]), *batch[1:])

    started, steps, best, best_state, history = time.monotonic(), 0, float("inf"), None, []
    while steps < settings.steps:
        network.train()
        for _ in range(min(25, settings.steps - steps)):
            batch = (
                beat_batch(train_corpus, settings.batch, rng)
                if kind == "beat"
                else harmony_batch(train_corpus, settings.batch, rng)
            )
            loss = step_loss(batch)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            optimizer.step()
            steps += 1
        for group in optimizer.param_groups:  # cosine decay over the run
            group["lr"] = settings.learning_rate * 0.5 * (1 + np.cos(np.pi * min(1.0, steps / settings.steps)))
        network.eval()
        with torch.no_grad():
            value = float(np.mean([step_loss(b).item() for b in validation]))
        history.append([steps, round(float(loss.item()), 4), round(value, 4)])
        if value < best:
            best, best_state = value, {k: v.cpu().clone() for k, v in network.state_dict().items()}
        log(
            f"  {kind}: step {steps}, train loss {loss.item():.4f}, validation loss {value:.4f}, {time.monotonic() - started:.0f} s"
        )
    network = network.cpu()
    network.load_state_dict(best_state)
    network.eval()
    return network, {
        "kind": kind,
        "device": device,
        "seconds": round(time.monotonic() - started),
        "steps": steps,
        "best_validation_loss": round(best, 4),
        "history": history,
        "settings": asdict(settings),
    }


def export_onnx(network: nn.Module, kind: str, path: Path) -> None:
    """ONNX with a dynamic frame axis, written atomically."""
    bins = frames.MEL_BANDS if kind == "beat" else frames.HARMONY_BINS
    example = torch.zeros(1, 400 if kind == "beat" else 64, bins)
    outputs = ["beat_downbeat"] if kind == "beat" else ["chord", "bass", "key"]
    with atomic_path(path) as temporary:
        torch.onnx.export(
            network,
            (example,),
            str(temporary),
            input_names=["features"],
            output_names=outputs,
            dynamic_axes={"features": {1: "frames"}, **{o: {1: "frames"} for o in outputs}},
            opset_version=17,
            dynamo=False,
        )


def tempo_histogram(metas: list[dict]) -> list[int]:
    """Renders per 1-BPM bin from decoding.MIN_BPM: the beat decoder's tempo prior."""
    from pipeline_project.analysis.decoding import MAX_BPM, MIN_BPM

    counts = np.zeros(int(MAX_BPM - MIN_BPM), dtype=np.int64)
    for meta in metas:
        beats = np.asarray(meta["beats"])
        if len(beats) < 3:
            continue
        index = int(60.0 / np.median(np.diff(beats)) - MIN_BPM)
        if 0 <= index < len(counts):
            counts[index] += 1
    return counts.tolist()


def write_card(path: Path, card: dict) -> None:
    write_text_atomic(path, json.dumps(card, indent=1) + "\n")
