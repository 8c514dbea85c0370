import pandas as pd

from pipeline_project.datasets.anonymize import assign_splits, duration_bucket, keyed_hash, load_or_create_secret, round_tempo
from pipeline_project.datasets.parquet import read_manifest, write_dataset
from pipeline_project.datasets.privacy import audit_table, catalog_terms

SONGS = [{"title": "Amber Lanterns", "artist": "The Ferrous Quartet", "album": "Orchard Demos", "file_names": ["amber_lanterns.mp3"]}]


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


def test_parquet_is_written_atomically_with_a_content_version(tmp_path):
    table = pd.DataFrame({"x": [1, 2, 3]})
    written = write_dataset(table, tmp_path, "demo")
    again = write_dataset(table, tmp_path, "demo")
    assert written.version == again.version == read_manifest(tmp_path)["version"]
    assert pd.read_parquet(written.path).equals(table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.parquet", "manifest.json"]


def test_song_features_keeps_its_schema_with_no_songs(tmp_path):
    from pipeline_project.datasets.tables import SONG_FEATURE_COLUMNS, song_features_table

    written = write_dataset(song_features_table([], b"secret"), tmp_path, "song_features")
    assert written.rows == 0 and [name for name, _ in written.columns] == list(SONG_FEATURE_COLUMNS)
