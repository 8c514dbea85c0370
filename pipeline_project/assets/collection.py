"""The collection as a whole: grades decided across songs (near-duplicates)."""

import json

import dagster as dg
import numpy as np

from pipeline_project.assets.ingestion import song_quality
from pipeline_project.assets.metadata import markdown_table
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.audio.quality import GRADES
from pipeline_project.automation import once_deps_updated
from pipeline_project.collection.quality import decide
from pipeline_project.collection.settings import load_collection_settings
from pipeline_project.files import write_text_atomic
from pipeline_project.resources import StorageResource


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
