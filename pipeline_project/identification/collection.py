"""The song index of the user's collection: every song's window embeddings by one embedding version (kept in
the song's folder, so a rebuild embeds only songs new to that version), gathered into a `SongIndex`, and
measured the way the index benchmark measures it: recall of the nearest window's song against exact search,
and the latency of one window's search; and how far ahead seeded noise puts a song in it
(`streaming.noise_score`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pipeline_project.audio.io import read_audio
from pipeline_project.files import write_npz_atomic
from pipeline_project.identification import catalog, streaming
from pipeline_project.layout import SongFolder


@dataclass(frozen=True)
class IndexedCollection:
    index: catalog.SongIndex
    vectors: np.ndarray  # every window's float embedding, in the index's order
    embedded: int  # songs embedded this time (the others' embeddings were kept from before)
    skipped: list[str]  # songs without decoded audio


def song_windows(song: SongFolder, embedder, version: str) -> tuple[np.ndarray, np.ndarray]:
    """The song's window embeddings and their start times by embedding `version`: kept ones when they were made
    by it, else made from its decoded audio and kept."""
    if song.window_embeddings.exists():
        with np.load(song.window_embeddings) as kept:
            if str(kept["version"]) == version:
                return kept["vectors"], kept["times"]
    audio, rate = read_audio(song.audio)
    vectors, times = catalog.catalog_embeddings(embedder, audio, rate)
    write_npz_atomic(song.window_embeddings, vectors=vectors, times=times, version=np.array(version))
    return vectors, times


def index_collection(songs: dict[str, SongFolder], embedder, version: str, info: dict, log=None) -> IndexedCollection:
    """A song index over `songs` ({partition key: folder}) with the embedding `embedder` of `version`."""
    embedded, skipped, windows = 0, [], []
    for number, (key, song) in enumerate(sorted(songs.items()), start=1):
        if not song.audio.exists():
            skipped.append(key)
            continue
        fresh = not song.window_embeddings.exists()
        windows.append((key, *song_windows(song, embedder, version)))
        embedded += fresh
        if log and number % 100 == 0:
            log(f"song index: {number} of {len(songs)} songs read")
    dim = next((vectors.shape[1] for _, vectors, _ in windows if len(vectors)), 64)
    index = catalog.build(windows, dim=dim, info={**info, "embedding_version": version}, log=log)
    # How far ahead of the others noise puts a song in this index: an answer's lead must be noise_margin times it.
    index.info["noise_score"] = streaming.noise_score(index, embedder) if index.size else 0.0
    vectors = np.concatenate([v.reshape(-1, dim) for _, v, _ in windows]) if windows else np.zeros((0, dim), np.float32)
    return IndexedCollection(index, vectors, embedded, skipped)


def measure(index: catalog.SongIndex, vectors: np.ndarray, queries: int = 200, seed: int = 0) -> dict:
    """recall@1 (the nearest window's song, against exact search of the float `vectors` the index was built
    from) and p50/p95 latency of one window's search, on catalog windows moved away from themselves as far
    as a concert query moves (cosine 0.8); and the memory the index holds."""
    import faiss

    if index.size == 0:
        return {"recall_at_1": None, "p50_ms": None, "p95_ms": None, "memory_mib": 0.0}
    rng = np.random.default_rng(seed)
    chosen = vectors[rng.choice(index.size, min(queries, index.size), replace=False)]
    noise = rng.standard_normal(chosen.shape).astype(np.float32)
    noise -= (noise * chosen).sum(axis=1, keepdims=True) * chosen
    noise /= np.linalg.norm(noise, axis=1, keepdims=True) + 1e-12
    probes = np.ascontiguousarray(0.8 * chosen + 0.6 * noise, dtype=np.float32)
    _, found = index.search(probes, 1)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _, truth = exact.search(probes, 1)
    recall = float(np.mean(index.track_of_vector[found[:, 0]] == index.track_of_vector[truth[:, 0]]))
    latencies = []
    for probe in probes:
        started = time.perf_counter()
        index.search(probe[None])
        latencies.append((time.perf_counter() - started) * 1e3)
    return {
        "recall_at_1": round(recall, 4),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p95_ms": round(float(np.percentile(latencies, 95)), 3),
        "memory_mib": round(index.memory_bytes() / 2**20, 2),
    }
