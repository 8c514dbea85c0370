import json
import os

import dagster as dg
import numpy as np
import pandas as pd

from pipeline_project.assets.analysis import song_theory
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.assets.synthesis import augmented_examples, rendered_example_dirs, rendered_examples
from pipeline_project.audio.io import read_audio
from pipeline_project.datasets.contributions import Verdict, reference_from, validate_submission
from pipeline_project.datasets.snapshots import Snapshot, latest_manifest, read_snapshot, write_snapshot
from pipeline_project.datasets.tables import (
    concert_pairs_table,
    contributions_table,
    drum_hits_table,
    song_features_table,
    synthetic_examples_table,
)
from pipeline_project.files import write_text_atomic
from pipeline_project.resources import DatasetsResource, StorageResource

# Like AutomationCondition.eager(), but a quarantined song (a partition that will never materialize)
# does not hold the datasets back forever.
REFRESH_WHEN_UPSTREAM_CHANGES = (
    (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("eager, ignoring quarantined songs")


def snapshot(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    datasets: DatasetsResource,
    name: str,
    table: pd.DataFrame,
    sources: dict,
    preview: pd.DataFrame | None = None,
    partition_by: str | None = None,
    notes: dict | None = None,
    **extra,
) -> dg.MaterializeResult:
    """Write the table as the dataset's next snapshot; its id is the asset's data version. It is written pending:
    consumers see it once its blocking privacy check has passed and published it (`checks.privacy_checks`)."""
    code_version = context.assets_def.code_versions_by_key[context.asset_key] or ""
    folder = storage.fetch(storage.dataset_dir(name))
    written = write_snapshot(
        table,
        folder,
        name,
        code_version=code_version,
        sources=sources,
        partition_by=partition_by,
        keep=datasets.snapshots_to_keep,
        notes=notes,
        publish=False,
    )
    storage.publish(folder)
    context.log.info(
        f"{name}: {written.rows} rows, snapshot {written.snapshot_id} (published once its privacy audit passes)"
    )
    return dataset_result(
        written, table if preview is None else preview, location=storage.location(written.path), **extra
    )


def dataset_result(
    written: Snapshot, table: pd.DataFrame, location: str | None = None, **extra
) -> dg.MaterializeResult:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, type_) for name, type_ in written.columns])
    packed = [c for c in table.columns if len(table) and isinstance(table[c].iloc[0], bytes)]  # no markdown for binary
    shown = table.drop(columns=packed)
    return dg.MaterializeResult(
        metadata={
            "rows": written.rows,
            "snapshot_id": written.snapshot_id,
            "snapshot": dg.MetadataValue.path(location or str(written.path)),
            "files_sha256": dg.MetadataValue.json({k: v["sha256"] for k, v in written.manifest["files"].items()}),
            "dagster/column_schema": schema,
            "dagster/row_count": written.rows,
            "preview": dg.MetadataValue.md(shown.head(5).to_markdown(index=False) if len(shown) else "(empty)"),
            **extra,
        },
        data_version=dg.DataVersion(written.snapshot_id),
    )


@dg.asset(
    group_name="datasets",
    kinds={"parquet"},
    code_version="3",
    deps=[song_theory],
    automation_condition=REFRESH_WHEN_UPSTREAM_CHANGES,
)
@retry_transient_failures
def song_features(
    context: dg.AssetExecutionContext, storage: StorageResource, datasets: DatasetsResource
) -> dg.MaterializeResult:
    """One anonymized row per analysed song: tempo, key, genre tag (from a fixed list), loudness, harmony and
    rhythm statistics, each row identical to at least k - 1 others of its genre on every released column
    (microaggregation), split by song, in an order drawn from the secret."""
    storage.fetch(storage.lake / "songs", pattern="*.json")
    songs, keys = [], storage.song_keys_with("theory.json")
    for key in keys:
        song_dir = storage.song_dir(key)
        songs.append(
            {
                "key": key,
                **{
                    name: storage.read_json(song_dir / f"{name}.json")
                    for name in ("song", "stems", "analysis", "theory")
                },
            }
        )
    table, report = song_features_table(songs, storage.anonymization_secret(), datasets.k_anonymity)
    if report["suppressed_rows"]:
        context.log.warning(f"song_features: fewer songs than k = {datasets.k_anonymity}: none can be released yet")
    # The manifest says how many songs only roughly: an exact count would tell who added which song when.
    return snapshot(
        context,
        storage,
        datasets,
        "song_features",
        table,
        {"songs": size_range(len(keys))},
        notes={"k_anonymity": report},
        k_anonymity=dg.MetadataValue.json(report),
    )


