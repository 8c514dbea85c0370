"""The frame features of a whole song, computed from its stems a window at a time: memory follows the window,
not the song.

The stems are read in windows of about a minute with 15 seconds of context on either side; every feature is
computed over the window and its context, and only the window's own frames are kept. Frames therefore agree
with a computation over the whole song wherever a feature looks no further than the context: spectrograms,
chroma, levels, and the beat tracker's network (its receptive field is 10.2 s, 1,024 frames either side).
Some features are local to a window by design: the chord recognizer's recurrent layer hears the context, not
the whole song; the DSP pulse envelope measures each band's noise floor and periodicity per window, so it
follows a long recording's changes; onset strength and MFCC floor their decibels 80 dB below the window's
loudest bin rather than the song's. Loudness is metered sample-exactly across windows. A song no longer than
one window is analysed whole, in one go.

What stays for the whole song is small: per-frame features and activations, about 60 MB an hour.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline_project.analysis import frames as grids
from pipeline_project.analysis.mir import ANALYSIS_RATE, HOP, pulse_envelope
from pipeline_project.audio.loudness import KWeightedSteps
from pipeline_project.layout import stem_file
from pipeline_project.memory import return_freed_memory

# Every window starts on a frame of each grid (hops of 512, 220 and 2048 samples): 112,640 samples, 5.1 s.
ALIGN = 112_640
WINDOW = 12 * ALIGN  # 61.3 s
CONTEXT = 3 * ALIGN  # 15.3 s: more than the beat network's receptive field (1,024 frames of 220 samples)
CHROMA_BINS = 12


class StemSource(Protocol):
    """Stems of one song, all of the same length and rate, read a stretch at a time."""

    sample_rate: int
    frames: int
    names: tuple[str, ...]

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """{stem: (channels, stop - start) float32}."""


@dataclass
class StemArrays:
    """Stems held in memory: (channels, frames) arrays."""

    stems: dict[str, np.ndarray]
    sample_rate: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.stems)

    @property
    def frames(self) -> int:
        return next(iter(self.stems.values())).shape[-1]

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: np.atleast_2d(audio)[:, start:stop] for name, audio in self.stems.items()}


class StemFiles:
    """Stem files (`<folder>/<name>.flac`), read a stretch at a time; a context manager that closes them."""

    def __init__(self, folder: str | os.PathLike, names: tuple[str, ...]):
        import soundfile as sf

        self.names = tuple(names)
        self.files = {name: sf.SoundFile(str(stem_file(folder, name))) for name in self.names}
        rates = {f.samplerate for f in self.files.values()}
        lengths = {f.frames for f in self.files.values()}
        if len(rates) != 1 or len(lengths) != 1:
            self.close()
            raise ValueError(
                f"stems in {folder} differ in sample rate or length: {sorted(rates)} Hz, {sorted(lengths)} frames"
            )
        self.sample_rate, self.frames = rates.pop(), lengths.pop()

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        out = {}
        for name, file in self.files.items():
            file.seek(start)
            out[name] = np.ascontiguousarray(file.read(stop - start, dtype="float32", always_2d=True).T)
        return out

    def close(self) -> None:
        for file in self.files.values():
            file.close()

    def __enter__(self) -> StemFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class SongFrames:
    """Frame features of a song. DSP grid: HOP samples at ANALYSIS_RATE (librosa's centred frames)."""

    duration: float
    has_drums: bool  # the drums stem is audible against the mix (see AUDIBLE_STEM_DB)
    onset_envelope: np.ndarray  # drums + bass, DSP grid
    level_db: np.ndarray  # RMS level of the mix over 2 * HOP samples, DSP grid
    chroma: np.ndarray  # (12, frames) other + vocals, DSP grid
    timbre: np.ndarray  # (12, frames) MFCC 1-12 of the mix, DSP grid
    loudness_steps: np.ndarray  # K-weighted energy of the mix per 100 ms (audio.loudness.KWeightedSteps)
    bass_chroma: np.ndarray | None = None  # (12, frames) bass stem, five octaves, DSP grid
    pulse_strength: np.ndarray | None = None  # noise-robust pulse envelope of the drums (the mix without drums)
    harmony_rms: np.ndarray | None = None  # RMS of other + vocals, DSP grid
    kick: np.ndarray | None = None  # low-band onset strength of the pulse source, DSP grid
    activations: dict[str, np.ndarray] = field(default_factory=dict)  # see analysis.learned.activations


AUDIBLE_STEM_DB = -30.0


def analysis_length(frames: int, sample_rate: int) -> int:
    """Samples at ANALYSIS_RATE of `frames` at `sample_rate` (as many as the resampler gives)."""
    return -(-frames * ANALYSIS_RATE // sample_rate)


def _to_analysis_rate(stereo: np.ndarray, sample_rate: int, length: int) -> np.ndarray:
    """Mono float32 at ANALYSIS_RATE, exactly `length` samples."""
    import librosa

    mono = stereo.mean(axis=0) if stereo.ndim == 2 else stereo
    if sample_rate != ANALYSIS_RATE:
        mono = librosa.resample(mono, orig_sr=sample_rate, target_sr=ANALYSIS_RATE, res_type="soxr_hq")
    mono = mono[:length].astype(np.float32)
    return np.pad(mono, (0, length - len(mono))) if len(mono) < length else mono


def song_frames(
    source: StemSource,
    models=None,
    learned_names: tuple[str, ...] = (),
    dsp_rhythm: bool = True,
    cqt_chroma: bool = True,
    bass_chroma: bool = True,
) -> SongFrames:
    """Every frame feature `analysis.mir.analyze` needs, window by window. `learned_names`: the families of
    `models` whose activations are wanted; `dsp_rhythm`: the DSP pulse and downbeat evidence; `cqt_chroma`:
    constant-Q chroma (else STFT chroma, enough for sections); `bass_chroma`: the bass stem's chroma."""
    import librosa

    from pipeline_project.analysis import learned

    window, context = WINDOW, CONTEXT
    if window % ALIGN or context % ALIGN:
        raise ValueError(f"WINDOW and CONTEXT must be multiples of {ALIGN} samples")
    rate, total_source = source.sample_rate, source.frames
    total = analysis_length(total_source, rate)
    dsp_frames = 1 + total // HOP
    grids_total = {
        HOP: dsp_frames,
        grids.BEAT_HOP: -(-total // grids.BEAT_HOP),
        grids.HARMONY_HOP: -(-total // grids.HARMONY_HOP),
    }
    parts: dict[str, list[np.ndarray]] = {}
    energy = {"drums": 0.0, "mix": 0.0}
    meter = None

    for core_start in range(0, total, window):
        core_stop = min(total, core_start + window)
        last = core_stop == total
        start, stop = max(0, core_start - context), min(total, core_stop + context)
        source_start, source_stop = start * rate // ANALYSIS_RATE, min(total_source, -(-stop * rate // ANALYSIS_RATE))
        stems = source.read(source_start, source_stop)

        def keep(
            name: str, values: np.ndarray, hop: int, core_start=core_start, core_stop=core_stop, start=start, last=last
        ) -> None:
            """The window's own frames of `values` (frames on the last axis, hop `hop`)."""
            first = (core_start - start) // hop
            count = (grids_total[hop] if last else core_stop // hop) - core_start // hop
            # A copy, not a view: a view would keep the whole window's array, context and all, alive.
            parts.setdefault(name, []).append(np.array(values[..., first : first + count], dtype=np.float32))

        # Loudness and the drums' audibility from the window's own source samples, at the source rate.
        own = slice(
            core_start * rate // ANALYSIS_RATE - source_start,
            (total_source if last else core_stop * rate // ANALYSIS_RATE) - source_start,
        )
        mix = sum(stems[name][:, own] for name in source.names)
        if meter is None:
            meter = KWeightedSteps(rate, mix.shape[0])
        meter.push(mix)
        energy["mix"] += float(np.mean(mix.astype(np.float64) ** 2, axis=0).sum())
        if "drums" in stems:
            energy["drums"] += float(np.mean(stems["drums"][:, own].astype(np.float64) ** 2, axis=0).sum())
        del mix

        mono = {name: _to_analysis_rate(audio, rate, stop - start) for name, audio in stems.items()}
        del stems
        silent = np.zeros(stop - start, dtype=np.float32)
        drums, bass = mono.get("drums", silent), mono.get("bass", silent)
        full = np.sum(list(mono.values()), axis=0)
        rhythm = drums + bass
        harmony = mono.get("other", silent) + mono.get("vocals", silent)

        keep("onset_envelope", librosa.onset.onset_strength(y=rhythm, sr=ANALYSIS_RATE, hop_length=HOP), HOP)
        keep("level", librosa.feature.rms(y=full, frame_length=2 * HOP, hop_length=HOP)[0], HOP)
        chroma = (
            librosa.feature.chroma_cqt(y=harmony, sr=ANALYSIS_RATE, hop_length=HOP)
            if cqt_chroma
            else librosa.feature.chroma_stft(y=harmony, sr=ANALYSIS_RATE, hop_length=HOP)
        )
        keep("chroma", chroma.astype(np.float32), HOP)
        keep(
            "timbre",
            librosa.feature.mfcc(y=full, sr=ANALYSIS_RATE, hop_length=HOP, n_mfcc=13)[1:].astype(np.float32),
            HOP,
        )
        if bass_chroma:
            keep(
                "bass_chroma",
                librosa.feature.chroma_cqt(y=bass, sr=ANALYSIS_RATE, hop_length=HOP, n_octaves=5).astype(np.float32),
                HOP,
            )
        if dsp_rhythm:
            # Both pulse sources: whether the drums are audible is known only once the whole song is heard.
            for name, signal in (("drums", drums), ("mix", full)):
                keep(f"pulse_{name}", pulse_envelope(signal).astype(np.float32), HOP)
                keep(
                    f"kick_{name}",
                    librosa.onset.onset_strength(y=signal, sr=ANALYSIS_RATE, hop_length=HOP, fmax=200, n_mels=16),
                    HOP,
                )
            keep("harmony_rms", librosa.feature.rms(y=harmony, hop_length=HOP)[0], HOP)
        if learned_names:
            act = learned.activations(models, full, learned_names)
            for name, values in act.items():
                hop = grids.BEAT_HOP if name in ("beat", "downbeat") else grids.HARMONY_HOP
                keep(f"act_{name}", np.moveaxis(values.astype(np.float32), 0, -1), hop)
        del mono, full, rhythm, harmony, drums, bass
        return_freed_memory()

    joined = {}
    for name in list(parts):  # each feature's pieces are let go as soon as they are joined
        joined[name] = np.concatenate(parts.pop(name), axis=-1)
    has_drums = energy["drums"] > energy["mix"] * 10 ** (AUDIBLE_STEM_DB / 10)
    pulse_source = "drums" if has_drums else "mix"
    return SongFrames(
        duration=total_source / rate,
        has_drums=has_drums,
        onset_envelope=joined["onset_envelope"],
        level_db=20 * np.log10(joined["level"] + 1e-12),
        chroma=joined["chroma"],
        timbre=joined["timbre"],
        loudness_steps=meter.energies() if meter is not None else np.zeros(0),
        bass_chroma=joined.get("bass_chroma"),
        pulse_strength=joined.get(f"pulse_{pulse_source}"),
        harmony_rms=joined.get("harmony_rms"),
        kick=joined.get(f"kick_{pulse_source}"),
        activations={
            name[4:]: np.moveaxis(values, -1, 0) for name, values in joined.items() if name.startswith("act_")
        },
    )


def waveform_peaks(source: StemSource, bins: int = 2000) -> np.ndarray:
    """(bins,) the mix's peak level (mono) in each of `bins` equal stretches of the song, read a window at a time."""
    total = source.frames
    bins = max(1, min(bins, total))
    edges = np.linspace(0, total, bins + 1).astype(np.int64)
    peaks = np.zeros(bins, dtype=np.float32)
    step = WINDOW * 2
    for start in range(0, total, step):
        stop = min(total, start + step)
        mono = sum(audio for audio in source.read(start, stop).values()).mean(axis=0)
        first, last = np.searchsorted(edges, start, side="right") - 1, np.searchsorted(edges, stop, side="left")
        for index in range(first, min(last, bins)):
            lo, hi = max(edges[index], start) - start, min(edges[index + 1], stop) - start
            if hi > lo:
                peaks[index] = max(peaks[index], float(np.abs(mono[lo:hi]).max()))
    return peaks
