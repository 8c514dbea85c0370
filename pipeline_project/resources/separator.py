"""The separator resource: pretrained Demucs when its weights are on this machine, else the DSP fallback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import dagster as dg
import numpy as np
from pydantic import PrivateAttr

from pipeline_project.errors import SeparatorUnavailableError
from pipeline_project.separation.demucs_models import LoadedModel, load_demucs
from pipeline_project.separation.separator import (
    Separation,
    demucs_chunk_seconds,
    pick_device,
    separate_with_demucs,
    separate_with_fallback,
)
from pipeline_project.separation.streaming import separate_file

log = logging.getLogger(__name__)
REPEAT_LOG = logging.getLogger(f"{__name__}.repeat")
REPEAT_LOG.setLevel(logging.ERROR)


class SeparatorResource(dg.ConfigurableResource):
    """Source separation settings.

    model_name: Demucs model (htdemucs, htdemucs_ft, htdemucs_6s, ... or a signature in model_dir).
    model_dir: local model folder with `<name>.yaml` + `<sig>.th` files, or `<name>.th`; searched first.
    device: "auto" (CUDA when present), "cpu" or "cuda".
    shifts, overlap, segment: passed to demucs.apply.apply_model.
    allow_fallback: when no weights are found, use the DSP fallback instead of failing.
    chunk_seconds, crossfade_seconds: songs are separated in windows of this length, crossfaded over this
    overlap, so memory stays flat for long songs.
    """

    model_name: str = "htdemucs"
    model_dir: Optional[str] = None
    device: str = "auto"
    shifts: int = 0
    overlap: float = 0.25
    segment: Optional[float] = None
    allow_fallback: bool = True
    chunk_seconds: float = 120.0
    crossfade_seconds: float = 1.0

    _loaded: Optional[LoadedModel] = PrivateAttr(default=None)
    _looked_up: bool = PrivateAttr(default=False)

    def model(self) -> Optional[LoadedModel]:
        if not self._looked_up:
            try:
                self._loaded = load_demucs(self.model_name, self.model_dir)
            except Exception as exc:  # weights present but unusable: never fall back silently
                raise SeparatorUnavailableError(
                    f"Demucs model {self.model_name!r}: weights were found but could not be loaded ({exc})") from exc
            self._looked_up = True
        return self._loaded

    def separate(self, mix: np.ndarray, sample_rate: int, logger=log) -> Separation:
        loaded = self.model()
        if loaded is not None:
            device = pick_device(self.device)
            logger.info(f"separating with Demucs {loaded.name} from {loaded.source} on {device}")
            return separate_with_demucs(mix, sample_rate, loaded, device, self.shifts, self.overlap, self.segment)
        where = f"model folder {self.model_dir}, " if self.model_dir else ""
        message = (f"no weights for Demucs model {self.model_name!r} in the {where}Hugging Face cache or torch hub cache; "
                   "see README 'Pretrained Demucs weights'")
        if not self.allow_fallback:
            raise SeparatorUnavailableError(message)
        logger.warning(f"{message}. Using the DSP fallback separator: stems are approximate.")
        return separate_with_fallback(mix, sample_rate)

    def separate_file(self, source: Path, out_dir: Path, logger=log) -> Separation:
        """Stems of an audio file written to `out_dir/<stem>.flac` window by window (see separation.streaming)."""
        if self.chunk_seconds <= 2 * self.crossfade_seconds:
            raise ValueError("chunk_seconds must be more than twice crossfade_seconds")
        announced: list[bool] = []

        def separate_window(window: np.ndarray, sample_rate: int) -> Separation:
            quiet = REPEAT_LOG if announced else logger  # say which separator once, not once per window
            announced.append(True)
            return self.separate(window, sample_rate, logger=quiet)

        def progress(done: float) -> None:
            if done < 1.0:
                logger.info(f"separated {done:.0%}")

        loaded = self.model()
        chunk = (demucs_chunk_seconds(loaded, self.chunk_seconds, self.crossfade_seconds, self.overlap)
                 if loaded is not None and self.segment is None else self.chunk_seconds)
        return separate_file(source, out_dir, separate_window, chunk, self.crossfade_seconds, progress)
