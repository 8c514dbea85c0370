"""What the identification benchmarks share (`bench_retrieval.py`, `bench_streaming.py`, `bench_song_index.py`):
rendered tracks, the concert chain, and the song embedding trained the way the `song_embedding` asset trains
it, cached so the three benchmarks use one model.

Tracks are music21 chorales with a generated rhythm section, rendered by FluidSynth through the SoundFonts on
this machine with a sampled human performance. The first `train_tracks` chorales train the embedding (and
make the crowd noise); the chorales after them are catalogs the embedding never heard: the evaluation catalog
(the next `catalog_tracks`), then a development catalog, where a benchmark tunes what it tunes, of the rest
(the corpus has 349 chorales outside the reserved pieces and the analysis test split: 17 with the defaults).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline_project.audio.features import LogMelSettings, log_mel
from pipeline_project.augmentation.chains import NoisePool, apply_chain, sample_chain
from pipeline_project.synthesis.arrangement import from_corpus
from pipeline_project.synthesis.corpus_split import corpus_chorales, split_of
from pipeline_project.synthesis.grooves import GROOVE_STYLES, with_rhythm_section
from pipeline_project.synthesis.performance import perform, sample_humanization
from pipeline_project.synthesis.render import available_soundfonts, render
from pipeline_project.training.embedding import WINDOW_FRAMES, EmbeddingSettings, build_model, train_embedding

PAIR_FRAMES = 86  # two-second windows, as in the concert_pairs dataset
SETTINGS = LogMelSettings()
CALIBRATION_TRACKS = 16  # training tracks the crowd noise and the int8 calibration windows come from
CACHE = Path(__file__).resolve().parent.parent / "data" / "benchmarks" / "concert_catalog"


def chorales(count: int, skip: int) -> list[str]:
    """Chorales of the music21 corpus that are neither reserved nor in the analysis test split (the accuracy
    benchmark's pieces)."""
    names = [n for n in corpus_chorales() if split_of(n) != "test"]
    return names[skip : skip + count]


def render_track(name: str, index: int, soundfonts: dict) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(1000 + index)
    score = from_corpus(name)
    meter = tuple(int(x) for x in score.time_signature.split("/"))
    styles = [s for s, style in GROOVE_STYLES.items() if style["meter"] == meter] or [
        s for s, style in GROOVE_STYLES.items() if style["meter"] == (4, 4)
    ]
    arrangement = with_rhythm_section(score, styles[index % len(styles)], seed=index)
    names = sorted(soundfonts)
    performance = perform(
        arrangement,
        float(rng.integers(72, 132)),
        seed=index,
        humanization=sample_humanization(rng),
        soundfont=names[index % len(names)],
    )
    rendered = render(performance, soundfonts)
    return rendered.mix, rendered.sample_rate


def concert(audio: np.ndarray, rate: int, seed: int, pool: NoisePool, snr_db: float | None = None) -> np.ndarray:
    return apply_chain(
        audio, rate, sample_chain(["concert"], seed=seed, pool_ids=pool.ids(), snr_db=snr_db), pool
    ).audio


def training_pairs(
    tracks: list[tuple[np.ndarray, int]], pool: NoisePool, variants: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean and concert windows of the same moments, and the track of each pair."""
    clean_windows, degraded_windows, owners = [], [], []
    for index, (audio, rate) in enumerate(tracks):
        clean = log_mel(audio, rate, SETTINGS)
        for variant in range(variants):
            degraded = log_mel(concert(audio, rate, seed=index * 100 + variant, pool=pool), rate, SETTINGS)
            frames = min(clean.shape[1], degraded.shape[1])
            for start in range(0, frames - PAIR_FRAMES + 1, PAIR_FRAMES // 4):
                clean_windows.append(clean[:, start : start + PAIR_FRAMES])
                degraded_windows.append(degraded[:, start : start + PAIR_FRAMES])
                owners.append(index)
    return np.stack(clean_windows), np.stack(degraded_windows), np.array(owners)


@dataclass
class Setup:
    """The trained embedding, the catalogs as {chorale: (audio, rate)}, the crowd noise, and the calibration
    windows (training windows, clean and degraded) int8 quantization needs."""

    model: object
    development: dict
    evaluation: dict
    pool: NoisePool
    calibration: np.ndarray
    n_mels: int


def crowd_pool(train_tracks: list) -> NoisePool:
    # Crowds are made of other music: renders of the training chorales, never of a catalog's.
    return NoisePool(
        {f"crowd-{i}": audio for i, (audio, _) in enumerate(train_tracks[:CALIBRATION_TRACKS])}, train_tracks[0][1]
    )


def cache_folder(train_tracks: int, variants: int, settings: EmbeddingSettings) -> Path:
    key = {"train_tracks": train_tracks, "variants": variants, **settings.to_dict()}
    return CACHE / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def cached_model(train_tracks: int = 300, variants: int = 3, steps: int = 3000, batch_size: int = 128):
    """The embedding `bench_retrieval.py` trained with these arguments (its defaults here), or None."""
    import torch

    settings = EmbeddingSettings(steps=steps, batch_size=batch_size)
    path = cache_folder(train_tracks, variants, settings) / "model.pt"
    if not path.exists():
        return None
    model = build_model(SETTINGS.n_mels, settings)
    model.load_state_dict(torch.load(path))
    return model.eval()


def catalogs(train_tracks: int, catalog_tracks: int) -> tuple[dict, dict]:
    """The development and evaluation catalogs alone, {chorale: (audio, rate)}."""
    soundfonts = available_soundfonts()
    names = chorales(train_tracks + 2 * catalog_tracks, skip=0)[train_tracks:]
    tracks = list({name: render_track(name, train_tracks + i, soundfonts) for i, name in enumerate(names)}.items())
    return dict(tracks[catalog_tracks:]), dict(tracks[:catalog_tracks])


def prepare(train_tracks: int, catalog_tracks: int, variants: int, steps: int, batch_size: int) -> Setup:
    """Render the tracks; train the embedding, or load the one an earlier run with the same arguments cached
    under data/benchmarks/."""
    soundfonts = available_soundfonts()
    started = time.perf_counter()
    names = chorales(train_tracks + 2 * catalog_tracks, skip=0)
    model = cached_model(train_tracks, variants, steps, batch_size)
    # A cached model needs of the training tracks only those the crowd and the int8 calibration are made of.
    training = names[: CALIBRATION_TRACKS if model is not None else train_tracks]
    train = [render_track(name, index, soundfonts) for index, name in enumerate(training)]
    rest = [(name, render_track(name, train_tracks + i, soundfonts)) for i, name in enumerate(names[train_tracks:])]
    print(
        f"rendered {len(train) + len(rest)} tracks with {', '.join(sorted(soundfonts))} in "
        f"{time.perf_counter() - started:.0f} s"
    )
    pool = crowd_pool(train)
    settings = EmbeddingSettings(steps=steps, batch_size=batch_size)
    folder = cache_folder(train_tracks, variants, settings)
    started = time.perf_counter()
    clean, degraded, owners = training_pairs(train, pool, variants)
    # Calibrated on windows of the first CALIBRATION_TRACKS training tracks, clean and degraded: the catalogs
    # and the queries stay unseen.
    first = owners < CALIBRATION_TRACKS
    calibration = np.concatenate([clean[first][::2, :, :WINDOW_FRAMES], degraded[first][::2, :, :WINDOW_FRAMES]])
    if model is not None:
        print(f"embedding loaded from {folder} (trained by an earlier run with the same arguments)")
    else:
        import torch

        model, losses = train_embedding(clean, degraded, settings, tracks=owners)
        model.eval()
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), folder / "model.pt")
        (folder / "settings.json").write_text(
            json.dumps({"train_tracks": train_tracks, "variants": variants, **settings.to_dict()}, indent=2)
        )
        print(
            f"trained on {len(clean)} pairs of two-second windows from {train_tracks} tracks, {steps} steps, "
            f"loss {losses[0]} -> {losses[-1]}, {time.perf_counter() - started:.0f} s (cached in {folder})"
        )
    return Setup(
        model,
        dict(rest[catalog_tracks:]),
        dict(rest[:catalog_tracks]),
        pool,
        calibration,
        clean.shape[1],
    )
