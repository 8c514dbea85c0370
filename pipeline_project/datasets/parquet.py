"""Writing datasets as Parquet (zstd) atomically, with a manifest whose content hash is the dataset version."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline_project.audio.io import atomic_path, write_text_atomic


@dataclass
class WrittenDataset:
    name: str
    path: Path
    version: str
    rows: int
    columns: list[tuple[str, str]]


def dataset_version(path: str | os.PathLike) -> str:
    """sha256 of the file, or of every file of a partitioned dataset folder in name order."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*.parquet")) if path.is_dir() else [path]:
        digest.update(str(file.relative_to(path)).encode() if path.is_dir() else b"")
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _write_partitioned(arrow_table: pa.Table, path: Path, partition_by: str) -> None:
    """Hive-style `<path>/<column>=<value>/part-0.parquet`, built in a temporary folder and swapped in."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    table = arrow_table.to_pandas()
    for value, rows in table.groupby(partition_by, sort=True):
        part_dir = tmp / f"{partition_by}={value}"
        part_dir.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(rows.drop(columns=[partition_by]), preserve_index=False, schema=None),
                       part_dir / "part-0.parquet", compression="zstd")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def write_dataset(table: pd.DataFrame, directory: str | os.PathLike, name: str, partition_by: str | None = None) -> WrittenDataset:
    """Write `<directory>/<name>.parquet` (or, partitioned, the folder `<directory>/<name>/`) and
    `manifest.json`; readers never see a half-written file."""
    directory = Path(directory)
    arrow_table = pa.Table.from_pandas(table, preserve_index=False)
    if partition_by:
        path = directory / name
        directory.mkdir(parents=True, exist_ok=True)
        _write_partitioned(arrow_table, path, partition_by)
    else:
        path = directory / f"{name}.parquet"
        with atomic_path(path) as tmp:
            pq.write_table(arrow_table, tmp, compression="zstd")
    version = dataset_version(path)
    columns = [(field.name, str(field.type)) for field in arrow_table.schema]
    manifest = {
        "name": name,
        "version": version,
        "rows": arrow_table.num_rows,
        "columns": columns,
        "file": path.name,
        "partitioned_by": partition_by,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_text_atomic(directory / "manifest.json", json.dumps(manifest, indent=1))
    return WrittenDataset(name, path, version, arrow_table.num_rows, columns)


def read_dataset(directory: str | os.PathLike) -> pd.DataFrame:
    """The dataset a manifest describes, partition column included."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory}: no dataset manifest")
    return pd.read_parquet(directory / manifest["file"])


def read_manifest(directory: str | os.PathLike) -> dict | None:
    path = Path(directory) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None
