"""The one place that knows the data layout. Every asset reads and writes through it."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg


class StorageResource(dg.ConfigurableResource):
    """Data root and its folders.

    data_root: local folder holding everything the pipeline writes (default: `data/` in the project,
    overridden by $PIPELINE_DATA_ROOT).
    """

    data_root: str

    @property
    def root(self) -> Path:
        return Path(self.data_root).resolve()

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow"

    @property
    def ground_truth(self) -> Path:
        return self.root / "ground_truth"

    @property
    def scores(self) -> Path:
        """User MIDI, MusicXML, **kern and ABC files to render."""
        return self.root / "scores"

    @property
    def soundfonts(self) -> Path:
        """User SoundFonts (.sf2/.sf3), used beside the bundled and system ones."""
        return self.root / "soundfonts"

    @property
    def contributions(self) -> Path:
        """Community submissions: `incoming/` (dropped here), `accepted/`, `rejected/`, `deleted/`, `reports/`."""
        return self.root / "contributions"

    @property
    def secret_path(self) -> Path:
        return self.root / ".secrets" / "anonymization.key"

    def song_dir(self, partition_key: str) -> Path:
        return self.lake / "songs" / partition_key

    def synthetic_dir(self) -> Path:
        return self.lake / "synthetic"

    def dataset_dir(self, name: str) -> Path:
        return self.datasets / name

    def read_json(self, path: Path) -> dict:
        return json.loads(path.read_text())

    def song_keys_with(self, filename: str) -> list[str]:
        """Partition keys whose lake folder holds `filename` (i.e. whose stage finished)."""
        songs = self.lake / "songs"
        return sorted(p.name for p in songs.iterdir() if (p / filename).exists()) if songs.is_dir() else []
