"""Files written so that no reader ever sees half of one, their temporary names, and files hashed: the one home
of all three. Three kinds of file are on their way to a final name: `atomic_path`'s `.<name>.<random>.tmp<suffix>`,
a file streamed in pieces (`<name>.partial`, the stems) and a folder built in place (`.building-...`, a dataset
snapshot). `is_temporary` knows them all: the object store never uploads them, recovery deletes them."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

HASH_BLOCK = 1 << 20  # files are hashed a megabyte at a time
PARTIAL_SUFFIX = ".partial"  # a file written in pieces, renamed when whole
BUILDING_PREFIX = ".building-"  # a folder built in place, renamed when whole
# Glob patterns of what a killed writer leaves half-written in a folder.
HALF_WRITTEN = (f"*{PARTIAL_SUFFIX}", ".*.tmp*")


def partial_path(path: str | os.PathLike) -> Path:
    """Where `path` is written in pieces before it is renamed to `path`."""
    return Path(f"{path}{PARTIAL_SUFFIX}")


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is one on its way to a final name (any of the three kinds)."""
    return (
        name.startswith(BUILDING_PREFIX) or name.endswith(PARTIAL_SUFFIX) or (name.startswith(".") and ".tmp" in name)
    )


def update_digest(digest, path: str | os.PathLike) -> None:
    """Feed a file's bytes into a hashlib digest, a block at a time (memory stays flat for any size)."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK), b""):
            digest.update(block)


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    update_digest(digest, path)
    return digest.hexdigest()


class atomic_path:
    """Context manager giving a temporary path beside `path`, renamed onto it only on success."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=f".tmp{self.path.suffix}", dir=self.path.parent
        )
        os.close(handle)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp creates 0600; finished files get the usual mode
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_npz_atomic(path: str | os.PathLike, **arrays) -> None:
    """numpy arrays in one .npz file (uncompressed), written atomically."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def write_parquet_atomic(path: str | os.PathLike, table) -> None:
    """A pandas table as one Parquet file, written atomically."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
