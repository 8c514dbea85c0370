"""Training-quality grades: songs the test makes (a 320 kbps original and a 96 kbps copy of it, a FLAC transcoded
from that copy, a clipped song, a 30 s clip, a mono fold-down as stereo, a lossless master and an MP3 re-encode
of it) go through song_audio, song_quality and collection_quality in real Dagster runs; each is flagged with
the right reason, and each group of duplicates keeps its best copy."""

import json

import dagster as dg
import numpy as np
import pytest
import soundfile as sf

from pipeline_project.assets.collection import collection_quality, collection_report
from pipeline_project.assets.ingestion import song_audio, song_quality
from pipeline_project.assets.partitions import songs_partitions
from pipeline_project.audio.ingest import scan_incoming
from pipeline_project.audio.io import write_mp3
from pipeline_project.collection.settings import CollectionSettingsError, load_collection_settings
from pipeline_project.definitions import default_resources

RATE = 44_100


def made_up_song(seed: int, seconds: float = 90.0) -> np.ndarray:
    """(2, frames): chords of harmonic tones, a different voicing on each side, noise hi-hats reaching 22 kHz,
    a kick, a 2 s fade-in and a 3 s fade-out, peaking at -3 dBFS."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * RATE)
    t = np.arange(frames) / RATE
    out = np.zeros((2, frames), np.float32)
    beat = 60 / rng.uniform(90, 130)
    chord = int(2 * beat * RATE)
    for channel in range(2):
        for start in range(0, frames, chord):
            span = t[start : start + chord] - t[start]
            for midi in rng.choice(np.arange(48, 76), 3, replace=False):
                f = 440 * 2 ** ((midi - 69) / 12)
                tone = sum(np.sin(2 * np.pi * f * h * span + rng.uniform(0, 6)) / h**1.5 for h in range(1, 8))
                out[channel, start : start + chord] += 0.08 * tone * np.exp(-span * rng.uniform(0.5, 2))
    for start in range(0, frames - 4000, int(beat / 2 * RATE)):
        out[:, start : start + 4000] += rng.standard_normal((2, 4000)) * np.exp(-np.arange(4000) / 600) * 0.15
    kick = np.arange(8000) / RATE
    for start in range(0, frames - 8000, int(beat * RATE)):
        out[:, start : start + 8000] += (
            0.5 * np.sin(2 * np.pi * 55 * kick * (1 + np.exp(-kick * 30))) * np.exp(-kick * 12)
        )
    out *= np.minimum(1, np.minimum(t / 2, (seconds - t) / 3)).astype(np.float32)
    return (out * 0.7 / np.abs(out).max()).astype(np.float32)


def assess_all(data_root, instance) -> dict:
    """Every file in incoming/ through song_audio and song_quality, one partition a run, then
    collection_quality: {file name: the song's decided grade and reasons}."""
    resources = default_resources(str(data_root))
    files = {}
    for key, paths in scan_incoming(data_root / "incoming").items():
        instance.add_dynamic_partitions(songs_partitions.name, [key])
        assert dg.materialize(
            [song_audio, song_quality], partition_key=key, resources=resources, instance=instance
        ).success
        files[key] = paths[0].name
    assert dg.materialize([collection_quality], resources=resources, instance=instance).success
    decided = json.loads((data_root / "lake" / "collection_quality.json").read_text())
    return {files[key]: {**song, "key": key} for key, song in decided["songs"].items()}, decided, files


def checks(song: dict) -> set[str]:
    return {reason["check"] for reason in song["reasons"]}


def test_poor_copies_are_flagged_with_their_reason_and_duplicates_keep_the_better_copy(data_root, tmp_path):
    incoming = data_root / "incoming"
    original = made_up_song(1)
    write_mp3(incoming / "original_320.mp3", original, RATE, {"genre": "Jazz", "year": "1994"}, bitrate="320k")
    write_mp3(incoming / "copy_96.mp3", original, RATE, {}, bitrate="96k")
    low, _ = read_audio_any(incoming / "copy_96.mp3")
    sf.write(incoming / "transcode.flac", low.T, RATE)  # the 96 kbps copy posing as lossless
    sf.write(incoming / "clipped.wav", np.clip(made_up_song(2) * 6, -1, 1).T, RATE, subtype="PCM_16")
    sf.write(incoming / "clip_30s.flac", made_up_song(3)[:, 30 * RATE : 60 * RATE].T, RATE)
    sf.write(incoming / "mono_as_stereo.flac", np.stack([made_up_song(4).mean(axis=0)] * 2).T, RATE)
    master = made_up_song(5)
    sf.write(incoming / "master.flac", master.T, RATE)
    write_mp3(incoming / "reencode_256.mp3", master, RATE, {}, bitrate="256k")

    with dg.instance_for_test() as instance:
        songs, decided, files = assess_all(data_root, instance)

    assert songs["original_320.mp3"]["grade"] == "good", songs["original_320.mp3"]["reasons"]
    assert songs["master.flac"]["grade"] == "good", songs["master.flac"]["reasons"]
    assert checks(songs["copy_96.mp3"]) == {"bitrate", "duplicate"}
    assert checks(songs["transcode.flac"]) == {"transcode", "duplicate"}
    assert "clipping" in checks(songs["clipped.wav"])
    assert checks(songs["clip_30s.flac"]) == {"length", "fragment"}
    assert checks(songs["mono_as_stereo.flac"]) == {"stereo"}
    assert checks(songs["reencode_256.mp3"]) == {"duplicate"}
    for name in ("copy_96.mp3", "transcode.flac", "clipped.wav", "clip_30s.flac", "reencode_256.mp3"):
        assert songs[name]["grade"] == "poor", (name, songs[name]["reasons"])
    assert songs["mono_as_stereo.flac"]["grade"] == "fair"
    # Each duplicate group keeps its best copy and says why: the 320 kbps original over its 96 kbps copy and
    # the transcode; the lossless master over its MP3 re-encode.
    groups = {
        files[group["kept"]]: (sorted(files[k] for k in group["others"]), group["why"])
        for group in decided["duplicate_groups"]
    }
    assert groups.keys() == {"original_320.mp3", "master.flac"}
    assert groups["original_320.mp3"][0] == ["copy_96.mp3", "transcode.flac"]
    assert groups["master.flac"] == (["reencode_256.mp3"], "lossless (FLAC/PCM_16) over lossy (MP3/MPEG_LAYER_III)")
    reencode = next(r for r in songs["reencode_256.mp3"]["reasons"] if r["check"] == "duplicate")
    assert (
        "master.flac" in reencode["text"] and songs["reencode_256.mp3"]["duplicate_of"] == songs["master.flac"]["key"]
    )
    # Nothing is deleted: every file is still in the drop folder.
    assert sorted(p.name for p in incoming.iterdir()) == sorted(files.values())

    # The collection report: distributions over the three usable songs (the grade's over all eight), plotted
    # in the metadata, the largest balance gap named first.
    with dg.instance_for_test() as instance:
        resources = default_resources(str(data_root))
        result = dg.materialize([collection_report], resources=resources, instance=instance)
        metadata = result.asset_materializations_for_node("collection_report")[0].metadata
    report = json.loads((data_root / "lake" / "collection_report.json").read_text())
    assert (report["songs"], report["usable_songs"]) == (8, 3)
    assert report["distributions"]["grade"] == {"good": 2, "fair": 1, "poor": 5}
    assert report["distributions"]["genre"] == {"jazz": 1, "unknown": 2}
    assert report["distributions"]["decade"] == {"1990s": 1, "unknown": 2}
    assert report["gaps"][0]["text"] == "genre jazz is 100 % against a 5-15 % target (over)"
    assert metadata["largest_gaps"].value.startswith("- genre jazz is 100 % against a 5-15 % target (over)")
    assert metadata["distributions"].value.startswith("![distributions against targets](data:image/png;base64,")
    assert (data_root / "lake" / "collection_report.png").read_bytes()[:4] == b"\x89PNG"


def read_audio_any(path):
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data.T, rate


def test_collection_settings_change_thresholds_and_a_wrong_key_names_the_file(tmp_path):
    assert load_collection_settings(tmp_path / "missing.toml").quality.min_seconds == 60
    path = tmp_path / "collection.toml"
    path.write_text("[quality]\nmin_seconds = 20\nmin_lossy_kbps = 128\n")
    settings = load_collection_settings(path)
    assert (settings.quality.min_seconds, settings.quality.min_lossy_kbps, settings.source) == (20, 128, str(path))
    path.write_text("[targets.genre]\njazz = [0.1, 0.15]\n")
    assert load_collection_settings(path).targets["genre"] == {"jazz": (0.1, 0.15)}
    path.write_text("[targets.genre]\njazz = [0.3, 0.15]\n")
    with pytest.raises(CollectionSettingsError, match=r"jazz = \[0.3, 0.15\] is not \[lowest share, highest share\]"):
        load_collection_settings(path)
    path.write_text("[targets.colour]\nblue = [0.1, 0.2]\n")
    with pytest.raises(CollectionSettingsError, match=r"\[targets.colour\] is not a dimension"):
        load_collection_settings(path)
    path.write_text("[quality]\nmin_second = 20\n")
    with pytest.raises(
        CollectionSettingsError, match=r"collection.toml \[quality\]: unknown quality setting 'min_second'"
    ):
        load_collection_settings(path)
    path.write_text("[quality]\nmin_seconds = 'long'\n")
    with pytest.raises(CollectionSettingsError, match="min_seconds = 'long' is not a number"):
        load_collection_settings(path)


def test_an_edit_and_a_remaster_are_the_same_recording_and_other_music_is_not(tmp_path):
    from scipy.signal import butter, sosfilt

    from pipeline_project.audio.quality import assess, duplicate_groups, near_duplicates

    song = made_up_song(7, seconds=120)
    edit = np.concatenate([song[:, : 40 * RATE], song[:, 70 * RATE :]], axis=1)  # 30 s cut from the middle
    brighter = song + 0.5 * sosfilt(butter(2, 3000, "highpass", fs=RATE, output="sos"), song)
    remaster = (np.tanh(brighter * 2.5) * 0.9).astype(np.float32)  # brighter, louder, softly limited
    fingerprints = {}
    for name, audio in {"song": song, "edit": edit, "remaster": remaster, "other": made_up_song(8, 120)}.items():
        sf.write(tmp_path / f"{name}.flac", audio.T, RATE, subtype="PCM_24")
        _, hashes, anchors = assess(tmp_path / f"{name}.flac")
        fingerprints[name] = (hashes, anchors)
    pairs = near_duplicates(fingerprints)
    assert {(a, b) for a, b, _ in pairs} >= {("edit", "song"), ("remaster", "song")}
    assert not [pair for pair in pairs if "other" in pair[:2]]
    assert duplicate_groups(pairs) == [["edit", "remaster", "song"]]
