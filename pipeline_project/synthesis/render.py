"""FluidSynth rendering: each stem alone, then the mix as the exact sum of the stems.

pretty_midi drives pyfluidsynth, which loads the system's libfluidsynth; every SoundFont found is usable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline_project.errors import RenderError
from pipeline_project.synthesis.arrangement import STEMS, Performance

SAMPLE_RATE = 44_100
# Well-known install locations of free General MIDI SoundFonts (Debian packages fluid-soundfont-gm, musescore-general-soundfont).
SYSTEM_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/MuseScore_General.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
)
# Relative level of each stem in the mix (RMS in dBFS before the mix is normalized).
STEM_LEVELS_DB = {"drums": -18.0, "bass": -20.0, "other": -23.0, "vocals": -20.0}
STEM_PAN = {"drums": 0.0, "bass": 0.0, "other": -0.25, "vocals": 0.1}
MIX_PEAK = 10 ** (-1.0 / 20)


def bundled_soundfont() -> Path:
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def available_soundfonts(user_dir: str | os.PathLike | None = None) -> list[Path]:
    """The SoundFont shipped with pretty_midi, then system GM SoundFonts, then the user's own."""
    found = [bundled_soundfont()]
    found += [Path(p) for p in SYSTEM_SOUNDFONTS if Path(p).is_file()]
    if user_dir and Path(user_dir).is_dir():
        found += sorted(p for p in Path(user_dir).iterdir() if p.suffix.lower() in (".sf2", ".sf3"))
    return found


@dataclass
class RenderedAudio:
    stems: dict[str, np.ndarray]  # stem -> (2, frames) float32
    sample_rate: int
    soundfont: str

    @property
    def mix(self) -> np.ndarray:
        return np.sum([self.stems[s] for s in STEMS], axis=0).astype(np.float32)


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    angle = (position + 1.0) * np.pi / 4.0  # constant-power law
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)]) * np.sqrt(2.0)


def _render_stem(performance: Performance, stem: str, soundfont: Path, frames: int) -> np.ndarray:
    import pretty_midi

    notes = [n for n in performance.notes if n.stem == stem]
    if not notes:
        return np.zeros(frames, dtype=np.float32)
    instrument = pretty_midi.Instrument(program=max(notes[0].program, 0), is_drum=notes[0].is_drum, name=stem)
    for note in notes:
        instrument.notes.append(pretty_midi.Note(note.velocity, note.pitch, note.onset, note.offset))
    cents = performance.humanization.get("detune_cents", {}).get(stem, 0.0)
    if cents and not notes[0].is_drum:
        instrument.pitch_bends.append(pretty_midi.PitchBend(int(round(cents / 200.0 * 8192)), 0.0))
    try:
        audio = instrument.fluidsynth(fs=SAMPLE_RATE, sf2_path=str(soundfont))
    except ImportError as exc:
        raise RenderError(
            f"FluidSynth is not available ({exc}); install the system library (Debian/Ubuntu: apt-get install libfluidsynth3)"
        ) from exc
    out = np.zeros(frames, dtype=np.float32)
    n = min(frames, audio.shape[0])
    out[:n] = audio[:n]
    return out


def render(performance: Performance, soundfont: str | os.PathLike | None = None) -> RenderedAudio:
    """Render every stem of a performance alone and balance them; the mix is their sum, peaking at -1 dBFS."""
    soundfont = Path(soundfont) if soundfont else bundled_soundfont()
    if not soundfont.is_file():
        raise RenderError(f"{soundfont}: SoundFont not found")
    frames = int(round(performance.duration * SAMPLE_RATE))
    stems: dict[str, np.ndarray] = {}
    for stem in STEMS:
        mono = _render_stem(performance, stem, soundfont, frames)
        active = mono[np.abs(mono) > 1e-4]
        if active.size:
            rms = float(np.sqrt(np.mean(active**2)))
            mono = mono * (10 ** (STEM_LEVELS_DB[stem] / 20) / rms)
        stems[stem] = _pan(mono, STEM_PAN[stem]).astype(np.float32)
    peak = float(np.max(np.abs(np.sum(list(stems.values()), axis=0)))) or 1.0
    gain = MIX_PEAK / peak
    return RenderedAudio({s: (a * gain).astype(np.float32) for s, a in stems.items()}, SAMPLE_RATE, soundfont.name)
