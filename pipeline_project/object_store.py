"""A data root in an object store (`s3://bucket/prefix`, or any fsspec URL): a local mirror that the pipeline's
file-based code reads and writes, synchronised folder by folder.

`fetch` brings a remote folder (or one file) into the mirror, downloading only what the mirror lacks or holds
in another version; `publish` uploads what changed under a local folder and deletes remote files that were
fetched and have since been removed locally (a quarantined song leaving the drop folder, a pruned snapshot).

Nothing half-written becomes visible: temporary names (`.x.tmp.flac`, `.building-*`, `*.partial`) are never
uploaded, every object is written whole by one PUT, and within a publish the files that say a stage is done
(JSON records, then a dataset's `latest.json`) go last, so a reader that sees one sees what it describes.

A mirror file counts as the same version as the remote object when size and modification time agree: after
every download or upload the local file takes the object's LastModified, so clocks on different machines
never matter.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path, PurePosixPath

from pipeline_project.datasets.snapshots import LATEST
from pipeline_project.files import atomic_path
from pipeline_project.files import is_temporary as is_temporary_name


def is_remote_url(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


def is_temporary(relative: str) -> bool:
    """Files on their way to a final name (in any folder of the path): never uploaded, never counted as content."""
    return any(is_temporary_name(part) for part in PurePosixPath(relative).parts)


def _timestamp(info: dict) -> float:
    modified = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    if isinstance(modified, datetime):
        return modified.timestamp()
    return float(modified or 0.0)


def _publish_order(relative: str) -> tuple[int, int, str]:
    """Data first, then JSON records deepest first, then `latest.json` pointers."""
    path = PurePosixPath(relative)
    if path.name == LATEST:
        return (2, 0, relative)
    if path.suffix == ".json":
        return (1, -len(path.parts), relative)
    return (0, 0, relative)


class ObjectStoreMirror:
    """`url` is the remote data root, `local_root` the folder that mirrors it on this machine."""

    def __init__(self, url: str, local_root: str | os.PathLike, storage_options: dict | None = None):
        import fsspec

        self.url = url.rstrip("/")
        try:
            # A client of its own per mirror: fsspec would otherwise share one per process, with the endpoint and
            # credentials of whichever was made first.
            self.fs, self.base = fsspec.core.url_to_fs(self.url, skip_instance_cache=True, **(storage_options or {}))
        except ImportError as error:
            raise RuntimeError(
                f"the data root {url} needs fsspec's driver for it; for s3:// install the s3 extra: "
                f"pip install -e '.[s3]' ({error})"
            ) from error
        self.base = self.base.rstrip("/")
        self.local_root = Path(local_root)
        self.local_root.mkdir(parents=True, exist_ok=True)
        # Remote files this process fetched or published: only these may be deleted remotely by a publish, so a
        # folder that was fetched in part (JSON only, say) never loses the rest.
        self._known: set[str] = set()

    def _remote_path(self, relative: str) -> str:
        return f"{self.base}/{relative}" if relative else self.base

    def _local(self, relative: str) -> Path:
        return self.local_root / relative if relative else self.local_root

    def listing(self, relative: str) -> dict[str, tuple[int, float]]:
        """Remote files under `relative` (a folder or one file): relative path -> (size, modified)."""
        base = self._remote_path(relative)
        self.fs.invalidate_cache()  # other machines write here too: never answer from a cached listing
        try:
            found = self.fs.find(base, detail=True, withdirs=False)
        except FileNotFoundError:
            return {}
        files = {}
        for path, info in found.items():
            key = path[len(self.base) + 1 :] if path.startswith(self.base + "/") else path
            if info.get("type", "file") == "file" and not is_temporary(key):
                files[key] = (int(info["size"]), _timestamp(info))
        return files

    def _same(self, local: Path, size: int, modified: float) -> bool:
        try:
            stat = local.stat()
        except FileNotFoundError:
            return False
        return stat.st_size == size and abs(stat.st_mtime - modified) < 1.0

    def fetch(self, relative: str, pattern: str | None = None) -> int:
        """Make the mirror hold the remote files under `relative` whose name matches `pattern` (a glob on the
        file name); returns how many were downloaded."""
        downloaded = 0
        for key, (size, modified) in self.listing(relative).items():
            if pattern and not fnmatch.fnmatch(PurePosixPath(key).name, pattern):
                continue
            self._known.add(key)
            local = self._local(key)
            if not self._same(local, size, modified):
                with atomic_path(local) as temporary:
                    self.fs.get_file(self._remote_path(key), str(temporary))
                    os.utime(temporary, (modified, modified))
                downloaded += 1
        return downloaded

    def _local_files(self, relative: str) -> set[str]:
        top = self._local(relative)
        if top.is_file():
            candidates: Iterable[Path] = [top]
        elif top.is_dir():
            candidates = (p for p in top.rglob("*") if p.is_file())
        else:
            return set()
        files = set()
        for path in candidates:
            key = path.relative_to(self.local_root).as_posix()
            if not is_temporary(key):
                files.add(key)
        return files

    def publish(self, relative: str) -> tuple[int, int]:
        """Upload new and changed files under `relative`, then delete the remote copies of fetched files that
        are gone from the mirror; returns (uploaded, deleted)."""
        remote = self.listing(relative)
        local = self._local_files(relative)
        changed = sorted(
            (key for key in local if key not in remote or not self._same(self._local(key), *remote[key])),
            key=_publish_order,
        )
        for key in changed:
            self.fs.put_file(str(self._local(key)), self._remote_path(key))
        if changed:
            after = self.listing(relative)
            for key in changed:
                if key in after:
                    os.utime(self._local(key), (after[key][1], after[key][1]))
        removed = sorted(key for key in remote if key not in local and key in self._known)
        for key in removed:
            self.fs.rm_file(self._remote_path(key))
            self._known.discard(key)
        self._known.update(local)
        return len(changed), len(removed)
