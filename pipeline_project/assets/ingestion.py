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
from pipeline_project.errors import BadAudioError
from pipeline_project.files import write_text_atomic
from pipeline_project.resources import StorageResource


@dg.asset(partitions_def=songs_partitions, group_name="ingestion", kinds={"python", "audio"}, code_version="1")
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

    record = {
        "partition_key": key,
        "file_names": [relative_name(path, storage.incoming) for path in files],  # folders too: the audit needs them
        "source_format": decoded.source_format,
        "source_sample_rate": decoded.source_sample_rate,
        "source_channels": decoded.source_channels,
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
        "tags": dg.MetadataValue.json(decoded.tags),
        "decode_seconds": round(time.perf_counter() - started, 3),
    }
