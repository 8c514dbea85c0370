"""People in the loop, as assets: the genre queue the labeling page shows beside the drum-hit `review_queue`, the
`human_labels` release of what people labelled there, and the sensor that releases new labels as they are given.
The page itself is `python -m pipeline_project label` (`make label`); the labels reach the models through the
training assets (`assets/training.py`), which merge them into their training sets."""

import hashlib
import json

import dagster as dg
import pandas as pd

from pipeline_project.assets.analysis import song_theory
from pipeline_project.assets.datasets import REFRESH_WHEN_UPSTREAM_CHANGES, publish_private_side, snapshot
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.audio.ingest import song_name
from pipeline_project.datasets.tables import genre_label, song_feature_row
from pipeline_project.files import write_text_atomic
from pipeline_project.labeling.queues import genre_queue_entries, release_table
from pipeline_project.labeling.store import LabelStore
from pipeline_project.resources import DatasetsResource, MlflowResource, StorageResource
from pipeline_project.training import genre_classifier
from pipeline_project.training.families import GENRE_MODEL_NAME

HUMAN_LABELS = "human_labels"


def label_stores(storage: StorageResource) -> dict[str, dict[str, dict]]:
    """{queue: its labels} of every queue a person has labelled on the page."""
    folder = storage.labels()
    storage.fetch(folder.stores)
    return {queue: LabelStore(folder.store(queue)).all() for queue in folder.labelled_queues()}


@dg.asset(name=HUMAN_LABELS, group_name="datasets", kinds={"parquet"}, code_version="1")
@retry_transient_failures
def human_labels(
    context: dg.AssetExecutionContext, storage: StorageResource, datasets: DatasetsResource
) -> dg.MaterializeResult:
    """What people labelled on the labeling page, released like every dataset (immutable snapshot, blocking privacy
    audit): one row per label with the queue, the label and the model's guess and version, under keyed ids of its
    own; no item names and no times. Which item each row is stays private in the lake, where the training assets
    read it to merge the labels into their training sets (`label_source` = human)."""
    stores = label_stores(storage)
    table, private = release_table(stores, storage.anonymization_secret())
    counts = {queue: len(labels) for queue, labels in stores.items()}
    context.log.info(
        f"human_labels: {len(table)} labels ({', '.join(f'{q} {n}' for q, n in counts.items()) or 'none'})"
    )
    result = snapshot(
        context,
        storage,
        datasets,
        HUMAN_LABELS,
        table,
        {"queues": counts},
        per_queue=dg.MetadataValue.json(counts),
        **{f"labels_{queue}": n for queue, n in counts.items()},
    )
    release = storage.labels().release(result.metadata["snapshot_id"])
    write_text_atomic(release, json.dumps(private, sort_keys=True))
    publish_private_side(storage, release, HUMAN_LABELS)
    return result


@dg.asset(
    group_name="datasets",
    kinds={"json"},
    code_version="1",
    deps=[GENRE_MODEL_NAME, song_theory],
    automation_condition=REFRESH_WHEN_UPSTREAM_CHANGES,  # not held back by quarantined songs
)
@retry_transient_failures
def genre_queue(
    context: dg.AssetExecutionContext, storage: StorageResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """The songs whose genre the champion genre classifier is unsure of (top probability under 0.6), or whose tag
    names a genre it does not predict, with its guess: for a person to settle on the labeling page. Private (it
    names songs): kept in the lake, never released."""
    champion, model = mlflow.registry().load_champion(GENRE_MODEL_NAME)
    path = storage.labels().genre_queue
    if champion is None:
        # A collection with fewer than two tagged genres trains no classifier: nothing to ask about, no error.
        write_text_atomic(path, json.dumps({"model_version": None, "songs": []}))
        storage.publish(path)
        context.log.info(f"genre_queue: empty, {GENRE_MODEL_NAME} has no champion yet")
        return dg.MaterializeResult(metadata={"songs": 0, "model_version": "none"})
    storage.fetch(storage.songs, pattern="*.json")
    secret = storage.anonymization_secret()
    records, tags, names = {}, {}, {}
    for key in storage.finished_song_keys():
        record = {"key": key, **{stage: storage.read_json(path) for stage, path in storage.song(key).records().items()}}
        records[key] = song_feature_row(record, secret)
        tags[key] = genre_label(record["song"].get("genre"))
        names[key] = song_name(record["song"]) or next(iter(record["song"].get("file_names") or []), "")
    rows = pd.DataFrame.from_dict(records, orient="index")
    entries = genre_queue_entries(rows, tags, model, champion.version, genre_classifier.feature_matrix)
    for entry in entries:  # for the person listening: the page is served on loopback only
        entry["name"] = names[entry["song"]]
    write_text_atomic(path, json.dumps({"model_version": str(champion.version), "songs": entries}, indent=1))
    storage.publish(path)
    context.log.info(f"genre_queue: {len(entries)} of {len(records)} songs for a person to look at")
    return dg.MaterializeResult(
        metadata={
            "songs": len(entries),
            "of_songs": len(records),
            "model_version": str(champion.version),
            "reasons": dg.MetadataValue.json(
                pd.Series([e["reason"].split(" (")[0] for e in entries]).value_counts().to_dict() if entries else {}
            ),
        }
    )


labels_job = dg.define_asset_job(
    "labels_job",
    selection=dg.AssetSelection.assets(HUMAN_LABELS),
    description="Release what people labelled on the labeling page (with its privacy audit); the review queue and "
    "the models follow through their automation.",
)


@dg.sensor(job=labels_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def labels_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
    """Releases people's labels once they stop changing: a run when the labeling page's stores differ from the
    last release and have not changed for one evaluation (so a labelling session is one release, not hundreds)."""
    stores = label_stores(storage)
    digest = hashlib.sha256(json.dumps(stores, sort_keys=True).encode()).hexdigest()[:16]
    released, seen = (context.cursor or ":").split(":", 1)
    if not stores or digest == released:
        return dg.SkipReason("no new labels")
    if digest != seen:
        context.update_cursor(f"{released}:{digest}")
        return dg.SkipReason("labels are changing: released once they settle")
    # No run key: going back to an earlier set of labels (undo) is a new release, not a duplicate request.
    return dg.SensorResult(run_requests=[dg.RunRequest()], cursor=f"{digest}:{digest}")
