"""Fetching pretrained Demucs weights on first use, from demucs's own remote and into its own cache.

The remote is the one the `demucs` command falls back to (`demucs.pretrained.ROOT_URL`): the package's
`remote/files.txt` lists every weight file under a root folder, each named `<signature>-<sha256 prefix>.th`,
and `remote/<name>.yaml` lists the signatures a named model (a bag of models) is made of. Files land where
demucs puts them, the torch hub cache (`$TORCH_HOME/hub/checkpoints/<signature>-<sha256 prefix>.th`), so a
cache the `demucs` command filled is reused and the other way round.

A download streams into a temporary file beside its target, is checked against the sha256 prefix its name
carries, and only then is renamed into place: a corrupt or cut-off download is never cached. Every socket
operation has a timeout, so an offline machine (or a remote that accepts and never answers) gives up within
seconds, and a failure is remembered for a while (`OfflineMemory`) so the songs of a run do not each wait.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline_project.files import write_text_atomic

DEMUCS_REMOTE_URL = "https://dl.fbaipublicfiles.com/demucs/"  # demucs.pretrained.ROOT_URL
WEIGHTS_SETTINGS = ("auto", "never", "always")
TIMEOUT_S = 3.0  # per connect and per read: the whole offline fallback stays under 5 s
RETRY_AFTER_S = 600.0  # after a failed download, songs within this long use the fallback without retrying


class WeightsDownloadError(RuntimeError):
    """Pretrained weights could not be had: unreachable remote, unknown model, or a checksum mismatch."""


def demucs_index() -> Path:
    """The remote index shipped inside the demucs package (`files.txt` and `<name>.yaml`)."""
    import demucs

    return Path(demucs.__file__).parent / "remote"


def torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class Remote:
    """Where pretrained weights come from: a base URL and the index folder that lists its files."""

    url: str = DEMUCS_REMOTE_URL
    index: Path | None = None  # default: demucs_index()
    timeout_s: float = TIMEOUT_S

    def index_dir(self) -> Path:
        return self.index or demucs_index()

    def files(self) -> dict[str, str]:
        """Signature -> the weight file's path under the remote URL (demucs's `files.txt` format)."""
        root, files = "", {}
        for line in (self.index_dir() / "files.txt").read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("root:"):
                root = line.split(":", 1)[1].strip()
            else:
                files[line.split("-", 1)[0]] = root + line
        return files

    def weight_files(self, name: str) -> list[str]:
        """The remote paths of a named model's weights: every signature of its bag, or the signature itself."""
        files = self.files()
        bag = self.index_dir() / f"{name}.yaml"
        signatures = list(yaml.safe_load(bag.read_text())["models"]) if bag.is_file() else [name]
        missing = [s for s in signatures if s not in files]
        if missing:
            raise WeightsDownloadError(
                f"no pretrained Demucs model {name!r} in the remote index {self.index_dir()} "
                f"(signatures not listed: {', '.join(missing)})"
            )
        return [files[s] for s in signatures]


def sha256_prefix_of(file_name: str) -> str:
    """The checksum a demucs weight file's name carries: `955717e8-8726e21a.th` -> `8726e21a`."""
    return Path(file_name).stem.split("-", 1)[1]


def download(url: str, target: Path, timeout_s: float = TIMEOUT_S, log=None) -> Path:
    """`url` into `target`, atomically and only when its sha256 starts with the prefix in the target's name;
    `log` hears the progress every tenth of the file."""
    expected = sha256_prefix_of(target.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            size, done, reported = int(response.headers.get("Content-Length") or 0), 0, 0
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
                done += len(block)
                if log and size and done * 10 // size > reported and done < size:
                    reported = done * 10 // size
                    log(f"{target.name}: {done / 1e6:.1f} of {size / 1e6:.1f} MB")
        actual = digest.hexdigest()[: len(expected)]
        if actual != expected:
            raise WeightsDownloadError(
                f"{url}: checksum mismatch (sha256 starts {actual}, the file name says "
                f"{expected}); the download was discarded"
            )
        os.replace(partial, target)
        return target
    except (OSError, http.client.HTTPException) as exc:  # URLError, HTTPError and timeouts are OSErrors
        raise WeightsDownloadError(f"{url}: {getattr(exc, 'reason', None) or exc}") from exc
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def fetch_weights(name: str, remote: Remote = Remote(), cache: Path | None = None, log=None) -> list[Path]:
    """Every weight file of the named model in the torch hub cache, downloading those not there yet."""
    cache = cache or torch_hub_checkpoints()
    paths = []
    for remote_path in remote.weight_files(name):
        target = cache / Path(remote_path).name
        if not target.is_file():
            url = remote.url.rstrip("/") + "/" + remote_path
            if log:
                log(f"downloading Demucs weights {url} into {cache}")
            started = time.monotonic()
            download(url, target, remote.timeout_s, log)
            if log:
                log(
                    f"downloaded {target.name} ({target.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s, checksum verified"
                )
        paths.append(target)
    return paths


class OfflineMemory:
    """A failed download, remembered across the processes of a run (one per song with the multiprocess
    executor): later songs use the fallback at once, and the warning is given once per run."""

    def __init__(self, folder: Path | None = None, retry_after_s: float = RETRY_AFTER_S):
        self.folder = folder or Path(tempfile.gettempdir()) / f"pipeline_project-{os.getuid()}" / "demucs-offline"
        self.retry_after_s = retry_after_s

    def _record(self, attempt: str) -> Path:
        return self.folder / (hashlib.sha256(attempt.encode()).hexdigest()[:16] + ".json")

    def recent_failure(self, attempt: str) -> str | None:
        """Why the same download attempt (a remote into a cache) failed within `retry_after_s`, or None."""
        try:
            record = json.loads(self._record(attempt).read_text())
        except (OSError, ValueError):
            return None
        return record["reason"] if time.time() - record["at"] < self.retry_after_s else None

    def remember(self, attempt: str, reason: str) -> None:
        write_text_atomic(self._record(attempt), json.dumps({"attempt": attempt, "at": time.time(), "reason": reason}))

    def first_warning(self, run_id: str | None) -> bool:
        """True the first time a run (or, without a run id, this process) asks."""
        if run_id is None:
            first = not _WARNED_IN_PROCESS
            _WARNED_IN_PROCESS.append(True)
            return first
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            (self.folder / f"warned-{run_id}").touch(exist_ok=False)
        except FileExistsError:
            return False
        return True


_WARNED_IN_PROCESS: list[bool] = []
