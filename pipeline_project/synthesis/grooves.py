"""The generated groove library: drum patterns in several styles and meters, and bass lines that follow a
chord progression.

A pattern is one bar of (position in quarter notes, articulation, velocity). Articulations cover closed,
open, half-open and pedal hi-hat, ghost notes, flams, crash, ride and ride bell, so drum-hit models see them
all; each articulation is played with its General MIDI key (see arrangement.ARTICULATION_KEYS).
"""

from __future__ import annotations

import numpy as np

from pipeline_project.pitches import PITCH_CLASS, PITCH_NAMES
from pipeline_project.synthesis.arrangement import (
    ARTICULATION_KEYS,
    HELPER_ARTICULATIONS,
    Arrangement,
    ScoreNote,
)

HALF_OPEN_CHOKE_S = 0.09  # a half-open hi-hat rings this long before the pedal closes it
FLAM_GRACE_S = 0.028  # the grace note of a flam comes this much earlier, softer

K, S, G, F, CH, PH, OH, HO, CR, RD, RB, TM = (
    "kick",
    "snare",
    "ghost_snare",
    "flam_snare",
    "closed_hihat",
    "pedal_hihat",
    "open_hihat",
    "half_open_hihat",
    "crash",
    "ride",
    "ride_bell",
    "tom",
)

# meter: (numerator, denominator); bar: one bar of hits.
GROOVE_STYLES: dict[str, dict] = {
    "rock": {
        "meter": (4, 4),
        "bar": [
            (0.0, K, 105),
            (0.5, CH, 70),
            (1.0, S, 100),
            (1.5, CH, 72),
            (2.0, K, 100),
            (2.5, OH, 80),
            (3.0, S, 102),
            (3.5, CH, 68),
        ],
    },
    "disco": {
        "meter": (4, 4),
        "bar": [
            (0.0, K, 110),
            (0.5, OH, 78),
            (1.0, K, 104),
            (1.0, S, 96),
            (1.5, OH, 80),
            (2.0, K, 108),
            (2.5, OH, 76),
            (3.0, K, 104),
            (3.0, S, 98),
            (3.5, OH, 82),
        ],
    },
    "funk": {
        "meter": (4, 4),
        "bar": [
            (0.0, K, 110),
            (0.25, CH, 60),
            (0.5, CH, 72),
            (0.75, G, 34),
            (1.0, S, 105),
            (1.5, HO, 74),
            (1.75, K, 90),
            (2.25, CH, 62),
            (2.5, HO, 78),
            (2.75, G, 30),
            (3.0, S, 104),
            (3.25, G, 32),
            (3.5, CH, 70),
        ],
    },
    "half_time": {
        "meter": (4, 4),
        "bar": [
            (0.0, K, 108),
            (0.0, RD, 76),
            (1.0, RD, 70),
            (1.5, K, 88),
            (2.0, F, 104),
            (2.0, RB, 82),
            (3.0, RD, 72),
            (3.5, G, 30),
            (3.75, PH, 56),
        ],
    },
    "jazz_ride": {
        "meter": (4, 4),
        "bar": [
            (0.0, RD, 84),
            (0.0, K, 60),
            (1.0, RD, 78),
            (1.0, PH, 64),
            (1.667, RD, 62),
            (2.0, RD, 82),
            (2.667, G, 34),
            (3.0, RD, 78),
            (3.0, PH, 66),
            (3.667, RD, 64),
        ],
    },
    "waltz": {
        "meter": (3, 4),
        "bar": [
            (0.0, K, 105),
            (0.0, CH, 72),
            (0.5, CH, 64),
            (1.0, CH, 74),
            (1.0, S, 78),
            (1.5, HO, 70),
            (2.0, S, 92),
            (2.0, CH, 70),
            (2.5, PH, 60),
        ],
    },
    "ballad_6_8": {
        "meter": (6, 8),
        "bar": [
            (0.0, K, 104),
            (0.0, CH, 76),
            (0.5, CH, 60),
            (1.0, CH, 64),
            (1.5, S, 96),
            (1.5, CH, 74),
            (2.0, CH, 60),
            (2.5, OH, 70),
        ],
    },
    "shuffle_12_8": {
        "meter": (12, 8),
        "bar": [
            (0.0, K, 106),
            (0.0, RD, 80),
            (1.0, RD, 64),
            (1.5, S, 98),
            (1.5, RD, 78),
            (2.5, RD, 64),
            (3.0, K, 100),
            (3.0, RD, 80),
            (4.0, RD, 64),
            (4.5, S, 100),
            (4.5, RD, 78),
            (5.5, RD, 66),
        ],
    },
    "odd_5_4": {
        "meter": (5, 4),
        "bar": [
            (0.0, K, 106),
            (0.0, CH, 78),
            (0.5, CH, 64),
            (1.0, S, 98),
            (1.5, CH, 70),
            (2.0, K, 98),
            (2.5, CH, 66),
            (3.0, K, 94),
            (3.0, HO, 74),
            (3.5, CH, 64),
            (4.0, S, 100),
            (4.5, PH, 58),
        ],
    },
}
FILL = [
    (0.0, TM, 96),
    (0.5, TM, 90),
    (1.0, TM, 96),
    (1.5, TM, 92),
    (2.0, F, 100),
    (2.5, TM, 96),
    (3.0, S, 110),
    (3.5, CR, 108),
]

