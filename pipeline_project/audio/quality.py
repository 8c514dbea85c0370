"""How good a song is as training data, and why: what its source was (codec, bitrate, lossless or not), whether
it clips or was limited flat, whether its spectrum stops where a lossy encoder cut it, whether its two channels
are really two, and whether it is a complete song. `assess` reads the canonical audio block by block (memory
does not grow with the song's length) and gives measures and a landmark fingerprint; `grade` turns measures
into a grade with reasons under `QualitySettings`; `near_duplicates` finds songs of a collection that are the
same recording (another bitrate, a remaster, an edit) from their fingerprints, and `keep_best` says which copy
of each group to keep and why.

Grades: "good"; "fair" (usable, with notes: over-compressed, fake stereo, mono, cut at both ends, very long);
"poor" (low bitrate, a lossy transcode posing as lossless, clipped, a clip rather than a song, a duplicate of a
better copy). Nothing is deleted: exports leave out "poor" songs unless told otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import soundfile as sf

from pipeline_project.audio.loudness import (
    KWeightedSteps,
    integrated_loudness_of_steps,
    loudness_range,
    short_term_loudness_of_steps,
)
from pipeline_project.training.landmarks import LandmarkSettings, constellation

GRADES = ("good", "fair", "poor")
CLIP_LEVEL = 0.999  # a sample this close to full scale is clipped (decoders overshoot, then the lake clips at 1)
ENVELOPE_S = 0.5  # the level envelope's step, for fades
SPECTRUM_FFT = 4096
# The duplicate fingerprint: a sparse constellation (the 8 strongest peaks a second), each peak hashed with two
# of the next three in 32 bits, so a hash is rare across a whole collection (the landmark peer's pairs have 20).
FINGERPRINT = LandmarkSettings(peaks_per_second=8.0)
FINGERPRINT_TARGETS = 3
# Blocks a whole number of fingerprint frames long (hop 256 at 11,025 Hz is 1024 samples at 44,100 Hz), about 30 s.
BLOCK_FRAMES = 1024 * 1292


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the training-quality grade (the collection settings file's [quality] table overrides them)."""

    min_lossy_kbps: float = 192.0  # a lossy source below this is poor: its encoder removed audible detail
    lossy_cutoff_hz: float = 16_000.0  # a lossless file whose spectrum stops below this was transcoded from lossy
    max_clipped_share: float = 0.0005  # share of samples at full scale beyond which a song is clipped (fair)
    poor_clipped_share: float = 0.005  # and badly clipped (poor): a loud master's odd clipped peak is not this
    min_crest_db: float = 9.0  # peak over RMS below this, with a narrow loudness range: limited flat
    min_loudness_range_lu: float = 3.0
    min_side_db: float = -40.0  # side this far below mid: the two channels are one (a mono fold-down as stereo)
    min_seconds: float = 60.0  # shorter: a clip or a fragment, not a song
    max_seconds: float = 1200.0  # longer: a mix, a live set or an album in one file
    duplicate_share: float = 0.10  # share of the shorter song's landmarks agreeing on one offset: the same recording

    @classmethod
    def from_mapping(cls, values: dict, source: str = "settings") -> QualitySettings:
        """Settings from a mapping of field names to numbers; an unknown name or a non-number fails naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown quality setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{source}: quality setting {name} = {value!r} is not a number")
        return cls(**{name: float(value) for name, value in values.items()})


@dataclass
class SourceFacts:
    """What the source file was, before decoding to the lake's FLAC."""

    codec: str  # soundfile's format and subtype, e.g. "MP3/MPEG_LAYER_III", "FLAC/PCM_16"
    lossless: bool
    bitrate_kbps: float | None  # a lossy source's bitrate; None for lossless or unknown
    channels: int


