"""The song index and the streaming recognizer on rendered grooves, with a fixed random projection of each
log-mel window as the embedding (the mechanics under test do not depend on what the embedding learned): an
excerpt is found with its offset, exactly and approximately; the index survives a save and load; a broken file
is named; a stream is answered within seconds, stays on its answer, and noise gets no answer; the audio a
stream keeps stays bounded; an answer needs a clearer lead than seeded noise gives a song in the index."""

import numpy as np
import pytest

from pipeline_project.identification import catalog as song_catalog
from pipeline_project.identification.streaming import (
    PRESETS,
    AnswerPolicy,
    RecognizerSettings,
    StreamingRecognizer,
    noise_score,
)
from pipeline_project.synthesis.grooves import groove_only
from pipeline_project.synthesis.performance import STEADY_TEMPO, perform
from pipeline_project.synthesis.render import render

STYLES = ("rock", "funk", "disco", "jazz_ride", "half_time")


class RandomProjection:
    """A window with each band's mean taken out (what is left is how the window moves), standardized, times a
    fixed Gaussian matrix, normalized: the classic random-projection hash."""

    def __init__(self, n_mels: int = 128, frames: int = 43, dim: int = 64, seed: int = 0):
        self.matrix = np.random.default_rng(seed).standard_normal((n_mels * frames, dim)).astype(np.float32)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        flat = (windows - windows.mean(axis=2, keepdims=True)).reshape(len(windows), -1)
        flat = (flat - flat.mean(axis=1, keepdims=True)) / (flat.std(axis=1, keepdims=True) + 1e-6)
        vectors = flat @ self.matrix
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def melody(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A seeded line of decaying tones, a new pitch every 0.2 to 0.5 s: a groove repeats every bar, and the
    line makes every moment of a track, and so its offset, unique."""
    rng = np.random.default_rng(100 + seed)
    line, start = np.zeros(int(seconds * rate), np.float32), 0
    while start < len(line):
        length = int(rng.uniform(0.2, 0.5) * rate)
        t = np.arange(min(length, len(line) - start)) / rate
        pitch = 440.0 * 2 ** ((rng.integers(57, 84) - 69) / 12)
        line[start : start + len(t)] = np.sin(2 * np.pi * pitch * t) * np.exp(-3 * t)
        start += length
    return line


@pytest.fixture(scope="module")
def catalog() -> dict[str, tuple[np.ndarray, int]]:
    tracks = {}
    for seed, style in enumerate(STYLES):
        audio = render(perform(groove_only(style, 12, seed), 96 + 9 * seed, seed=seed, humanization=STEADY_TEMPO))
        mix = audio.mix / np.abs(audio.mix).max()
        tracks[style] = (
            mix + 0.5 * melody(mix.shape[1] / audio.sample_rate, audio.sample_rate, seed),
            audio.sample_rate,
        )
    return tracks


@pytest.fixture(scope="module")
def embedder():
    return RandomProjection()


def built(catalog, embedder, **options) -> song_catalog.SongIndex:
    return song_catalog.build(
        ((track, *song_catalog.catalog_embeddings(embedder, audio, rate)) for track, (audio, rate) in catalog.items()),
        dim=64,
        **options,
    )


def with_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=audio.shape).astype(np.float32)
    return audio + noise * np.sqrt(np.mean(audio**2) / np.mean(noise**2) / 10 ** (snr_db / 10))


@pytest.mark.parametrize("approximate_from", [10**9, 1], ids=["exact", "ivf-sq8"])
def test_an_excerpt_is_found_with_its_offset(catalog, embedder, approximate_from, tmp_path):
    index = built(catalog, embedder, approximate_from=approximate_from, nprobe=64)
    assert index.kind == ("exact" if approximate_from > 1 else "ivf-sq8")
    assert index.size == sum(len(song_catalog.catalog_embeddings(embedder, a, r)[0]) for a, r in catalog.values())
    assert 0 < index.memory_bytes() < 10 * index.size * 64 * 4
    loaded = song_catalog.SongIndex.load(index.save(tmp_path / "song_index.npz"))
    assert (loaded.tracks, loaded.size, loaded.kind, loaded.nprobe) == (index.tracks, index.size, index.kind, 64)
    for seed, track in enumerate(STYLES):
        audio, rate = catalog[track]
        start = 2.3 + seed
        excerpt = with_noise(audio[:, int(start * rate) : int((start + 4) * rate)], 10.0, seed)
        vectors, times = song_catalog.query_embeddings(embedder, excerpt, rate)
        for searched in (index, loaded):
            matches = searched.identify(vectors, times)
            assert matches[0].track == track, f"{track}: {matches[:3]}"
            assert abs(matches[0].offset - start) <= searched.hop_seconds, (matches[0].offset, start)
            assert len(matches) == 1 or matches[0].score > matches[1].score


def test_a_missing_or_broken_index_file_is_named(tmp_path):
    with pytest.raises(song_catalog.SongIndexError, match="no song index here"):
        song_catalog.SongIndex.load(tmp_path / "song_index.npz")
    (tmp_path / "broken.npz").write_bytes(b"not an index")
    with pytest.raises(song_catalog.SongIndexError, match="broken.npz: not a readable song index"):
        song_catalog.SongIndex.load(tmp_path / "broken.npz")


def stream(recognizer: StreamingRecognizer, audio: np.ndarray, rate: int, chunk_seconds: float = 0.1) -> list:
    chunk = int(chunk_seconds * rate)
    answers = []
    for start in range(0, audio.shape[-1], chunk):
        answers.extend(recognizer.feed(audio[..., start : start + chunk], rate))
    return answers


def test_a_stream_is_answered_within_seconds_and_stays_on_its_answer(catalog, embedder):
    index = built(catalog, embedder)
    for seed, track in enumerate(STYLES[:3]):
        audio, rate = catalog[track]
        # A toy embedding: a lower bar than the defaults, which are tuned for the trained one.
        recognizer = StreamingRecognizer(index, embedder, RecognizerSettings(min_score=1.0))
        answers = stream(recognizer, with_noise(audio[:, 3 * rate : 15 * rate], 10.0, seed), rate)
        assert len(answers) == 24 and answers[0].seconds == 0.5 and answers[-1].seconds == 12.0
        first = next(i for i, answer in enumerate(answers) if answer.track is not None)
        # This toy embedding is weaker than a trained one (see benchmarks/bench_streaming.py for those figures).
        assert answers[first].seconds <= 6.0, answers[: first + 1]
        assert all(answer.track == track for answer in answers[first:]), [a.track for a in answers]
        assert abs(answers[-1].offset - 3.0) <= index.hop_seconds and answers[-1].confidence > 0.5
        # What the stream keeps: one window and a hop of audio at 22,050 Hz, and the recent votes.
        assert len(recognizer.audio) < 2 * 22_050
        assert len(recognizer.evidence) <= RecognizerSettings().memory_seconds * 22 + 1


def test_the_strict_preset_waits_for_more_evidence_and_names_the_same_song(catalog, embedder):
    index = built(catalog, embedder)
    audio, rate = catalog["funk"]
    heard = with_noise(audio[:, 2 * rate : 14 * rate], 10.0, 7)
    first = {}
    for name, settings in PRESETS.items():
        answers = stream(StreamingRecognizer(index, embedder, settings), heard, rate)
        named = [answer for answer in answers if answer.track is not None]
        assert named and {answer.track for answer in named} == {"funk"}, (name, answers)
        first[name] = named[0].seconds
    assert first["strict"] > first["default"], first


def test_noise_alone_gets_no_answer(catalog, embedder):
    index = built(catalog, embedder)
    rate = catalog["rock"][1]
    noise = np.random.default_rng(4).normal(size=(2, 20 * rate)).astype(np.float32) * 0.1
    answers = stream(StreamingRecognizer(index, embedder), noise, rate, chunk_seconds=0.37)
    assert len(answers) == 40 and all(answer.track is None for answer in answers)


def test_an_answer_needs_a_clearer_lead_than_noise_gives_a_song_in_the_index(catalog, embedder, tmp_path):
    """The index measures the largest lead over the runner-up that seeded noise gives a song in it; an answer's
    lead must be noise_margin times that, so where noise puts a song as far ahead as the song's own excerpt
    does, the song is not named."""
    index = built(catalog, embedder)
    measured = noise_score(index, embedder)
    assert measured == noise_score(index, embedder) > 0  # seeded probes
    settings = PRESETS["default"]
    audio, rate = catalog["disco"]
    heard = with_noise(audio[:, 2 * rate : 12 * rate], 10.0, 3)
    index.info["noise_score"] = measured
    loaded = song_catalog.SongIndex.load(index.save(tmp_path / "song_index.npz"))
    assert loaded.info["noise_score"] == measured
    recognizer = StreamingRecognizer(loaded, embedder, settings, keep_votes=True)
    assert recognizer.policy.min_lead_score == settings.noise_margin * measured
    named = [answer.track for answer in stream(recognizer, heard, rate) if answer.track is not None]
    assert named and set(named) == {"disco"}, named
    policy = AnswerPolicy(loaded)

    def lead(matches):
        return matches[0].score - (matches[1].score if len(matches) > 1 else 0.0)

    clearest = max(lead(policy.matches_at(s, v)) for s, v in recognizer.heard if v)
    # Had noise put a song as far ahead as this excerpt puts its own, nothing would be named.
    loaded.info["noise_score"] = clearest / settings.noise_margin + 1e-6
    recognizer = StreamingRecognizer(loaded, embedder, settings)
    assert all(answer.track is None for answer in stream(recognizer, heard, rate))


def test_a_stream_keeps_one_sample_rate(catalog, embedder):
    recognizer = StreamingRecognizer(built(catalog, embedder), embedder)
    recognizer.feed(np.zeros(4410, np.float32), 44_100)
    with pytest.raises(ValueError, match="changed from 44100 to 22050 Hz"):
        recognizer.feed(np.zeros(2205, np.float32), 22_050)
