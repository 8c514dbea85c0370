"""The labeling queues: what a person is asked to label, with the model's guess, and the audio to hear it by.

Two queues today, and room for more (a queue is a name, its classes, its items and a way to fetch an item's
audio):
- `drum_hits`: the rendered drum hits the champion drum-hit classifier is unsure about (`review_queue`). An
  item is a hit in a rendered example, named `<example>@<onset in ms>`; its audio is the mix around the hit,
  and the drum stem alone.
- `genre`: the songs the champion genre classifier is unsure about, or whose genre tag it disagrees with
  (`genre_queue`). An item is a song, named by its partition key; its audio is an excerpt of the song.

Item names are private (they name examples and songs): they stay in the lake and on the page served on
loopback. What leaves is the `human_labels` release, under keyed ids of its own (`release_table`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from pipeline_project.datasets.anonymize import keyed_hash, keyed_order
from pipeline_project.datasets.snapshots import latest_manifest, read_snapshot
from pipeline_project.layout import ExampleFolder, LabelsFolder, SyntheticCorpus

DRUM_HITS = "drum_hits"
GENRE = "genre"
QUEUE_TITLES = {DRUM_HITS: "Drum hits", GENRE: "Song genre"}
QUEUE_ITEMS = {DRUM_HITS: "drum hits", GENRE: "songs' genres"}  # what a queue's items are, in a sentence
HIT_WINDOW_S = (0.4, 0.8)  # what is heard of a hit: this long before and after its onset
GENRE_EXCERPT_S = 20.0  # what is heard of a song: this long, from GENRE_EXCERPT_AT of the way in
GENRE_EXCERPT_AT = 0.3
# A song goes to the genre queue when the champion's top probability is below this, or when the song's tag
# names a genre the champion does not predict.
GENRE_UNSURE_BELOW = 0.6
HUMAN, MODEL_OR_SOURCE = "human", "source"  # where a training row's label came from (`label_source`)


@dataclass(frozen=True)
class QueueItem:
    id: str
    guess: str
    confidence: float
    model_version: str
    context: dict = field(default_factory=dict)  # shown beside the player: why it is queued, what the data says


@dataclass
class Queue:
    name: str
    classes: list[str]
    items: list[QueueItem]
    parts: tuple[str, ...]  # what can be heard of an item: "mix", and a stem where there is one
    audio: Callable[[str, str], tuple[np.ndarray, int]]  # (item id, part) -> (samples, channels first; rate)
    note: str = ""  # why the queue is empty or short, for the page to say

    @property
    def title(self) -> str:
        return QUEUE_TITLES.get(self.name, self.name)


class UnknownItem(KeyError):
    """An item id that names no hit or song of the queue."""


def hit_item_id(example: str, onset_s: float) -> str:
    """A drum hit's item id: its rendered example and onset (isolated hits are at least 50 ms apart, so
    milliseconds tell them apart)."""
    return f"{example}@{round(float(onset_s) * 1000)}"


def parse_hit_item(item_id: str) -> tuple[str, float]:
    example, separator, milliseconds = item_id.rpartition("@")
    if not separator or not example or not milliseconds.isdigit():
        raise UnknownItem(item_id)
    return example, int(milliseconds) / 1000


def read_window(path: Path, start_s: float, seconds: float) -> tuple[np.ndarray, int]:
    """`seconds` of an audio file from `start_s` (clipped to the file), channels first; only that part is read."""
    with sf.SoundFile(str(path)) as audio:
        rate = audio.samplerate
        start = min(max(0, int(start_s * rate)), audio.frames)
        audio.seek(start)
        samples = audio.read(int(seconds * rate), dtype="float32", always_2d=True)
    return samples.T, rate


def drum_hit_queue(
    review: pd.DataFrame, sources: pd.DataFrame, example: Callable[[str], ExampleFolder], classes: list[str]
) -> Queue:
    """The drum-hit queue from a `review_queue` snapshot and the private sources of the `drum_hits` snapshot it
    was drawn from (hit id -> rendered example and onset). `example(key)` is a rendered example's folder."""
    where = sources.set_index("hit_id")[["example", "onset"]]
    items = []
    for row in review.itertuples(index=False):
        if row.hit_id not in where.index:
            continue  # the queue was drawn from an older drum_hits snapshot than the sources: rebuilt soon
        key, onset = where.loc[row.hit_id]
        items.append(
            QueueItem(
                id=hit_item_id(key, onset),
                guess=str(row.predicted),
                confidence=round(float(row.confidence), 3),
                model_version=str(row.model_version),
                context={"the score says": str(row.label)},
            )
        )

    def audio(item_id: str, part: str) -> tuple[np.ndarray, int]:
        key, onset = parse_hit_item(item_id)
        path = example(key).mix if part == "mix" else example(key).stem(part)
        if not path.exists():
            raise UnknownItem(item_id)
        return read_window(path, onset - HIT_WINDOW_S[0], sum(HIT_WINDOW_S))

    items.sort(key=lambda item: item.confidence)  # the hits the model is least sure of first
    return Queue(DRUM_HITS, classes, items, ("mix", "drums"), audio)


