"""The learned separator's corpus: rendered multitracks heard in a listening condition, with the stems a
separator should give back.

The renders are planned exactly as the analysers' (`analysis_corpus.plan_renders`: training pieces through the
training SoundFonts, validation pieces through the held-out ones, reserved pieces never), so the two corpora
share one definition of held out. Each render is kept as one .npz file named by its plan's digest:
- `mix`: the stereo mix heard in the render's condition (room, PA, noise, limiter), float16;
- `stems`: the mid signal of drums, bass, other and vocals as heard there without the noise
  (`analysis_corpus.heard_stems`), float16, shape (4, frames).
Only the stems' mid signal is kept: the separator masks both channels with one mask, so the mid is what its
loss needs, at half the memory. Renders are capped at `MAX_SECONDS` (slow pieces would otherwise dominate).
Beside each render, `<digest>.harmonic.npy` keeps the harmonic share of its mix's mid spectrogram on the separator's
grid (`separator.harmonic_share`, float16): the fallback's masks are the network's input, and their median filters
would otherwise cost more than the training step itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline_project.files import atomic_path
from pipeline_project.parallel import map_in_processes
from pipeline_project.separation import learned
from pipeline_project.separation.separator import STEM_NAMES, harmonic_share
from pipeline_project.training import analysis_corpus
from pipeline_project.training.analysis_corpus import RenderPlan, apply_condition, heard_stems, render_stems

MAX_SECONDS = 40.0


def _write(job: tuple[RenderPlan, dict[str, Path], Path]) -> str:
    plan, catalog, folder = job
    path = folder / f"{plan.digest()}.npz"
    if path.exists():
        return path.name
    rendered, _ = render_stems(plan, catalog)
    rate = rendered.sample_rate
    mix = apply_condition(rendered.mix, rate, plan.condition, plan.seed)
    heard = heard_stems(rendered.stems, rate, plan.condition, plan.seed)
    frames = min(mix.shape[1], int(MAX_SECONDS * rate))
    stems = np.stack([heard[name][:, :frames].mean(axis=0) for name in STEM_NAMES])
    meta = {"plan": asdict(plan), "sample_rate": rate}
    with atomic_path(path) as temporary:
        np.savez(
            temporary,
            mix=mix[:, :frames].astype(np.float16),
            stems=stems.astype(np.float16),
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        )
    return path.name


def build(plans: list[RenderPlan], folder: Path, catalog: dict[str, Path], workers: int = 0, log=print) -> list[Path]:
    """Render every plan not yet in `folder`; the paths of all of them, in plan order."""
    return analysis_corpus.build(plans, folder, catalog, workers, log, write=_write)


def _harmonic_path(path: Path) -> Path:
    return path.with_suffix(".harmonic.npy")


def _write_harmonic(path: Path) -> str:
    cache = _harmonic_path(path)
    if not cache.exists():
        import librosa

        with np.load(path) as data:
            mid = data["mix"].astype(np.float32).mean(axis=0)
        spectrum = np.abs(librosa.stft(mid, n_fft=learned.N_FFT, hop_length=learned.HOP))
        with atomic_path(cache) as temporary, open(temporary, "wb") as handle:
            np.save(handle, harmonic_share(spectrum).astype(np.float16))
    return cache.name


def prepare_harmonic(paths: list[Path], workers: int = 0, log=print) -> None:
    """Compute the harmonic share of every render that has none yet (about 2 s a render on one core)."""
    missing = [p for p in paths if not _harmonic_path(p).exists()]
    if missing:
        log(f"harmonic shares of {len(missing)} renders (the fallback's masks, the separator's input)")
        for done, _ in enumerate(map_in_processes(_write_harmonic, missing, workers), start=1):
            if done % 50 == 0 or done == len(missing):
                log(f"  {done}/{len(missing)} harmonic shares")


def load(path: Path, harmonic: bool = False) -> dict:
    """A render: `mix`, `stems`, `meta`, and with `harmonic` its harmonic share (see `prepare_harmonic`)."""
    with np.load(path) as data:
        example = {"mix": data["mix"], "stems": data["stems"], "meta": json.loads(bytes(data["meta"]).decode())}
    if harmonic:
        example["harmonic"] = np.load(_harmonic_path(path))
    return example
