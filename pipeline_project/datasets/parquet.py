"""Writing datasets as Parquet (zstd) atomically, with a manifest whose content hash is the dataset version."""

from __future__ import annotations

import hashlib
import json
import os
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
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return digest[:16]


def write_dataset(table: pd.DataFrame, directory: str | os.PathLike, name: str) -> WrittenDataset:
    """Write `<directory>/<name>.parquet` and `manifest.json`; readers never see a half-written file."""
    directory = Path(directory)
    arrow_table = pa.Table.from_pandas(table, preserve_index=False)
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
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_text_atomic(directory / "manifest.json", json.dumps(manifest, indent=1))
    return WrittenDataset(name, path, version, arrow_table.num_rows, columns)


def read_manifest(directory: str | os.PathLike) -> dict | None:
    path = Path(directory) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None
