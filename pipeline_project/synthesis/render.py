"""FluidSynth rendering: every part alone through pyfluidsynth and the system's libfluidsynth, stems
loudness-normalized (ITU-R BS.1770), the mix their sum, limited by one gain curve applied to every stem
so that the stems still add up exactly to the mix.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline_project.audio.dynamics import limiter_gain
from pipeline_project.audio.loudness import integrated_loudness
from pipeline_project.errors import RenderError
from pipeline_project.synthesis.arrangement import STEMS
from pipeline_project.synthesis.instruments import DRUM_BANK
from pipeline_project.synthesis.performance import Performance

SAMPLE_RATE = 44_100
# Well-known install locations of free General MIDI SoundFonts (Debian packages fluid-soundfont-gm,
# musescore-general-soundfont).
SYSTEM_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/MuseScore_General.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
)
# Loudness of each stem (LUFS, BS.1770) before the mix is limited.
STEM_LOUDNESS_LUFS = {"drums": -20.0, "bass": -22.0, "other": -24.0, "vocals": -21.0}
DRUM_CHANNEL, MELODIC_CHANNEL = 9, 0
PITCH_BEND_RANGE_SEMITONES = 2


def bundled_soundfont() -> Path:
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def available_soundfonts(user_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """File name -> path of every usable SoundFont: pretty_midi's bundled one, the system's GM SoundFonts,
    then the user's own folder. A name seen twice keeps its first path."""
    found = [bundled_soundfont()] + [Path(p) for p in SYSTEM_SOUNDFONTS if Path(p).is_file()]
    if user_dir and Path(user_dir).is_dir():
        found += sorted(p for p in Path(user_dir).iterdir() if p.suffix.lower() in (".sf2", ".sf3"))
    catalog: dict[str, Path] = {}
    for path in found:
        catalog.setdefault(path.name, path)
    return catalog


def _fluidsynth():
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:
        raise RenderError(
            f"FluidSynth is not available ({exc}); install the system library "
            "(Debian/Ubuntu: apt-get install libfluidsynth3; Fedora: dnf install fluidsynth-libs; macOS: brew install fluid-synth)"
        ) from exc
    return fluidsynth


@dataclass
class PartToRender:
    notes: list  # items with onset, offset, pitch, velocity
    soundfont: Path
    bank: int
    program: int
    detune_cents: float = 0.0


