"""The separator resource: pretrained Demucs (downloaded on first use where allowed), else the learned separator
(`separation.learned`, the MLflow champion of `stem_separator`), else the DSP fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import numpy as np
from pydantic import PrivateAttr

from pipeline_project.errors import SeparatorUnavailableError
from pipeline_project.separation.demucs_download import (
    DEMUCS_REMOTE_URL,
    TIMEOUT_S,
    WEIGHTS_SETTINGS,
    OfflineMemory,
    Remote,
    WeightsDownloadError,
    torch_hub_checkpoints,
)
from pipeline_project.separation.demucs_models import LoadedModel, load_demucs
from pipeline_project.separation.learned import LoadedSeparator, separate_with_learned
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
    weights: where no local copy exists, "auto" downloads the pretrained weights once from `weights_url`
      (giving up within seconds when it cannot, then using the fallback), "never" never downloads (local
      weights or the fallback), "always" downloads and fails the run when the weights cannot be had.
    weights_url: demucs's own remote (a mirror with the same layout works too).
    weights_index: a folder with the remote's `files.txt` and `<name>.yaml` (demucs's format), for a mirror
      that hosts other models; default: the index inside the demucs package.
    download_timeout_s: per connect and per read of a download; offline, the fallback starts after about this.
    learned: without Demucs weights, "auto" separates with the learned separator (the champion of the
      `stem_separator` family, which a fresh clone gets from the shipped one) and "never" goes straight to the
      DSP fallback.
    device: "auto" (CUDA when present), "cpu" or "cuda".
    shifts, overlap, segment: passed to demucs.apply.apply_model.
    chunk_seconds, crossfade_seconds: songs are separated in windows of this length, crossfaded over this
    overlap, so memory stays flat for long songs.
    """

    model_name: str = "htdemucs"
    model_dir: str | None = None
    weights: str = "auto"
    weights_url: str = DEMUCS_REMOTE_URL
    weights_index: str | None = None
    download_timeout_s: float = TIMEOUT_S
    learned: str = "auto"
    device: str = "auto"
    shifts: int = 0
    overlap: float = 0.25
    segment: float | None = None
    chunk_seconds: float = 120.0
    crossfade_seconds: float = 1.0

    _loaded: LoadedModel | None = PrivateAttr(default=None)
    _looked_up: bool = PrivateAttr(default=False)
    _missing: str = PrivateAttr(default="")
    _run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run_id  # the offline warning is given once per run

    def model(self, logger=log) -> LoadedModel | None:
        if not self._looked_up:
            if self.weights not in WEIGHTS_SETTINGS:
                raise ValueError(
                    f"separator weights must be one of {', '.join(WEIGHTS_SETTINGS)}, not {self.weights!r}"
                )
            self._loaded = self._find(logger)
            self._looked_up = True
        return self._loaded

    def _find(self, logger) -> LoadedModel | None:
        remote = Remote(
            self.weights_url, Path(self.weights_index) if self.weights_index else None, self.download_timeout_s
        )
        memory = OfflineMemory()
        attempt = f"{self.model_name} from {remote.url} into {torch_hub_checkpoints()}"
        recent_failure = memory.recent_failure(attempt) if self.weights == "auto" else None
        download = self.weights != "never" and not recent_failure
        where = f"model folder {self.model_dir}, " if self.model_dir else ""
        try:
            loaded = load_demucs(self.model_name, self.model_dir, remote, download, log=logger.info)
        except WeightsDownloadError as exc:
            if self.weights == "always":
                raise SeparatorUnavailableError(
                    f"Demucs model {self.model_name!r}: no local weights and the download "
                    f"failed ({exc}); weights=always forbids the fallback"
                ) from exc
            memory.remember(attempt, str(exc))
            self._missing = (
                f"no weights for Demucs model {self.model_name!r} in the {where}Hugging Face or torch hub "
                f"cache, and the download failed ({exc})"
            )
            return None
        except Exception as exc:  # weights present but unusable: never fall back silently
            raise SeparatorUnavailableError(
                f"Demucs model {self.model_name!r}: weights were found but could not be loaded ({exc})"
            ) from exc
        if loaded is None:
            reason = (
                f"not downloading again so soon after a failed download ({recent_failure})"
                if recent_failure
                else "downloads are off (weights=never)"
            )
            self._missing = f"no weights for Demucs model {self.model_name!r} in the {where}Hugging Face or torch hub cache; {reason}"
        return loaded

    def wants_learned(self, logger=log) -> bool:
        """Whether the learned separator would be used: no Demucs weights (looked up, or downloaded, with progress
        in `logger`), and learned separation not switched off."""
        if self.learned not in ("auto", "never"):
            raise ValueError(f"separator learned must be 'auto' or 'never', not {self.learned!r}")
        return self.learned == "auto" and self.model(logger) is None

    def separate(
        self, mix: np.ndarray, sample_rate: int, logger=log, learned: LoadedSeparator | None = None
    ) -> Separation:
        """Stems of a (channels, frames) mix: Demucs where it has weights, else `learned` (the learned separator
        the caller got from the registry, see `MlflowResource.stem_separator`) unless learned=never, else the DSP
        fallback."""
        loaded = self.model(logger)
        if loaded is not None:
            device = pick_device(self.device)
            logger.info(f"separating with Demucs {loaded.name} from {loaded.source} on {device}")
            return separate_with_demucs(mix, sample_rate, loaded, device, self.shifts, self.overlap, self.segment)
        if learned is not None and self.wants_learned(logger):
            message = (
                f"{self._missing}. Using the learned separator (stem_separator {learned.version}, trained on the "
                "project's own renders; see README 'The learned separator')."
            )
            (logger.warning if OfflineMemory().first_warning(self._run_id) else logger.info)(message)
            return separate_with_learned(mix, sample_rate, learned)
        message = (
            f"{self._missing}. Using the DSP fallback separator: stems are approximate "
            "(see README 'Pretrained Demucs weights')."
        )
        (logger.warning if OfflineMemory().first_warning(self._run_id) else logger.info)(message)
        return separate_with_fallback(mix, sample_rate)

    def separate_file(
        self, source: Path, out_dir: Path, logger=log, learned: LoadedSeparator | None = None
    ) -> Separation:
        """Stems of an audio file written to `out_dir/<stem>.flac` window by window (see separation.streaming)."""
        if self.chunk_seconds <= 2 * self.crossfade_seconds:
            raise ValueError("chunk_seconds must be more than twice crossfade_seconds")
        announced: list[bool] = []

        def separate_window(window: np.ndarray, sample_rate: int) -> Separation:
            quiet = REPEAT_LOG if announced else logger  # say which separator once, not once per window
            announced.append(True)
            return self.separate(window, sample_rate, logger=quiet, learned=learned)

        def progress(done: float) -> None:
            if done < 1.0:
                logger.info(f"separated {done:.0%}")

        loaded = self.model(logger)
        chunk = (
            demucs_chunk_seconds(loaded, self.chunk_seconds, self.crossfade_seconds, self.overlap)
            if loaded is not None and self.segment is None
            else self.chunk_seconds
        )
        return separate_file(source, out_dir, separate_window, chunk, self.crossfade_seconds, progress)
