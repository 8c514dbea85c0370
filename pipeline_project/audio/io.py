"""Decoding, encoding and tagging of audio files.

Decoding goes through soundfile (libsndfile with mpg123), which reports the frame count a file's header
promises and decodes only what is really there; comparing the two is how truncated files are caught.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline_project.errors import BadAudioError
from pipeline_project.files import atomic_path, sha256_of

SUPPORTED_EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg")
CANONICAL_SAMPLE_RATE = 44_100
MIN_DURATION_S = 2.0
SILENCE_PEAK = 10 ** (-60 / 20)  # -60 dBFS
# A header may round the frame count; anything shorter than this fraction of it was cut off.
TRUNCATION_TOLERANCE = 0.01
SHORT_HASH_LENGTH = 16


def content_hash(path: str | os.PathLike, length: int = SHORT_HASH_LENGTH) -> str:
    """Short sha256 of a file's bytes: the same content under any name gives the same key."""
    return sha256_of(path)[:length]


def is_song_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUPPORTED_EXTENSIONS and not path.name.startswith(".")


# Songs are decoded, checked, resampled and written this many seconds at a time: memory follows the block, not
# the song, whatever its length.
DECODE_BLOCK_S = 30.0


@dataclass
class DecodedAudio:
    """What decoding found; the audio itself went to the destination file (stereo, CANONICAL_SAMPLE_RATE)."""

    frames: int  # at CANONICAL_SAMPLE_RATE
    sample_rate: int
    source_sample_rate: int
    source_channels: int
    source_format: str
    source_subtype: str = ""  # soundfile's subtype: PCM_16, MPEG_LAYER_III, VORBIS...
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def decode_song(path: str | os.PathLike, destination: str | os.PathLike) -> DecodedAudio:
    """Decode a song block by block to `destination` (stereo 24-bit FLAC at 44.1 kHz, written atomically), or
    raise BadAudioError saying why it is unusable; nothing is left at `destination` then."""
    path = Path(path)
    if not path.exists():
        raise BadAudioError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise BadAudioError(path, "empty file (0 bytes)")
    try:
        reader = sf.SoundFile(str(path))
    except Exception as exc:  # libsndfile raises several types; all mean "not audio we can read"
        raise BadAudioError(
            path, f"not decodable as audio: not a supported audio format, or corrupt ({type(exc).__name__})"
        ) from exc
    folder = Path(destination).parent
    made_folder = not folder.exists()
    try:
        with reader:
            return _decode_blocks(path, reader, destination)
    except BadAudioError:
        if made_folder:  # a bad file leaves no empty folder behind (the partial file is gone already)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _decode_blocks(path: Path, reader: sf.SoundFile, destination: str | os.PathLike) -> DecodedAudio:
    with atomic_path(destination) as tmp:
        source_rate, promised = reader.samplerate, reader.frames
        resampler = None
        if source_rate != CANONICAL_SAMPLE_RATE:
            import soxr  # librosa's "soxr_hq", streamed: the filter state carries across blocks

            resampler = soxr.ResampleStream(source_rate, CANONICAL_SAMPLE_RATE, 2, dtype="float32", quality="HQ")
        decoded = written = 0
        peak = 0.0
        with sf.SoundFile(str(tmp), "w", CANONICAL_SAMPLE_RATE, 2, subtype="PCM_24", format="FLAC") as out:
            while True:
                try:
                    block = reader.read(max(1, int(DECODE_BLOCK_S * source_rate)), dtype="float32", always_2d=True)
                except Exception as exc:
                    raise BadAudioError(
                        path,
                        f"not decodable as audio: corrupt after {decoded / source_rate:.1f} s ({type(exc).__name__})",
                    ) from exc
                last = len(block) == 0
                if not last:
                    if not np.isfinite(block).all():
                        raise BadAudioError(path, "decoded samples contain NaN or infinity")
                    decoded += len(block)
                    peak = max(peak, float(np.max(np.abs(block))))
                stereo = to_stereo(block.T).T if not last else np.zeros((0, 2), dtype=np.float32)
                if resampler is not None:
                    stereo = resampler.resample_chunk(np.ascontiguousarray(stereo), last=last)
                if len(stereo):
                    out.write(np.clip(stereo, -1.0, 1.0))
                    written += len(stereo)
                if last:
                    break
        if decoded == 0:
            raise BadAudioError(path, "contains no audio frames")
        if promised > 0 and decoded < promised * (1 - TRUNCATION_TOLERANCE):
            raise BadAudioError(
                path,
                f"truncated: header promises {promised / source_rate:.1f} s but only "
                f"{decoded / source_rate:.1f} s could be decoded",
            )
        duration = decoded / source_rate
        if duration < MIN_DURATION_S:
            raise BadAudioError(path, f"too short: {duration:.2f} s (minimum {MIN_DURATION_S} s)")
        if peak < SILENCE_PEAK:
            raise BadAudioError(path, "silent: peak level below -60 dBFS")
        return DecodedAudio(
            frames=written,
            sample_rate=CANONICAL_SAMPLE_RATE,
            source_sample_rate=int(source_rate),
            source_channels=int(reader.channels),
            source_format=reader.format,
            source_subtype=reader.subtype,
            tags=read_tags(path),
        )


def to_stereo(samples: np.ndarray) -> np.ndarray:
    """(channels, frames) to two channels: mono is duplicated, more than two are folded down."""
    if samples.shape[0] == 1:
        return np.repeat(samples, 2, axis=0)
    if samples.shape[0] == 2:
        return samples
    left = samples[0::2].mean(axis=0)
    right = samples[1::2].mean(axis=0)
    return np.stack([left, right])


TAG_FIELDS = ("title", "artist", "album", "date", "genre")


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """Title, artist, album, year and genre from ID3, Vorbis or RIFF tags; missing fields are left out."""
    import mutagen

    try:
        tagged = mutagen.File(str(path), easy=True)
    except Exception:
        return {}
    if tagged is None or tagged.tags is None:
        return {}
    tags: dict[str, str] = {}
    for name in TAG_FIELDS:
        try:
            values = tagged.tags.get(name)
        except Exception:
            values = None
        if values:
            text = str(values[0]).strip()
            if text:
                tags["year" if name == "date" else name] = text
    return tags


def write_mp3(
    path: str | os.PathLike, samples: np.ndarray, sample_rate: int, tags: dict[str, str], bitrate: str = "192k"
) -> None:
    """Encode (channels, frames) float audio as a tagged MP3, atomically."""
    from mutagen.easyid3 import EasyID3
    from pedalboard.io import AudioFile

    path = Path(path)
    with atomic_path(path) as tmp:
        with AudioFile(str(tmp), "w", sample_rate, samples.shape[0], quality=bitrate) as out:
            out.write(np.ascontiguousarray(samples, dtype=np.float32))
        id3 = EasyID3()
        for name, value in tags.items():
            id3["date" if name == "year" else name] = str(value)
        id3.save(str(tmp))


def write_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write (channels, frames) audio losslessly (format from the suffix: .flac or .wav), atomically."""
    path = Path(path)
    subtype = "PCM_24" if path.suffix.lower() == ".flac" else "FLOAT"
    clipped = np.clip(samples, -1.0, 1.0) if subtype == "PCM_24" else samples
    with atomic_path(path) as tmp:
        sf.write(
            str(tmp), np.ascontiguousarray(clipped.T), sample_rate, subtype=subtype, format=path.suffix[1:].upper()
        )


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a lossless file written by write_audio as (channels, frames) float32."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(rate)
