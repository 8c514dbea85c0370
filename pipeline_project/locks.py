"""An exclusive lock between processes on one machine, held on a file (POSIX `flock`)."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(lock_file: Path):
    """Hold the lock on `lock_file` (created with its folder) for the block; other processes wait."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
