"""A multitrack arrangement in score time (quarter notes), built from a score, a MIDI file or a generator.

Everything stays in quarter-note time until `performance.perform` turns it into seconds, so one time map
moves notes, beats and chords together and labels always match the audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline_project.pitches import PITCH_NAMES
from pipeline_project.synthesis.instruments import PartSpec

STEMS = ("drums", "bass", "other", "vocals")

# The GM program (0-based) each stem is written for when a score names no instrument.
STEM_PROGRAMS = {
    "vocals": 52,  # choir aahs carries the melody where a singer would
    "other": 0,  # acoustic grand piano carries the inner voices
    "bass": 33,  # electric bass (finger)
    "drums": 0,  # standard kit (bank 128)
}

# Drum-hit articulations and the General MIDI key each is played with. Two helper articulations make
# sounds but are not hits of their own: "choke" closes a ringing open hi-hat (a half-open hi-hat is an
# open hi-hat choked early), and "flam_grace" is the soft note just before a flam.
ARTICULATION_KEYS = {
    "kick": 36,
    "snare": 38,
    "ghost_snare": 38,
    "flam_snare": 38,
    "closed_hihat": 42,
    "pedal_hihat": 44,
    "open_hihat": 46,
    "half_open_hihat": 46,
    "crash": 49,
    "ride": 51,
    "ride_bell": 53,
    "tom": 47,
}
HELPER_ARTICULATIONS = {"choke": 42, "flam_grace": 38}
# Articulation of a plain GM drum key, for MIDI files that carry no articulation of their own.
DRUM_CLASSES = {
    36: "kick",
    35: "kick",
    38: "snare",
    40: "snare",
    42: "closed_hihat",
    44: "pedal_hihat",
    46: "open_hihat",
    49: "crash",
    57: "crash",
    51: "ride",
    59: "ride",
    53: "ride_bell",
    41: "tom",
    43: "tom",
    45: "tom",
    47: "tom",
    48: "tom",
    50: "tom",
}


@dataclass
class ScoreNote:
    start_ql: float
    duration_ql: float
    pitch: int
    velocity: int
    stem: str
    part: str = ""  # defaults to the stem's name
    articulation: str = ""  # drum-hit class for drum notes
    shift_s: float = 0.0  # fixed offset in seconds after the time map (flam grace notes, hi-hat chokes)

    def __post_init__(self):
        self.part = self.part or self.stem


@dataclass
class Arrangement:
    """Notes of every part plus the score-derived labels, in quarter-note time."""

    name: str
    origin: str
    licence: str
    beats_per_bar: int
    pickup_ql: float
    length_ql: float
    key: str  # e.g. "e:minor"
    notes: list[ScoreNote] = field(default_factory=list)
    chords: list[tuple[float, float, str]] = field(default_factory=list)  # (start_ql, end_ql, "A:min")
    time_signature: str = ""
    beat_ql: float = 1.0  # 1.5 for compound meters (6/8, 12/8)
    programs: dict[str, int] = field(default_factory=dict)  # part -> written GM program
    kern: str = ""  # the **kern text, when the source is **kern

    def __post_init__(self):
        self.time_signature = self.time_signature or f"{self.beats_per_bar}/4"

    @property
    def bar_ql(self) -> float:
        return self.beats_per_bar * self.beat_ql

    def beats_ql(self) -> list[float]:
        return [float(b) for b in np.arange(self.pickup_ql % self.beat_ql, self.length_ql - 1e-9, self.beat_ql)]

    def downbeats_ql(self) -> list[float]:
        return [float(b) for b in np.arange(self.pickup_ql, self.length_ql - 1e-9, self.bar_ql)]

    def chord_at(self, ql: float) -> str:
        for start, end, label in self.chords:
            if start <= ql < end:
                return label
        return "N"

    def parts(self) -> list[PartSpec]:
        stems = {}
        for note in self.notes:
            stems.setdefault(note.part, note.stem)
        return [
            PartSpec(name, stem, self.programs.get(name, STEM_PROGRAMS[stem]), stem == "drums")
            for name, stem in stems.items()
        ]

    def with_notes(self, extra: list[ScoreNote]) -> Arrangement:
        return replace(self, notes=self.notes + extra)

    def repeated(self, times: int) -> Arrangement:
        """The arrangement played `times` times in a row (to reach a minimum length)."""
        if times <= 1:
            return self
        notes, chords = [], []
        for i in range(times):
            shift = i * self.length_ql
            notes += [replace(n, start_ql=n.start_ql + shift) for n in self.notes]
            chords += [(s + shift, e + shift, c) for s, e, c in self.chords]
        return replace(self, notes=notes, chords=chords, length_ql=self.length_ql * times)


# Chord qualities by their pitch classes above the root; a sounding set that matches none exactly gets the
# quality whose tones it holds most of (a triad with a passing note stays that triad).
CHORD_QUALITIES = {
    "maj": {0, 4, 7},
    "min": {0, 3, 7},
    "dim": {0, 3, 6},
    "aug": {0, 4, 8},
    "sus4": {0, 5, 7},
    "7": {0, 4, 7, 10},
    "maj7": {0, 4, 7, 11},
    "min7": {0, 3, 7, 10},
    "hdim7": {0, 3, 6, 10},
    "dim7": {0, 3, 6, 9},
}


def chord_quality(intervals: set[int]) -> str:
    """The quality of a chord from its pitch classes above the root ({0, 4, 7, 10} -> '7'); 'other' when no
    quality holds its third (or fourth) and most of its tones."""
    for name, tones in CHORD_QUALITIES.items():
        if intervals == tones:
            return name
    best, best_score = "other", 0.0
    for name, tones in CHORD_QUALITIES.items():
        if not (tones - {0, 7}) <= intervals | {7}:
            continue  # the third (or the suspended fourth) must sound
        score = len(tones & intervals) - 0.5 * len(intervals - tones) - 0.25 * len(tones - intervals)
        if score > best_score:
            best, best_score = name, score
    return best


def _chord_label(music21_chord) -> str:
    try:
        root = music21_chord.root()
    except Exception:
        return "N"
    intervals = {(p.pitchClass - root.pitchClass) % 12 for p in music21_chord.pitches}
    return f"{root.name.replace('-', 'b')}:{chord_quality(intervals)}"


def _merge(chords: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    merged: list[tuple[float, float, str]] = []
    for start, end, label in chords:
        if merged and merged[-1][2] == label and abs(merged[-1][1] - start) < 1e-9:
            merged[-1] = (merged[-1][0], end, label)
        else:
            merged.append((start, end, label))
    return merged


TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
DEGREES = {
    "major": ((0, "maj"), (5, "maj"), (7, "maj"), (9, "min"), (2, "min")),
    "minor": ((0, "min"), (5, "min"), (7, "maj"), (8, "maj"), (3, "maj")),
}


def harmonize(
    notes: list[ScoreNote], key: str, length_ql: float, span_ql: float, pickup_ql: float
) -> list[tuple[float, float, str]]:
    """Chords for a melody alone: per span (a bar), the diatonic triad of the key covering most of its notes,
    weighted by duration; ties go to the simpler function (I, IV, V before vi, ii)."""
    from music21 import pitch as m21pitch

    tonic_name, mode = key.split(":")
    tonic = m21pitch.Pitch(tonic_name.replace("b", "-")).pitchClass
    starts = [0.0] + [float(s) for s in np.arange(pickup_ql, length_ql - 1e-9, span_ql) if s > 0]
    chords = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else length_ql
        weight = np.zeros(12)
        for note in notes:
            overlap = min(end, note.start_ql + note.duration_ql) - max(start, note.start_ql)
            if overlap > 0:
                weight[note.pitch % 12] += overlap
        best, best_score = DEGREES[mode][0], -1.0
        for degree, quality in DEGREES[mode]:
            score = sum(weight[(tonic + degree + i) % 12] for i in TRIADS[quality])
            if score > best_score + 1e-9:
                best, best_score = (degree, quality), score
        chords.append((start, end, f"{PITCH_NAMES[(tonic + best[0]) % 12]}:{best[1]}"))
    return _merge(chords)


def chord_notes(chords: list[tuple[float, float, str]], stem: str = "other", velocity: int = 62) -> list[ScoreNote]:
    """A sustained close-position triad (around middle C) for each chord segment: an accompaniment pad."""
    notes = []
    for start, end, label in chords:
        if label == "N" or label.split(":")[1] not in TRIADS:
            continue
        root = PITCH_NAMES.index(label.split(":")[0]) if label.split(":")[0] in PITCH_NAMES else None
        if root is None:
            continue
        for interval in TRIADS[label.split(":")[1]]:
            notes.append(ScoreNote(start, end - start, 55 + (root + interval - 7) % 12, velocity, stem))
    return notes


def from_score(score, name: str, origin: str, licence: str, max_ql: float | None = None, kern: str = "") -> Arrangement:
    """Melody (top part) to the vocals stem, inner voices to the other stem; chords from the chordified score.

    The score's own bass voice is dropped: a bass line following the chords is generated (see grooves.py).
    A single-line tune (a folk song in ABC, say) is harmonized one chord per bar, and the chords are added
    to the other stem as a pad, so the chord labels always describe what is heard.
    """
    from music21 import chord as m21chord

    key = score.analyze("key")
    key_label = f"{key.tonic.name.replace('-', 'b')}:{'minor' if key.mode == 'minor' else 'major'}"
    time_signature = score.recurse().getElementsByClass("TimeSignature").first()
    numerator = int(time_signature.numerator) if time_signature else 4
    denominator = int(time_signature.denominator) if time_signature else 4
    compound = denominator == 8 and numerator in (6, 9, 12)
    beat_ql = 1.5 if compound else 4.0 / denominator
    beats_per_bar = numerator // 3 if compound else numerator
    bar_ql = beats_per_bar * beat_ql
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    first_measure = parts[0].getElementsByClass("Measure").first()
    pickup = float(first_measure.duration.quarterLength) if first_measure is not None else 0.0
    pickup = pickup if 0 < pickup < bar_ql else 0.0
    length = float(score.highestTime) if max_ql is None else min(float(score.highestTime), max_ql)

    voiced = parts[:-1] if len(parts) > 2 else parts[:1] if len(parts) == 1 else parts
    notes: list[ScoreNote] = []
    for index, part in enumerate(voiced):
        stem = "vocals" if index == 0 else "other"
        for element in part.stripTies().flatten().notes:
            start, duration = float(element.offset), float(element.quarterLength)
            if duration <= 0 or start >= length:
                continue
            for pitch in element.pitches:
                notes.append(
                    ScoreNote(
                        start, min(duration, length - start), int(pitch.midi), 84 if stem == "vocals" else 70, stem
                    )
                )

    if len(voiced) == 1:
        chords = harmonize(notes, key_label, length, bar_ql, pickup)
        notes += chord_notes(chords)
    else:
        # Harmony in these scores moves on the beat; chordify also yields a chord for every passing note, so
        # the label of each beat is the chord sounding at its onset, held for the whole beat.
        sonorities = [
            (float(c.offset), float(c.offset + c.quarterLength), c)
            for c in score.chordify().flatten().getElementsByClass(m21chord.Chord)
        ]
        chords = []
        for beat in np.arange(0.0, length, beat_ql):
            sounding = next((c for start, end, c in sonorities if start <= beat < end), None)
            chords.append(
                (
                    float(beat),
                    float(min(beat + beat_ql, length)),
                    _chord_label(sounding) if sounding is not None else "N",
                )
            )
        chords = _merge(chords)

    return Arrangement(
        name=name,
        origin=origin,
        licence=licence,
        beats_per_bar=beats_per_bar,
        pickup_ql=pickup,
        length_ql=length,
        key=key_label,
        notes=notes,
        chords=chords,
        time_signature=f"{numerator}/{denominator}",
        beat_ql=beat_ql,
        kern=kern,
    )


@lru_cache(maxsize=64)
def from_corpus(name: str, max_ql: float | None = None, number: int | None = None) -> Arrangement:
    """A piece of the music21 corpus (MusicXML, **kern or ABC; `number` picks one tune of an ABC book).
    Cached: parsing and chordifying dominate, and callers never modify an arrangement in place."""
    from music21 import corpus

    from pipeline_project.synthesis.corpus_split import require_not_reserved

    path = Path(str(corpus.getWork(require_not_reserved(name))))
    # From the source file, never music21's pickle cache: music21 rereads a pickle right after writing it, and
    # render workers parsing the same piece at once read each other's half-written file (a truncated zlib
    # stream; a demo run lost an example to it). A chorale parses in about 60 ms.
    score = (
        corpus.parse(name, number=number, forceSource=True)
        if number is not None
        else corpus.parse(name, forceSource=True)
    )
    label = f"{name}#{number}" if number is not None else name
    kern = path.read_text(errors="replace") if path.suffix == ".krn" else ""
    return from_score(score, label, f"music21 corpus: {label}", "public domain (music21 corpus)", max_ql, kern)


def from_file(path: str | Path, max_ql: float | None = None) -> Arrangement:
    """A user's score or MIDI file: MIDI keeps its own instruments and drums; scores go through from_score."""
    path = Path(path)
    licence = "user-supplied: check the rights before sharing"
    if path.suffix.lower() in (".mid", ".midi"):
        return from_midi(path, max_ql)
    from music21 import converter

    kern = path.read_text(errors="replace") if path.suffix.lower() == ".krn" else ""
    return from_score(converter.parse(str(path)), path.stem, "user score file", licence, max_ql, kern)


