"""Instrument families and same-family randomization over every available SoundFont.

A part keeps its musical role when its sound is randomized: a piano part may become a bright, upright,
electric or honky-tonk piano, possibly from another SoundFont, but never a guitar. Only presets that a
SoundFont really holds are drawn, because FluidSynth would otherwise substitute a preset of its own choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DRUM_BANK = 128

# General MIDI programs (0-based) grouped by family. The GM "piano" group is split so that harpsichord
# and clavinet, which sound nothing like a piano, form their own family.
FAMILIES: dict[str, tuple[int, ...]] = {
    "piano": tuple(range(0, 6)),
    "harpsichord_clavinet": (6, 7),
    "chromatic_percussion": tuple(range(8, 16)),
    "organ": tuple(range(16, 24)),
    "guitar": tuple(range(24, 32)),
    "bass": tuple(range(32, 40)),
    "solo_strings": tuple(range(40, 46)),
    "harp": (46,),
    "timpani": (47,),
    "string_ensemble": tuple(range(48, 52)),
    "choir": (52, 53, 54),
    "orchestra_hit": (55,),
    "brass": tuple(range(56, 64)),
    "reed": tuple(range(64, 72)),
    "pipe": tuple(range(72, 80)),
    "synth_lead": tuple(range(80, 88)),
    "synth_pad": tuple(range(88, 96)),
    "synth_effects": tuple(range(96, 104)),
    "ethnic": tuple(range(104, 112)),
    "percussive": tuple(range(112, 120)),
    "sound_effects": tuple(range(120, 128)),
}
# Acoustic-style drum kits (bank 128): standard, room, power, jazz, brush. Electronic kits are left out
# because their "hi-hats" would not teach a model what a real hi-hat sounds like.
DRUM_KITS: tuple[int, ...] = (0, 8, 16, 32, 40)
FAMILY_OF_PROGRAM = {program: family for family, programs in FAMILIES.items() for program in programs}


def family_of(program: int, is_drum: bool = False) -> str:
    return "drum_kit" if is_drum else FAMILY_OF_PROGRAM[int(program)]


def family_members(program: int, is_drum: bool = False) -> tuple[int, ...]:
    return DRUM_KITS if is_drum else FAMILIES[FAMILY_OF_PROGRAM[int(program)]]


@dataclass(frozen=True)
class Voice:
    """The sound one part is rendered with."""

    soundfont: str  # file name of the SoundFont
    bank: int
    program: int
    family: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PartSpec:
    """A part of an arrangement as written: its stem, its written GM program, whether it is percussion."""

    name: str
    stem: str
    program: int
    is_drum: bool = False


def choose_voices(
    parts: list[PartSpec], presets: dict[str, set[tuple[int, int]]], seed: int, randomize: bool = True
) -> dict[str, Voice]:
    """One voice per part: a random SoundFont, then a random program of the part's family that it holds.

    `presets` maps SoundFont file name to the (bank, program) pairs it contains. With `randomize` off, every
    part keeps its written program in the first SoundFont that has it.
    """
    if not presets:
        raise ValueError("no SoundFont available")
    rng = np.random.default_rng(seed)
    names = list(presets)
    voices: dict[str, Voice] = {}
    for part in parts:
        bank = DRUM_BANK if part.is_drum else 0
        written = 0 if part.is_drum else part.program
        family = family_of(written, part.is_drum)
        members = family_members(written, part.is_drum)
        order = list(rng.permutation(len(names))) if randomize else list(range(len(names)))
        choice = None
        for index in order:
            held = [p for p in members if (bank, p) in presets[names[index]]]
            if not held:
                continue
            program = int(rng.choice(held)) if randomize else (written if written in held else held[0])
            choice = Voice(names[index], bank, program, family)
            break
        if choice is None:
            raise ValueError(f"part {part.name!r}: no available SoundFont has an instrument of family {family!r}")
        voices[part.name] = choice
    return voices