def size_range(count: int) -> str:
    """A count as the power-of-two range it falls in ("16-31"), for manifests that must not state it exactly."""
    if count == 0:
        return "0"
    low = 1 << (count.bit_length() - 1)
    return f"{low}-{2 * low - 1}"


@dg.asset(
    group_name="datasets",
    kinds={"parquet"},
    code_version="3",
    deps=[rendered_examples, augmented_examples],
    automation_condition=dg.AutomationCondition.eager(),
)
@retry_transient_failures
def synthetic_examples(
    context: dg.AssetExecutionContext, storage: StorageResource, datasets: DatasetsResource
) -> dg.MaterializeResult:
    """One row per rendered example and per augmented variant: keyed source id, instrument programs and
    SoundFonts, performance and augmentation parameters, relative paths of stems, mix and log-mel features,
    random windows, and the full labels. Partitioned by split; the split is drawn per source, so one piece
    never lands in two splits."""
    synthetic = storage.fetch(storage.synthetic_dir(), pattern="*.json")
    manifest = storage.read_json(synthetic / "augmented" / "manifest.json")
    entries = []
    for entry in manifest["examples"]:
        folder = "rendered" if entry["variant"] == "clean" else "augmented"
        entries.append(
            {
                **entry,
                "labels": storage.read_json(synthetic / folder / entry["key"] / "labels.json"),
                "mix_path": f"{folder}/{entry['key']}/mix.flac",
                "stems_path": f"rendered/{entry['source_example']}/stems",
                "features_path": f"features/{entry['key']}.npy",
            }
        )
    table = synthetic_examples_table(entries, storage.anonymization_secret())
    splits = (
        table.groupby("split").agg(examples=("example_id", "size"), sources=("source_id", "nunique"))
        if len(table)
        else pd.DataFrame()
    )
    return snapshot(
        context,
        storage,
        datasets,
        "synthetic_examples",
        table,
        {"examples": len(entries)},
        partition_by="split",
        preview=table.drop(columns=["labels", "kern", "humanization", "voices", "augmentation_chain"]),
        splits=dg.MetadataValue.md(splits.to_markdown() if len(splits) else "(empty)"),
    )


@dg.asset(
    group_name="datasets",
    kinds={"parquet"},
    code_version="2",
    deps=[rendered_examples],
    automation_condition=dg.AutomationCondition.eager(),
)
@retry_transient_failures
def drum_hits(
    context: dg.AssetExecutionContext, storage: StorageResource, datasets: DatasetsResource
) -> dg.MaterializeResult:
    """Per-hit drum features (BodyE, SizzleE, GeoMean, SustainMs, spectral shape, decay) of isolated hits in the
    rendered drum stems, labelled from the MIDI; split train/validation/test by source example."""
    examples = []
    storage.fetch(storage.synthetic_dir() / "rendered")
    for example_dir in rendered_example_dirs(storage):
        drums, sample_rate = read_audio(example_dir / "stems" / "drums.flac")
        examples.append((storage.read_json(example_dir / "labels.json"), drums.mean(axis=0), sample_rate))
    table = drum_hits_table(examples, storage.anonymization_secret())
    counts = table.groupby(["split", "label"]).size().unstack(fill_value=0) if len(table) else pd.DataFrame()
    return snapshot(
        context,
        storage,
        datasets,
        "drum_hits",
        table,
        {"examples": len(examples)},
        class_counts=dg.MetadataValue.md(counts.to_markdown() if len(counts) else "(empty)"),
    )


