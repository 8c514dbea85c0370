import numpy as np
import pandas as pd
import pytest

from pipeline_project.datasets.anonymize import (
    assign_splits,
    duration_bucket,
    keyed_hash,
    load_or_create_secret,
    round_tempo,
)
from pipeline_project.datasets.privacy import audit_table, catalog_terms
from pipeline_project.datasets.snapshots import (
    SNAPSHOTS,
    latest_manifest,
    read_snapshot,
    verify_snapshot,
    write_snapshot,
)

SONGS = [
    {
        "title": "Amber Lanterns",
        "artist": "The Ferrous Quartet",
        "album": "Orchard Demos",
        "file_names": ["amber_lanterns.mp3"],
    }
]


def test_clean_table_passes_the_audit():
    table = pd.DataFrame({"song_id": ["a1b2c3"], "key_tonic": ["E"], "key_mode": ["minor"], "tempo_bpm": [100]})
    assert audit_table(table, catalog_terms(SONGS)) == []


def test_audit_catches_titles_artists_file_names_paths_and_timings():
    terms = catalog_terms(SONGS)
    leaks = {
        "note": ["cover of amber lanterns"],
        "who": ["THE FERROUS QUARTET"],
        "src": ["amber_lanterns"],
        "where": ["/home/me/music/x.flac"],
        "url": ["https://example.org/a"],
        "onset_times": ["1.0,2.0"],
        "raw": [b"orchard demos"],
    }
    findings = audit_table(pd.DataFrame(leaks), terms)
    assert {f.column for f in findings} == set(leaks)
    assert {f.kind for f in findings} == {"catalog", "path", "timing"}


def test_catalog_terms_match_whole_words_only():
    """A song titled "City" is found as a word, never inside "velocity" (the audit's 88 false findings)."""
    terms = catalog_terms([{"title": "City", "file_names": ["Some Artist/Night Album/01 city.flac"]}])
    assert {"city", "some artist", "night album", "01 city", "01 city.flac"} <= terms
    clean = pd.DataFrame(
        {"feature": ["velocity", "onset_velocity_mean", "electricity"], "genre": ["rock", "pop", "jazz"]}
    )
    assert audit_table(clean, terms) == []
    leaks = pd.DataFrame({"a": ["City lights"], "b": ["city_01"], "c": ["by some artist"], "d": ["NIGHT ALBUM (live)"]})
    assert {f.column for f in audit_table(leaks, terms)} == {"a", "b", "c", "d"}


def test_keyed_hashes_need_the_secret(tmp_path):
    secret = load_or_create_secret(tmp_path / "key")
    assert load_or_create_secret(tmp_path / "key") == secret
    assert keyed_hash(secret, "song:1") == keyed_hash(secret, "song:1")
    assert keyed_hash(secret, "song:1") != keyed_hash(b"another secret", "song:1")
    assert oct((tmp_path / "key").stat().st_mode)[-3:] == "600"


def test_coarsening():
    assert round_tempo(117.4) == 115 and round_tempo(118) == 120
    assert duration_bucket(45) == "30s-1m" and duration_bucket(1000) == ">8m"


def test_splits_are_deterministic_by_group_and_never_empty():
    groups = [f"g{i}" for i in range(5)]
    first = assign_splits(groups, b"secret")
    assert first == assign_splits(list(reversed(groups)), b"secret")
    assert set(first.values()) == {"train", "validation", "test"}
    many = assign_splits([f"g{i}" for i in range(400)], b"secret")
    share = pd.Series(many).value_counts(normalize=True)
    assert abs(share["train"] - 0.70) < 0.08 and abs(share["test"] - 0.15) < 0.06


def test_the_same_table_gives_the_same_snapshot_and_files(tmp_path):
    table = pd.DataFrame({"x": [1, 2, 3], "split": ["train", "test", "train"]})
    first = write_snapshot(table, tmp_path, "demo", code_version="1", partition_by="split")
    again = write_snapshot(table.copy(), tmp_path, "demo", code_version="1", partition_by="split")
    assert first.snapshot_id == again.snapshot_id == latest_manifest(tmp_path)["snapshot_id"]
    assert first.manifest["files"] == again.manifest["files"] and len(list((tmp_path / SNAPSHOTS).iterdir())) == 1
    assert (
        sorted(first.manifest["partitions"]) == ["split=test", "split=train"] and first.manifest["code_version"] == "1"
    )
    assert (
        read_snapshot(tmp_path)
        .sort_values("x")
        .reset_index(drop=True)
        .equals(table.sort_values("x").reset_index(drop=True))
    )
    assert verify_snapshot(tmp_path, first.snapshot_id) == []


def test_snapshots_are_immutable_pruned_and_never_half_written(tmp_path):
    ids = [write_snapshot(pd.DataFrame({"x": [i]}), tmp_path, "demo", keep=2).snapshot_id for i in range(4)]
    kept = sorted(p.name for p in (tmp_path / SNAPSHOTS).iterdir())
    assert kept == sorted(ids[-2:]) and latest_manifest(tmp_path)["previous_snapshot_id"] == ids[-2]
    (tmp_path / SNAPSHOTS / ".building-deadbeef").mkdir()  # what a killed run leaves behind
    write_snapshot(pd.DataFrame({"x": [9]}), tmp_path, "demo", keep=2)
    assert not list((tmp_path / SNAPSHOTS).glob(".building-*"))
    latest = latest_manifest(tmp_path)
    data = tmp_path / SNAPSHOTS / latest["snapshot_id"] / "part-00000.parquet"
    data.write_bytes(data.read_bytes()[:-8] + b"tampered")
    assert verify_snapshot(tmp_path, latest["snapshot_id"]) == ["part-00000.parquet"]


