"""The on-disk contract: every folder and stage file name the pipeline writes under its data root.

No other module spells a stage file name: code asks these objects for paths (the storage resource hands them
out: `storage.song(key)`, `storage.synthetic()`, `storage.inbox()`), so a rename is one line here and an
old file name cannot linger anywhere. Plain paths, no I/O beyond what a method's name says; no Dagster.

    lake/songs/<key>/              SongFolder: one song's stages
    lake/song_index.npz            the song index (identification): every song's window embeddings
    lake/collection_quality.json   each song's training-quality grade, near-duplicates decided (collection_quality)
    lake/collection_report.json    distributions, target shares and gaps (collection_report), and its .png
    collection.toml                the collection settings: quality thresholds, target shares (optional)
    lake/synthetic/rendered/<key>/ ExampleFolder: a rendered example (and the demo songs' ground truth)
    lake/synthetic/augmented/<key>/ExampleFolder: an augmented variant, with its chain's record
    lake/synthetic/features/       log-mel features of the examples, one .npy per example
    lake/labels/                   LabelsFolder: people's labels (the labeling page's store), the genre queue,
                                   each drum_hits snapshot's private hit sources, each labels release's private copy
    contributions/                 ContributionsInbox: incoming/, accepted/, rejected/, deleted/, reports/
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline_project.files import write_text_atomic

MANIFEST = "manifest.json"  # a corpus's list of examples, and a dataset snapshot's description
SONG_INDEX = "song_index.npz"  # under lake/: the song index, the champion embedding's windows of every song
COLLECTION_QUALITY = "collection_quality.json"  # under lake/: every song's grade, duplicates decided
COLLECTION_REPORT = "collection_report.json"  # under lake/: distributions against target shares, and the gaps
COLLECTION_SETTINGS = "collection.toml"  # in the data root: quality thresholds and target shares


def meter_cache(analysis_corpus: Path) -> Path:
    """The time signatures of the corpus pieces, read once and kept beside the learned-analysis renders (the
    separator's renders use it too)."""
    return Path(analysis_corpus) / "time_signatures.json"


def stem_file(stems_dir: Path, name: str) -> Path:
    """One stem (drums, bass, other, vocals) in a folder of stems: a song's, or a synthetic example's."""
    return Path(stems_dir) / f"{name}.flac"


@dataclass(frozen=True)
class SongFolder:
    """One song's folder in the lake: what each per-song stage writes."""

    path: Path

    @property
    def audio(self) -> Path:
        """song_audio: the decoded song (FLAC at the lake's rate)."""
        return self.path / "audio.flac"

    @property
    def record(self) -> Path:
        """song_audio: the song's tags, source and format."""
        return self.path / "song.json"

    @property
    def stems_dir(self) -> Path:
        return self.path / "stems"

    def stem(self, name: str) -> Path:
        """song_stems: one stem (drums, bass, other, vocals)."""
        return stem_file(self.stems_dir, name)

    @property
    def stems_record(self) -> Path:
        """song_stems: which separator (and weights) made the stems."""
        return self.path / "stems.json"

    @property
    def quality(self) -> Path:
        """song_quality: source codec and bitrate, clipping, dynamics, spectrum, stereo, length; grade and reasons."""
        return self.path / "quality.json"

    @property
    def fingerprint(self) -> Path:
        """song_quality: the landmark fingerprint that finds near-duplicates across the collection."""
        return self.path / "fingerprint.npz"

    @property
    def analysis(self) -> Path:
        """song_analysis: tempo, beats, key, chords, sections, loudness, drum hits."""
        return self.path / "analysis.json"

    @property
    def analysis_plot(self) -> Path:
        return self.path / "analysis.png"

    @property
    def theory(self) -> Path:
        """song_theory: Roman numerals, cadences, progressions, syncopation."""
        return self.path / "theory.json"

    @property
    def window_embeddings(self) -> Path:
        """song_index: the song's window embeddings by one embedding version, kept so a rebuild embeds only
        the songs that are new to it."""
        return self.path / "window_embeddings.npz"

    def records(self) -> dict[str, Path]:
        """Each stage's JSON record by stage name (song, stems, analysis, theory), in pipeline order."""
        return {"song": self.record, "stems": self.stems_record, "analysis": self.analysis, "theory": self.theory}


# The file whose presence says a song went through every per-song stage.
SONG_DONE = SongFolder(Path()).theory.name
SONG_RECORD = SongFolder(Path()).record.name


@dataclass(frozen=True)
class ExampleFolder:
    """A synthetic example: its mix, its stems, its exact labels and (for an augmented one) its chain's record."""

    path: Path

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def mix(self) -> Path:
        return self.path / "mix.flac"

    @property
    def labels(self) -> Path:
        return self.path / "labels.json"

    @property
    def record(self) -> Path:
        """An augmented example's chain, parameters and seed."""
        return self.path / "record.json"

    @property
    def stems_dir(self) -> Path:
        return self.path / "stems"

    def stem(self, name: str) -> Path:
        return stem_file(self.stems_dir, name)


@dataclass(frozen=True)
class SyntheticCorpus:
    """The rendered examples, their augmented variants and the features computed from both."""

    path: Path

    @property
    def rendered(self) -> Path:
        return self.path / "rendered"

    @property
    def augmented(self) -> Path:
        return self.path / "augmented"

    @property
    def features(self) -> Path:
        return self.path / "features"

    @property
    def rendered_manifest(self) -> Path:
        return self.rendered / MANIFEST

    @property
    def augmented_manifest(self) -> Path:
        return self.augmented / MANIFEST

    @property
    def sources(self) -> Path:
        """Where every score and SoundFont behind the renders came from."""
        return self.rendered / "sources.json"

    def rendered_example(self, key: str) -> ExampleFolder:
        return ExampleFolder(self.rendered / key)

    def augmented_example(self, key: str) -> ExampleFolder:
        return ExampleFolder(self.augmented / key)

    def features_of(self, key: str) -> Path:
        return self.features / f"{key}.npy"

    def example(self, key: str, variant: str) -> ExampleFolder:
        """A clean (rendered) or augmented example by its key."""
        return self.rendered_example(key) if variant == "clean" else self.augmented_example(key)

    def relative(self, path: Path) -> str:
        """`path` relative to the corpus, as datasets record it."""
        return Path(path).relative_to(self.path).as_posix()


@dataclass(frozen=True)
class ContributionsInbox:
    """Community submissions: dropped in `incoming/`, then accepted, rejected or (taken back) deleted; a report
    for each in `reports/`."""

    path: Path

    @property
    def incoming(self) -> Path:
        return self.path / "incoming"

    @property
    def accepted(self) -> Path:
        return self.path / "accepted"

    @property
    def rejected(self) -> Path:
        return self.path / "rejected"

    @property
    def deleted(self) -> Path:
        return self.path / "deleted"

    @property
    def reports(self) -> Path:
        return self.path / "reports"

    @property
    def stats(self) -> Path:
        """contribution_stats: counts, samples per instrument and genre, class balance."""
        return self.path / "stats.json"

    def waiting(self) -> list[Path]:
        """The submissions in `incoming/`, by name, hidden files aside: files and links (a link is judged as
        a link, never followed, so its target is never read)."""
        if not self.incoming.is_dir():
            return []
        with os.scandir(self.incoming) as entries:
            return sorted(
                self.incoming / entry.name
                for entry in entries
                if not entry.name.startswith(".") and (entry.is_symlink() or entry.is_file(follow_symlinks=False))
            )

    def accepted_file(self, submission_id: str) -> Path:
        return self.accepted / f"{submission_id}.json"

    def accepted_submissions(self) -> dict[str, dict]:
        """{submission id: submission} of every accepted submission."""
        folder = self.accepted
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}

    def accept(self, submission_id: str, submission: dict, waiting: Path) -> None:
        """Keep `submission` (canonical form) as accepted, and take the file it came in out of `incoming/`."""
        write_text_atomic(self.accepted_file(submission_id), json.dumps(submission))
        waiting.unlink()

    def reject(self, waiting: Path) -> Path:
        """Move a waiting file to `rejected/` as it came (a link as a link), under a free name; its new path."""
        self.rejected.mkdir(parents=True, exist_ok=True)
        target = free_name(self.rejected / waiting.name)
        os.replace(waiting, target)
        return target

    def write_report(self, file_name: str, report: dict) -> Path:
        """`reports/<file name>.report.json`, the whole name, so `x.json` and `x.txt` get a report each; a later
        file of the same name gets a numbered one instead of replacing the first."""
        path = free_name(self.reports / f"{file_name}.report.json")
        write_text_atomic(path, json.dumps(report, indent=1))
        return path

    def counts(self) -> dict[str, int]:
        """Submissions accepted, rejected and deleted. Rejected files keep the name they came with (any
        extension, links too); accepted and deleted ones are `<id>.json`."""
        return {
            state: len([p for p in folder.glob(pattern) if not p.name.startswith(".")]) if folder.is_dir() else 0
            for state, folder, pattern in (
                ("accepted", self.accepted, "*.json"),
                ("rejected", self.rejected, "*"),
                ("deleted", self.deleted, "*.json"),
            )
        }

    def delete(self, submission_id: str) -> Path | None:
        """Move an accepted submission to `deleted/`; its new path, or None when none has that id."""
        accepted = self.accepted_file(submission_id)
        if not accepted.exists():
            return None
        self.deleted.mkdir(parents=True, exist_ok=True)
        os.replace(accepted, self.deleted / accepted.name)
        return self.deleted / accepted.name