def genre_queue(entries: list[dict], song_audio: Callable[[str], Path], classes: list[str]) -> Queue:
    """The genre queue from `genre_queue`'s entries ({"song", "guess", "confidence", "model_version", "tag",
    "reason"}); `song_audio(key)` is a song's decoded audio in the lake."""
    items = [
        QueueItem(
            id=entry["song"],
            guess=entry["guess"],
            confidence=round(float(entry["confidence"]), 3),
            model_version=str(entry["model_version"]),
            context={"song": entry.get("name", ""), "tag": entry["tag"], "queued because": entry["reason"]},
        )
        for entry in entries
    ]

    def audio(item_id: str, part: str) -> tuple[np.ndarray, int]:
        path = song_audio(item_id)
        if part != "mix" or not path.exists():
            raise UnknownItem(item_id)
        duration = sf.info(str(path)).duration
        start = max(0.0, min(duration * GENRE_EXCERPT_AT, duration - GENRE_EXCERPT_S))
        return read_window(path, start, GENRE_EXCERPT_S)

    return Queue(GENRE, classes, items, ("mix",), audio)


def genre_queue_entries(
    rows: pd.DataFrame,
    tags: dict[str, str],
    model,
    model_version: str,
    features: Callable[[pd.DataFrame], pd.DataFrame],
) -> list[dict]:
    """The songs to ask a person about: the champion's top probability below GENRE_UNSURE_BELOW, or a genre tag
    (one of the known genres) the champion does not predict. `rows` is indexed by song key; `tags` are the
    songs' folded tags ("other" when there is none)."""
    if rows.empty:
        return []
    probabilities = model.predict_proba(features(rows))
    classes = np.asarray(model.classes_)
    entries = []
    for key, probability in zip(rows.index, probabilities):
        guess, confidence = str(classes[probability.argmax()]), float(probability.max())
        tag = tags.get(key, "other")
        reasons = []
        if confidence < GENRE_UNSURE_BELOW:
            reasons.append(f"the model is unsure ({confidence:.2f})")
        if tag != "other" and tag != guess:
            reasons.append(f"the tag says {tag}")
        if reasons:
            entries.append(
                {
                    "song": key,
                    "guess": guess,
                    "confidence": round(confidence, 4),
                    "model_version": str(model_version),
                    "tag": tag,
                    "reason": "; ".join(reasons),
                }
            )
    return sorted(entries, key=lambda entry: entry["confidence"])


RELEASE_COLUMNS = ("label_id", "queue", "label", "model_guess", "agrees_with_model", "model_version")


