"""Augmenting the rendered corpus, one example at a time: the work of the `augmented_examples` asset, in
functions a worker process can run (pipeline_project.parallel). Each example draws only on its own seed, so
the output is the same whether one process or several make it.

The noise pool (the rendered vocal stems that babble and crowd noise are made of) is loaded once per process by
`load_noise_pool`, not sent with every example.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline_project.audio.features import LogMelSettings, log_mel, random_windows
from pipeline_project.audio.io import read_audio, write_audio, write_mp3
from pipeline_project.augmentation.chains import NoisePool, apply_chain, sample_chain
from pipeline_project.files import atomic_path, write_text_atomic
from pipeline_project.layout import SyntheticCorpus
from pipeline_project.parallel import map_in_processes
from pipeline_project.synthesis.performance import stretch_labels

LISTENING_SAMPLE_SECONDS = 60.0

_noise_pool: NoisePool | None = None


def noise_pool_from(corpus: SyntheticCorpus, keys: list[str]) -> NoisePool:
    """Vocal stems of the rendered examples: the voices babble and crowd noise are made of."""
    clips = {}
    for key in keys:
        vocals, _ = read_audio(corpus.rendered_example(key).stem("vocals"))
        if np.any(vocals):
            clips[key] = vocals
    return NoisePool(clips)


def load_noise_pool(corpus: SyntheticCorpus, keys: list[str]) -> None:
    """Process initializer: the noise pool every example of this process draws from."""
    global _noise_pool
    _noise_pool = noise_pool_from(corpus, keys)


def _pool() -> NoisePool:
    if _noise_pool is None:
        raise RuntimeError("load_noise_pool must run first in this process")
    return _noise_pool


@dataclass(frozen=True)
class AugmentationJob:
    index: int  # the example's position in the rendered manifest: its seeds derive from it
    key: str
    corpus: SyntheticCorpus
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
    clean = job.corpus.rendered_example(job.key)
    mix, sample_rate = read_audio(clean.mix)
    labels = json.loads(clean.labels.read_text())
    write_features(job.corpus.features_of(job.key), mix, sample_rate, job.settings)
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
        example = job.corpus.augmented_example(aug_key)
        write_audio(example.mix, augmented.audio, sample_rate)
        write_text_atomic(example.labels, json.dumps(aug_labels))
        record = {
            "augmented_key": aug_key,
            "source_example": job.key,
            "chain": chain,
            "time_scale": augmented.time_scale,
            "tuning_cents": augmented.tuning_cents,
        }
        write_text_atomic(example.record, json.dumps(record, indent=1))
        write_features(job.corpus.features_of(aug_key), augmented.audio, sample_rate, job.settings)
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
def listening_clean(corpus: SyntheticCorpus, keys: tuple[str, ...]) -> tuple[np.ndarray | None, int]:
    """About LISTENING_SAMPLE_SECONDS of rendered mixes end to end (None when there are none)."""
    pieces, total, sample_rate = [], 0, 44_100
    for key in keys:
        mix, sample_rate = read_audio(corpus.rendered_example(key).mix)
        pieces.append(mix)
        total += mix.shape[1]
        if total >= LISTENING_SAMPLE_SECONDS * sample_rate:
            break
    if not pieces:
        return None, sample_rate
    return np.concatenate(pieces, axis=1)[:, : int(LISTENING_SAMPLE_SECONDS * sample_rate)], sample_rate


def write_listening_sample(job: tuple[str, SyntheticCorpus, tuple[str, ...], int, Path]) -> Path | None:
    """`job`: (preset or "clean", the synthetic corpus, example keys, seed, output MP3): the clean listening audio
    through that preset alone, as an MP3. None when there is nothing rendered to listen to."""
    preset, corpus, keys, seed, path = job
    clean, sample_rate = listening_clean(corpus, keys)
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


@dataclass
class AugmentedCorpus:
    """What `augment_corpus` made: the manifest's entries (clean and augmented), each variant's (key, source,
    presets, chain), and timings."""

    entries: list[dict]
    variants: list[tuple[str, str, list[str], dict]]
    audio_seconds: float
    seconds: float


def augment_corpus(
    corpus: SyntheticCorpus,
    settings: LogMelSettings,
    seed: int,
    variants: int,
    combinations: list[list[str]],
    windows: tuple[int, float, float],
    workers: int = 0,
    log=print,
) -> AugmentedCorpus:
    """Every rendered example of the corpus's manifest through `variants` augmentation chains (`combinations`
    drawn in turn), with log-mel features and `windows` (count, shortest, longest in seconds) for the clean and
    augmented examples; then the augmented manifest. Each example draws on its own seeds (from `seed` and its
    position), so the output is the same whatever the number of `workers`."""
    started = time.perf_counter()
    keys = [e["example_key"] for e in json.loads(corpus.rendered_manifest.read_text())["examples"]]
    jobs = [
        AugmentationJob(index, key, corpus, settings, seed, variants, combinations, *windows)
        for index, key in enumerate(keys)
    ]
    result = AugmentedCorpus([], [], 0.0, 0.0)
    pool_setup = {"initializer": load_noise_pool, "initargs": (corpus, keys)}
    for index, done in enumerate(map_in_processes(augment_example, jobs, workers, **pool_setup), 1):
        result.entries += done["entries"]
        result.audio_seconds += done["audio_seconds"]
        result.variants += [(key, keys[index - 1], presets, chain) for key, presets, chain in done["variants"]]
        log(f"[{index}/{len(keys)}] augmented {keys[index - 1]}")
    manifest = {"seed": seed, "features": settings.to_dict(), "examples": result.entries}
    write_text_atomic(corpus.augmented_manifest, json.dumps(manifest, indent=1))
    result.seconds = time.perf_counter() - started
    return result


def write_listening_samples(corpus: SyntheticCorpus, folder: Path, presets: list[str], seed: int, workers: int = 0):
    """A 60 s listening sample (MP3) of the clean rendered mixes through each preset alone, in `folder`; the
    paths written."""
    keys = tuple(e["example_key"] for e in json.loads(corpus.rendered_manifest.read_text())["examples"])
    samples = [(preset, corpus, keys, seed, folder / f"{preset}.mp3") for preset in ("clean", *presets)]
    setup = {"initializer": load_noise_pool, "initargs": (corpus, list(keys))}
    return [path for path in map_in_processes(write_listening_sample, samples, workers, **setup) if path]