class FluidSynthEngine:
    """Renders the parts of one piece in a new FluidSynth instance, each part on its own MIDI channel and
    its own output bus, so every part comes out alone in a single pass. FluidSynth's own reverb and chorus
    are off (rooms are the augmentation's job).

    A fresh instance per piece is what makes rendering reproducible: a reused one carries voice state from
    what it played before, and the same part then comes out slightly different. With dynamic sample
    loading a new instance costs milliseconds, since only the samples a piece plays are read.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE):
        self.fluidsynth = _fluidsynth()
        self.sample_rate = sample_rate
        fl = self.fluidsynth._fl
        self._write = fl.fluid_synth_nwrite_float
        self._write.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._write.restype = ctypes.c_int
        self._channel_type = fl.fluid_synth_set_channel_type
        self._channel_type.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]

    def _synth(self, buses: int):
        return self.fluidsynth.Synth(
            gain=0.5,
            samplerate=float(self.sample_rate),
            channels=16 * (-(-buses // 16)),
            **{
                "synth.reverb.active": 0,
                "synth.chorus.active": 0,
                "synth.polyphony": 1024,
                "synth.dynamic-sample-loading": 1,
                "synth.audio-channels": buses,
                "synth.audio-groups": buses,
            },
        )

    def _load(self, synth, soundfont: Path, loaded: dict[Path, int]) -> int:
        if soundfont not in loaded:
            if not soundfont.is_file():
                raise RenderError(f"{soundfont}: SoundFont not found")
            sfid = synth.sfload(str(soundfont))
            if sfid < 0:
                raise RenderError(f"{soundfont}: FluidSynth could not load this SoundFont")
            loaded[soundfont] = sfid
        return loaded[soundfont]

    def presets(self, soundfont: Path) -> set[tuple[int, int]]:
        synth = self._synth(1)
        try:
            sfid = self._load(synth, soundfont, {})
            return {
                (bank, program)
                for bank in (0, DRUM_BANK)
                for program in range(128)
                if synth.sfpreset_name(sfid, bank, program)
            }
        finally:
            synth.delete()

    def render_parts(self, parts: list[PartToRender], frames: int) -> list[np.ndarray]:
        """One (2, frames) float32 array per part."""
        synth = self._synth(len(parts))
        try:
            loaded: dict[Path, int] = {}
            events = []
            for channel, part in enumerate(parts):
                sfid = self._load(synth, part.soundfont, loaded)
                is_drum = part.bank == DRUM_BANK
                self._channel_type(synth.synth, channel, 1 if is_drum else 0)
                if synth.program_select(channel, sfid, part.bank, part.program) != 0:
                    raise RenderError(f"{part.soundfont.name}: no preset bank {part.bank} program {part.program}")
                if not is_drum:
                    synth.pitch_bend(channel, int(round(part.detune_cents / (100 * PITCH_BEND_RANGE_SEMITONES) * 8192)))
                events += [
                    (int(round(n.onset * self.sample_rate)), 1, channel, n.pitch, n.velocity) for n in part.notes
                ]
                events += [(int(round(n.offset * self.sample_rate)), 0, channel, n.pitch, 0) for n in part.notes]
            events.sort()
            out = np.zeros((len(parts), 2, frames), dtype=np.float32)
            position = 0

            def write(until: int) -> None:
                left = (ctypes.c_void_p * len(parts))(*[out[i, 0, position:].ctypes.data for i in range(len(parts))])
                right = (ctypes.c_void_p * len(parts))(*[out[i, 1, position:].ctypes.data for i in range(len(parts))])
                self._write(synth.synth, until - position, left, right, None, None)

            for frame, is_on, channel, pitch, velocity in events:
                frame = min(frame, frames)
                if frame > position:
                    write(frame)
                    position = frame
                if is_on:
                    synth.noteon(channel, pitch, velocity)
                else:
                    synth.noteoff(channel, pitch)
            if frames > position:
                write(frames)
            return list(out)
        finally:
            synth.delete()


@lru_cache(maxsize=2)
def engine(sample_rate: int = SAMPLE_RATE) -> FluidSynthEngine:
    return FluidSynthEngine(sample_rate)


@lru_cache(maxsize=32)
def _presets(path: str, mtime: float) -> frozenset[tuple[int, int]]:
    return frozenset(engine().presets(Path(path)))


def soundfont_presets(catalog: dict[str, Path]) -> dict[str, set[tuple[int, int]]]:
    return {name: set(_presets(str(path), path.stat().st_mtime)) for name, path in catalog.items()}


@dataclass
class RenderedAudio:
    stems: dict[str, np.ndarray]  # stem -> (2, frames) float32
    sample_rate: int
    soundfonts: list[str]
    stem_loudness_lufs: dict[str, float]
    limiter_gain_db: float  # the most the mix limiter turned it down
    mix: np.ndarray  # (2, frames) float32: the sum of the stems


def loudness_gain(audio: np.ndarray, sample_rate: int, target_lufs: float) -> float:
    """Linear gain that brings (2, frames) audio to `target_lufs` integrated loudness (BS.1770)."""
    if not np.any(audio):
        return 1.0
    loudness = integrated_loudness(audio, sample_rate)
    return 1.0 if not np.isfinite(loudness) else float(10 ** ((target_lufs - loudness) / 20))


def render(performance: Performance, catalog: dict[str, Path] | None = None) -> RenderedAudio:
    """Render each part alone with its voice, sum parts into stems, normalize each stem's loudness, and limit
    the mix with one gain curve applied to every stem."""
    catalog = catalog or available_soundfonts()
    synth = engine()
    frames = int(round(performance.duration * SAMPLE_RATE))
    by_part: dict[str, list] = {}
    for note in performance.notes:
        by_part.setdefault(note.part, []).append(note)
    jobs = []
    for part, notes in by_part.items():
        voice = performance.voices[part]
        if voice.soundfont not in catalog:
            raise RenderError(f"SoundFont {voice.soundfont!r} is not available (known: {', '.join(catalog)})")
        jobs.append(
            PartToRender(
                notes, catalog[voice.soundfont], voice.bank, voice.program, performance.detune_cents.get(part, 0.0)
            )
        )
    rendered: dict[str, np.ndarray] = {}
    for notes, audio in zip(by_part.values(), synth.render_parts(jobs, frames) if jobs else []):
        stem = notes[0].stem
        if stem in rendered:
            rendered[stem] += audio
        else:
            rendered[stem] = audio
    loudness = {stem: float("-inf") for stem in STEMS}
    mix = np.zeros((2, frames), dtype=np.float32)
    for stem, audio in rendered.items():
        if np.any(audio):
            audio *= np.float32(loudness_gain(audio, SAMPLE_RATE, STEM_LOUDNESS_LUFS[stem]))
            loudness[stem] = STEM_LOUDNESS_LUFS[stem]
            mix += audio
    gain = limiter_gain(mix, SAMPLE_RATE)
    if gain.min() < 1.0:
        for audio in [*rendered.values(), mix]:
            audio *= gain
    stems = {stem: rendered.get(stem, np.zeros((2, frames), dtype=np.float32)) for stem in STEMS}
    used = sorted({v.soundfont for v in performance.voices.values()})
    return RenderedAudio(stems, SAMPLE_RATE, used, loudness, round(float(20 * np.log10(max(gain.min(), 1e-9))), 2), mix)
