"""Where the data root is, and its folders: every asset reads and writes through it. The file names inside a
song's folder, the synthetic corpus and the contributions inbox are `layout`'s."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from pipeline_project.datasets.anonymize import load_or_create_secret, write_private
from pipeline_project.layout import (
    COLLECTION_QUALITY,
    COLLECTION_REPORT,
    COLLECTION_SETTINGS,
    SONG_DONE,
    SONG_INDEX,
    ContributionsInbox,
    LabelsFolder,
    SongFolder,
    SyntheticCorpus,
)
from pipeline_project.object_store import ObjectStoreMirror, is_remote_url

log = logging.getLogger(__name__)


class MissingKeyError(RuntimeError):
    """Datasets exist but the key they were made with is not on this machine."""


class StorageResource(dg.ConfigurableResource):
    """Data root and its folders.

    data_root: folder holding everything the pipeline writes (default: `data/` in the project, overridden by
    $PIPELINE_DATA_ROOT), or an object-store URL such as `s3://bucket/prefix`. With a URL, assets work in a
    local mirror (`mirror_dir`) and exchange folders with the store through `fetch` and `publish`; with a
    folder both do nothing.
    mirror_dir: where a remote data root is mirrored on this machine (default
    `~/.cache/pipeline_project/mirror/<hash of the URL>`; `default_resources` takes $PIPELINE_MIRROR_DIR).
    secret_dir: where the anonymization key of this data root is kept, outside the data root so it is never in
    a bucket or a copied data folder (default `$XDG_CONFIG_HOME/pipeline_project/keys`, i.e.
    `~/.config/pipeline_project/keys`; `default_resources` takes $PIPELINE_SECRET_DIR).
    anon_secret: the anonymization key itself, which then replaces the file in `secret_dir`
    (`default_resources` passes $PIPELINE_ANON_SECRET as a `dg.EnvVar`: read when a run starts, never shown).
    """

    data_root: str
    mirror_dir: str | None = None
    secret_dir: str | None = None
    anon_secret: str | None = None
    _mirror: ObjectStoreMirror | None = PrivateAttr(default=None)

    @property
    def is_remote(self) -> bool:
        return is_remote_url(self.data_root)

    @property
    def root(self) -> Path:
        """The local folder the pipeline's files live in: the data root itself, or its mirror."""
        if not self.is_remote:
            return Path(self.data_root).resolve()
        if self.mirror_dir:
            return Path(self.mirror_dir).resolve()
        digest = hashlib.sha256(self.data_root.rstrip("/").encode()).hexdigest()[:16]
        return Path.home() / ".cache" / "pipeline_project" / "mirror" / digest

    def _remote(self) -> ObjectStoreMirror:
        if self._mirror is None:
            self._mirror = ObjectStoreMirror(self.data_root, self.root)
        return self._mirror

    def _relative(self, path: Path) -> str:
        relative = Path(path).resolve().relative_to(self.root).as_posix()
        return "" if relative == "." else relative

    def fetch(self, path: Path, pattern: str | None = None) -> Path:
        """Bring the remote folder or file at `path` (a path under `root`) into the mirror, only the files whose
        name matches `pattern` if given; returns `path`. Does nothing for a local data root."""
        if self.is_remote:
            self._remote().fetch(self._relative(path), pattern)
        return path

    def publish(self, *paths: Path) -> None:
        """Upload what changed under each folder or file, and remove remotely what was fetched and is now gone
        locally. Does nothing for a local data root."""
        if self.is_remote:
            for path in paths:
                self._remote().publish(self._relative(path))

    def location(self, path: Path) -> str:
        """Where `path` lives for a person reading metadata: the object-store URL, or the local path."""
        if not self.is_remote:
            return str(path)
        relative = self._relative(path)
        return f"{self.data_root.rstrip('/')}/{relative}" if relative else self.data_root

    def list_files(self, folder: Path) -> list[str]:
        """Paths (relative to `folder`) of the files under it, read from the store itself when remote."""
        if self.is_remote:
            relative = self._relative(folder)
            return sorted(key[len(relative) + 1 :] for key in self._remote().listing(relative))
        return (
            sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            if folder.is_dir()
            else []
        )

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
    def exports(self) -> Path:
        """Private training exports (audio, stems, tags): apart from `datasets`, never shared."""
        return self.root / "exports"

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
        """This data root's key: one file per data root (named by a hash of its URL or absolute path), mode 0600."""
        folder = Path(self.secret_dir) if self.secret_dir else Path.home() / ".config" / "pipeline_project" / "keys"
        identity = self.data_root.rstrip("/") if self.is_remote else str(Path(self.data_root).resolve())
        return folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:16]}.key"

    @property
    def analysis_corpus(self) -> Path:
        """The learned analysers' training and validation renders (`analysis_models` with `train` on)."""
        return self.root / "analysis_corpus"

    @property
    def separator_corpus(self) -> Path:
        """The learned separator's training and validation renders (`stem_separator` with `train` on)."""
        return self.root / "separator_corpus"

    @property
    def songs(self) -> Path:
        return self.lake / "songs"

    @property
    def song_index(self) -> Path:
        return self.lake / SONG_INDEX

    @property
    def collection_quality(self) -> Path:
        return self.lake / COLLECTION_QUALITY

    @property
    def collection_report(self) -> Path:
        return self.lake / COLLECTION_REPORT

    @property
    def collection_report_plot(self) -> Path:
        return self.collection_report.with_suffix(".png")

    @property
    def collection_settings(self) -> Path:
        """The user's collection settings (quality thresholds, target shares); optional, defaults apply."""
        return self.root / COLLECTION_SETTINGS

    def song_dir(self, partition_key: str) -> Path:
        return self.songs / partition_key

    def song(self, partition_key: str) -> SongFolder:
        """A song's folder and its stage files (see `layout`)."""
        return SongFolder(self.song_dir(partition_key))

    def synthetic(self) -> SyntheticCorpus:
        return SyntheticCorpus(self.lake / "synthetic")

    def inbox(self) -> ContributionsInbox:
        return ContributionsInbox(self.contributions)

    def labels(self) -> LabelsFolder:
        """People's labels from the labeling page, and the queues it shows (private: under the lake)."""
        return LabelsFolder(self.lake / "labels")

    def dataset_dir(self, name: str) -> Path:
        return self.datasets / name

    def read_json(self, path: Path) -> dict:
        return json.loads(path.read_text())

    def song_keys(self) -> list[str]:
        """Partition keys of the songs with a folder in the lake (in the local folder: fetch first when remote)."""
        return sorted(p.name for p in self.songs.iterdir() if p.is_dir()) if self.songs.is_dir() else []

    def finished_song_keys(self) -> list[str]:
        """Partition keys of the songs that went through every per-song stage, in the local folder: with a
        remote root, `fetch` the songs' records first."""
        return [key for key in self.song_keys() if (self.song_dir(key) / SONG_DONE).exists()]

    def fetch_incoming(self, hint: str | None) -> Path:
        """Bring the drop folder's file `hint` (a path relative to it) into the mirror, or the whole folder
        without a hint, when the hint points outside it or names no file; returns the drop folder."""
        candidate = (self.incoming / hint).resolve() if hint else None
        if candidate is not None and self.incoming.resolve() in candidate.parents:
            self.fetch(candidate)
            if candidate.exists():
                return self.incoming
        self.fetch(self.incoming)  # no hint, or the file was renamed since: the song is found by its content
        return self.incoming

    def anonymization_secret(self) -> bytes:
        """The key behind every exported id: `anon_secret`, else `secret_path`, made once. A key an older
        version kept inside the data root (`.secrets/`) is moved out, and deleted from an object store. Datasets
        made with a key this machine does not have are an error, not a reason to make a new key (every id
        would change): the message says where to put the key."""
        if self.anon_secret:
            return self.anon_secret.encode()
        path = self.secret_path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            legacy = self.root / ".secrets" / "anonymization.key"
            self.fetch(legacy.parent)
            if legacy.is_file():
                write_private(path, legacy.read_text().strip())
                shutil.rmtree(legacy.parent)
                self.publish(legacy.parent)  # removes the store's copy
                log.warning(f"moved the anonymization key out of the data root to {path}")
            elif self._has_datasets():
                raise MissingKeyError(
                    f"the datasets under {self.location(self.datasets)} were made with an anonymization key this machine "
                    f"does not have: copy the key file from the machine that made them to {path} (or set "
                    f"PIPELINE_ANON_SECRET); to start over with a new key instead, delete those datasets"
                )
        return load_or_create_secret(path)

    def _has_datasets(self) -> bool:
        datasets = self.fetch(self.datasets, pattern="latest.json")
        return any(datasets.glob("*/latest.json")) if datasets.is_dir() else False