def source_facts(path, reader_format: str, reader_subtype: str, channels: int) -> SourceFacts:
    """The codec from soundfile's format and subtype; the bitrate of a lossy file from its header (mutagen)."""
    lossless = reader_format not in ("MP3", "OGG", "MPEG") and reader_subtype.startswith(
        ("PCM", "FLOAT", "DOUBLE", "ALAC", "ULAW", "ALAW")
    )
    bitrate = None
    if not lossless:
        import mutagen

        try:
            info = mutagen.File(str(path))
            bitrate = round(info.info.bitrate / 1000, 1) if info is not None and info.info.bitrate else None
        except Exception:  # an unreadable header leaves the bitrate unknown; the spectrum still tells
            bitrate = None
    return SourceFacts(f"{reader_format}/{reader_subtype}", lossless, bitrate, int(channels))


def recorded_source(record: dict) -> SourceFacts:
    """The source facts `song_audio` recorded (songs ingested before it recorded them: from the format alone,
    bitrate unknown)."""
    if "source_codec" in record:
        return SourceFacts(
            record["source_codec"], record["source_lossless"], record["source_bitrate_kbps"], record["source_channels"]
        )
    fmt = record.get("source_format", "")
    return SourceFacts(f"{fmt}/unknown", fmt in ("WAV", "FLAC", "AIFF"), None, record.get("source_channels", 2))


@dataclass
class Measures:
    duration_s: float
    clipped_share: float  # samples (either channel) at full scale
    peak_dbfs: float
    true_peak_dbtp: float  # 4x oversampled
    crest_db: float  # peak over RMS of the whole song
    integrated_lufs: float
    loudness_range_lu: float
    side_db: float  # side (L-R) energy relative to mid (L+R); very negative: the channels are the same
    cutoff_hz: float  # where the spectrum stops (60 dB under its 1-10 kHz median)
    cutoff_drop_db: float  # how sharply: level 500 Hz under the cut-off minus 500 Hz above it
    fade_in_s: float  # time from the start until the level first reaches 10 dB under the song's median level
    fade_out_s: float  # the same from the end


