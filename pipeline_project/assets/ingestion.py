import json
import time

import dagster as dg

from pipeline_project.assets.partitions import for_each_song, songs_partitions, source_file_hint
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.audio.ingest import (
    find_song_files,
    quarantine_file,
    quarantine_reason,
    relative_name,
    scan_incoming,
)
from pipeline_project.audio.io import decode_song
from pipeline_project.audio.quality import as_record, assess, grade, recorded_source, source_facts
from pipeline_project.collection.settings import load_collection_settings
from pipeline_project.errors import BadAudioError
from pipeline_project.files import write_npz_atomic, write_text_atomic
from pipeline_project.resources import StorageResource


@dg.asset(partitions_def=songs_partitions, group_name="ingestion", kinds={"python", "audio"}, code_version="2")
@retry_transient_failures
def song_audio(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Decodes the song file with this content hash, reads its tags and stores canonical audio
    (44.1 kHz stereo FLAC) in the private lake. Undecodable, truncated, empty, silent or too-short files are
    moved to the quarantine folder with a reason file, and this partition fails naming the file and reason."""
    return for_each_song(context, lambda key: decode_one_song(context, storage, key))


def decode_one_song(context: dg.AssetExecutionContext, storage: StorageResource, key: str) -> dict:
    hint = source_file_hint(context, key)
    files = find_song_files(storage.fetch_incoming(hint), key, hint)
    if not files:
        quarantined = scan_incoming(storage.fetch(storage.quarantine)).get(key, [])
        if quarantined:  # an earlier run (a batch this song was in) already put the file aside: say why, again
            reason = quarantine_reason(quarantined[0])
            raise dg.Failure(
                description=f"{quarantined[0].name}: {reason} (already quarantined as {quarantined[0]})",
                metadata={
                    "file": quarantined[0].name,
                    "reason": reason,
                    "quarantined_as": str(quarantined[0]),
                    "partition": key,
                },
                allow_retries=False,
            )
        raise dg.Failure(
            description=f"no file in {storage.location(storage.incoming)} has content hash {key}: it was removed or "
            f"quarantined (see {storage.location(storage.quarantine)})",
            allow_retries=False,
        )
    source = files[0]
    song = storage.song(key)
    started = time.perf_counter()
    try:
        decoded = decode_song(source, song.audio)
    except BadAudioError as exc:
        duplicates = scan_incoming(storage.incoming).get(key, files)  # every copy of bad content goes
        moved = [quarantine_file(path, storage.quarantine, exc.reason) for path in duplicates]
        storage.publish(storage.quarantine, storage.incoming)  # the copy in quarantine first, then the removal
        context.log.error(f"{source.name}: {exc.reason}; moved to {moved[0]}")
        raise dg.Failure(
            description=f"{source.name}: {exc.reason} (moved to {moved[0]})",
            metadata={"file": source.name, "reason": exc.reason, "quarantined_as": str(moved[0]), "partition": key},
            allow_retries=False,
        ) from exc

    source_kind = source_facts(source, decoded.source_format, decoded.source_subtype, decoded.source_channels)
    record = {
        "partition_key": key,
        "file_names": [relative_name(path, storage.incoming) for path in files],  # folders too: the audit needs them
        "source_format": decoded.source_format,
        "source_sample_rate": decoded.source_sample_rate,
        "source_channels": decoded.source_channels,
        "source_codec": source_kind.codec,
        "source_lossless": source_kind.lossless,
        "source_bitrate_kbps": source_kind.bitrate_kbps,
        "duration_s": round(decoded.duration_s, 3),
        **decoded.tags,
    }
    write_text_atomic(song.record, json.dumps(record, indent=1))
    storage.publish(song.path)
    if len(files) > 1:
        context.log.info(f"{len(files)} files share this content: {', '.join(p.name for p in files)}")
    context.log.info(f"decoded {source.name}: {decoded.duration_s:.1f} s, tags {sorted(decoded.tags)}")
    return {
        "file": source.name,
        "duration_s": round(decoded.duration_s, 2),
        "source_format": decoded.source_format,
        "source_sample_rate": decoded.source_sample_rate,
        "source_codec": source_kind.codec,
        "source_bitrate_kbps": source_kind.bitrate_kbps or 0.0,
        "tags": dg.MetadataValue.json(decoded.tags),
        "decode_seconds": round(time.perf_counter() - started, 3),
    }


@dg.asset(
    partitions_def=songs_partitions,
    group_name="ingestion",
    kinds={"python", "audio"},
    code_version="1",
    deps=[song_audio],
)
@retry_transient_failures
def song_quality(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """How good the song is as training data, and why: source codec and bitrate, clipping and true peak, crest
    factor and loudness range (limited flat?), where the spectrum stops (a lossy transcode?), stereo width (a
    mono fold-down posing as stereo?), length and fades (a clip, not a song?), graded good, fair or poor under
    the thresholds of the collection settings file (`collection.toml`). Also its landmark fingerprint, from
    which `collection_quality` finds near-duplicates. Nothing is deleted or failed: a poor song is flagged."""
    settings = load_collection_settings(storage.fetch(storage.collection_settings))
    return for_each_song(context, lambda key: assess_one_song(context, storage, key, settings.quality))


def assess_one_song(context: dg.AssetExecutionContext, storage: StorageResource, key: str, thresholds) -> dict:
    song = storage.song(key)
    storage.fetch(song.path, pattern="*.json")
    storage.fetch(song.audio)
    record = storage.read_json(song.record)
    started = time.perf_counter()
    measures, hashes, anchors = assess(song.audio)
    source = recorded_source(record)
    reasons = grade(measures, source, thresholds)
    assessed = as_record(measures, source, reasons)
    write_text_atomic(song.quality, json.dumps(assessed, indent=1))
    write_npz_atomic(song.fingerprint, hashes=hashes, anchors=anchors)
    storage.publish(song.path)
    name = (record.get("file_names") or [key])[0]
    summary = "; ".join(reason.text for reason in reasons) or "no findings"
    (context.log.warning if assessed["grade"] == "poor" else context.log.info)(
        f"{name}: {assessed['grade']} ({summary})"
    )
    return {
        "grade": assessed["grade"],
        "reasons": summary,
        "source": f"{source.codec}" + (f", {source.bitrate_kbps:.0f} kbps" if source.bitrate_kbps else ""),
        "clipped_percent": round(measures.clipped_share * 100, 3),
        "true_peak_dbtp": measures.true_peak_dbtp,
        "crest_db": measures.crest_db,
        "loudness_range_lu": measures.loudness_range_lu,
        "cutoff_khz": round(measures.cutoff_hz / 1000, 1),
        "side_db": measures.side_db,
        "assess_seconds": round(time.perf_counter() - started, 2),
    }
