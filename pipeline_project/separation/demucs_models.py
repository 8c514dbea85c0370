"""Finding and loading Demucs weights.

Weights are looked up, in order, in
1. a local model folder (the layout `demucs --repo` uses: `<name>.yaml` listing signatures, `<sig>.th` files,
   or a single `<name>.th`),
2. the Hugging Face hub cache (where `demucs` 4.1 downloads named models), read with local_files_only,
3. the torch hub cache (`~/.cache/torch/hub/checkpoints`, where demucs's own remote downloads land),
and, when a remote is given, downloaded from it into the torch hub cache (`separation.demucs_download`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline_project.files import update_digest
from pipeline_project.separation.demucs_download import (
    Remote,
    WeightsDownloadError,
    fetch_weights,
    torch_hub_checkpoints,
)

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: object  # demucs.apply.BagOfModels or a single demucs model
    name: str
    source: str  # "local model folder <path>" | "huggingface cache" | "torch hub cache" | "downloaded from <url>"
    weights_sha256: str
    weight_files: list[str]


def files_sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        update_digest(digest, path)
    return digest.hexdigest()


def _bag_signatures(yaml_path: Path) -> list[str]:
    return list(yaml.safe_load(yaml_path.read_text())["models"])


def _from_local_folder(name: str, folder: Path) -> LoadedModel | None:
    from demucs.pretrained import get_model

    if not folder.is_dir():
        log.warning("Demucs model folder %s does not exist", folder)
        return None
    if (folder / f"{name}.yaml").is_file():
        sigs = _bag_signatures(folder / f"{name}.yaml")
        files = [f for sig in sigs for f in folder.glob(f"{sig}*.th")]
        if len(files) < len(sigs):
            log.warning(
                "Demucs bag %s in %s lists %d models but only %d weight files are there",
                name,
                folder,
                len(sigs),
                len(files),
            )
            return None
    else:
        files = list(folder.glob(f"{name}.th")) + list(folder.glob(f"{name}-*.th"))
        if not files:
            return None
    model = get_model(name, repo=folder)
    return LoadedModel(model, name, f"local model folder {folder}", files_sha256(files), [str(f) for f in files])


def _from_huggingface_cache(name: str) -> LoadedModel | None:
    try:
        from demucs.apply import BagOfModels
        from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name, load_safetensors_model
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    namespace, short = name.split("/", 1) if "/" in name else (DEFAULT_NAMESPACE, name)
    repo_id = f"{namespace}/{hf_repo_name(short)}"
    try:
        bag_path = Path(hf_hub_download(repo_id, f"{short}.yaml", local_files_only=True))
        bag = yaml.safe_load(bag_path.read_text())
        files = [Path(hf_hub_download(repo_id, f"{sig}.safetensors", local_files_only=True)) for sig in bag["models"]]
    except Exception:  # not in the cache (LocalEntryNotFoundError and friends)
        return None
    model = BagOfModels([load_safetensors_model(f) for f in files], bag.get("weights"), bag.get("segment"))
    model.eval()
    return LoadedModel(model, name, "huggingface cache", files_sha256(files), [str(f) for f in files])


def _from_torch_hub_cache(
    name: str, remote: Remote | None = None, source: str = "torch hub cache"
) -> LoadedModel | None:
    """The named model (a bag in the remote index, or one signature) from its files in the torch hub cache."""
    from demucs.apply import BagOfModels
    from demucs.states import load_model

    remote = remote or Remote()
    try:
        names = [Path(p).name for p in remote.weight_files(name)]
    except WeightsDownloadError:
        return None
    files = [torch_hub_checkpoints() / n for n in names]
    if not all(f.is_file() for f in files):
        return None
    bag_yaml = remote.index_dir() / f"{name}.yaml"
    bag = yaml.safe_load(bag_yaml.read_text()) if bag_yaml.is_file() else {}
    models = [load_model(f) for f in files]
    model = BagOfModels(models, bag.get("weights"), bag.get("segment")) if bag else models[0]
    model.eval()
    return LoadedModel(model, name, source, files_sha256(files), [str(f) for f in files])


def load_demucs(
    name: str, model_dir: str | None = None, remote: Remote | None = None, download: bool = False, log=log.info
) -> LoadedModel | None:
    """The named model from the first place that has its weights, or None when none has them. With
    `download`, weights found nowhere are downloaded from the remote first (raising WeightsDownloadError when
    they cannot be had)."""
    remote = remote or Remote()
    if model_dir:
        loaded = _from_local_folder(name, Path(model_dir))
        if loaded:
            return loaded
    loaded = _from_huggingface_cache(name) or _from_torch_hub_cache(name, remote)
    if loaded or not download:
        return loaded
    fetch_weights(name, remote, log=log)
    return _from_torch_hub_cache(name, remote, source=f"downloaded from {remote.url}")
