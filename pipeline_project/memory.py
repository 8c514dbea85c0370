"""Handing freed memory back to the system between the windows of a long song."""

from __future__ import annotations


def return_freed_memory() -> None:
    """Hand memory freed by the last window back to the system. glibc keeps freed blocks of a few megabytes
    in its heap, where the next window's differently sized blocks fragment them: without this, resident
    memory creeps up window after window on long songs."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
