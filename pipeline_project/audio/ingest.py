"""The drop folder: which songs are in it (by content hash) and how rejected files are put aside."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from pipeline_project.audio.io import content_hash, is_song_file
from pipeline_project.files import write_text_atomic

# Re-hashing unchanged files on every sensor tick would read the whole collection; a file's key is cached
# by (path, size, mtime) for the life of the process.
_hash_cache: dict[tuple[str, int, int], str] = {}


def song_files(incoming: Path) -> list[Path]:
    if not incoming.is_dir():
        return []
    return sorted(p for p in incoming.rglob("*") if is_song_file(p))


def file_key(path: Path) -> str:
    stat = path.stat()
    cache_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if cache_key not in _hash_cache:
        _hash_cache[cache_key] = content_hash(path)
    return _hash_cache[cache_key]


def scan_incoming(incoming: Path) -> dict[str, list[Path]]:
    """Partition key -> the files with that content (duplicates share one key)."""
    found: dict[str, list[Path]] = {}
    for path in song_files(incoming):
        try:
            found.setdefault(file_key(path), []).append(path)
        except OSError:
            continue  # vanished or unreadable between listing and hashing; the next scan sees it again
    return found


def find_song_files(incoming: Path, key: str, hint: str | None = None) -> list[Path]:
    """The files in the drop folder whose content hash is `key`.

    `hint` (a path relative to the drop folder, e.g. from the run that the sensor requested) is checked first,
    so a run hashes only the files of its size (every duplicate has it) instead of the whole collection; the full
    scan is the fallback. Every duplicate's name matters: the privacy audit looks for all of them in the datasets.
    """
    if hint:
        candidate = (incoming / hint).resolve()
        if incoming.resolve() in candidate.parents and is_song_file(candidate) and file_key(candidate) == key:
            size = candidate.stat().st_size
            same_size = [p for p in song_files(incoming) if p.resolve() != candidate and _size(p) == size]
            return [candidate, *(p for p in same_size if _key_or_none(p) == key)]
    return scan_incoming(incoming).get(key, [])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _key_or_none(path: Path) -> str | None:
    try:
        return file_key(path)
    except OSError:
        return None


REASON_SUFFIX = ".reason.txt"


def quarantine_file(path: Path, quarantine: Path, reason: str) -> Path:
    """Move a rejected file into the quarantine folder with `<name>.reason.txt` beside it; returns the new path."""
    quarantine.mkdir(parents=True, exist_ok=True)
    target = quarantine / path.name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = quarantine / f"{path.stem}.{stamp}{path.suffix}"
    shutil.move(str(path), target)
    write_text_atomic(
        target.with_name(target.name + REASON_SUFFIX),
        f"file: {path.name}\nreason: {reason}\nquarantined_at: {datetime.now(UTC).isoformat(timespec='seconds')}\n",
    )
    return target


def quarantine_reason(quarantined: Path) -> str:
    """Why `quarantine_file` put this file aside, from its reason file."""
    reason_file = quarantined.with_name(quarantined.name + REASON_SUFFIX)
    if not reason_file.exists():
        return "see the quarantine folder"
    return next(
        (line.split(":", 1)[1].strip() for line in reason_file.read_text().splitlines() if line.startswith("reason:")),
        "see its reason file",
    )


def relative_name(path: Path, incoming: Path) -> str:
    """The file's path under the drop folder (artist and album folders are private too), or its name."""
    for base in (incoming, incoming.resolve()):
        if base in path.parents:
            return path.relative_to(base).as_posix()
    return path.name


def song_name(record: dict) -> str:
    """How a person knows a song (`song.json`): "artist - title" from its tags, "" without either."""
    return " - ".join(str(record[field]) for field in ("artist", "title") if record.get(field))