@dg.asset(
    group_name="datasets",
    kinds={"parquet"},
    code_version="1",
    deps=[augmented_examples],
    automation_condition=dg.AutomationCondition.eager(),
)
@retry_transient_failures
def concert_pairs(
    context: dg.AssetExecutionContext, storage: StorageResource, datasets: DatasetsResource
) -> dg.MaterializeResult:
    """Clean and concert-degraded log-mel windows (2 s) of the same rendered track, for training song
    identification that survives a live room and a crowd; the track id is a keyed hash and the split is
    drawn per track. No audio and no window positions leave."""
    synthetic = storage.fetch(storage.synthetic_dir(), pattern="*.json")
    storage.fetch(synthetic / "features")
    manifest = storage.read_json(synthetic / "augmented" / "manifest.json")
    settings = manifest.get("features", {"sample_rate": 22_050, "hop_length": 512})
    pairs = []
    for entry in manifest["examples"]:
        chain = entry.get("chain") or {}
        if "concert" not in chain.get("presets", []):
            continue
        steps = {s["name"]: s for s in chain["steps"]}
        record = storage.read_json(synthetic / "augmented" / entry["key"] / "record.json")
        pairs.append(
            {
                "track": entry["source_example"],
                "degraded_key": entry["key"],
                "clean": np.load(synthetic / "features" / f"{entry['source_example']}.npy"),
                "degraded": np.load(synthetic / "features" / f"{entry['key']}.npy"),
                "time_scale": record.get("time_scale", 1.0),
                "windows": entry["windows"],
                "frames_per_second": settings["sample_rate"] / settings["hop_length"],
                "snr_db": steps["noise"]["snr_db"],
                "noise_kind": steps["noise"]["kind"],
                "rt60_s": steps["room"]["room"]["rt60_s"],
            }
        )
    table = concert_pairs_table(pairs, storage.anonymization_secret())
    return snapshot(context, storage, datasets, "concert_pairs", table, {"concert_examples": len(pairs)})


def _load_accepted(storage: StorageResource) -> dict[str, dict]:
    folder = storage.contributions / "accepted"
    return (
        {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))} if folder.is_dir() else {}
    )


def _local_hits(storage: StorageResource) -> pd.DataFrame | None:
    root = storage.fetch(storage.dataset_dir("drum_hits"))
    return read_snapshot(root) if latest_manifest(root) else None


def review_incoming(storage: StorageResource, datasets: DatasetsResource, log) -> list[dict]:
    """Validate every file in `contributions/incoming/`: accepted ones are kept in canonical form as
    `accepted/<id>.json`, the rest move to `rejected/` as they came, and each gets a report
    (`reports/<file name>.report.json`) with its id and reasons. A file that cannot even be reviewed is rejected
    like any other, so one bad file never holds the queue or the training downstream. Returns the reports."""
    incoming = storage.contributions / "incoming"
    if not incoming.is_dir():
        return []
    accepted = _load_accepted(storage)
    local = _local_hits(storage)
    reference = reference_from(local, list(accepted.values()))
    reports = []
    with os.scandir(incoming) as entries:  # scandir does not follow links: a link is judged, never its target
        names = sorted(
            entry.name
            for entry in entries
            if not entry.name.startswith(".") and (entry.is_symlink() or entry.is_file(follow_symlinks=False))
        )
    for file_name in names:
        path = incoming / file_name
        try:
            verdict, submission = validate_submission(path, reference, datasets.contribution_max_bytes)
        except Exception as exc:  # noqa: BLE001 - a file that breaks the review must not break the queue
            log.exception(f"contribution {file_name}: the review itself failed")
            verdict, submission = (
                Verdict("", False, [f"could not be reviewed ({type(exc).__name__}); kept in rejected/"]),
                None,
            )
        report = verdict.report(file_name)
        write_text_atomic(_report_path(storage.contributions / "reports", file_name), json.dumps(report, indent=1))
        if submission is not None:
            name = verdict.submission_id
            write_text_atomic(storage.contributions / "accepted" / f"{name}.json", json.dumps(submission))
            path.unlink()
            accepted[name] = submission
            reference = reference_from(local, list(accepted.values()))
            log.info(f"contribution {file_name}: accepted as {name} (quality {verdict.quality.get('score')})")
        else:
            rejected = storage.contributions / "rejected"
            rejected.mkdir(parents=True, exist_ok=True)
            os.replace(path, _free_name(rejected / file_name))  # a link moves as a link
            log.warning(f"contribution {file_name}: rejected: {'; '.join(verdict.reasons)}")
        reports.append(report)
    return reports


