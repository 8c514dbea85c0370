"""The private training export: every usable song of the collection, with its mix, its four stems and its
labels, as WebDataset tar shards a PyTorch loader streams, split by artist.

Why WebDataset: a shard is a plain tar file (any language reads it, `tar tf` lists it), read sequentially, so
a loader streams it from a local disk or a bucket at full speed; it is the format audio trainers already read
(stable-audio-tools, CLAP's training code; Hugging Face `datasets` loads it too, with
`load_dataset("webdataset", ...)`); and its library is small (two dependencies). Hugging Face `datasets` and
Lhotse were the others: the first is better kept but would add a dozen packages for a folder of Parquet files
that holds audio less naturally; Lhotse's manifests are made for speech (supervisions, cuts), not stems.

One sample per song, keyed by its partition key: `mix.flac`, `drums.flac`, `bass.flac`, `other.flac`,
`vocals.flac` (the lake's FLAC files, byte for byte, so the samples are exactly the lake's), `labels.json`
(tempo, beats, downbeats, metre, key and local keys, chords with bass notes, sections), `tags.json` (title,
artist, album, year, genre, grade, source), `analysis.json` and `theory.json` (everything else), `stems.json`
(which separator and model version made the stems). Splits go by
artist (a hash of the artist tag, else of the album, else of the song), so one artist never spans two splits
and a song's split does not change as the collection grows. Shards are written under a temporary folder,
their sha256 put in the manifest, and the folder renamed into place: an export is complete or absent.

It is private: it holds the audio and the tags. It lives in `exports/`, apart from `datasets/` (the
anonymized, privacy-checked tables that may be shared), and no sharing path reads it; the manifest says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline_project.separation.separator import STEM_NAMES

EXPORT_FORMAT = "pipeline_project.training_export/1"
SPLITS = ("train", "validation", "test")
LABEL_FIELDS = (
    "duration_s",
    "tempo_bpm",
    "tempo_curve",
    "beat_times",
    "downbeat_times",
    "time_signature",
    "beats_per_bar",
    "key_tonic",
    "key_mode",
    "local_keys",
    "chords",
    "sections",
)
TAG_FIELDS = ("title", "artist", "album", "year", "genre")
PRIVACY_NOTE = (
    "PRIVATE: this export holds your songs' audio, stems and tags. It is for training on this machine or your "
    "own storage; it is not an anonymized dataset, it never passed the privacy audit, and no sharing path of "
    "pipeline_project reads it. Do not publish it."
)


@dataclass(frozen=True)
class ExportSettings:
    grades: tuple[str, ...] = ("good", "fair")  # songs of these grades are exported (collection_quality)
    validation_share: float = 0.1  # of the artists
    test_share: float = 0.1
    songs_per_shard: int = 64
    max_shard_bytes: int = 1_000_000_000
    seed: int = 0  # of the artist-to-split hash


@dataclass
class SongFiles:
    """What one song contributes: its lake files and its records."""

    key: str
    mix: Path
    stems: dict[str, Path]
    record: dict  # song.json
    analysis: dict
    theory: dict
    stems_record: dict  # stems.json: which separator, weights and model version made the stems
    quality: dict = field(default_factory=dict)  # its decided grade and reasons (collection_quality)


def artist_group(record: dict, key: str) -> str:
    """Who a song belongs to for splitting: its artist tag folded (case, "the", accents of spacing, featured
    artists dropped), else its album, else the song itself."""
    artist = (record.get("artist") or "").lower()
    artist = re.split(r"\s+(?:feat\.?|featuring|ft\.?|with)\s+|\s*[,;/&]\s*", artist)[0]
    artist = re.sub(r"^the\s+", "", re.sub(r"\s+", " ", artist)).strip()
    if artist:
        return f"artist:{artist}"
    album = (record.get("album") or "").strip().lower()
    return f"album:{album}" if album else f"song:{key}"


def split_of(group: str, settings: ExportSettings) -> str:
    """train, validation or test for an artist group: a seeded hash, so it never changes for that artist."""
    digest = hashlib.sha256(f"{settings.seed}:{group}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < settings.test_share:
        return "test"
    return "validation" if position < settings.test_share + settings.validation_share else "train"


def labels_of(analysis: dict) -> dict:
    return {name: analysis[name] for name in LABEL_FIELDS if name in analysis}


def export_id(songs: list[SongFiles], settings: ExportSettings) -> str:
    """The export's name: a hash of what goes in (songs, their records) and the settings, so the same
    collection exports to the same name and an export, once written, is never overwritten."""
    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode())
    for song in sorted(songs, key=lambda s: s.key):
        digest.update(song.key.encode())
        for record in (song.record, song.analysis, song.theory, song.stems_record, song.quality):
            digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def write_export(
    songs: list[SongFiles],
    exports: Path,
    settings: ExportSettings = ExportSettings(),
    versions: dict | None = None,
    log=None,
) -> tuple[Path, dict]:
    """Write the songs whose grade `settings` admits as WebDataset shards under `exports/<export id>/`
    (`<split>/shard-000000.tar`...) with `manifest.json`; returns (folder, manifest). An export that exists
    already is left as it is and returned."""
    import webdataset as wds

    # A song not graded yet (finished after collection_quality last ran) is left out: nothing vouches for it.
    admitted = [s for s in songs if s.quality.get("grade") in settings.grades]
    left_out = {s.key: s.quality.get("grade", "ungraded") for s in songs if s not in admitted}
    name = export_id(admitted, settings)
    final = Path(exports) / name
    if (final / "manifest.json").exists():
        return final, json.loads((final / "manifest.json").read_text())
    staging = Path(exports) / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    started = time.perf_counter()
    by_split: dict[str, list[SongFiles]] = {split: [] for split in SPLITS}
    groups: dict[str, str] = {}
    for song in sorted(admitted, key=lambda s: s.key):
        group = artist_group(song.record, song.key)
        groups[song.key] = group
        by_split[split_of(group, settings)].append(song)
    shards: dict[str, list[dict]] = {}
    digests: dict[str, str] = {}
    open_shards: dict[str, _HashingFile] = {}

    def opened(path: str) -> _HashingFile:
        open_shards[path] = _HashingFile(path)
        return open_shards[path]

    def finished(path: str) -> None:  # the checksum of what was written, without reading the shard again
        digests[path] = open_shards.pop(path).close()

    written_bytes = 0
    for split, members in by_split.items():
        shards[split] = []
        if not members:
            continue
        (staging / split).mkdir(parents=True, exist_ok=True)
        with wds.ShardWriter(
            str(staging / split / "shard-%06d.tar"),
            maxcount=settings.songs_per_shard,
            maxsize=settings.max_shard_bytes,
            mtime=0.0,  # reproducible tar files: the same songs give the same bytes
            verbose=0,
            opener=opened,
            post=finished,
        ) as sink:
            for song in members:
                sink.write(sample_of(song))
        for shard in sorted((staging / split).glob("shard-*.tar")):
            size = shard.stat().st_size
            written_bytes += size
            shards[split].append({"file": f"{split}/{shard.name}", "bytes": size, "sha256": digests[str(shard)]})
        if log:
            log(f"export {name}: {split}: {len(members)} songs in {len(shards[split])} shards")
    manifest = {
        "format": EXPORT_FORMAT,
        "export_id": name,
        "private": True,
        "shareable": False,
        "privacy": PRIVACY_NOTE,
        "settings": asdict(settings),
        "versions": {**dict(versions or {}), **made_by(admitted)},
        "sample_files": [
            "mix.flac",
            *(f"{stem}.flac" for stem in STEM_NAMES),
            "labels.json",
            "tags.json",
            "analysis.json",
            "theory.json",
        ],
        "splits": {
            split: {
                "songs": [song.key for song in members],
                "artist_groups": len({groups[s.key] for s in members}),
                "shards": shards[split],
            }
            for split, members in by_split.items()
        },
        "left_out": {"by_grade": left_out},
        "bytes": written_bytes,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (staging / "PRIVATE.txt").write_text(PRIVACY_NOTE + "\n")
    staging.rename(final)
    return final, json.loads((final / "manifest.json").read_text())


def made_by(songs: list[SongFiles]) -> dict:
    """How many exported songs each separator and each learned analyser version made."""
    separators = Counter(
        " ".join(str(song.stems_record[k]) for k in ("separator", "model_name") if song.stems_record.get(k))
        or "unknown"
        for song in songs
    )
    analysers = Counter(
        f"{name} version {version}" for song in songs for name, version in (song.analysis.get("models") or {}).items()
    )
    return {"separators": dict(separators), "analysis_models": dict(analysers)}


def sample_of(song: SongFiles) -> dict:
    """One WebDataset sample: the lake's FLAC bytes as they are, and the labels and tags as JSON."""
    sample = {"__key__": song.key, "mix.flac": song.mix.read_bytes()}
    for stem in STEM_NAMES:
        sample[f"{stem}.flac"] = song.stems[stem].read_bytes()
    tags = {name: song.record[name] for name in TAG_FIELDS if song.record.get(name)}
    tags["grade"] = song.quality["grade"]
    tags["source_codec"] = song.record.get("source_codec")
    sample["labels.json"] = json.dumps(labels_of(song.analysis)).encode()
    sample["tags.json"] = json.dumps(tags).encode()
    sample["analysis.json"] = json.dumps(song.analysis).encode()
    sample["theory.json"] = json.dumps(song.theory).encode()
    sample["stems.json"] = json.dumps(song.stems_record).encode()
    return sample


class _HashingFile:
    """A shard file being written, hashed as its bytes go by: in 1 MB blocks, on a thread of its own (hashlib
    lets go of the GIL), so the checksum costs the writer next to nothing on a second core."""

    BLOCK = 1 << 20

    def __init__(self, path: str):
        from concurrent.futures import ThreadPoolExecutor

        self.handle = open(path, "wb", buffering=self.BLOCK)  # noqa: SIM115 (closed by the shard writer's `post`)
        self.digest = hashlib.sha256()
        self.hasher = ThreadPoolExecutor(max_workers=1)  # one worker: blocks are hashed in order
        self.pending = bytearray()

    def write(self, data) -> int:
        self.pending += data
        if len(self.pending) >= self.BLOCK:
            self.hasher.submit(self.digest.update, bytes(self.pending))
            self.pending.clear()
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> str:
        self.handle.close()
        self.hasher.submit(self.digest.update, bytes(self.pending))
        self.hasher.shutdown(wait=True)
        return self.digest.hexdigest()
