"""The song index: one embedding per catalog window of every song (a one-second window every `hop` seconds),
searched for the windows nearest a query's, and a query answered by the song whose windows agree with the
query's on one time offset.

Why windows and offsets: a song is identified from a few seconds heard anywhere in it, so the index holds
its windows, not one vector per song. A query is cut into windows far more densely than the catalog (every
`QUERY_HOP_FRAMES`), so some of its windows start within a frame or two of a catalog window whatever the
query's start; those match best, and they agree on the offset between catalog time and query time. Matches
to other songs scatter over offsets; the right song's pile up in one (Wang's landmark idea, applied to
embeddings). Each vote is weighed by how far its catalog window stands above the query window's next
neighbour, so a window close to everything (noise, or one between two catalog windows) hardly counts.

Small catalogs are searched exactly (`IndexFlatIP`); from `APPROXIMATE_FROM` vectors on, by an inverted file
over 8-bit scalar-quantized vectors (FAISS `IVF<lists>,SQ8`): 64 bytes a window instead of 256, `nprobe`
lists searched. The lists are assigned exactly (a flat search of at most 4096 centroids costs a fraction of a
millisecond): an HNSW graph over the centroids, tried first, missed the right list for 4 % of concert queries
whatever `nprobe` was, capping recall at 0.96. The benchmark (`benchmarks/bench_song_index.py`) measures the
recall against exact search, the latency and the memory; 8-bit codes lose 0.005 of recall against 16-bit
ones there, for half the memory.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline_project.audio.features import LogMelSettings, log_mel
from pipeline_project.files import atomic_path
from pipeline_project.training.embedding import WINDOW_FRAMES, embed
from pipeline_project.training.retrieval import sliding_windows

CATALOG_HOP_FRAMES = 43  # a catalog window every second (at 22,050 Hz, hop 512): 64 bytes a second of music
QUERY_HOP_FRAMES = 2  # query windows every 46 ms: one starts within a frame of a catalog window
FRAME_SECONDS = LogMelSettings().hop_length / LogMelSettings().sample_rate
# Windows (seconds of music) from which the index is approximate: exact search of 50,000 takes about 3 ms a
# query window on 2 cores, of 200,000 about 13 ms.
APPROXIMATE_FROM = 50_000
MAX_LISTS = 4096
# Lists searched per query: one in 32 keeps recall@1 of the right track >= 0.98 of exact search (the benchmark).
PROBED_SHARE = 32
SEARCH_NEIGHBOURS = 10  # catalog windows each query window votes with


class SongIndexError(Exception):
    """A song index that cannot be read or used: names the file and the reason."""


@dataclass
class Match:
    track: str
    score: float  # summed weight (similarity above the next neighbour) of the catalog windows agreeing on `offset`
    offset: float  # catalog time minus query time, seconds, to the catalog hop
    windows: int  # catalog windows that agree


@dataclass
class SongIndex:
    """Windows' embeddings of every track with each window's track and start time. Build with `build`."""

    index: object  # a faiss index over unit vectors, inner product
    tracks: list[str]
    track_of_vector: np.ndarray  # (vectors,) int32 index into tracks
    time_of_vector: np.ndarray  # (vectors,) float32 seconds
    hop_seconds: float = CATALOG_HOP_FRAMES * FRAME_SECONDS
    nprobe: int = 128
    info: dict = field(default_factory=dict)  # what made it: model name and version, settings

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def approximate(self) -> bool:
        return self.kind != "exact"

    @property
    def kind(self) -> str:
        import faiss

        return "exact" if isinstance(self.index, faiss.IndexFlat) else "ivf-sq8"

    def memory_bytes(self) -> int:
        """What the index holds in memory: the vectors' codes and ids, the coarse quantizer, and the
        per-vector track and time."""
        import faiss

        sidecar = self.track_of_vector.nbytes + self.time_of_vector.nbytes
        if not self.approximate:
            return self.size * self.index.d * 4 + sidecar
        ivf = faiss.extract_index_ivf(self.index)
        lists = ivf.invlists
        codes = sum(lists.list_size(i) * (lists.code_size + 8) for i in range(ivf.nlist))
        return int(codes + ivf.nlist * ivf.d * 4 + sidecar)  # and the centroids

    def search(self, vectors: np.ndarray, k: int = SEARCH_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, vector numbers) of the `k` nearest catalog windows of each query vector, best first;
        -1 where the index has fewer."""
        import faiss

        if self.approximate:
            ivf = faiss.extract_index_ivf(self.index)
            ivf.nprobe = self.nprobe
            # One window (a streaming hop) is searched fastest by splitting its lists over the threads; a
            # batch of windows by splitting the windows.
            ivf.parallel_mode = 1 if len(vectors) < faiss.omp_get_max_threads() else 0
        return self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)

    def neighbours(self) -> int:
        """How many catalog windows a query window votes for: SEARCH_NEIGHBOURS, fewer in a small catalog (one
        per hundred windows), where ten would cover much of it."""
        return int(min(SEARCH_NEIGHBOURS, max(1, self.size // 100)))

    def window_votes(
        self, vectors: np.ndarray, times: np.ndarray, min_similarity: float = -1.0
    ) -> list[dict[tuple[int, int], tuple[int, float]]]:
        """For each query window starting at `times` (seconds): {(track number, offset bin): (catalog window,
        weight)}. A window votes for its `neighbours()` nearest catalog windows more similar than
        `min_similarity`, giving each (track, bin) its best match once."""
        k = self.neighbours()
        similarities, numbers = self.search(vectors, k + 1)
        out = []
        for row, query_time in enumerate(np.asarray(times, dtype=np.float64)):
            seen: dict[tuple[int, int], tuple[int, float]] = {}
            # A window votes with how far each neighbour stands above the next one after the k it votes
            # for: a window near nothing in particular (noise, or one that starts between two catalog
            # windows) has neighbours all alike and hardly votes; one aligned with its catalog window stands
            # out and carries the vote.
            baseline = float(similarities[row][k]) if numbers[row][k] >= 0 else 0.0
            for similarity, number in zip(similarities[row][:k], numbers[row][:k]):
                if number < 0 or similarity < min_similarity:
                    break
                offset = float(self.time_of_vector[number]) - query_time
                key = (int(self.track_of_vector[number]), int(np.floor(offset / self.hop_seconds)))
                weight = float(similarity) - baseline
                if key not in seen or weight > seen[key][1]:
                    seen[key] = (int(number), weight)
            out.append(seen)
        return out

    @staticmethod
    def tally(window_votes) -> dict[tuple[int, int], dict[int, float]]:
        """{(track, offset bin): {catalog window: its best weight}} over windows' votes. A catalog window counts
        once however many query windows chose it: a steady sound (noise, a held chord) keeps choosing the one
        catalog window most like it, while a song heard for a few seconds matches a new one every second."""
        totals: dict[tuple[int, int], dict[int, float]] = defaultdict(dict)
        for seen in window_votes:
            for key, (number, weight) in seen.items():
                chosen = totals[key]
                if weight > chosen.get(number, 0.0):
                    chosen[number] = weight
        return totals

    def matches(self, totals: dict[tuple[int, int], dict[int, float]]) -> list[Match]:
        """Each voted track's best offset, best first (`tally` gives `totals`). A query window nearest a catalog
        window at offset o lands in o's bin or the next one, so a track's evidence at an offset is the catalog
        windows of a pair of neighbouring bins, each with its best weight."""
        best: dict[int, Match] = {}
        for (track, offset_bin), chosen in totals.items():
            following = totals.get((track, offset_bin + 1))
            merged = (
                chosen
                if not following
                else {**following, **{n: max(w, following.get(n, 0.0)) for n, w in chosen.items()}}
            )
            score = sum(merged.values())
            if track not in best or score > best[track].score:
                best[track] = Match(self.tracks[track], score, (offset_bin + 1) * self.hop_seconds, len(merged))
        return [best[track] for track in sorted(best, key=lambda track: (-best[track].score, track))]

    def identify(self, vectors: np.ndarray, times: np.ndarray) -> list[Match]:
        """The tracks the query windows vote for, best first."""
        return self.matches(self.tally(self.window_votes(vectors, times)))

    def save(self, path: str | os.PathLike) -> Path:
        """One file (npz), written atomically: the serialized FAISS index, the per-vector arrays, the rest as JSON."""
        import faiss

        path = Path(path)
        meta = {"tracks": self.tracks, "hop_seconds": self.hop_seconds, "nprobe": self.nprobe, "info": self.info}
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                index=faiss.serialize_index(self.index),
                track_of_vector=self.track_of_vector,
                time_of_vector=self.time_of_vector,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SongIndex:
        import faiss

        try:
            with np.load(path) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                return cls(
                    faiss.deserialize_index(data["index"]),
                    meta["tracks"],
                    data["track_of_vector"],
                    data["time_of_vector"],
                    meta["hop_seconds"],
                    meta["nprobe"],
                    meta["info"],
                )
        except FileNotFoundError:
            raise SongIndexError(f"{path}: no song index here (materialize song_index first)") from None
        except (OSError, KeyError, ValueError, RuntimeError) as error:
            raise SongIndexError(f"{path}: not a readable song index ({error})") from error


def build(
    windows_of_track,
    dim: int,
    hop_seconds: float = CATALOG_HOP_FRAMES * FRAME_SECONDS,
    approximate_from: int = APPROXIMATE_FROM,
    nprobe: int | None = None,
    info: dict | None = None,
    seed: int = 0,
    log=None,
) -> SongIndex:
    """A song index from `windows_of_track`: (track, (windows, dim) unit vectors, their start times in seconds)
    triples (`catalog_embeddings` gives the last two; windows `hop_seconds` apart), an iterable read once. The
    vectors are gathered first (64 dims x 4 bytes a second of music) to choose the kind and train the
    approximate index on a seeded sample. `nprobe`: lists searched per query (default: one in PROBED_SHARE)."""
    import faiss

    tracks, vectors, owners, times = [], [], [], []
    for track, embeddings, starts in windows_of_track:
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(-1, dim)
        owners.append(np.full(len(embeddings), len(tracks), dtype=np.int32))
        times.append(np.asarray(starts, dtype=np.float32))
        vectors.append(embeddings)
        tracks.append(track)
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    del vectors
    started = time.perf_counter()
    if len(matrix) < approximate_from:
        index = faiss.IndexFlatIP(dim)
    else:
        # FAISS's rule of thumb is 4 to 16 sqrt(n) lists; more than 4096 cost more to train (k-means) than
        # they save in search on two cores.
        lists = int(min(MAX_LISTS, 2 ** round(np.log2(4 * np.sqrt(len(matrix))))))
        index = faiss.index_factory(dim, f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
        nprobe = nprobe or max(1, lists // PROBED_SHARE)
        sample = np.random.default_rng(seed).choice(len(matrix), min(len(matrix), 64 * lists), replace=False)
        index.train(matrix[np.sort(sample)])
    for start in range(0, len(matrix), 1_000_000):
        index.add(matrix[start : start + 1_000_000])
    song_index = SongIndex(
        index,
        tracks,
        np.concatenate(owners) if owners else np.zeros(0, np.int32),
        np.concatenate(times) if times else np.zeros(0, np.float32),
        hop_seconds,
        nprobe or 1,
        dict(info or {}),
    )
    if log:
        log(
            f"song index: {len(tracks)} tracks, {song_index.size} windows, {song_index.kind}, "
            f"{song_index.memory_bytes() / 2**20:.1f} MiB, built in {time.perf_counter() - started:.1f} s"
        )
    return song_index


SILENT_DB = -60.0  # a catalog window whose loudest bin is this far below the track's loudest identifies nothing


def catalog_embeddings(
    embedder, audio: np.ndarray, rate: int, hop_frames: int = CATALOG_HOP_FRAMES
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, start times in seconds) of a catalog track's windows, one every `hop_frames` from its
    start, silent ones left out (none for a track shorter than a window)."""
    windows = sliding_windows(log_mel(audio, rate), hop_frames)
    sounding = windows.reshape(len(windows), -1).max(axis=1) > SILENT_DB if len(windows) else np.zeros(0, bool)
    times = np.flatnonzero(sounding) * hop_frames * FRAME_SECONDS
    return embed(embedder, windows[sounding]), times


def query_embeddings(
    embedder, audio: np.ndarray, rate: int, hop_frames: int = QUERY_HOP_FRAMES
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, start times in seconds) of a query's windows every `hop_frames`; a query shorter than one
    window is padded by repeating its edges."""
    logmel = log_mel(audio, rate)
    if logmel.shape[1] < WINDOW_FRAMES:
        logmel = np.pad(logmel, ((0, 0), (0, WINDOW_FRAMES - logmel.shape[1])), mode="edge")
    windows = sliding_windows(logmel, hop_frames)
    return embed(embedder, windows), np.arange(len(windows)) * hop_frames * FRAME_SECONDS