@dataclass(frozen=True)
class LabelsFolder:
    """What people label on the labeling page, and what the page needs to show them. All of it is private: it
    names songs and rendered examples, and says when each label was given."""

    path: Path

    @property
    def stores(self) -> Path:
        """The labeling page's labels: one file per queue."""
        return self.path / "store"

    def store(self, queue: str) -> Path:
        """The labeling page's labels of one queue: {item: label, the model's guess, when}."""
        return self.stores / f"{queue}.json"

    def labelled_queues(self) -> list[str]:
        """The queues a person has labelled in (those with a store file)."""
        return sorted(p.stem for p in self.stores.glob("*.json")) if self.stores.is_dir() else []

    @property
    def genre_queue(self) -> Path:
        """genre_queue: the songs whose genre the champion is unsure of, or whose tag it disagrees with."""
        return self.path / "queues" / "genre.json"

    def hit_sources(self, snapshot_id: str) -> Path:
        """drum_hits: which rendered example and onset each released hit id of one snapshot came from."""
        return self.path / "hit_sources" / f"{snapshot_id}.parquet"

    def release(self, snapshot_id: str) -> Path:
        """human_labels: the private side of one release: each released item's queue item and label."""
        return self.path / "releases" / f"{snapshot_id}.json"

    def keep_only(self, private_side: Path, snapshot_ids: set[str]) -> None:
        """Delete the private sides (`hit_sources/`, `releases/`) of snapshots that are gone (pruned)."""
        folder = Path(private_side).parent
        for path in folder.glob("*") if folder.is_dir() else []:
            if path.name.split(".")[0] not in snapshot_ids and not path.name.startswith("."):
                path.unlink()


def free_name(path: Path) -> Path:
    """`path`, or `path` numbered (`x.2.json`, `x.3.json` ...) when that name is taken."""
    candidate, number = path, 1
    while os.path.lexists(candidate):
        number += 1
        stem, dot, suffix = path.name.rpartition(".")
        candidate = path.with_name(f"{stem}.{number}.{suffix}" if dot else f"{path.name}.{number}")
    return candidate
