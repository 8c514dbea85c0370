"""Immutable, versioned dataset snapshots (Parquet, zstd) with a manifest, and a `latest` pointer.

Layout of a dataset folder:

    <dataset>/snapshots/<snapshot id>/part-00000.parquet   (under <column>=<value>/ when partitioned)
    <dataset>/snapshots/<snapshot id>/manifest.json        schema, rows, sha256 of every file, partitions, sources
    <dataset>/latest.json                                  {"snapshot_id": ...}, replaced atomically
    <dataset>/pending.json                                 a snapshot written but not yet published

The snapshot id is a hash of the schema and of every file's sha256, so the same table always gets the same
id (and the same files), and it is the dataset version that training records. A snapshot is built in a
temporary folder and renamed into place whole: a killed run leaves no half-written snapshot, and one that
exists is never rewritten. The oldest snapshots beyond `keep` are deleted, never the one `latest` or `pending`
names.

A snapshot written with `publish=False` is only `pending`: consumers (who read `latest`) do not see it until
`publish` moves `latest` to it. The datasets are written that way, and published by their blocking privacy
check when it passes, so a snapshot that fails the check never becomes the one consumers read.

Large tables are cut into part files of `ROWS_PER_FILE` rows, written and hashed on all cores at once. The
cut depends on the row count only, never on the machine, so the files and the id stay reproducible.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline_project.files import BUILDING_PREFIX, sha256_of, write_text_atomic
from pipeline_project.layout import MANIFEST

SNAPSHOTS = "snapshots"
ABANDONED_AFTER_SECONDS = 24 * 3600
LATEST = "latest.json"
PENDING = "pending.json"
ROWS_PER_FILE = 250_000


@dataclass
class Snapshot:
    name: str
    snapshot_id: str
    path: Path
    manifest: dict

    @property
    def rows(self) -> int:
        return self.manifest["rows"]

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [tuple(c) for c in self.manifest["columns"]]


def _part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _write_part(table: pa.Table, path: Path, options: dict) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **options)
    return {"rows": table.num_rows, "sha256": sha256_of(path), "bytes": path.stat().st_size}


def _write_files(table: pa.Table, folder: Path, partition_by: str | None) -> dict[str, dict]:
    """Parquet files under `folder`; returns {relative path: {rows, sha256, bytes}}."""
    # Dictionary encoding only where values repeat (text and categorical columns): tried on a column of
    # distinct floats it costs time and then falls back anyway.
    options = {
        "compression": "zstd",
        "use_dictionary": [
            f.name
            for f in table.schema
            if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ],
    }
    groups = {"": table}
    if partition_by:
        column = table.column(partition_by).to_pandas()
        rest = table.drop_columns([partition_by])
        groups = {
            f"{partition_by}={value}/": rest.filter(pa.array((column == value).to_numpy()))
            for value in sorted(column.dropna().unique(), key=str)
        }
    parts = {}
    for prefix, group in groups.items():
        starts = range(0, max(group.num_rows, 1), ROWS_PER_FILE)
        for index, start in enumerate(starts):
            parts[prefix + _part_name(index)] = group.slice(start, ROWS_PER_FILE)
    # pyarrow and hashlib release the GIL, so threads write and hash the parts side by side.
    with ThreadPoolExecutor(max_workers=min(len(parts), os.cpu_count() or 1) or 1) as pool:
        futures = {
            relative: pool.submit(_write_part, part, folder / relative, options) for relative, part in parts.items()
        }
        return {relative: future.result() for relative, future in futures.items()}


def write_snapshot(
    table: pd.DataFrame,
    root: str | os.PathLike,
    name: str,
    *,
    code_version: str = "",
    sources: dict | None = None,
    partition_by: str | None = None,
    keep: int = 5,
    notes: dict | None = None,
    publish: bool = True,
) -> Snapshot:
    """Write `table` as a snapshot of dataset `name` under `root` and point `latest` at it (`pending` instead,
    when not `publish`: see `publish`).

    `sources` says what the snapshot was made from (partitions, upstream versions, contributions);
    `notes` adds anything else to the manifest (what changed since the previous snapshot, k-anonymity).
    """
    root = Path(root)
    snapshots = root / SNAPSHOTS
    snapshots.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    building = snapshots / f"{BUILDING_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    building.mkdir()
    try:
        files = _write_files(arrow, building, partition_by)
        columns = [[field.name, str(field.type)] for field in arrow.schema]
        snapshot_id = hashlib.sha256(
            json.dumps(
                {"columns": columns, "files": {k: v["sha256"] for k, v in files.items()}}, sort_keys=True
            ).encode()
        ).hexdigest()[:16]
        final = snapshots / snapshot_id
        previous = latest_manifest(root)
        if final.exists():
            shutil.rmtree(building)  # the same content is already there, and snapshots are immutable
        else:
            manifest = {
                "name": name,
                "snapshot_id": snapshot_id,
                "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "rows": arrow.num_rows,
                "columns": columns,
                "files": files,
                "partitioned_by": partition_by,
                "partitions": _rows_per_partition(files) if partition_by else {},
                "code_version": code_version,
                "sources": sources or {},
                "previous_snapshot_id": previous["snapshot_id"] if previous else None,
                **(notes or {}),
            }
            (building / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            try:
                os.rename(building, final)
            except OSError:
                if not (final / MANIFEST).exists():
                    raise
                shutil.rmtree(building)  # a concurrent run wrote the same snapshot first
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    write_text_atomic(root / (LATEST if publish else PENDING), json.dumps({"snapshot_id": snapshot_id}))
    if publish:
        (root / PENDING).unlink(missing_ok=True)
    prune(root, keep)
    return Snapshot(name, snapshot_id, final, json.loads((final / MANIFEST).read_text()))


def _rows_per_partition(files: dict[str, dict]) -> dict[str, int]:
    rows = {}
    for relative, entry in files.items():
        partition = relative.split("/")[0]
        rows[partition] = rows.get(partition, 0) + entry["rows"]
    return rows


def publish(root: str | os.PathLike, snapshot_id: str) -> None:
    """Make a written snapshot the one consumers read: `latest` names it, and it is no longer pending."""
    root = Path(root)
    if not (root / SNAPSHOTS / snapshot_id / MANIFEST).is_file():
        raise FileNotFoundError(f"{root}: no snapshot {snapshot_id} to publish")
    write_text_atomic(root / LATEST, json.dumps({"snapshot_id": snapshot_id}))
    pending = pending_manifest(root)
    if pending is not None and pending["snapshot_id"] == snapshot_id:
        (root / PENDING).unlink(missing_ok=True)


def prune(root: str | os.PathLike, keep: int) -> list[str]:
    """Delete the oldest snapshots beyond `keep` (never the latest or the pending one); returns the deleted ids."""
    root = Path(root)
    kept = {m["snapshot_id"] for m in (latest_manifest(root), pending_manifest(root)) if m}
    manifests = sorted(
        (json.loads(m.read_text()) for m in (root / SNAPSHOTS).glob(f"*/{MANIFEST}")),
        key=lambda m: m["created_at"],
        reverse=True,
    )
    deleted = []
    for manifest in manifests[max(1, keep) :]:
        if manifest["snapshot_id"] in kept:
            continue
        shutil.rmtree(root / SNAPSHOTS / manifest["snapshot_id"], ignore_errors=True)
        deleted.append(manifest["snapshot_id"])
    for stale in (root / SNAPSHOTS).glob(f"{BUILDING_PREFIX}*"):
        if _abandoned(stale):
            shutil.rmtree(stale, ignore_errors=True)
    return deleted


def _abandoned(building: Path) -> bool:
    """A build folder left by a killed run: its process on this host is gone, or it is a day old (a build on
    another host of a shared file system cannot be asked). A live concurrent build is never touched."""
    try:
        host, pid = building.name[len(BUILDING_PREFIX) :].rsplit("-", 2)[:2]
        age_seconds = time.time() - building.stat().st_mtime
    except (ValueError, OSError):
        return True
    if age_seconds > ABANDONED_AFTER_SECONDS:
        return True
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def latest_manifest(root: str | os.PathLike) -> dict | None:
    """The manifest of the published snapshot, the one consumers read; None before the first."""
    return _manifest_named_by(Path(root) / LATEST)


def pending_manifest(root: str | os.PathLike) -> dict | None:
    """The manifest of the snapshot written but not yet published, if any."""
    return _manifest_named_by(Path(root) / PENDING)


def _manifest_named_by(pointer: Path) -> dict | None:
    if not pointer.exists():
        return None
    snapshot_id = json.loads(pointer.read_text())["snapshot_id"]
    return json.loads((pointer.parent / SNAPSHOTS / snapshot_id / MANIFEST).read_text())


def read_snapshot(root: str | os.PathLike, snapshot_id: str | None = None) -> pd.DataFrame:
    """A snapshot's table (the latest unless `snapshot_id` is given), partition column included."""
    root = Path(root)
    manifest = (
        latest_manifest(root)
        if snapshot_id is None
        else json.loads((root / SNAPSHOTS / snapshot_id / MANIFEST).read_text())
    )
    if manifest is None:
        raise FileNotFoundError(f"{root}: no snapshot yet (materialize the dataset first)")
    folder = root / SNAPSHOTS / manifest["snapshot_id"]
    partition_by, parts = manifest["partitioned_by"], []
    for relative in sorted(manifest["files"]):
        part = pq.read_table(folder / relative)
        if partition_by:
            value = relative.split("/")[0].split("=", 1)[1]
            part = part.append_column(partition_by, pa.array([value] * part.num_rows, pa.string()))
        parts.append(part)
    schema = [c for c, _ in manifest["columns"]]
    if not parts:
        return pd.DataFrame(columns=schema)
    return pa.concat_tables(parts, promote_options="permissive").to_pandas()[schema]


def verify_snapshot(root: str | os.PathLike, snapshot_id: str) -> list[str]:
    """Files of a snapshot whose sha256 no longer matches its manifest."""
    folder = Path(root) / SNAPSHOTS / snapshot_id
    manifest = json.loads((folder / MANIFEST).read_text())
    return [
        relative
        for relative, entry in manifest["files"].items()
        if not (folder / relative).exists() or sha256_of(folder / relative) != entry["sha256"]
    ]
