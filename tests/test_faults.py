"""The bad-input corpus: odd formats are processed like any song, broken or useless files are quarantined
with a reason, odd names stay inside the data root, and no file takes another song down."""

import json

import dagster as dg
import numpy as np
import pytest
import soundfile as sf
from conftest import render_groove_song

from pipeline_project.assets.analysis import song_analysis, song_theory
from pipeline_project.assets.ingestion import song_audio
from pipeline_project.assets.partitions import songs_partitions
from pipeline_project.assets.separation import song_stems
from pipeline_project.audio.ingest import scan_incoming
from pipeline_project.definitions import default_resources

SONG_ASSETS = [song_audio, song_stems, song_analysis, song_theory]


def groove(tmp_path, seed: int = 5) -> tuple[np.ndarray, int]:
    path = render_groove_song(tmp_path / f"groove-{seed}.mp3", "rock", bars=4, tempo=120, seed=seed)
    audio, rate = sf.read(path, always_2d=True)
    return audio, rate


def resample(audio: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    import soxr

    return soxr.resample(audio, rate, new_rate)


def process_all(data_root, instance) -> dict[str, tuple[bool, str]]:
    """Every file in incoming/ through the per-song assets, one partition at a time, as the sensor's runs
    would: {file name: (succeeded, failure description)}."""
    resources = default_resources(str(data_root))
    outcomes = {}
    for key, paths in scan_incoming(data_root / "incoming").items():
        instance.add_dynamic_partitions(songs_partitions.name, [key])
        result = dg.materialize(
            SONG_ASSETS, partition_key=key, resources=resources, instance=instance, raise_on_error=False
        )
        failures = [event.event_specific_data.error.message for event in result.all_events if event.is_step_failure]
        for path in paths:
            outcomes[path.name] = (result.success, " ".join(failures))
    return outcomes


def test_bad_input_corpus_is_processed_or_quarantined_and_nothing_else_is_affected(data_root, tmp_path):
    incoming = data_root / "incoming"
    audio, rate = groove(tmp_path)
    render_groove_song(incoming / "good song.mp3", "funk", bars=4, tempo=100, seed=9)
    sf.write(incoming / "telephone_8k_mono.wav", resample(audio.mean(axis=1, keepdims=True), rate, 8000), 8000)
    sf.write(incoming / "studio_96k_24bit.wav", resample(audio, rate, 96_000), 96_000, subtype="PCM_24")
    sf.write(
        incoming / "surround_6ch.flac",
        np.column_stack([audio, audio * 0.5, audio[:, :1] * 0.3, audio[:, 1:] * 0.2]),
        rate,
    )
    sf.write(incoming / "silence.wav", np.zeros((rate * 5, 2)), rate)
    sf.write(incoming / "Ünïcødé — 歌 (live).ogg", audio[: rate * 6] * 0.8, rate, format="OGG")
    (incoming / "x\\..\\..\\escape.mp3").write_text("not audio, and a name that tries to climb out\n")
    (incoming / "._good song.mp3").write_bytes(b"\x00\x05\x16\x07")  # macOS metadata beside a song: hidden, ignored
    (incoming / "%2e%2e%2f etc.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")

    with dg.instance_for_test() as instance:
        outcomes = process_all(data_root, instance)

    processed = {
        "good song.mp3",
        "telephone_8k_mono.wav",
        "studio_96k_24bit.wav",
        "surround_6ch.flac",
        "Ünïcødé — 歌 (live).ogg",
    }
    quarantined = {
        "silence.wav": "silent",
        "x\\..\\..\\escape.mp3": "not decodable",
        "%2e%2e%2f etc.wav": "not decodable",
    }
    assert {name for name, (ok, _) in outcomes.items() if ok} == processed
    for name, reason in quarantined.items():
        ok, message = outcomes[name]
        assert not ok and name in message and reason in message
        assert reason in (data_root / "quarantine" / f"{name}.reason.txt").read_text()
    # Every processed song is canonical 44.1 kHz stereo with four stems and an analysis; names stay private.
    for song_dir in (data_root / "lake" / "songs").iterdir():
        record = json.loads((song_dir / "song.json").read_text())
        info = sf.info(song_dir / "audio.flac")
        assert (info.samplerate, info.channels) == (44_100, 2)
        assert sorted(p.name for p in (song_dir / "stems").iterdir()) == [
            "bass.flac",
            "drums.flac",
            "other.flac",
            "vocals.flac",
        ]
        assert json.loads((song_dir / "analysis.json").read_text())["tempo_bpm"] > 0
        assert record["file_names"][0] in processed
    by_name = {
        json.loads((d / "song.json").read_text())["file_names"][0]: json.loads((d / "song.json").read_text())
        for d in (data_root / "lake" / "songs").iterdir()
    }
    assert (
        by_name["telephone_8k_mono.wav"]["source_sample_rate"] == 8000
        and by_name["surround_6ch.flac"]["source_channels"] == 6
    )
    assert by_name["studio_96k_24bit.wav"]["source_sample_rate"] == 96_000
    # Nothing was written outside the data root, whatever the names said.
    assert not list(tmp_path.glob("escape*")) and not list(data_root.parent.parent.glob("escape*"))
    assert set(p.name for p in (data_root / "quarantine").iterdir() if not p.name.endswith(".reason.txt")) == set(
        quarantined
    )
    assert "._good song.mp3" not in outcomes and (incoming / "._good song.mp3").exists()


@pytest.mark.slow
def test_a_one_hour_file_is_processed_in_flat_memory(data_root, tmp_path):
    """No per-song stage holds a whole song: an hour goes through them in the memory a few minutes take
    (it took 15 GB when analysis loaded whole stems; bench_memory.py measures 10 to 180 minutes)."""
    import resource

    audio, rate = groove(tmp_path)
    with sf.SoundFile(data_root / "incoming" / "one_hour.flac", "w", rate, audio.shape[1], subtype="PCM_16") as out:
        for _ in range(int(np.ceil(3600 * rate / len(audio)))):  # written a repetition at a time
            out.write(audio.astype(np.float32))
    del audio
    with dg.instance_for_test() as instance:
        outcomes = process_all(data_root, instance)
    assert outcomes == {"one_hour.flac": (True, "")}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_mib < 2500, f"peak resident memory {peak_mib:.0f} MiB"
