import shutil

import numpy as np
import pytest
import soundfile as sf

from pipeline_project.audio.ingest import quarantine_file, scan_incoming
from pipeline_project.audio.io import content_hash, decode_song, write_audio, write_mp3
from pipeline_project.errors import BadAudioError


def test_same_content_under_two_names_is_one_key(tmp_path, sine_stereo):
    samples, rate = sine_stereo
    write_mp3(tmp_path / "a.mp3", samples, rate, {"title": "Tone"})
    shutil.copy(tmp_path / "a.mp3", tmp_path / "copy of a.mp3")
    found = scan_incoming(tmp_path)
    assert len(found) == 1
    assert sorted(p.name for p in next(iter(found.values()))) == ["a.mp3", "copy of a.mp3"]
    assert content_hash(tmp_path / "a.mp3") == next(iter(found))


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".flac", "PCM_24"), (".ogg", "VORBIS")])
def test_decodes_lossless_and_ogg_to_canonical_stereo(tmp_path, suffix, subtype):
    rate = 22_050
    mono = (0.2 * np.sin(2 * np.pi * 330 * np.arange(rate * 3) / rate)).astype(np.float32)
    path = tmp_path / f"tone{suffix}"
    sf.write(path, mono, rate, subtype=subtype)
    decoded = decode_song(path, tmp_path / "canonical.flac")
    written = sf.info(tmp_path / "canonical.flac")
    assert written.channels == 2 and written.samplerate == 44_100 and written.frames == decoded.frames
    assert decoded.sample_rate == 44_100
    assert decoded.source_sample_rate == rate
    assert decoded.duration_s == pytest.approx(3.0, abs=0.05)


def test_mp3_tags_are_read(tmp_path, sine_stereo):
    samples, rate = sine_stereo
    tags = {"title": "Tone Poem", "artist": "Some Body", "album": "Tests", "year": "2020", "genre": "Ambient"}
    write_mp3(tmp_path / "t.mp3", samples, rate, tags)
    assert decode_song(tmp_path / "t.mp3", tmp_path / "t.flac").tags == tags


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "empty file"),
        (b"just some text, not audio at all\n" * 20, "not decodable"),
    ],
)
def test_unusable_files_raise_with_file_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mp3"
    path.write_bytes(content)
    with pytest.raises(BadAudioError) as error:
        decode_song(path, tmp_path / "out" / "audio.flac")
    assert "bad.mp3" in str(error.value) and reason in str(error.value)
    assert not list((tmp_path / "out").glob("*"))  # nothing half-written is left behind


def test_truncated_mp3_is_caught(tmp_path):
    rate = 44_100
    noise = (np.random.default_rng(0).standard_normal((2, rate * 10)) * 0.1).astype(np.float32)
    write_mp3(tmp_path / "whole.mp3", noise, rate, {})
    data = (tmp_path / "whole.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadAudioError, match="truncated"):
        decode_song(tmp_path / "cut.mp3", tmp_path / "out" / "audio.flac")
    assert not list((tmp_path / "out").glob("*"))


def test_silence_and_too_short_are_rejected(tmp_path):
    write_audio(tmp_path / "silent.flac", np.zeros((2, 44_100 * 3), np.float32), 44_100)
    write_audio(tmp_path / "short.flac", np.full((2, 4410), 0.1, np.float32), 44_100)
    with pytest.raises(BadAudioError, match="silent"):
        decode_song(tmp_path / "silent.flac", tmp_path / "out.flac")
    with pytest.raises(BadAudioError, match="too short"):
        decode_song(tmp_path / "short.flac", tmp_path / "out.flac")


def test_quarantine_moves_file_beside_its_reason(tmp_path):
    incoming, quarantine = tmp_path / "in", tmp_path / "q"
    incoming.mkdir()
    (incoming / "x.mp3").write_bytes(b"junk")
    moved = quarantine_file(incoming / "x.mp3", quarantine, "not decodable")
    assert not (incoming / "x.mp3").exists() and moved.exists()
    assert "not decodable" in (quarantine / "x.mp3.reason.txt").read_text()


def test_lossless_write_is_atomic_and_leaves_no_temp_files(tmp_path, sine_stereo):
    samples, rate = sine_stereo
    write_audio(tmp_path / "out.flac", samples, rate)
    with pytest.raises(Exception):  # noqa: B017 - whatever soundfile raises for samples it cannot encode
        write_audio(tmp_path / "broken.flac", np.full((2, 10), np.nan, np.float32).astype(object), rate)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.flac"]


def test_find_song_files_trusts_a_matching_hint_only(tmp_path, sine_stereo):
    from pipeline_project.audio.ingest import find_song_files

    samples, rate = sine_stereo
    write_mp3(tmp_path / "a.mp3", samples, rate, {})
    write_mp3(tmp_path / "b.mp3", samples * 0.5, rate, {})
    key_a = content_hash(tmp_path / "a.mp3")
    assert find_song_files(tmp_path, key_a, "a.mp3") == [(tmp_path / "a.mp3").resolve()]
    assert [p.name for p in find_song_files(tmp_path, key_a, "b.mp3")] == ["a.mp3"]  # wrong hint: full scan
    assert [p.name for p in find_song_files(tmp_path, key_a, "../outside.mp3")] == ["a.mp3"]
    assert find_song_files(tmp_path, "0" * 16, "a.mp3") == []
    # Every duplicate is found with the hinted file (the privacy audit needs all their names).
    (tmp_path / "Artist Folder").mkdir()
    shutil.copy(tmp_path / "a.mp3", tmp_path / "Artist Folder" / "copy of a.mp3")
    assert [p.name for p in find_song_files(tmp_path, key_a, "a.mp3")] == ["a.mp3", "copy of a.mp3"]


def test_decoding_block_by_block_resamples_like_the_whole_file_at_once(tmp_path, monkeypatch):
    """Songs are decoded, checked and resampled a block at a time (memory stays flat for any length); the
    resampler's state carries across blocks, so the blocks leave no seams."""
    import librosa

    from pipeline_project.audio import io

    rate = 48_000
    t = np.arange(rate * 4) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    sf.write(tmp_path / "tone.wav", stereo.T, rate, subtype="FLOAT")
    monkeypatch.setattr(io, "DECODE_BLOCK_S", 0.37)
    decoded = decode_song(tmp_path / "tone.wav", tmp_path / "tone.flac")
    written, written_rate = sf.read(tmp_path / "tone.flac", dtype="float32")
    expected = librosa.resample(stereo, orig_sr=rate, target_sr=44_100, res_type="soxr_hq")
    assert written_rate == 44_100 and decoded.frames == len(written) == pytest.approx(expected.shape[1], abs=1)
    middle = slice(1000, expected.shape[1] - 1000)
    assert np.abs(written[middle].T - expected[:, middle]).max() < 1e-4  # 24-bit FLAC: 1e-7 apart at most otherwise