def test_song_features_keeps_its_schema_with_no_songs(tmp_path):
    from pipeline_project.datasets.tables import SONG_FEATURE_COLUMNS, song_features_table

    table, report = song_features_table([], b"secret", k=5)
    written = write_snapshot(table, tmp_path, "song_features")
    assert written.rows == 0 and [name for name, _ in written.columns] == list(SONG_FEATURE_COLUMNS)
    assert report["suppressed_rows"] == 0


def test_microaggregation_makes_every_row_identical_to_k_minus_1_others_within_its_genre():
    from pipeline_project.datasets.anonymize import microaggregate, smallest_group

    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "song_id": [f"s{i}" for i in range(33)],
            "genre": ["rock"] * 17 + ["funk"] * 13 + ["jazz"] * 3,
            "key_mode": rng.choice(["major", "minor"], 33),
            "tempo_bpm": rng.uniform(70, 160, 33),
            "loudness": rng.normal(-12, 3, 33),
            "entropy": rng.uniform(0, 3, 33),
        }
    )
    released, report = microaggregate(
        table, 5, ["tempo_bpm", "loudness", "entropy"], ["genre", "key_mode"], stratum="genre"
    )
    columns = ["genre", "key_mode", "tempo_bpm", "loudness", "entropy"]
    assert len(released) == 33 and smallest_group(released, columns) >= 5 and report["k_achieved"] >= 5
    assert (
        set(released["genre"]) <= {"rock", "funk", "*"} and (released["genre"] == "rock").sum() >= 10
    )  # jazz: too few alone
    # Nothing left to match on: a row recomputed from the song lies nearest its own group, of 5 identical rows or more.
    assert released.drop(columns="song_id").drop_duplicates().shape[0] <= 33 // 5
    few, few_report = microaggregate(table.head(3), 5, ["tempo_bpm"], ["genre"])
    assert few.empty and few_report["suppressed_rows"] == 3
    same, _ = microaggregate(table, 1, ["tempo_bpm"], ["genre"])
    assert same.equals(table)


def test_no_group_spans_two_splits_in_the_pair_and_contribution_tables():
    from pipeline_project.datasets.tables import concert_pairs_table, contributions_table

    mel = np.zeros((8, 400), dtype=np.float32)
    pairs = [
        {
            "track": f"t{i % 7}",
            "degraded_key": f"t{i}-a",
            "clean": mel,
            "degraded": mel,
            "time_scale": 1.0,
            "windows": [(0.5, 2.0), (3.0, 2.5)],
            "frames_per_second": 43.07,
            "snr_db": 0.0,
            "noise_kind": "crowd",
            "rt60_s": 2.1,
        }
        for i in range(21)
    ]
    pairs_table = concert_pairs_table(pairs, b"secret")
    assert len(pairs_table) == 42 and pairs_table.groupby("track_id")["split"].nunique().max() == 1
    assert set(pairs_table["split"]) == {"train", "validation", "test"}
    submissions = [
        {
            "instrument": "hihat",
            "features": [
                {"BodyE": 1.0 + i, "SizzleE": 2.0, "GeoMean": 3.0, "SustainMs": 40.0, "OpenHH": j % 2} for j in range(4)
            ],
            "metadata": {"tempo": 120, "genre": "rock"},
        }
        for i in range(9)
    ]
    pool = contributions_table(submissions, b"secret")
    assert len(pool) == 36 and pool.groupby("group_id")["split"].nunique().max() == 1


def test_the_key_lives_outside_the_data_root_and_an_old_one_is_moved_out(tmp_path, monkeypatch):
    from pipeline_project.resources.storage import MissingKeyError, StorageResource

    monkeypatch.delenv("PIPELINE_ANON_SECRET", raising=False)
    storage = StorageResource(data_root=str(tmp_path / "data"), secret_dir=str(tmp_path / "keys"))
    secret = storage.anonymization_secret()
    assert storage.secret_path.parent == tmp_path / "keys" and storage.secret_path.read_text().encode() == secret
    assert oct(storage.secret_path.stat().st_mode)[-3:] == "600" and not (tmp_path / "data").exists()
    assert storage.anonymization_secret() == secret

    # A data root an older version kept its key in: the key moves out, with its value.
    legacy = StorageResource(data_root=str(tmp_path / "old"), secret_dir=str(tmp_path / "keys"))
    (tmp_path / "old" / ".secrets").mkdir(parents=True)
    (tmp_path / "old" / ".secrets" / "anonymization.key").write_text("f" * 64)
    assert legacy.anonymization_secret() == b"f" * 64 and not (tmp_path / "old" / ".secrets").exists()
    assert oct(legacy.secret_path.stat().st_mode)[-3:] == "600"

    # Datasets made with a key this machine lacks: an error saying where the key goes, not a new key.
    moved = StorageResource(data_root=str(tmp_path / "data"), secret_dir=str(tmp_path / "other-keys"))
    write_snapshot(pd.DataFrame({"a": [1]}), tmp_path / "data" / "datasets" / "song_features", "song_features")
    with pytest.raises(MissingKeyError, match=str(moved.secret_path)):
        moved.anonymization_secret()
    assert not moved.secret_path.exists()
