"""The labeling page and its labels, on their own: the store, the release and its privacy, how people's labels
replace the score's in training rows, the server's rules, and the page in a real headless Chromium (batch
mode, skip, export). The whole loop over a real pipeline run (label, release, retrain, queue) is in
test_pipeline.py."""

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest
from browser import browser_page
from starlette.testclient import TestClient

from pipeline_project.datasets.privacy import audit_table
from pipeline_project.datasets.tables import keyed_hash
from pipeline_project.labeling.app import Labeling, create_app
from pipeline_project.labeling.queues import (
    DRUM_HITS,
    GENRE,
    Queue,
    QueueItem,
    hit_item_id,
    labels_of,
    release_table,
    unlabelled,
    with_human_drum_labels,
    with_human_genres,
)
from pipeline_project.labeling.store import LabelStore

SECRET = b"s" * 32
CLASSES = ["closed_hh", "kick", "open_hh", "snare"]


def tone_queue(count: int = 14) -> Queue:
    """A drum-hit-like queue over short tones, each item a different pitch."""
    items = [
        QueueItem(f"ex-{i:012x}@{1000 + 250 * i}", CLASSES[i % 4], 0.45 + 0.01 * i, "3", {"the score says": "kick"})
        for i in range(count)
    ]

    def audio(item_id: str, part: str):
        index = int(item_id.split("@")[1])
        t = np.arange(8000) / 16000
        return (0.2 * np.sin(2 * np.pi * (200 + index / 10) * t))[None].astype("float32"), 16000

    return Queue(DRUM_HITS, CLASSES, items, ("mix", "drums"), audio)


def session(tmp_path, queue: Queue | None = None) -> Labeling:
    queue = queue or tone_queue()
    return Labeling(lambda: {queue.name: queue}, lambda name: tmp_path / "store" / f"{name}.json")


def test_the_store_keeps_labels_and_takes_them_back(tmp_path):
    store = LabelStore(tmp_path / "store" / "drum_hits.json")
    assert store.all() == {}
    store.put("ex-a@100", "kick", "snare", 0.5, "2")
    store.put("ex-b@200", "snare", "snare", 0.55, "2")
    again = LabelStore(store.path)  # a new process reads what the first wrote
    assert again.all()["ex-a@100"]["label"] == "kick" and again.all()["ex-a@100"]["guess"] == "snare"
    assert again.remove("ex-a@100") and not again.remove("ex-a@100")
    assert list(LabelStore(store.path).all()) == ["ex-b@200"]
    assert not list(store.path.parent.glob(".*tmp*"))  # written atomically, nothing left behind


def test_the_release_names_no_item_links_to_no_other_dataset_and_passes_the_privacy_audit():
    song = "5b1d4250a67aa1b2"
    stores = {
        DRUM_HITS: {"ex-0123456789ab@1500": {"label": "kick", "guess": "snare", "model_version": "2"}},
        GENRE: {song: {"label": "funk", "guess": "funk", "model_version": "1"}},
    }
    table, private = release_table(stores, SECRET)
    assert list(table.columns) == ["label_id", "queue", "label", "model_guess", "agrees_with_model", "model_version"]
    assert set(table["queue"]) == {DRUM_HITS, GENRE} and table["agrees_with_model"].tolist().count(True) == 1
    text = table.to_csv()
    assert "ex-0123456789ab" not in text and song not in text and "1500" not in text
    assert keyed_hash(SECRET, f"song:{song}") not in set(table["label_id"])  # not song_features' id
    assert audit_table(table, {"ex-0123456789ab", song}) == []
    assert labels_of(private, GENRE) == {song: "funk"} and labels_of(private, DRUM_HITS) == {
        "ex-0123456789ab@1500": "kick"
    }
    assert release_table({}, SECRET)[0].columns.tolist() == table.columns.tolist()  # the schema holds when empty


def test_peoples_labels_replace_the_scores_in_training_rows_and_leave_the_queue():
    hits = pd.DataFrame(
        {
            "hit_id": [11, 12, 13],
            "split": ["train", "test", "train"],
            "label": pd.Categorical(["kick", "snare", "closed_hh"]),
        }
    )
    sources = pd.DataFrame({"hit_id": [11, 12, 13], "example": ["ex-a", "ex-a", "ex-b"], "onset": [0.5, 1.25, 2.0]})
    people = {hit_item_id("ex-a", 1.25): "open_hh", hit_item_id("ex-z", 9.0): "kick"}
    merged = with_human_drum_labels(hits, sources, people)
    assert merged["label"].tolist() == ["kick", "open_hh", "closed_hh"]
    assert merged["label_source"].tolist() == ["source", "human", "source"]
    assert unlabelled(hits, sources, people)["hit_id"].tolist() == [11, 13]

    songs = pd.DataFrame(
        {"song_id": [keyed_hash(SECRET, "song:k1"), keyed_hash(SECRET, "song:k2")], "genre": ["rock", "*"]}
    )
    genres = with_human_genres(songs, {"k2": "jazz"}, SECRET)
    assert genres["genre"].tolist() == ["rock", "jazz"] and genres["label_source"].tolist() == ["source", "human"]


