"""The landmark fingerprinter (the retrieval benchmark's Shazam-style peer) on rendered music: a noisy excerpt
finds its track at the right offset, and noise alone finds nothing that agrees."""

import numpy as np
import pytest

from pipeline_project.synthesis.grooves import groove_only
from pipeline_project.synthesis.performance import STEADY_TEMPO, perform
from pipeline_project.synthesis.render import render
from pipeline_project.training.landmarks import LandmarkIndex, LandmarkSettings, constellation, landmarks

STYLES = ("rock", "funk", "disco", "jazz_ride")


@pytest.fixture(scope="module")
def catalog() -> dict[str, tuple[np.ndarray, int]]:
    tracks = {}
    for seed, style in enumerate(STYLES):
        audio = render(perform(groove_only(style, 8, seed), 100 + 7 * seed, seed=seed, humanization=STEADY_TEMPO))
        tracks[style] = (audio.mix, audio.sample_rate)
    return tracks


def with_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=audio.shape).astype(np.float32)
    gain = np.sqrt(np.mean(audio**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return audio + gain * noise


def test_peaks_pair_into_hashes_inside_the_target_zone(catalog):
    settings = LandmarkSettings()
    audio, rate = catalog["rock"]
    peaks = constellation(audio, rate, settings)
    seconds = audio.shape[-1] / rate
    assert 5 * seconds < len(peaks) <= settings.peaks_per_second * seconds
    assert np.all(np.diff(peaks[:, 0]) >= 0), "peaks come in time order"
    hashes, anchors = landmarks(peaks, settings)
    assert len(hashes) == len(anchors) and len(hashes) <= settings.fan_out * len(peaks)
    assert np.all((hashes & 0x3F) >= 1) and np.all((hashes & 0x3F) <= settings.max_dt)


def test_a_noisy_excerpt_finds_its_track_and_noise_alone_finds_none(catalog):
    index = LandmarkIndex()
    for track, (audio, rate) in catalog.items():
        assert index.add(track, audio, rate) > 100
    for seed, track in enumerate(STYLES):
        audio, rate = catalog[track]
        excerpt = audio[:, 3 * rate : 8 * rate]  # 5 s from 3 s in
        ranked = index.ranked(with_noise(excerpt, 5.0, seed), rate)
        assert ranked[0][0] == track, f"{track}: {ranked}"
        assert ranked[0][1] >= 10 and (len(ranked) == 1 or ranked[0][1] >= 3 * ranked[1][1])
    noise = np.random.default_rng(9).normal(size=(2, 5 * rate)).astype(np.float32) * 0.1
    assert max(index.scores(noise, rate).values(), default=0) < 5