def release_table(stores: dict[str, dict[str, dict]], secret: bytes) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The `human_labels` release and its private side. One row per label: a keyed id of its own (it links to no
    other dataset's ids), the queue, the label, the model's guess and version. No item names, no times, rows in
    an order drawn from the secret. The private side maps each released id back to its queue and item."""
    rows, private = [], {}
    for queue, labels in sorted(stores.items()):
        for item, record in sorted(labels.items()):
            label_id = keyed_hash(secret, f"label:{queue}:{item}")
            private[label_id] = {"queue": queue, "item": item, "label": record["label"]}
            rows.append(
                {
                    "label_id": label_id,
                    "queue": queue,
                    "label": record["label"],
                    "model_guess": record.get("guess") or "",
                    "agrees_with_model": record["label"] == record.get("guess"),
                    "model_version": str(record.get("model_version") or ""),
                }
            )
    table = pd.DataFrame(rows, columns=list(RELEASE_COLUMNS))
    if len(table):
        table = table.iloc[keyed_order(table["label_id"], secret)].reset_index(drop=True)
    return table.astype({"agrees_with_model": bool}), private


def labels_of(private_release: dict[str, dict], queue: str) -> dict[str, str]:
    """{item: label} of one queue in a release's private side."""
    return {entry["item"]: entry["label"] for entry in private_release.values() if entry["queue"] == queue}


def with_human_drum_labels(hits: pd.DataFrame, sources: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """`drum_hits` rows with people's labels in place of the score's where a person labelled the hit, and a
    `label_source` column saying which (HUMAN or MODEL_OR_SOURCE). `sources` maps the snapshot's hit ids to
    their example and onset."""
    labelled = []
    for item, label in labels.items():
        try:
            example, onset = parse_hit_item(item)
        except UnknownItem:
            continue  # not a hit's id: it names no row
        labelled.append((example, round(onset * 1000), label))
    if not labelled:
        return hits.assign(label_source=MODEL_OR_SOURCE)
    # Only the labelled hits are looked up (a join on example and onset in ms), never a name for every hit.
    milliseconds = np.round(sources["onset"].to_numpy(dtype=float) * 1000).astype(np.int64)
    found = (
        sources[["hit_id", "example"]]
        .assign(ms=milliseconds)
        .merge(pd.DataFrame(labelled, columns=["example", "ms", "human"]), on=["example", "ms"])
    )
    return _in_place_of(hits, "label", hits["hit_id"].map(pd.Series(found["human"].to_numpy(), index=found["hit_id"])))


def with_human_genres(table: pd.DataFrame, labels: dict[str, str], secret: bytes) -> pd.DataFrame:
    """`song_features` rows with people's genre in place of the tag's where a person labelled the song, and a
    `label_source` column saying which. Songs are found by their keyed id, as the release wrote it."""
    by_id = {keyed_hash(secret, f"song:{key}"): genre for key, genre in labels.items()}
    return _in_place_of(table, "genre", table["song_id"].map(by_id))


def _in_place_of(table: pd.DataFrame, column: str, human: pd.Series) -> pd.DataFrame:
    """`table` with `human`'s values (people's labels, NaN where none) in place of `column`'s, and `label_source`."""
    labelled = human.notna().to_numpy()
    out = table.copy()
    if labelled.any():
        out[column] = out[column].astype(str).where(~labelled, human)
    out["label_source"] = np.where(labelled, HUMAN, MODEL_OR_SOURCE)
    return out


def unlabelled(review: pd.DataFrame, sources: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """The review queue's rows a person has not labelled yet."""
    return review[with_human_drum_labels(review, sources, labels)["label_source"].to_numpy() != HUMAN]


def hit_sources(private: pd.DataFrame, anonymized: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    """Which example and onset each released hit id came from (`order`: the private rows in released order)."""
    return pd.DataFrame(
        {
            "hit_id": anonymized["hit_id"].to_numpy(),
            "example": private["example"].to_numpy()[order],
            "onset": private["onset"].to_numpy()[order],
        }
    )


def load_queues(
    dataset_dir: Callable[[str], Path], labels: LabelsFolder, corpus: SyntheticCorpus, song_audio: Callable[[str], Path]
) -> dict[str, Queue]:
    """Every queue there is data for: the drum hits of the latest `review_queue` snapshot (with the private
    sources of the `drum_hits` snapshot it was drawn from) and the songs of the latest `genre_queue`."""
    from pipeline_project.analysis.genre_cues import GENRES

    queues = {}
    review_root = dataset_dir("review_queue")
    manifest = latest_manifest(review_root)
    if manifest is not None:
        review = read_snapshot(review_root, manifest["snapshot_id"])
        sources_path = labels.hit_sources(manifest["sources"].get("drum_hits", ""))
        sources = (
            pd.read_parquet(sources_path)
            if sources_path.exists()
            else pd.DataFrame({"hit_id": pd.Series([], "int64"), "example": [], "onset": []})
        )
        label_column = review["label"]
        known = list(label_column.cat.categories) if isinstance(label_column.dtype, pd.CategoricalDtype) else []
        classes = sorted({*map(str, known), *review["label"].astype(str), *review["predicted"].astype(str)})
        queue = drum_hit_queue(review, sources, corpus.rendered_example, classes)
        if not sources_path.exists():
            queue.note = "drum_hits was built before the labeling page existed: materialize drum_hits again"
        queues[DRUM_HITS] = queue
    if labels.genre_queue.exists():
        import json

        entries = json.loads(labels.genre_queue.read_text())["songs"]
        queues[GENRE] = genre_queue(entries, song_audio, list(GENRES))
    return queues