def test_the_server_takes_labels_only_from_the_page_and_only_of_known_classes(tmp_path):
    client = TestClient(create_app(session(tmp_path)), base_url="http://127.0.0.1")
    view = client.get("/api/queues/drum_hits").json()
    item = view["items"][0]["id"]
    assert [c["key"] for c in view["classes"]] == ["1", "2", "3", "4"] and view["progress"]["left"] == 14
    url = f"/api/queues/drum_hits/labels/{item}"
    assert client.put(url, json={"label": "kick"}).status_code == 403  # another site's page cannot label
    assert client.put(url, json={"label": "cowbell"}, headers={"X-Labeling": "1"}).status_code == 400
    assert (
        client.put(
            "/api/queues/drum_hits/labels/ex-nope@1", json={"label": "kick"}, headers={"X-Labeling": "1"}
        ).status_code
        == 404
    )
    done = client.put(url, json={"label": "kick"}, headers={"X-Labeling": "1"}).json()
    assert done["progress"]["done"] == 1 and done["record"]["guess"] == view["items"][0]["guess"]
    wav = client.get(f"/api/queues/drum_hits/audio/{item}/drums.wav")
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    assert client.get(f"/api/queues/drum_hits/audio/{item}/vocals.wav").status_code == 404
    assert TestClient(create_app(session(tmp_path)), base_url="http://evil.example").get("/").status_code == 400
    exported = client.get("/api/export.csv")
    assert exported.headers["content-disposition"].endswith('labels.csv"') and item in exported.text


@pytest.fixture
def page_server(tmp_path):
    """The labeling app served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    labeling = session(tmp_path)
    server = uvicorn.Server(uvicorn.Config(create_app(labeling), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "the labeling server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/", labeling
    server.should_exit = True
    thread.join(10)


def test_batch_mode_labels_the_selected_items_with_one_key_and_skip_moves_on(page_server, tmp_path):
    url, labeling = page_server
    with browser_page() as page:
        page.goto(url)
        page.wait_for_selector("#item-id:not(:empty)")
        first = page.text_content("#item-id")
        page.keyboard.press("s")  # skip
        page.wait_for_function(f"document.querySelector('#item-id').textContent !== {json.dumps(first)}")
        page.keyboard.press("b")
        page.wait_for_selector("#batch-rows tr")
        for _ in range(3):  # select the first three rows
            page.keyboard.press("x")
            page.keyboard.press("ArrowDown")
        page.keyboard.press("4")  # snare, for all three
        page.wait_for_function("document.querySelector('#progress-text').textContent.startsWith('done 3')")
        page.keyboard.press("Enter")  # the focused row takes the model's guess
        page.wait_for_function("document.querySelector('#progress-text').textContent.startsWith('done 4')")
        with page.expect_download() as download:
            page.click("text=export JSON")
        exported = json.loads(open(download.value.path()).read())["labels"]
    labels = LabelStore(tmp_path / "store" / "drum_hits.json").all()
    assert len(labels) == 4 and len(exported) == 4
    assert sorted(record["label"] for record in labels.values()).count("snare") >= 3
    assert first not in labels  # skipped, not labelled
    assert labeling.progress(DRUM_HITS)["left"] == 10


def test_the_labels_sensor_releases_labels_once_they_stop_changing(tmp_path):
    import dagster as dg

    from pipeline_project.assets.labeling import labels_sensor
    from pipeline_project.resources import StorageResource

    storage = StorageResource(data_root=str(tmp_path / "data"), secret_dir=str(tmp_path / "keys"))

    def evaluate(cursor):
        context = dg.build_sensor_context(cursor=cursor, resources={"storage": storage})
        result = labels_sensor(context)
        return result, context.cursor

    result, cursor = evaluate(None)
    assert isinstance(result, dg.SkipReason) and "no new labels" in result.skip_message
    store = LabelStore(storage.labels().store(DRUM_HITS))
    store.put("ex-a@100", "kick", "snare", 0.5, "1")
    result, cursor = evaluate(cursor)
    assert isinstance(result, dg.SkipReason) and "changing" in result.skip_message
    store.put("ex-b@200", "snare", "snare", 0.5, "1")  # still labelling
    result, cursor = evaluate(cursor)
    assert isinstance(result, dg.SkipReason)
    result, cursor = evaluate(cursor)  # unchanged since the last look: released
    assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 1
    result, _ = evaluate(result.cursor)
    assert isinstance(result, dg.SkipReason) and "no new labels" in result.skip_message