def assess(path) -> tuple[Measures, np.ndarray, np.ndarray]:
    """Measures of the canonical audio file at `path` and its landmark fingerprint (hashes, anchor frames),
    read in blocks of about 30 s."""
    import soxr

    with sf.SoundFile(str(path)) as reader:
        rate, channels = reader.samplerate, reader.channels
        if rate != 44_100:
            raise ValueError(f"{path}: expected the lake's 44,100 Hz audio, got {rate} Hz")
        loudness = KWeightedSteps(rate, channels)
        upsampler = soxr.ResampleStream(rate, 4 * rate, channels, dtype="float32", quality="HQ")
        frames = clipped = 0
        peak = true_peak = energy = mid_energy = side_energy = 0.0
        spectrum = np.zeros(SPECTRUM_FFT // 2 + 1)
        spectra = 0
        envelope: list[np.ndarray] = []
        hashes: list[np.ndarray] = []
        times: list[np.ndarray] = []
        window = np.hanning(SPECTRUM_FFT).astype(np.float32)
        step = int(ENVELOPE_S * rate)
        while True:
            block = reader.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
            last = len(block) == 0
            oversampled = upsampler.resample_chunk(block, last=last)
            if len(oversampled):
                true_peak = max(true_peak, float(np.abs(oversampled).max()))
            if last:
                break
            magnitude = np.abs(block)
            clipped += int(np.count_nonzero(magnitude.max(axis=1) >= CLIP_LEVEL))
            peak = max(peak, float(magnitude.max()))
            energy += float(np.square(block, dtype=np.float64).sum())
            mid = block.mean(axis=1)
            side = (block[:, 0] - block[:, -1]) / 2
            mid_energy += float(np.square(mid, dtype=np.float64).sum())
            side_energy += float(np.square(side, dtype=np.float64).sum())
            loudness.push(block.T)
            whole = len(mid) // SPECTRUM_FFT
            if whole:
                spectrum += (
                    np.abs(np.fft.rfft(mid[: whole * SPECTRUM_FFT].reshape(whole, SPECTRUM_FFT) * window, axis=1)) ** 2
                ).sum(axis=0)
                spectra += whole
            steps = len(mid) // step
            if steps:
                rms = np.sqrt(np.square(mid[: steps * step].reshape(steps, step)).mean(axis=1) + 1e-12)
                envelope.append(20 * np.log10(rms))
            block_hashes, anchors = triplets(constellation(mid, rate, FINGERPRINT))
            hashes.append(block_hashes)
            times.append(anchors + frames // 1024)  # fingerprint frames are 1024 samples of the lake's rate
            frames += len(block)
    if frames == 0:
        raise ValueError(f"{path}: no audio")
    level = np.concatenate(envelope) if envelope else np.zeros(1)
    steps = loudness.energies()
    short_term = short_term_loudness_of_steps(steps)
    rms = np.sqrt(energy / (frames * channels))
    cutoff, drop = spectral_cutoff(spectrum / max(spectra, 1), rate)
    fade_in, fade_out = fades(level)
    measures = Measures(
        duration_s=round(frames / rate, 3),
        clipped_share=clipped / frames,
        peak_dbfs=round(_db(peak), 2),
        true_peak_dbtp=round(_db(true_peak), 2),
        crest_db=round(_db(peak) - _db(rms), 2),
        integrated_lufs=round(float(integrated_loudness_of_steps(steps)), 2),
        loudness_range_lu=round(float(loudness_range(short_term)), 2),
        side_db=round(_db(np.sqrt(side_energy)) - _db(np.sqrt(mid_energy)), 1),
        cutoff_hz=round(cutoff),
        cutoff_drop_db=round(drop, 1),
        fade_in_s=fade_in,
        fade_out_s=fade_out,
    )
    return measures, np.concatenate(hashes), np.concatenate(times)


def triplets(peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(32-bit hashes, anchor frames) of each peak with each pair of the next FINGERPRINT_TARGETS peaks within
    1.5 s and 31 bins: anchor bin (8 bits), then frequency and time difference of each target (6 bits each)."""
    settings = FINGERPRINT
    hashes, anchors = [], []
    for i, (t1, f1) in enumerate(peaks.tolist()):
        targets = [
            (t - t1, f - f1)
            for t, f in peaks[i + 1 : i + 1 + 2 * FINGERPRINT_TARGETS].tolist()
            if 0 < t - t1 <= settings.max_dt and abs(f - f1) <= settings.max_df
        ][:FINGERPRINT_TARGETS]
        for j in range(len(targets)):
            for k in range(j + 1, len(targets)):
                (dt2, df2), (dt3, df3) = targets[j], targets[k]
                hashes.append(
                    ((f1 & 0xFF) << 24)
                    | ((df2 & 0x3F) << 18)
                    | ((dt2 & 0x3F) << 12)
                    | ((df3 & 0x3F) << 6)
                    | (dt3 & 0x3F)
                )
                anchors.append(t1)
    return np.asarray(hashes, dtype=np.int64), np.asarray(anchors, dtype=np.int32)


def _db(amplitude: float) -> float:
    return float(20 * np.log10(max(amplitude, 1e-10)))


def spectral_cutoff(power: np.ndarray, rate: int) -> tuple[float, float]:
    """(frequency above which the mean spectrum stays 60 dB under its 1-10 kHz median, the level drop across
    it: 500 Hz below minus 500 Hz above). A lossy encoder's low-pass is a cliff; music's own roll-off a slope."""
    frequencies = np.fft.rfftfreq(SPECTRUM_FFT, 1 / rate)
    smoothed = np.convolve(10 * np.log10(power + 1e-20), np.ones(9) / 9, mode="same")  # about 100 Hz
    band = (frequencies >= 1000) & (frequencies <= 10_000)
    floor = np.median(smoothed[band]) - 60
    above = np.flatnonzero(smoothed[: len(smoothed) - 4] > floor)
    cutoff_bin = int(above[-1]) if len(above) else 0
    span = int(round(500 / (frequencies[1] - frequencies[0])))
    below_level = smoothed[max(0, cutoff_bin - span)]
    above_level = smoothed[min(len(smoothed) - 5, cutoff_bin + span)]
    return float(frequencies[cutoff_bin]), float(below_level - above_level)


def fades(level_db: np.ndarray) -> tuple[float, float]:
    """Seconds from the start, and to the end, at which the level envelope first comes within 10 dB of the
    song's median level (0: the song starts, or ends, at full level)."""
    body = float(np.median(level_db)) - 10
    loud = np.flatnonzero(level_db >= body)
    if not len(loud):
        return 0.0, 0.0
    return float(loud[0] * ENVELOPE_S), float((len(level_db) - 1 - loud[-1]) * ENVELOPE_S)


@dataclass
class Reason:
    severity: str  # "fair" or "poor": the grade it brings a song down to
    check: str  # which check: bitrate, transcode, clipping, compression, stereo, length, fragment, duplicate
    text: str


def grade(measures: Measures, source: SourceFacts, settings: QualitySettings = QualitySettings()) -> list[Reason]:
    """The reasons a song is not "good" training data (an empty list: it is)."""
    reasons = []
    if not source.lossless and source.bitrate_kbps is not None and source.bitrate_kbps < settings.min_lossy_kbps:
        reasons.append(
            Reason(
                "poor",
                "bitrate",
                f"low bitrate: {source.bitrate_kbps:.0f} kbps {source.codec.split('/')[0]} (below "
                f"{settings.min_lossy_kbps:.0f}); its spectrum stops at {measures.cutoff_hz / 1000:.1f} kHz",
            )
        )
    if source.lossless and measures.cutoff_hz < settings.lossy_cutoff_hz and measures.cutoff_drop_db >= 20:
        reasons.append(
            Reason(
                "poor",
                "transcode",
                f"a lossy transcode: {source.codec.split('/')[0]} file whose spectrum stops sharply at "
                f"{measures.cutoff_hz / 1000:.1f} kHz (a lossy encoder's low-pass)",
            )
        )
    if measures.clipped_share > settings.max_clipped_share:
        reasons.append(
            Reason(
                "poor" if measures.clipped_share > settings.poor_clipped_share else "fair",
                "clipping",
                f"clipped: {measures.clipped_share * 100:.2f} % of samples at full scale (true peak "
                f"{measures.true_peak_dbtp:+.1f} dBTP)",
            )
        )
    if measures.crest_db < settings.min_crest_db and measures.loudness_range_lu < settings.min_loudness_range_lu:
        reasons.append(
            Reason(
                "fair",
                "compression",
                f"over-compressed: crest factor {measures.crest_db:.1f} dB, loudness range "
                f"{measures.loudness_range_lu:.1f} LU",
            )
        )
    if source.channels >= 2 and measures.side_db < settings.min_side_db:
        reasons.append(
            Reason(
                "fair",
                "stereo",
                f"fake stereo: both channels carry the same signal (side {-measures.side_db:.0f} dB under mid)",
            )
        )
    elif source.channels == 1:
        reasons.append(Reason("fair", "stereo", "mono source"))
    if measures.duration_s < settings.min_seconds:
        reasons.append(
            Reason(
                "poor",
                "length",
                f"a clip, not a song: {measures.duration_s:.0f} s long (songs run {settings.min_seconds:.0f} s to "
                f"{settings.max_seconds / 60:.0f} min)",
            )
        )
    elif measures.duration_s > settings.max_seconds:
        reasons.append(
            Reason(
                "fair",
                "length",
                f"{measures.duration_s / 60:.0f} min long (longer than {settings.max_seconds / 60:.0f} min: a mix, a "
                "live set or an album in one file?)",
            )
        )
    if measures.fade_in_s == 0 and measures.fade_out_s == 0:
        reasons.append(Reason("fair", "fragment", "starts and ends at full level: cut from a longer recording?"))
    return reasons


def overall(reasons: list[Reason]) -> str:
    """The grade the worst reason brings a song to."""
    return max((reason.severity for reason in reasons), key=GRADES.index, default="good")


def near_duplicates(
    fingerprints: dict[str, tuple[np.ndarray, np.ndarray]], min_share: float = QualitySettings.duplicate_share
) -> list[tuple[str, str, float]]:
    """(song, song, share) of every pair of songs whose landmarks agree on one time offset (within a frame) for
    at least `min_share` of the shorter song's landmarks: the same recording, whatever its bitrate, mastering
    or edit. Landmark hashes common to many songs (more than 32) say nothing and are skipped."""
    names = sorted(fingerprints)
    if len(names) < 2:
        return []
    counts = np.array([len(fingerprints[n][0]) for n in names])
    hashes = np.concatenate([fingerprints[n][0] for n in names]).astype(np.int64)
    times = np.concatenate([fingerprints[n][1] for n in names]).astype(np.int64)
    songs = np.repeat(np.arange(len(names)), counts)
    order = np.lexsort((songs, hashes))
    hashes, times, songs = hashes[order], times[order], songs[order]
    run_start = np.r_[0, np.flatnonzero(np.diff(hashes)) + 1]
    run_length = np.diff(np.r_[run_start, len(hashes)])
    common = np.repeat(run_length > 32, run_length)
    pairs = []
    for gap in range(1, 33):  # each pair of entries of one hash, `gap` apart in the sorted order
        a = np.arange(len(hashes) - gap)
        b = a + gap
        same = (hashes[a] == hashes[b]) & (songs[a] != songs[b]) & ~common[a]
        if not same.any():
            continue
        a, b = a[same], b[same]
        pairs.append(np.stack([songs[a], songs[b], times[b] - times[a]], axis=1))
    if not pairs:
        return []
    matched = np.concatenate(pairs)
    keys, votes = np.unique(matched, axis=0, return_counts=True)
    best: dict[tuple[int, int], int] = {}
    by_offset = {tuple(key): count for key, count in zip(keys.tolist(), votes.tolist())}
    for (first, second, offset), count in by_offset.items():
        near = count + by_offset.get((first, second, offset + 1), 0) + by_offset.get((first, second, offset - 1), 0)
        best[(first, second)] = max(best.get((first, second), 0), near)
    out = []
    for (first, second), agreeing in best.items():
        share = agreeing / max(1, min(counts[first], counts[second]))
        if share >= min_share:
            out.append((names[first], names[second], round(float(share), 3)))
    return sorted(out)


def duplicate_groups(pairs: list[tuple[str, str, float]]) -> list[list[str]]:
    """Songs joined by near-duplicate pairs, as groups (each sorted), in a stable order."""
    parent: dict[str, str] = {}

    def root(song: str) -> str:
        while parent.setdefault(song, song) != song:
            song = parent[song]
        return song

    for first, second, _ in pairs:
        parent[root(first)] = root(second)
    groups: dict[str, list[str]] = {}
    for song in parent:
        groups.setdefault(root(song), []).append(song)
    return sorted(sorted(group) for group in groups.values())


def keep_best(group: list[str], sources: dict[str, SourceFacts], reasons: dict[str, list[Reason]]) -> tuple[str, str]:
    """(the copy to keep, why): the one with the fewest poor and fair findings, then lossless over lossy, then
    the higher bitrate, then the first by key."""

    def rank(song: str):
        own = reasons.get(song, [])
        source = sources[song]
        return (
            sum(r.severity == "poor" for r in own),
            sum(r.severity == "fair" for r in own),
            not source.lossless,
            -(source.bitrate_kbps or 0),
            song,
        )

    ordered = sorted(group, key=rank)
    kept, runner_up = ordered[0], ordered[1]
    a, b = rank(kept), rank(runner_up)
    if a[0] != b[0] or a[1] != b[1]:
        why = f"fewer quality findings ({a[0]} poor, {a[1]} fair against {b[0]} and {b[1]})"
    elif a[2] != b[2]:
        why = f"lossless ({sources[kept].codec}) over lossy ({sources[runner_up].codec})"
    elif a[3] != b[3]:
        why = f"higher bitrate ({sources[kept].bitrate_kbps:.0f} kbps against {sources[runner_up].bitrate_kbps:.0f})"
    else:
        why = "equal in quality: the first by key"
    return kept, why


def as_record(measures: Measures, source: SourceFacts, reasons: list[Reason]) -> dict:
    return {
        "grade": overall(reasons),
        "reasons": [asdict(reason) for reason in reasons],
        "source": asdict(source),
        "measures": asdict(measures),
    }
