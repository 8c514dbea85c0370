"""Beats, downbeats, chords, bass and local keys from the learned analysers (ONNX, run by onnxruntime).

A model set is a folder with `beat_tracker.onnx` and `chord_recognizer.onnx`, each with a model card
(`<name>.json`: version, training data, seed, measured accuracy, and for the beat tracker the tempo
histogram its decoder uses as prior). The project ships a small trained set (`pipeline_project/models/`,
made by `make train-analysis`), so a fresh clone analyses with it; `analysis.mir.analyze` falls back to its
DSP path when no set is available.

The chord recognizer's third head gives the key of every frame; pooled per bar and smoothed by Viterbi it is
the local key that Roman numerals are computed in, so numerals follow modulations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline_project.analysis import decoding, frames

SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models"
MODEL_NAMES = ("beat_tracker", "chord_recognizer")
CHORD_CHANGE_PENALTY = 1.5  # in mean log-probability per beat: a chord must fit clearly better to change
KEY_CHANGE_PENALTY = 4.0  # per bar: a modulation must be heard over a few bars


class ModelSetError(RuntimeError):
    """A model set is missing a file or cannot be loaded."""


@dataclass
class ModelSet:
    folder: Path
    cards: dict[str, dict] = field(default_factory=dict)
    sessions: dict = field(default_factory=dict)

    @property
    def versions(self) -> dict[str, str]:
        return {name: card.get("version", "unknown") for name, card in self.cards.items()}


def available(folder: str | Path | None = None) -> bool:
    folder = Path(folder) if folder else SHIPPED_MODELS
    return all((folder / f"{name}.onnx").is_file() and (folder / f"{name}.json").is_file() for name in MODEL_NAMES)


@lru_cache(maxsize=4)
def load(folder: str | Path | None = None) -> ModelSet:
    """The model set in `folder` (default: the shipped one), with one onnxruntime session per network."""
    import onnxruntime

    folder = Path(folder) if folder else SHIPPED_MODELS
    if not available(folder):
        missing = [f"{n}{s}" for n in MODEL_NAMES for s in (".onnx", ".json") if not (folder / f"{n}{s}").is_file()]
        raise ModelSetError(f"learned analysers in {folder} are incomplete: missing {', '.join(missing)}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # songs are analysed in parallel processes; one thread each
    options.inter_op_num_threads = 1
    models = ModelSet(folder)
    for name in MODEL_NAMES:
        models.cards[name] = json.loads((folder / f"{name}.json").read_text())
        models.sessions[name] = onnxruntime.InferenceSession(str(folder / f"{name}.onnx"), options,
                                                             providers=["CPUExecutionProvider"])
    return models


def _softmax_log(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def activations(models: ModelSet, mono: np.ndarray) -> dict[str, np.ndarray]:
    """Frame activations of 22 050 Hz mono audio: beat and downbeat probabilities (beat grid); chord, bass and
    key log-probabilities (harmony grid)."""
    beat_in = frames.beat_features(mono)[None]
    harmony_in = frames.harmony_features(mono)[None]
    (pulse,) = models.sessions["beat_tracker"].run(None, {"features": beat_in})
    chord, bass, key = models.sessions["chord_recognizer"].run(None, {"features": harmony_in})
    probabilities = 1.0 / (1.0 + np.exp(-pulse[0]))
    return {"beat": probabilities[:, 0], "downbeat": probabilities[:, 1], "chord": _softmax_log(chord[0]),
            "bass": _softmax_log(bass[0]), "key": _softmax_log(key[0])}


def analyze_learned(models: ModelSet, mono: np.ndarray) -> dict:
    """Tempo, beats, downbeats, metre, chords with bass per beat, the key, and local keys per bar."""
    histogram = models.cards["beat_tracker"].get("tempo_histogram")
    return decode(activations(models, mono), len(mono) / frames.RATE, histogram) | {"models": models.versions}


def decode(act: dict[str, np.ndarray], duration: float, histogram: list[int] | None) -> dict:
    """`analyze_learned`'s result from frame activations (see `activations`)."""
    beat_times = decoding.decode_beats(act["beat"], frames.BEAT_FPS, np.asarray(histogram) if histogram else None)
    if len(beat_times) < 2:
        beat_times = np.arange(0.0, duration, 0.5)
    at_beats = np.array([act["downbeat"][max(0, int(round(t * frames.BEAT_FPS)) - 1): int(round(t * frames.BEAT_FPS)) + 2].max()
                         for t in beat_times])
    beats_per_bar, phase, meter_confidence = decoding.choose_meter(at_beats)
    downbeat_times = beat_times[phase::beats_per_bar]
    periods = np.diff(beat_times)
    tempo = float(60.0 / np.median(periods))

    per_beat = decoding.pool_frames(act["chord"], frames.HARMONY_FPS, beat_times, duration)
    path = decoding.viterbi_segments(per_beat, CHORD_CHANGE_PENALTY)
    bass_per_beat = decoding.pool_frames(act["bass"], frames.HARMONY_FPS, beat_times, duration).argmax(axis=1)
    chords = []
    for time, index, scores, bass in zip(beat_times, path, per_beat, bass_per_beat):
        chords.append({"time": round(float(time), 4), "chord": frames.chord_label(int(index)),
                       "confidence": round(float(np.exp(scores[index])), 4),
                       "bass": None if bass == frames.NO_BASS else frames.PITCH_NAMES[int(bass)]})

    bar_starts = downbeat_times if len(downbeat_times) and downbeat_times[0] <= 0.05 else np.append(0.0, downbeat_times)
    per_bar = decoding.pool_frames(act["key"], frames.HARMONY_FPS, bar_starts, duration)
    keys = decoding.viterbi_segments(per_bar, KEY_CHANGE_PENALTY)
    local_keys = []
    for start, index in zip(bar_starts, keys):
        tonic, mode = frames.key_label(int(index))
        if local_keys and local_keys[-1]["tonic"] == tonic and local_keys[-1]["mode"] == mode:
            continue
        local_keys.append({"start": round(float(start), 4), "tonic": tonic, "mode": mode})
    for here, following in zip(local_keys, local_keys[1:] + [{"start": round(duration, 4)}]):
        here["end"] = following["start"]
    whole = act["key"].mean(axis=0)
    key_probabilities = np.exp(whole - whole.max())
    best_key = int(np.argmax(whole))
    tonic, mode = frames.key_label(best_key)
    return {"tempo_bpm": round(tempo, 2), "beat_times": beat_times, "downbeat_times": downbeat_times,
            "beats_per_bar": beats_per_bar, "meter_confidence": round(meter_confidence, 4),
            "tempo_confidence": round(float(np.clip(act["beat"][np.round(beat_times * frames.BEAT_FPS).astype(int).clip(0, len(act["beat"]) - 1)].mean(), 0, 1)), 4),
            "key_tonic": tonic, "key_mode": mode, "key_confidence": round(float(key_probabilities[best_key] / key_probabilities.sum()), 4),
            "local_keys": local_keys, "chords": chords}
