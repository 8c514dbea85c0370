"""Augmenting the rendered corpus, one example at a time: the work of the `augmented_examples` asset, in
functions a worker process can run (pipeline_project.parallel). Each example draws only on its own seed, so
the output is the same whether one process or several make it.

The noise pool (the rendered vocal stems that babble and crowd noise are made of) is loaded once per process by
`load_noise_pool`, not sent with every example.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline_project.audio.features import LogMelSettings, log_mel, random_windows
from pipeline_project.audio.io import read_audio, write_audio, write_mp3
from pipeline_project.augmentation.chains import NoisePool, apply_chain, sample_chain
from pipeline_project.files import atomic_path, write_text_atomic
from pipeline_project.synthesis.performance import stretch_labels

LISTENING_SAMPLE_SECONDS = 60.0

_noise_pool: NoisePool | None = None


def noise_pool_from(rendered_dir: Path, keys: list[str]) -> NoisePool:
    """Vocal stems of the rendered examples: the voices babble and crowd noise are made of."""
    clips = {}
    for key in keys:
        vocals, _ = read_audio(Path(rendered_dir) / key / "stems" / "vocals.flac")
        if np.any(vocals):
            clips[key] = vocals
    return NoisePool(clips)


def load_noise_pool(rendered_dir: Path, keys: list[str]) -> None:
    """Process initializer: the noise pool every example of this process draws from."""
    global _noise_pool
    _noise_pool = noise_pool_from(rendered_dir, keys)


def _pool() -> NoisePool:
    if _noise_pool is None:
        raise RuntimeError("load_noise_pool must run first in this process")
    return _noise_pool


@dataclass(frozen=True)
class AugmentationJob:
    index: int  # the example's position in the rendered manifest: its seeds derive from it
    key: str
    rendered_dir: Path
    out_dir: Path
    features_dir: Path
    settings: LogMelSettings
    seed: int
    variants: int
    combinations: list[list[str]]
    windows_per_example: int
    window_min_s: float
    window_max_s: float


def write_features(path: Path, audio: np.ndarray, sample_rate: int, settings: LogMelSettings) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, log_mel(audio, sample_rate, settings))


def augment_example(job: AugmentationJob) -> dict:
    """The clean example's features and windows, and `job.variants` augmented variants (mix, moved labels,
    chain record, features). Returns {"entries": manifest entries, "variants": [(augmented key, presets,
    chain)], "audio_seconds": seconds augmented}."""
    mix, sample_rate = read_audio(job.rendered_dir / job.key / "mix.flac")
    labels = json.loads((job.rendered_dir / job.key / "labels.json").read_text())
    write_features(job.features_dir / f"{job.key}.npy", mix, sample_rate, job.settings)
    entries = [
        {
            "key": job.key,
            "variant": "clean",
            "source_example": job.key,
            "chain": None,
            "windows": random_windows(
                labels["duration"], job.seed + job.index, job.windows_per_example, job.window_min_s, job.window_max_s
            ),
        }
    ]
    variants, audio_seconds = [], 0.0
    pool = _pool()
    for variant in range(job.variants):
        presets = job.combinations[(job.index * job.variants + variant) % len(job.combinations)]
        chain = sample_chain(presets, job.seed * 1000 + job.index * 10 + variant, pool.ids())
        augmented = apply_chain(mix, sample_rate, chain, pool)
        aug_key = f"{job.key}-a{variant}"
        aug_labels = stretch_labels(labels, augmented.time_scale, augmented.tuning_cents)
        write_audio(job.out_dir / aug_key / "mix.flac", augmented.audio, sample_rate)
        write_text_atomic(job.out_dir / aug_key / "labels.json", json.dumps(aug_labels))
        record = {
            "augmented_key": aug_key,
            "source_example": job.key,
            "chain": chain,
            "time_scale": augmented.time_scale,
            "tuning_cents": augmented.tuning_cents,
        }
        write_text_atomic(job.out_dir / aug_key / "record.json", json.dumps(record, indent=1))
        write_features(job.features_dir / f"{aug_key}.npy", augmented.audio, sample_rate, job.settings)
        entries.append(
            {
                "key": aug_key,
                "variant": "augmented",
                "source_example": job.key,
                "chain": chain,
                "windows": random_windows(
                    aug_labels["duration"],
                    job.seed + job.index * 100 + variant + 1,
                    job.windows_per_example,
                    job.window_min_s,
                    job.window_max_s,
                ),
            }
        )
        audio_seconds += mix.shape[1] / sample_rate
        variants.append((aug_key, list(presets), chain))
    return {"entries": entries, "variants": variants, "audio_seconds": audio_seconds}


@lru_cache(maxsize=1)  # every preset of a process hears the same clean audio: read it once
def listening_clean(rendered_dir: Path, keys: tuple[str, ...]) -> tuple[np.ndarray | None, int]:
    """About LISTENING_SAMPLE_SECONDS of rendered mixes end to end (None when there are none)."""
    pieces, total, sample_rate = [], 0, 44_100
    for key in keys:
        mix, sample_rate = read_audio(Path(rendered_dir) / key / "mix.flac")
        pieces.append(mix)
        total += mix.shape[1]
        if total >= LISTENING_SAMPLE_SECONDS * sample_rate:
            break
    if not pieces:
        return None, sample_rate
    return np.concatenate(pieces, axis=1)[:, : int(LISTENING_SAMPLE_SECONDS * sample_rate)], sample_rate


def write_listening_sample(job: tuple[str, Path, tuple[str, ...], int, Path]) -> Path | None:
    """`job`: (preset or "clean", rendered folder, example keys, seed, output MP3): the clean listening audio
    through that preset alone, as an MP3. None when there is nothing rendered to listen to."""
    preset, rendered_dir, keys, seed, path = job
    clean, sample_rate = listening_clean(rendered_dir, keys)
    if clean is None:
        return None
    pool = _pool()
    audio = (
        clean
        if preset == "clean"
        else apply_chain(clean, sample_rate, sample_chain([preset], seed, pool.ids()), pool).audio
    )
    write_mp3(path, audio, sample_rate, {})
    return path