# Progressions as (semitones above the tonic, quality), one chord per bar.
PROGRESSIONS: dict[str, list[tuple[int, str]]] = {
    "I-IV-V-I": [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")],
    "I-V-vi-IV": [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")],
    "vi-IV-I-V": [(9, "min"), (5, "maj"), (0, "maj"), (7, "maj")],
    "ii-V-I-I": [(2, "min"), (7, "maj"), (0, "maj"), (0, "maj")],
    "andalusian": [(9, "min"), (7, "maj"), (5, "maj"), (4, "maj")],
    "twelve_bar_blues": [(0, "maj")] * 4
    + [(5, "maj")] * 2
    + [(0, "maj")] * 2
    + [(7, "maj"), (5, "maj"), (0, "maj"), (7, "maj")],
}
# The key each progression is in, as (semitones above its I, mode): where it comes home. The Andalusian
# cadence, written as vi-V-IV-III of its relative major, is in the minor key of its vi; the others are in the
# major key of their I.
PROGRESSION_HOMES: dict[str, tuple[int, str]] = {"andalusian": (9, "minor")}
MAJOR_HOME = (0, "major")


def progression_key(progression: str, key: str) -> tuple[str, int]:
    """(the key a groove over `progression` is in, the pitch class of the progression's I) where `key` names
    the I: the progression is played from `key`'s tonic, and the groove is labelled with the key it comes home
    to, whatever mode `key` asks. So the Andalusian cadence asked in A minor (F#m E D C#) is in F# minor, and
    I-IV-V-I asked in A minor is in A major: a label is what the audio is in."""
    home_steps, mode = PROGRESSION_HOMES.get(progression, MAJOR_HOME)
    first = PITCH_CLASS[key.split(":")[0]]
    return f"{PITCH_NAMES[(first + home_steps) % 12]}:{mode}", first


def meter_of(style: str) -> tuple[int, int, float]:
    """(beats per bar, denominator, beat length in quarter notes); 6/8 and 12/8 count dotted quarters."""
    numerator, denominator = GROOVE_STYLES[style]["meter"]
    if denominator == 8 and numerator % 3 == 0:
        return numerator // 3, denominator, 1.5
    return numerator, denominator, 4.0 / denominator


def style_for_meter(time_signature: str, preferred: str) -> str:
    """The preferred style if it fits the time signature, else the first style that does, else rock."""

    def fits(name: str) -> bool:
        numerator, denominator = GROOVE_STYLES[name]["meter"]
        return f"{numerator}/{denominator}" == time_signature

    return preferred if fits(preferred) else next((name for name in GROOVE_STYLES if fits(name)), "rock")


def _hit(start: float, articulation: str, velocity: int) -> list[ScoreNote]:
    notes = [ScoreNote(start, 0.25, ARTICULATION_KEYS[articulation], velocity, "drums", articulation=articulation)]
    if articulation == HO:
        notes.append(
            ScoreNote(
                start, 0.25, HELPER_ARTICULATIONS["choke"], 1, "drums", articulation="choke", shift_s=HALF_OPEN_CHOKE_S
            )
        )
    if articulation == F:
        notes.append(
            ScoreNote(
                start,
                0.25,
                HELPER_ARTICULATIONS["flam_grace"],
                max(20, velocity // 3),
                "drums",
                articulation="flam_grace",
                shift_s=-FLAM_GRACE_S,
            )
        )
    return notes


def drum_part(arrangement: Arrangement, style: str, seed: int, fills_every: int = 4) -> list[ScoreNote]:
    """A groove over every full bar, a crash on each phrase start and, in 4/4, a tom fill closing each phrase."""
    rng = np.random.default_rng(seed)
    style = style_for_meter(arrangement.time_signature, style)
    pattern = GROOVE_STYLES[style]["bar"]
    bar_ql = arrangement.bar_ql
    notes: list[ScoreNote] = []
    bar_starts = np.arange(arrangement.pickup_ql, arrangement.length_ql - 1e-6, bar_ql)
    for index, bar_start in enumerate(bar_starts):
        is_fill = (
            fills_every
            and bar_ql == 4
            and index % fills_every == fills_every - 1
            and bar_start + bar_ql <= arrangement.length_ql
        )
        for position, articulation, velocity in FILL if is_fill else pattern:
            start = bar_start + position
            if start >= arrangement.length_ql or position >= bar_ql:
                continue
            if index % fills_every == 0 and position == 0.0 and articulation in (K, RD, CH):
                if articulation != K:
                    continue  # the crash replaces the cymbal on a phrase's first beat
                notes += _hit(start, CR, 110)
            notes += _hit(start, articulation, int(np.clip(velocity + rng.integers(-6, 7), 20, 127)))
    return notes


def bass_part(arrangement: Arrangement, seed: int) -> list[ScoreNote]:
    """Chord roots in the bass register on every beat, with a passing fifth on the last off-beat of a bar."""
    rng = np.random.default_rng(seed)
    notes: list[ScoreNote] = []
    beat_ql = arrangement.beat_ql
    for beat in arrangement.beats_ql():
        label = arrangement.chord_at(beat)
        if label == "N" or label.split(":")[0] not in PITCH_CLASS:
            continue
        root_midi = 28 + (PITCH_CLASS[label.split(":")[0]] - 4) % 12  # E1..D#2: the bass guitar's lowest octave
        position_in_bar = round((beat - arrangement.pickup_ql) / beat_ql) % arrangement.beats_per_bar
        velocity = int(96 + rng.integers(-6, 7)) if position_in_bar == 0 else int(84 + rng.integers(-6, 7))
        if position_in_bar == arrangement.beats_per_bar - 1 and beat + beat_ql <= arrangement.length_ql:
            notes.append(ScoreNote(beat, beat_ql / 2, root_midi + 12, velocity, "bass"))
            notes.append(ScoreNote(beat + beat_ql / 2, beat_ql / 2, root_midi + 7, velocity - 8, "bass"))
        else:
            notes.append(ScoreNote(beat, beat_ql * 0.95, root_midi + 12, velocity, "bass"))
    return notes


def with_rhythm_section(arrangement: Arrangement, style: str, seed: int) -> Arrangement:
    """The arrangement plus a generated drum part and a bass line following its chords."""
    return arrangement.with_notes(drum_part(arrangement, style, seed) + bass_part(arrangement, seed + 1))


def groove_only(style: str, bars: int, seed: int, key: str = "C:major", progression: str = "I-IV-V-I") -> Arrangement:
    """A drums-and-bass example over a chord progression from `key`'s tonic, for drum-hit and rhythm training
    data; labelled with the key the progression is in (see `progression_key`)."""
    beats_per_bar, denominator, beat_ql = meter_of(style)
    bar_ql = beats_per_bar * beat_ql
    key, tonic = progression_key(progression, key)
    steps = PROGRESSIONS[progression]
    chords = [
        (
            i * bar_ql,
            (i + 1) * bar_ql,
            f"{PITCH_NAMES[(tonic + steps[i % len(steps)][0]) % 12]}:{steps[i % len(steps)][1]}",
        )
        for i in range(bars)
    ]
    numerator = GROOVE_STYLES[style]["meter"][0]
    base = Arrangement(
        f"groove/{style}/{progression}",
        f"generated groove: {style}, {progression}",
        "generated by pipeline_project (CC0)",
        beats_per_bar,
        0.0,
        bars * bar_ql,
        key,
        [],
        chords,
        f"{numerator}/{denominator}",
        beat_ql,
    )
    return with_rhythm_section(base, style, seed)
