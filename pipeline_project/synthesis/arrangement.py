"""A multitrack arrangement in score time (quarter notes), and its conversion to timed, labelled events.

Scores come from the music21 corpus; drum and bass parts are generated to fit the score's chords and
bars. Everything stays in quarter-note time until `perform` turns it into seconds, so one time map moves
notes, beats and chords together and labels always match the audio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

STEMS = ("drums", "bass", "other", "vocals")

# General MIDI programs (0-based) used per stem; same-family alternatives for later randomization.
STEM_PROGRAMS = {
    "vocals": 52,  # choir aahs carries the melody where a singer would
    "other": 0,  # acoustic grand piano carries the inner harmony voices
    "bass": 33,  # electric bass (finger)
}

# General MIDI percussion keys and the drum-hit class each one is labelled with.
DRUM_CLASSES = {
    36: "kick",
    38: "snare",
    42: "closed_hihat",
    44: "pedal_hihat",
    46: "open_hihat",
    49: "crash",
    51: "ride",
    45: "tom",
    47: "tom",
    50: "tom",
}


@dataclass
class ScoreNote:
    start_ql: float
    duration_ql: float
    pitch: int
    velocity: int
    stem: str


@dataclass
class Arrangement:
    """Notes of every stem plus the score-derived labels, in quarter-note time."""

    name: str
    origin: str
    licence: str
    beats_per_bar: int
    pickup_ql: float
    length_ql: float
    key: str  # e.g. "e:minor"
    notes: list[ScoreNote] = field(default_factory=list)
    chords: list[tuple[float, float, str]] = field(default_factory=list)  # (start_ql, end_ql, "A:min")

    def beats_ql(self) -> list[float]:
        return [float(b) for b in np.arange(0.0, self.length_ql, 1.0)]

    def downbeats_ql(self) -> list[float]:
        return [float(b) for b in np.arange(self.pickup_ql, self.length_ql, self.beats_per_bar)]

    def chord_at(self, ql: float) -> str:
        for start, end, label in self.chords:
            if start <= ql < end:
                return label
        return "N"

    def repeated(self, times: int) -> Arrangement:
        """The arrangement played `times` times in a row (to reach a minimum length)."""
        if times <= 1:
            return self
        notes, chords = [], []
        for i in range(times):
            shift = i * self.length_ql
            notes += [ScoreNote(n.start_ql + shift, n.duration_ql, n.pitch, n.velocity, n.stem) for n in self.notes]
            chords += [(s + shift, e + shift, c) for s, e, c in self.chords]
        return Arrangement(self.name, self.origin, self.licence, self.beats_per_bar, self.pickup_ql,
                           self.length_ql * times, self.key, notes, chords)


def _chord_label(music21_chord) -> str:
    try:
        root = music21_chord.root().name.replace("-", "b")
    except Exception:
        return "N"
    quality = {"major": "maj", "minor": "min", "diminished": "dim", "augmented": "aug"}.get(music21_chord.quality)
    return f"{root}:{quality}" if quality else f"{root}:maj" if music21_chord.isDominantSeventh() else f"{root}:other"


def from_corpus(name: str, max_ql: float | None = None) -> Arrangement:
    """Melody (top part) to the vocals stem, inner voices to the other stem; chords from the chordified score.

    The score's own bass voice is dropped: the bass stem is generated from the chords (see grooves.py).
    """
    from music21 import chord as m21chord
    from music21 import corpus

    score = corpus.parse(name)
    key = score.analyze("key")
    time_signature = score.recurse().getElementsByClass("TimeSignature").first()
    beats_per_bar = int(time_signature.numerator) if time_signature else 4
    first_measure = score.parts[0].getElementsByClass("Measure").first()
    bar_ql = float(time_signature.barDuration.quarterLength) if time_signature else 4.0
    pickup = float(first_measure.duration.quarterLength) if first_measure is not None else 0.0
    pickup = pickup if 0 < pickup < bar_ql else 0.0
    length = float(score.highestTime) if max_ql is None else min(float(score.highestTime), max_ql)

    parts = list(score.parts)
    notes: list[ScoreNote] = []
    for index, part in enumerate(parts[:-1]):
        stem = "vocals" if index == 0 else "other"
        for element in part.stripTies().flatten().notes:
            start = float(element.offset)
            duration = float(element.quarterLength)
            if duration <= 0 or start >= length:
                continue
            for pitch in element.pitches:
                notes.append(ScoreNote(start, min(duration, length - start), int(pitch.midi), 84 if stem == "vocals" else 70, stem))

    # Harmony in these scores moves on the beat; chordify also yields a chord for every passing note, so the
    # label of each beat is the chord sounding at its onset, held for the whole beat.
    sonorities = [(float(c.offset), float(c.offset + c.quarterLength), c)
                  for c in score.chordify().flatten().getElementsByClass(m21chord.Chord)]
    chords: list[tuple[float, float, str]] = []
    for beat in np.arange(0.0, length, 1.0):
        sounding = next((c for start, end, c in sonorities if start <= beat < end), None)
        label = _chord_label(sounding) if sounding is not None else "N"
        end = float(min(beat + 1.0, length))
        if chords and chords[-1][2] == label:
            chords[-1] = (chords[-1][0], end, label)
        else:
            chords.append((float(beat), end, label))

    mode = "minor" if key.mode == "minor" else "major"
    return Arrangement(
        name=name,
        origin=f"music21 corpus: {name}",
        licence="public domain (music21 corpus)",
        beats_per_bar=beats_per_bar,
        pickup_ql=pickup,
        length_ql=length,
        key=f"{key.tonic.name.replace('-', 'b')}:{mode}",
        notes=notes,
        chords=chords,
    )


@dataclass
class TimedNote:
    onset: float
    offset: float
    pitch: int
    velocity: int
    stem: str
    program: int
    is_drum: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Performance:
    """An arrangement played at a tempo with human timing: every label in seconds, aligned with the audio."""

    notes: list[TimedNote]
    beats: list[float]
    downbeats: list[float]
    chords: list[tuple[float, float, str]]
    tempo_bpm: float
    key: str
    beats_per_bar: int
    duration: float
    humanization: dict

    def labels(self) -> dict:
        return {
            "tempo_bpm": self.tempo_bpm,
            "key": self.key,
            "beats_per_bar": self.beats_per_bar,
            "beats": self.beats,
            "downbeats": self.downbeats,
            "chords": [list(c) for c in self.chords],
            "notes": [n.to_dict() for n in self.notes],
            "duration": self.duration,
            "humanization": self.humanization,
        }


def perform(arrangement: Arrangement, tempo_bpm: float, seed: int, jitter_ms: float = 8.0,
            velocity_spread: int = 8, detune_cents: float = 10.0, programs: dict[str, int] | None = None) -> Performance:
    """Turn score time into seconds with per-note timing jitter, velocity variation and per-stem detuning.

    Beats, downbeats and chords follow the nominal tempo grid; note labels carry the jittered times that
    are actually rendered.
    """
    rng = np.random.default_rng(seed)
    programs = {**STEM_PROGRAMS, **(programs or {})}
    seconds_per_ql = 60.0 / tempo_bpm
    timed: list[TimedNote] = []
    for note in sorted(arrangement.notes, key=lambda n: (n.start_ql, n.stem, n.pitch)):
        jitter = rng.normal(0.0, jitter_ms / 1000.0) if jitter_ms > 0 else 0.0
        onset = max(0.0, note.start_ql * seconds_per_ql + jitter)
        offset = max(onset + 0.03, (note.start_ql + note.duration_ql) * seconds_per_ql + jitter)
        velocity = int(np.clip(note.velocity + rng.integers(-velocity_spread, velocity_spread + 1), 1, 127))
        is_drum = note.stem == "drums"
        timed.append(TimedNote(round(onset, 6), round(offset, 6), note.pitch, velocity, note.stem,
                               -1 if is_drum else programs[note.stem], is_drum))
    detune = {stem: float(rng.uniform(-detune_cents, detune_cents)) for stem in STEMS if stem != "drums"}
    duration = arrangement.length_ql * seconds_per_ql + 1.5  # room for the last notes to ring out
    return Performance(
        notes=timed,
        beats=[round(b * seconds_per_ql, 6) for b in arrangement.beats_ql()],
        downbeats=[round(b * seconds_per_ql, 6) for b in arrangement.downbeats_ql()],
        chords=[(round(s * seconds_per_ql, 6), round(e * seconds_per_ql, 6), c) for s, e, c in arrangement.chords],
        tempo_bpm=float(tempo_bpm),
        key=arrangement.key,
        beats_per_bar=arrangement.beats_per_bar,
        duration=round(duration, 6),
        humanization={"seed": seed, "jitter_ms": jitter_ms, "velocity_spread": velocity_spread, "detune_cents": detune},
    )
