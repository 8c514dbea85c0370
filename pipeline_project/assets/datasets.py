import json

import dagster as dg
import numpy as np
import pandas as pd

from pipeline_project.assets.analysis import song_theory
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.assets.synthesis import augmented_examples, rendered_examples, rendered_examples_of
from pipeline_project.audio.io import read_audio
from pipeline_project.datasets.anonymize import size_range
from pipeline_project.datasets.contributions import review_inbox
from pipeline_project.datasets.snapshots import SNAPSHOTS, Snapshot, latest_manifest, read_snapshot, write_snapshot
from pipeline_project.datasets.tables import (
    anonymize_drum_hits,
    concert_pairs_table,
    contributions_table,
    drum_hits_order,
    private_drum_hits,
    song_features_table,
    synthetic_example_entries,
    synthetic_examples_table,
)
from pipeline_project.files import write_parquet_atomic, write_text_atomic
from pipeline_project.labeling.queues import (
    DRUM_HITS,
    GENRE,
    hit_sources,
    labels_of,
    unlabelled,
    with_human_drum_labels,
    with_human_genres,
)
from pipeline_project.resources import DatasetsResource, MlflowResource, StorageResource
from pipeline_project.training.families import DRUM_MODEL_NAME, REVIEW_BAND, review_queue_table

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
    storage.fetch(storage.songs, pattern="*.json")
    keys = storage.finished_song_keys()
    songs = [
        {"key": key, **{stage: storage.read_json(path) for stage, path in storage.song(key).records().items()}}
        for key in keys
    ]
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
    corpus = storage.synthetic()
    storage.fetch(corpus.path, pattern="*.json")
    entries = synthetic_example_entries(corpus)
    table = synthetic_examples_table(entries, storage.anonymization_secret())
    by_split = (
        table.groupby("split").agg(examples=("example_id", "size"), sources=("source_id", "nunique"))
        if len(table)
        else None
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
        splits=dg.MetadataValue.md(by_split.to_markdown() if by_split is not None else "(empty)"),
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
    rendered drum stems, labelled from the MIDI; split train/validation/test by source example. Which example
    and onset each hit id came from stays private in the lake, for the labeling page and for people's labels."""
    examples = []
    storage.fetch(storage.synthetic().rendered)
    for example in rendered_examples_of(storage):
        drums, sample_rate = read_audio(example.stem("drums"))
        examples.append((storage.read_json(example.labels), drums.mean(axis=0), sample_rate))
    secret = storage.anonymization_secret()
    private = private_drum_hits(examples)
    table = anonymize_drum_hits(private, secret)
    counts = table.groupby(["split", "label"]).size().unstack(fill_value=0) if len(table) else pd.DataFrame()
    result = snapshot(
        context,
        storage,
        datasets,
        "drum_hits",
        table,
        {"examples": len(examples)},
        class_counts=dg.MetadataValue.md(counts.to_markdown() if len(counts) else "(empty)"),
    )
    sources = storage.labels().hit_sources(result.metadata["snapshot_id"])
    write_parquet_atomic(sources, hit_sources(private, table, drum_hits_order(secret, len(private))))
    publish_private_side(storage, sources, "drum_hits")
    return result


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
    corpus = storage.synthetic()
    storage.fetch(corpus.path, pattern="*.json")
    storage.fetch(corpus.features)
    manifest = storage.read_json(corpus.augmented_manifest)
    settings = manifest.get("features", {"sample_rate": 22_050, "hop_length": 512})
    pairs = []
    for entry in manifest["examples"]:
        chain = entry.get("chain") or {}
        if "concert" not in chain.get("presets", []):
            continue
        steps = {s["name"]: s for s in chain["steps"]}
        record = storage.read_json(corpus.augmented_example(entry["key"]).record)
        pairs.append(
            {
                "track": entry["source_example"],
                "degraded_key": entry["key"],
                "clean": np.load(corpus.features_of(entry["source_example"])),
                "degraded": np.load(corpus.features_of(entry["key"])),
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


def read_latest(storage: StorageResource, dataset: str, required: bool = True) -> tuple[dict | None, pd.DataFrame]:
    """(manifest, rows) of a dataset's latest published snapshot; without one, a failure that says to build it
    first, or (None, an empty table) when it is not `required`."""
    root = storage.fetch(storage.dataset_dir(dataset))
    manifest = latest_manifest(root)
    if manifest is None:
        if required:
            raise dg.Failure(description=f"{dataset} has no snapshot yet: materialize it first")
        return None, pd.DataFrame()
    return manifest, read_snapshot(root, manifest["snapshot_id"])


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
    inbox = storage.inbox()
    storage.fetch(inbox.path)
    local_hits = read_latest(storage, "drum_hits", required=False)[1]
    reports = review_inbox(inbox, local_hits, datasets.contribution_max_bytes, context.log)
    storage.publish(inbox.path)
    accepted = inbox.accepted_submissions()
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
    inbox = storage.inbox()
    storage.fetch(inbox.path)
    counts = inbox.counts()
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
    write_text_atomic(inbox.stats, json.dumps(stats, indent=1))
    storage.publish(inbox.path)
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


def publish_private_side(storage: StorageResource, path, dataset: str) -> None:
    """After writing `path`, the private side of `dataset`'s newest snapshot (in the lake's labels folder): delete
    those of the snapshots that were pruned, and publish what is left."""
    folder = storage.dataset_dir(dataset) / SNAPSHOTS
    kept = {entry.name for entry in folder.iterdir() if entry.is_dir()} if folder.is_dir() else set()
    storage.labels().keep_only(path, kept)
    storage.publish(path.parent)


def released_labels(storage: StorageResource) -> tuple[str, dict[str, dict]]:
    """(snapshot id, private side) of the latest published `human_labels` release: which queue item each released
    label is, and the label. ("none", {}) before anyone has labelled."""
    root = storage.fetch(storage.dataset_dir("human_labels"))
    manifest = latest_manifest(root)
    if manifest is None:
        return "none", {}
    path = storage.fetch(storage.labels().release(manifest["snapshot_id"]))
    return manifest["snapshot_id"], json.loads(path.read_text()) if path.exists() else {}


def drum_hit_sources(storage: StorageResource, snapshot_id: str) -> pd.DataFrame | None:
    """Which rendered example and onset each hit id of a `drum_hits` snapshot came from (private), or None for a
    snapshot built before the lake kept them."""
    path = storage.fetch(storage.labels().hit_sources(snapshot_id))
    return pd.read_parquet(path) if path.exists() else None


def with_peoples_labels(
    storage: StorageResource, dataset: str, table: pd.DataFrame, snapshot_id: str
) -> tuple[str, pd.DataFrame, str | None]:
    """A `drum_hits` or `song_features` snapshot's rows with people's labels of the latest `human_labels` release in
    place of the score's or the tag's (`label_source` says which), as every training and scoring run reads them:
    (the release's id, the rows, why people's labels were left out or None)."""
    labels_snapshot, release = released_labels(storage)
    if dataset == "drum_hits":
        people = labels_of(release, DRUM_HITS)
        sources = drum_hit_sources(storage, snapshot_id)
        if sources is None:
            left_out = (
                f"drum_hits snapshot {snapshot_id} was built before people's labels could be matched to its hits: "
                "they are left out this time (materialize drum_hits again to use them)"
            )
            return labels_snapshot, table, left_out if people else None
        return labels_snapshot, with_human_drum_labels(table, sources, people), None
    people = labels_of(release, GENRE)
    # The key finds a labelled song's row; without labels there is nothing to find (nor a key to need).
    return labels_snapshot, with_human_genres(table, people, storage.anonymization_secret() if people else b""), None


class ReviewQueueConfig(dg.Config):
    # The champion confidences (top class probability) of the hits put in front of a person.
    lowest_confidence: float = REVIEW_BAND[0]
    highest_confidence: float = REVIEW_BAND[1]


@dg.asset(
    group_name="datasets",
    kinds={"parquet"},
    code_version="2",
    deps=[DRUM_MODEL_NAME, "human_labels"],
    automation_condition=dg.AutomationCondition.eager(),
)
@retry_transient_failures
def review_queue(
    context: dg.AssetExecutionContext,
    config: ReviewQueueConfig,
    storage: StorageResource,
    datasets: DatasetsResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """Drum hits the champion drum-hit classifier is unsure about (top class probability between 0.4 and 0.6),
    with its guess, for a person to label on the labeling page (`make label`): the examples that would teach the
    next model most. Hits a person has labelled leave it."""
    manifest, hits = read_latest(storage, "drum_hits")
    champion, model = mlflow.registry().load_champion(DRUM_MODEL_NAME)
    if champion is None:
        raise dg.Failure(description=f"{DRUM_MODEL_NAME} has no champion yet: materialize it first")
    band = (config.lowest_confidence, config.highest_confidence)
    queue = review_queue_table(model, champion.version, hits, band)
    labels_snapshot, release = released_labels(storage)
    people = labels_of(release, DRUM_HITS)
    sources = drum_hit_sources(storage, manifest["snapshot_id"])
    labelled = 0
    if people and sources is not None:
        before = len(queue)
        queue = unlabelled(queue, sources, people)
        labelled = before - len(queue)
    context.log.info(
        f"review_queue: {len(queue)} of {len(hits)} hits with champion confidence in {band}"
        + (f", {labelled} more already labelled by a person" if labelled else "")
    )
    lineage = {
        "drum_hits": manifest["snapshot_id"],
        "model": f"{DRUM_MODEL_NAME}/{champion.version}",
        "human_labels": labels_snapshot,
    }
    return snapshot(
        context,
        storage,
        datasets,
        "review_queue",
        queue.reset_index(drop=True),
        lineage,
        band=str(band),
        pool_rows=len(hits),
        labelled_by_people=labelled,
    )