def from_midi(path: Path, max_ql: float | None = None) -> Arrangement:
    """A MIDI file in quarter-note time: drums to the drums stem, bass-family parts to bass, the highest
    melodic part to vocals, the rest to other; every part keeps its written program."""
    import pretty_midi

    from pipeline_project.synthesis.instruments import family_of

    midi = pretty_midi.PrettyMIDI(str(path))
    resolution = float(midi.resolution)

    def ql(seconds: float) -> float:
        return midi.time_to_tick(seconds) / resolution

    melodic = [i for i in midi.instruments if not i.is_drum and i.notes]
    lead = max(melodic, key=lambda i: np.mean([n.pitch for n in i.notes]), default=None)
    notes, programs = [], {}
    length = ql(midi.get_end_time())
    length = min(length, max_ql) if max_ql else length
    for index, instrument in enumerate(midi.instruments):
        stem = (
            "drums"
            if instrument.is_drum
            else "bass"
            if family_of(instrument.program) == "bass"
            else "vocals"
            if instrument is lead
            else "other"
        )
        part = f"{stem}:{index}"
        programs[part] = 0 if instrument.is_drum else instrument.program
        for n in instrument.notes:
            start = ql(n.start)
            if start >= length:
                continue
            articulation = DRUM_CLASSES.get(n.pitch, "") if instrument.is_drum else ""
            notes.append(
                ScoreNote(start, max(ql(n.end) - start, 1 / 32), n.pitch, n.velocity, stem, part, articulation)
            )
    numerator = midi.time_signature_changes[0].numerator if midi.time_signature_changes else 4
    denominator = midi.time_signature_changes[0].denominator if midi.time_signature_changes else 4
    pitched = [n for n in notes if n.stem != "drums"]
    key = _key_of(pitched)
    bar_ql = numerator * 4.0 / denominator
    chords = harmonize(pitched, key, length, bar_ql, 0.0) if pitched else []
    return Arrangement(
        path.stem,
        "user MIDI file",
        "user-supplied: check the rights before sharing",
        numerator,
        0.0,
        length,
        key,
        notes,
        chords,
        f"{numerator}/{denominator}",
        4.0 / denominator,
        programs,
    )


def _key_of(notes: list[ScoreNote]) -> str:
    from music21 import note as m21note
    from music21 import stream

    line = stream.Stream()
    for n in notes[:2000]:
        line.insert(n.start_ql, m21note.Note(n.pitch, quarterLength=max(n.duration_ql, 0.125)))
    key = line.analyze("key")
    return f"{key.tonic.name.replace('-', 'b')}:{'minor' if key.mode == 'minor' else 'major'}"
