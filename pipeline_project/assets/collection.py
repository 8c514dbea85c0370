"""The collection as a whole: grades decided across songs (near-duplicates), and the report of what it holds."""

import json

import dagster as dg
import numpy as np

from pipeline_project.assets.analysis import song_theory
from pipeline_project.assets.ingestion import song_quality
from pipeline_project.assets.metadata import markdown_table, png_markdown
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.assets.separation import song_stems
from pipeline_project.audio.quality import GRADES
from pipeline_project.automation import once_deps_updated
from pipeline_project.collection.export import SongFiles, write_export
from pipeline_project.collection.quality import decide
from pipeline_project.collection.report import collection_report as report_of
from pipeline_project.collection.report import report_plot, song_profile
from pipeline_project.collection.settings import load_collection_settings
from pipeline_project.files import write_bytes_atomic, write_text_atomic
from pipeline_project.resources import StorageResource
from pipeline_project.separation.separator import STEM_NAMES


@dg.asset(
    group_name="collection",
    kinds={"python"},
    code_version="1",
    deps=[song_quality],
    automation_condition=once_deps_updated().with_label("songs assessed"),
)
@retry_transient_failures
def collection_quality(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Every song's training-quality grade, decided across the collection: its own findings (`song_quality`)
    and near-duplicates (the same recording at another bitrate, remastered or edited, found by landmark
    fingerprints). Each group of duplicates keeps its best copy and says why; the others are graded poor,
    naming the copy kept. Exports leave poor songs out. Nothing is deleted."""
    settings = load_collection_settings(storage.fetch(storage.collection_settings))
    storage.fetch(storage.songs, pattern="quality.json")
    storage.fetch(storage.songs, pattern="fingerprint.npz")
    storage.fetch(storage.songs, pattern="song.json")
    keys = [key for key in storage.song_keys() if storage.song(key).quality.exists()]
    records = {key: storage.read_json(storage.song(key).quality) for key in keys}
    names = {key: (storage.read_json(storage.song(key).record).get("file_names") or [key])[0] for key in keys}
    fingerprints = {}
    for key in keys:
        with np.load(storage.song(key).fingerprint) as data:
            fingerprints[key] = (data["hashes"], data["anchors"])
    decided = decide(records, fingerprints, settings.quality.duplicate_share, names)
    write_text_atomic(storage.collection_quality, json.dumps(decided, indent=1))
    storage.publish(storage.collection_quality)
    songs = decided["songs"]
    counts = {grade: sum(song["grade"] == grade for song in songs.values()) for grade in GRADES}
    flagged = [
        [names[key], key, song["grade"], "; ".join(r["text"] for r in song["reasons"])]
        for key, song in songs.items()
        if song["reasons"]
    ]
    context.log.info(
        f"{len(songs)} songs: "
        + ", ".join(f"{n} {g}" for g, n in counts.items())
        + f"; {len(decided['duplicate_groups'])} groups of near-duplicates"
    )
    return dg.MaterializeResult(
        metadata={
            "songs": len(songs),
            **{f"{grade}_songs": count for grade, count in counts.items()},
            "duplicate_groups": len(decided["duplicate_groups"]),
            "settings": settings.source,
            "flagged": markdown_table(["file", "song", "grade", "reasons"], flagged)
            if flagged
            else dg.MetadataValue.md("no findings"),
            "path": dg.MetadataValue.path(storage.location(storage.collection_quality)),
        }
    )


@dg.asset(
    group_name="collection",
    kinds={"python"},
    code_version="1",
    deps=[collection_quality, song_theory],
    automation_condition=once_deps_updated().with_label("songs graded or analysed"),
)
@retry_transient_failures
def collection_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """What the collection holds as a training set: distributions of genre (tag, else the strongest genre
    cue), decade, tempo, key, mode, length and quality grade, against the target share ranges of the
    collection settings file (`collection.toml`; defaults for a general-purpose set), and the gaps, largest
    first. Songs graded poor are left out of every distribution but the grade's, as an export leaves them out."""
    settings = load_collection_settings(storage.fetch(storage.collection_settings))
    storage.fetch(storage.songs, pattern="*.json")
    storage.fetch(storage.collection_quality)
    decided = storage.read_json(storage.collection_quality)["songs"] if storage.collection_quality.exists() else {}

    def optional(path):
        return storage.read_json(path) if path.exists() else None

    profiles = []
    for key in storage.song_keys():
        song = storage.song(key)
        if not song.record.exists():
            continue
        grade = decided.get(key, {}).get("grade", "ungraded")
        profiles.append(
            song_profile(key, storage.read_json(song.record), optional(song.analysis), optional(song.theory), grade)
        )
    report = report_of(profiles, settings.targets)
    png = report_plot(report["distributions"], settings.targets)
    write_text_atomic(storage.collection_report, json.dumps(report, indent=1))
    write_bytes_atomic(storage.collection_report_plot, png)
    storage.publish(storage.collection_report, storage.collection_report_plot)
    gaps = [gap["text"] for gap in report["gaps"]]
    context.log.info(
        f"{report['songs']} songs, {report['usable_songs']} usable; "
        + (f"largest gap: {gaps[0]}" if gaps else "no balance gaps")
    )
    return dg.MaterializeResult(
        metadata={
            "songs": report["songs"],
            "usable_songs": report["usable_songs"],
            "largest_gaps": dg.MetadataValue.md("\n".join(f"- {text}" for text in gaps[:10]) or "none"),
            "distributions": png_markdown("distributions against targets", png),
            "distribution_counts": dg.MetadataValue.json(report["distributions"]),
            "settings": settings.source,
            "path": dg.MetadataValue.path(storage.location(storage.collection_report)),
            "plot_file": dg.MetadataValue.path(storage.location(storage.collection_report_plot)),
        }
    )


@dg.asset(
    group_name="exports",  # not in any job: an export is made when asked for
    kinds={"webdataset"},
    code_version="1",
    deps=[collection_quality, song_stems, song_theory],
)
@retry_transient_failures
def training_export(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """A private training set of the collection: every finished song of an admitted grade (good and fair by
    default, `collection.toml` [export]) with its mix, four stems, beats, downbeats, chords, key, sections
    and tags, as WebDataset tar shards under `exports/<export id>/`, split by artist (train, validation,
    test), with a manifest of versions and sha256 checksums. It holds audio and tags: it is never shared and
    lives apart from the anonymized datasets. Materialize it when you want a new export; one that exists
    already for the same songs and settings is kept as it is."""
    settings = load_collection_settings(storage.fetch(storage.collection_settings))
    storage.fetch(storage.collection_quality)
    if not storage.collection_quality.exists():
        raise dg.Failure(
            description="no grades yet: materialize collection_quality first (the export keeps only "
            "songs of the admitted grades)",
            allow_retries=False,
        )
    grades = storage.read_json(storage.collection_quality)["songs"]
    storage.fetch(storage.songs, pattern="*.json")
    songs = []
    for key in storage.finished_song_keys():
        song = storage.song(key)
        if grades.get(key, {}).get("grade") in settings.export.grades:
            storage.fetch(song.path)  # the audio and stems of the songs going in
        songs.append(
            SongFiles(
                key,
                song.audio,
                {stem: song.stem(stem) for stem in STEM_NAMES},
                storage.read_json(song.record),
                storage.read_json(song.analysis),
                storage.read_json(song.theory),
                storage.read_json(song.stems_record),
                grades.get(key, {}),
            )
        )
    folder, manifest = write_export(
        songs, storage.exports, settings.export, versions=package_versions(), log=context.log.info
    )
    storage.publish(folder)
    splits = manifest["splits"]
    return dg.MaterializeResult(
        metadata={
            "export_id": manifest["export_id"],
            **{f"{split}_songs": len(part["songs"]) for split, part in splits.items()},
            **{f"{split}_artist_groups": part["artist_groups"] for split, part in splits.items()},
            "shards": sum(len(part["shards"]) for part in splits.values()),
            "megabytes": round(manifest["bytes"] / 1e6, 1),
            "left_out": dg.MetadataValue.json(manifest["left_out"]),
            "private": "yes: audio, stems and tags; never shared, apart from the anonymized datasets",
            "path": dg.MetadataValue.path(storage.location(folder)),
        }
    )


def package_versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("pipeline_project", "webdataset")}
