"""The linkage attack on `song_features`, end to end: 40 songs (three of them also in a second format) through the
pipeline, the dataset released at the default k, and an attacker who owns every song, runs the project's own
analysis on it and matches on every released column. They may link no more than 1 / k of the rows."""

import json

import dagster as dg
import numpy as np
import pytest
from conftest import render_groove_song, with_privacy_checks

from pipeline_project import cli
from pipeline_project.assets.datasets import song_features
from pipeline_project.audio.io import decode_song
from pipeline_project.datasets.anonymize import keyed_hash, smallest_group
from pipeline_project.datasets.linkage import linkage_rate
from pipeline_project.datasets.snapshots import latest_manifest, read_snapshot
from pipeline_project.datasets.tables import SONG_FEATURE_CATEGORICAL, SONG_FEATURE_NUMERIC, song_features_table
from pipeline_project.definitions import default_resources

STYLES = {"rock": "rock", "funk": "funk", "disco": "disco", "jazz": "jazz_ride", "ballad": "ballad_6_8"}
K = 5  # the default


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("linkage")
    data_root, home = root / "data", root / "dagster_home"
    (data_root / "incoming").mkdir(parents=True)
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    rng = np.random.default_rng(7)
    for index in range(40):
        genre = list(STYLES)[index % len(STYLES)]
        key = f"{rng.choice(['C', 'D', 'E', 'F', 'G', 'A'])}:{rng.choice(['major', 'minor'])}"
        render_groove_song(
            data_root / "incoming" / f"track_{index:02d}.mp3",
            STYLES[genre],
            bars=4,
            seed=index,
            tempo=float(rng.integers(80, 150)),
            key=key,
            tags={"title": f"Song number {index}", "artist": f"Band {index % 7}", "genre": genre},
        )
    for index in (0, 1, 2):  # the same recordings again, as FLAC: another file, another partition, the same music
        decode_song(
            data_root / "incoming" / f"track_{index:02d}.mp3",
            data_root / "incoming" / f"track_{index:02d}_lossless.flac",
        )
    patch = pytest.MonkeyPatch()
    patch.setenv("DAGSTER_HOME", str(home))
    patch.delenv("PIPELINE_K_ANONYMITY", raising=False)
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert cli.run(str(data_root), songs_only=True) == 0
    resources = default_resources(str(data_root))
    with dg.DagsterInstance.get() as instance:
        assert dg.materialize(with_privacy_checks(song_features), resources=resources, instance=instance).success
    yield {"data_root": data_root, "secret": resources["storage"].anonymization_secret()}
    patch.undo()


def _records(data_root):
    records = []
    for folder in sorted((data_root / "lake" / "songs").iterdir()):
        if (folder / "theory.json").exists():
            records.append(
                {
                    "key": folder.name,
                    **{
                        name: json.loads((folder / f"{name}.json").read_text())
                        for name in ("song", "stems", "analysis", "theory")
                    },
                }
            )
    return records


def test_an_attacker_who_owns_every_song_links_at_most_one_row_in_k(collection):
    data_root, secret = collection["data_root"], collection["secret"]
    released = read_snapshot(data_root / "datasets" / "song_features")
    records = _records(data_root)
    assert len(records) == 43 and len(released) == 43  # nothing suppressed: every song is released
    columns = [*SONG_FEATURE_CATEGORICAL, *SONG_FEATURE_NUMERIC]
    assert smallest_group(released, columns) >= K

    # The attacker's rows: the project's own code on their copies (the pipeline is deterministic, so the lake's
    # analysis is what they compute), exact (k = 1), with ids under a key of their own.
    attacker_secret = b"the attacker does not have the key"
    recomputed, _ = song_features_table(records, attacker_secret, k=1)
    truth = {keyed_hash(attacker_secret, f"song:{r['key']}"): keyed_hash(secret, f"song:{r['key']}") for r in records}
    rate = linkage_rate(
        released, recomputed, truth, "song_id", list(SONG_FEATURE_CATEGORICAL), list(SONG_FEATURE_NUMERIC)
    )
    assert rate <= 1 / K + 1e-9, rate

    # The same attack on an exact release (what the datasets held before) links nearly every row.
    exact, _ = song_features_table(records, secret, k=1)
    assert (
        linkage_rate(exact, recomputed, truth, "song_id", list(SONG_FEATURE_CATEGORICAL), list(SONG_FEATURE_NUMERIC))
        > 0.9
    )

    manifest = latest_manifest(data_root / "datasets" / "song_features")
    assert manifest["sources"]["songs"] == "32-63" and manifest["k_anonymity"]["k_achieved"] >= K


def test_a_12_song_collection_is_released_whole_at_the_default_k(collection):
    records = _records(collection["data_root"])[:12]
    table, report = song_features_table(records, collection["secret"], k=K)
    assert len(table) == 12 and report["suppressed_rows"] == 0 and report["k_achieved"] >= K
    assert smallest_group(table, [*SONG_FEATURE_CATEGORICAL, *SONG_FEATURE_NUMERIC]) >= K
