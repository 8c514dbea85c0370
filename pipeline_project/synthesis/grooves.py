"""Generated drum patterns and bass lines that fit an arrangement's bars and chords.

Patterns are written per bar as (beat position in quarter notes, GM drum key, velocity). Hi-hats use the
closed, open and pedal articulations so drum-hit models see all three.
"""

from __future__ import annotations

import numpy as np

from pipeline_project.synthesis.arrangement import Arrangement, ScoreNote

KICK, SNARE, CLOSED_HH, PEDAL_HH, OPEN_HH, CRASH, RIDE, TOM_LOW, TOM_MID, TOM_HIGH = 36, 38, 42, 44, 46, 49, 51, 45, 47, 50

# One bar each, for 4/4 (or 3/4 where noted).
GROOVE_STYLES: dict[str, dict] = {
    "rock": {"meter": 4, "bar": [
        (0.0, KICK, 105), (0.5, CLOSED_HH, 70), (1.0, SNARE, 100), (1.5, CLOSED_HH, 72),
        (2.0, KICK, 100), (2.5, OPEN_HH, 80), (3.0, SNARE, 102), (3.5, CLOSED_HH, 68)]},
    "offbeat": {"meter": 4, "bar": [
        (0.0, KICK, 110), (0.5, OPEN_HH, 78), (1.0, PEDAL_HH, 60), (1.5, OPEN_HH, 80),
        (2.0, KICK, 105), (2.5, OPEN_HH, 76), (3.0, PEDAL_HH, 62), (3.5, OPEN_HH, 82)]},
    "funk": {"meter": 4, "bar": [
        (0.0, KICK, 110), (0.25, CLOSED_HH, 60), (0.5, CLOSED_HH, 72), (0.75, SNARE, 35),
        (1.0, SNARE, 105), (1.5, CLOSED_HH, 70), (1.75, KICK, 90), (2.25, CLOSED_HH, 62),
        (2.5, OPEN_HH, 78), (3.0, SNARE, 104), (3.25, SNARE, 32), (3.5, CLOSED_HH, 70)]},
    "ride": {"meter": 4, "bar": [
        (0.0, KICK, 100), (0.5, RIDE, 70), (1.0, PEDAL_HH, 64), (1.5, RIDE, 72),
        (2.0, KICK, 96), (2.5, RIDE, 70), (3.0, SNARE, 98), (3.5, TOM_MID, 84)]},
    "waltz": {"meter": 3, "bar": [
        (0.0, KICK, 105), (0.5, CLOSED_HH, 64), (1.0, CLOSED_HH, 74), (1.5, OPEN_HH, 70),
        (2.0, SNARE, 92), (2.5, PEDAL_HH, 60)]},
}

FILL = [(0.0, TOM_HIGH, 96), (0.5, TOM_HIGH, 90), (1.0, TOM_MID, 96), (1.5, TOM_MID, 92),
        (2.0, TOM_LOW, 100), (2.5, TOM_LOW, 96), (3.0, SNARE, 110), (3.5, CRASH, 108)]  # pushed crash: heard alone


def style_for_meter(beats_per_bar: int, preferred: str) -> str:
    """The preferred style if it fits the meter, else the first style that does, else rock."""
    if GROOVE_STYLES[preferred]["meter"] == beats_per_bar:
        return preferred
    return next((name for name, style in GROOVE_STYLES.items() if style["meter"] == beats_per_bar), "rock")


def drum_part(arrangement: Arrangement, style: str, seed: int, fills_every: int = 4) -> list[ScoreNote]:
    """A groove over every full bar, a crash on each phrase start and a tom fill closing each phrase."""
    rng = np.random.default_rng(seed)
    style = style_for_meter(arrangement.beats_per_bar, style)
    pattern = GROOVE_STYLES[style]["bar"]
    bar_ql = float(arrangement.beats_per_bar)
    notes: list[ScoreNote] = []
    bar_starts = np.arange(arrangement.pickup_ql, arrangement.length_ql - 1e-6, bar_ql)
    for index, bar_start in enumerate(bar_starts):
        is_fill = fills_every and bar_ql == 4 and index % fills_every == fills_every - 1 and bar_start + bar_ql <= arrangement.length_ql
        for position, key, velocity in (FILL if is_fill else pattern):
            start = bar_start + position
            if start >= arrangement.length_ql:
                continue
            if index % fills_every == 0 and position == 0.0:
                notes.append(ScoreNote(start, 0.5, CRASH, 110, "drums"))
            accent = int(rng.integers(-6, 7))
            notes.append(ScoreNote(start, 0.25, key, int(np.clip(velocity + accent, 20, 127)), "drums"))
    return notes


def bass_part(arrangement: Arrangement, seed: int) -> list[ScoreNote]:
    """Chord roots in the bass register on every beat, with a passing fifth on the last off-beat of a bar."""
    from music21 import pitch as m21pitch

    rng = np.random.default_rng(seed)
    notes: list[ScoreNote] = []
    for beat in arrangement.beats_ql():
        label = arrangement.chord_at(beat)
        if label == "N":
            continue
        root = label.split(":")[0]
        root_midi = 28 + (m21pitch.Pitch(root).pitchClass - 4) % 12  # E1..D#2: the bass guitar's lowest octave
        position_in_bar = (beat - arrangement.pickup_ql) % arrangement.beats_per_bar
        velocity = int(96 + rng.integers(-6, 7)) if position_in_bar == 0 else int(84 + rng.integers(-6, 7))
        if position_in_bar == arrangement.beats_per_bar - 1 and beat + 1.0 <= arrangement.length_ql:
            notes.append(ScoreNote(beat, 0.5, root_midi + 12, velocity, "bass"))
            notes.append(ScoreNote(beat + 0.5, 0.5, root_midi + 7, velocity - 8, "bass"))
        else:
            notes.append(ScoreNote(beat, 0.95, root_midi + 12, velocity, "bass"))
    return notes


def with_rhythm_section(arrangement: Arrangement, style: str, seed: int) -> Arrangement:
    """The arrangement plus a generated drum part and a bass line following its chords."""
    extra = drum_part(arrangement, style, seed) + bass_part(arrangement, seed + 1)
    return Arrangement(arrangement.name, arrangement.origin, arrangement.licence, arrangement.beats_per_bar,
                       arrangement.pickup_ql, arrangement.length_ql, arrangement.key,
                       arrangement.notes + extra, arrangement.chords)


def groove_only(style: str, bars: int, seed: int, key: str = "C:major") -> Arrangement:
    """A drums-and-bass example with a simple I-IV-V-I progression, for drum-hit training data."""
    meter = GROOVE_STYLES[style]["meter"]
    tonic = key.split(":")[0]
    from music21 import pitch as m21pitch

    degrees = [0, 5, 7, 0]
    names = [m21pitch.Pitch(midi=60 + (m21pitch.Pitch(tonic).pitchClass + d) % 12).name.replace("-", "b") for d in degrees]
    chords = [(float(i * meter), float((i + 1) * meter), f"{names[i % 4]}:maj") for i in range(bars)]
    base = Arrangement(f"groove/{style}", f"generated groove: {style}", "generated by pipeline_project (CC0)",
                       meter, 0.0, float(bars * meter), key, [], chords)
    return with_rhythm_section(base, style, seed)
