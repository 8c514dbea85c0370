"""Separation of a whole file in chunks, so memory stays flat however long the song is.

The file is read in windows of `chunk_s` seconds (about two minutes; for Demucs a whole number of its
segments, see `separator.demucs_chunk_seconds`) plus `crossfade_s` of overlap with the next window; each
window is separated on its own, and the overlaps are crossfaded linearly, which hides the seams (Demucs
itself works in segments of a few seconds, so minutes of context per window lose it nothing). Stems are
streamed into FLAC files beside their final names and renamed only when every stem is complete, so a killed
run never leaves a half-written stem behind.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline_project.files import PARTIAL_SUFFIX, partial_path
from pipeline_project.layout import stem_file
from pipeline_project.memory import return_freed_memory
from pipeline_project.separation.separator import STEM_NAMES, Separation

# Each seam between windows computes its crossfade twice and may round up to one more Demucs segment, so
# windows of about two minutes (rather than one) leave most songs of three to five minutes with no segment
# more than a whole-song apply_model; memory follows the window, not the song.
DEFAULT_CHUNK_S = 120.0
DEFAULT_CROSSFADE_S = 1.0


def separate_file(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    separate: Callable[[np.ndarray, int], Separation],
    chunk_s: float = DEFAULT_CHUNK_S,
    crossfade_s: float = DEFAULT_CROSSFADE_S,
    progress: Callable[[float], None] | None = None,
) -> Separation:
    """Write `<out_dir>/<stem>.flac` for every stem of `source`; returns the first window's Separation with
    its stems dropped (it describes the separator, model and settings)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"*{PARTIAL_SUFFIX}"):
        stale.unlink()
    partial = {name: partial_path(stem_file(out_dir, name)) for name in STEM_NAMES}
    described: Separation | None = None
    with ExitStack() as stack:
        reader = stack.enter_context(sf.SoundFile(str(source)))
        rate, total = reader.samplerate, reader.frames
        chunk, fade = max(1, int(chunk_s * rate)), max(0, int(crossfade_s * rate))
        writers = {
            name: stack.enter_context(
                sf.SoundFile(str(path), "w", rate, reader.channels, subtype="PCM_24", format="FLAC")
            )
            for name, path in partial.items()
        }
        start, tail = 0, None
        while start < total:
            end = min(total, start + chunk + fade)
            reader.seek(start)
            window = np.ascontiguousarray(reader.read(end - start, dtype="float32", always_2d=True).T)
            separation = separate(window, rate)
            stems = separation.stems
            if described is None:  # what made the stems, without holding on to the first window's audio
                described = copy.copy(separation)
                described.stems = {}
            head = 0
            if tail is not None:
                head = min(fade, end - start)
                ramp = np.linspace(0.0, 1.0, head, dtype=np.float32)
                for name in STEM_NAMES:
                    mixed = tail[name][:, :head] * (1.0 - ramp) + stems[name][:, :head] * ramp
                    writers[name].write(np.clip(mixed, -1.0, 1.0).T)
            last = end >= total
            keep = (end - start) if last else (end - start - fade)
            for name in STEM_NAMES:
                writers[name].write(np.clip(stems[name][:, head:keep], -1.0, 1.0).T)
            tail = None if last else {name: stems[name][:, keep:].copy() for name in STEM_NAMES}
            del separation, stems, window
            return_freed_memory()
            if progress:
                progress(end / total)
            start = end if last else end - fade
    for name, path in partial.items():
        os.replace(path, stem_file(out_dir, name))
    described.settings = {**described.settings, "chunk_s": chunk_s, "crossfade_s": crossfade_s}
    return described