def _report_path(folder, file_name: str):
    """`<file name>.report.json`, the whole name, so `x.json` and `x.txt` get a report each; a later file of
    the same name gets a numbered one instead of replacing the first."""
    return _free_name(folder / f"{file_name}.report.json")


def _free_name(path):
    """`path`, or `path` numbered (`x.2.json`, `x.3.json` ...) when that name is taken."""
    candidate, number = path, 1
    while os.path.lexists(candidate):
        number += 1
        stem, dot, suffix = path.name.rpartition(".")
        candidate = path.with_name(f"{stem}.{number}.{suffix}" if dot else f"{path.name}.{number}")
    return candidate


@dg.asset(group_name="datasets", kinds={"parquet"}, code_version="1", deps=[drum_hits])
@retry_transient_failures
def contributed_hits(
    context: dg.AssetExecutionContext, storage: StorageResource, datasets: DatasetsResource
) -> dg.MaterializeResult:
    """The training pool of community contributions: new submissions in `contributions/incoming/` are
    validated first (format, ranges, labels, metadata, outliers, duplicates, poisoning) and accepted or
    rejected with a report; then every accepted submission's rows become the next snapshot, split by
    submission. Deleted submissions (`pipeline-project contributions delete ID`) are gone from it, and the
    manifest lists what was added and removed since the previous snapshot."""
    storage.fetch(storage.contributions)
    reports = review_incoming(storage, datasets, context.log)
    storage.publish(storage.contributions)
    accepted = _load_accepted(storage)
    previous = latest_manifest(storage.fetch(storage.dataset_dir("contributed_hits")))
    before = set(previous["sources"].get("contributions", [])) if previous else set()
    now = set(accepted)
    notes = {"added_contributions": sorted(now - before), "removed_contributions": sorted(before - now)}
    table = contributions_table(list(accepted.values()), storage.anonymization_secret())
    return snapshot(
        context,
        storage,
        datasets,
        "contributed_hits",
        table,
        {"contributions": sorted(now)},
        notes=notes,
        reviewed=len(reports),
        accepted_now=sum(r["accepted"] for r in reports),
        rejected_now=sum(not r["accepted"] for r in reports),
        changes=dg.MetadataValue.json(notes),
    )


@dg.asset(group_name="datasets", kinds={"python"}, code_version="1", deps=[contributed_hits])
@retry_transient_failures
def contribution_stats(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Contributions accepted, rejected and deleted, samples per instrument and genre, and class balance."""
    folder = storage.fetch(storage.contributions)
    # Rejected files keep the name they came with (any extension, links too); accepted and deleted are <id>.json.
    counts = {
        state: len([p for p in (folder / state).glob(pattern) if not p.name.startswith(".")])
        if (folder / state).is_dir()
        else 0
        for state, pattern in (("accepted", "*.json"), ("rejected", "*"), ("deleted", "*.json"))
    }
    table = read_snapshot(storage.fetch(storage.dataset_dir("contributed_hits")))
    by_instrument = table.groupby("instrument").size().to_dict() if len(table) else {}
    by_genre = table.groupby("genre").size().to_dict() if len(table) else {}
    balance = {"open": int(table["OpenHH"].sum()), "closed": int((table["OpenHH"] == 0).sum())} if len(table) else {}
    stats = {
        "contributions": counts,
        "samples": len(table),
        "samples_per_instrument": by_instrument,
        "samples_per_genre": by_genre,
        "class_balance": balance,
    }
    write_text_atomic(folder / "stats.json", json.dumps(stats, indent=1))
    storage.publish(folder)
    return dg.MaterializeResult(
        metadata={
            "accepted": counts["accepted"],
            "rejected": counts["rejected"],
            "deleted": counts["deleted"],
            "samples": len(table),
            "samples_per_instrument": dg.MetadataValue.json(by_instrument),
            "samples_per_genre": dg.MetadataValue.json(by_genre),
            "class_balance": dg.MetadataValue.json(balance),
        }
    )
