"""The private training export: WebDataset shards of the admitted songs, split by artist, read back by the
README's loader (examples/load_training_export.py) sample for sample."""

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline_project.collection.export import ExportSettings, SongFiles, artist_group, write_export
from pipeline_project.separation.separator import STEM_NAMES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "load_training_export.py"
RATE = 44_100


def loader_module():
    spec = importlib.util.spec_from_file_location("load_training_export", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_collection(folder: Path, count: int = 36) -> list[SongFiles]:
    """Songs of 12 artists (spelled in several ways), some untagged, some graded poor, each with a mix and four
    stems of short random 24-bit audio and small labels."""
    rng = np.random.default_rng(0)
    artists = [f"Artist {n}" for n in range(12)]
    spellings = ["{}", "the {}", "{} feat. Someone Else", "{}  & Band"]
    songs = []
    for number in range(count):
        key = f"{number:016x}"
        song_dir = folder / key
        (song_dir / "stems").mkdir(parents=True)
        files = {}
        for name in ("mix", *STEM_NAMES):
            path = song_dir / ("audio.flac" if name == "mix" else f"stems/{name}.flac")
            sf.write(path, rng.uniform(-0.5, 0.5, (int(RATE * rng.uniform(1, 2)), 2)), RATE, subtype="PCM_24")
            files[name] = path
        record = {"title": f"Song {number}", "duration_s": 2.0}
        if number % 9 != 8:  # every ninth song is untagged
            record["artist"] = (
                spellings[number % 4].format(artists[number % 12]).upper()
                if number % 5 == 0
                else spellings[number % 4].format(artists[number % 12])
            )
        analysis = {
            "tempo_bpm": 100.0 + number,
            "beat_times": [0.5, 1.0],
            "downbeat_times": [0.5],
            "key_tonic": "C",
            "key_mode": "major",
            "chords": [{"time": 0.5, "label": "C:maj"}],
            "sections": [],
            "onset_times": [],
        }
        grade = "poor" if number % 7 == 3 else ("fair" if number % 3 == 0 else "good")
        songs.append(
            SongFiles(
                key,
                files["mix"],
                {s: files[s] for s in STEM_NAMES},
                record,
                analysis,
                {"cadences": []},
                {"separator": "dsp"},
                {"grade": grade, "reasons": []},
            )
        )
    return songs


def test_the_export_round_trips_through_the_readme_loader_split_by_artist(tmp_path):
    songs = fake_collection(tmp_path / "lake")
    settings = ExportSettings(songs_per_shard=5, validation_share=0.2, test_share=0.2)
    folder, manifest = write_export(songs, tmp_path / "exports", settings, versions={"test": "1"})
    admitted = {s.key: s for s in songs if s.quality["grade"] != "poor"}

    assert manifest["private"] is True and manifest["shareable"] is False and "PRIVATE" in manifest["privacy"]
    assert (folder / "PRIVATE.txt").exists() and folder.parent.name == "exports"
    assert set(manifest["left_out"]["by_grade"]) == {s.key for s in songs if s.quality["grade"] == "poor"}
    # Every shard's checksum is the file's; shards hold at most songs_per_shard songs.
    for part in manifest["splits"].values():
        for shard in part["shards"]:
            assert hashlib.sha256((folder / shard["file"]).read_bytes()).hexdigest() == shard["sha256"]
    assert all(len(part["songs"]) for part in manifest["splits"].values()), "every split has songs"

    # The README's loader reads every shard of every split: each admitted song once, its audio sample-exact.
    loader = loader_module()
    assert EXAMPLE.read_text() in (ROOT / "README.md").read_text(), "the README shows the loader as it is"
    seen = {}
    for split in ("train", "validation", "test"):
        for song in loader.songs(folder, split, workers=2):
            assert song["key"] not in seen
            seen[song["key"]] = split
            original = admitted[song["key"]]
            for name in ("mix", *STEM_NAMES):
                path = original.mix if name == "mix" else original.stems[name]
                expected, rate = sf.read(path, dtype="float32", always_2d=True)
                assert song["sample_rate"] == rate and np.array_equal(song[name].numpy(), expected.T)
            assert song["labels"]["beat_times"] == original.analysis["beat_times"]
            assert song["labels"]["tempo_bpm"] == original.analysis["tempo_bpm"]
            assert song["tags"]["grade"] == original.quality["grade"]
    assert set(seen) == set(admitted)
    assert {split: sorted(part["songs"]) for split, part in manifest["splits"].items()} == {
        split: sorted(k for k, s in seen.items() if s == split) for split in ("train", "validation", "test")
    }
    # One artist, however spelled, never spans two splits.
    splits_of_artist = {}
    for key, split in seen.items():
        splits_of_artist.setdefault(artist_group(admitted[key].record, key), set()).add(split)
    assert all(len(splits) == 1 for splits in splits_of_artist.values()), splits_of_artist
    assert len([g for g in splits_of_artist if g.startswith("artist:")]) == 12

    # The same songs and settings give the same export, left as it is; another setting, another export.
    again, same = write_export(songs, tmp_path / "exports", settings)
    assert again == folder and same == manifest
    other, _ = write_export(songs, tmp_path / "exports", ExportSettings(grades=("good",)))
    assert other != folder and not list((tmp_path / "exports").glob(".*.tmp"))


def test_artist_spellings_fold_to_one_group():
    assert artist_group({"artist": "The Beatles"}, "k") == artist_group({"artist": "beatles"}, "k") == "artist:beatles"
    assert artist_group({"artist": "Nina Simone feat. Someone"}, "k") == "artist:nina simone"
    assert artist_group({"album": "Live"}, "k") == "album:live"
    assert artist_group({}, "k") == "song:k"
