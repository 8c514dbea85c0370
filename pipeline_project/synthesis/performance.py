"""Human performance of an arrangement: rubato, timing jitter, dynamics, detuning, and one time map.

`perform` is the only place where quarter notes become seconds. A smooth tempo curve is integrated into a
time map; notes, beats, downbeats, chords and the tempo curve all go through that same map, and jitter is
added per note after it, so every label describes the audio that will be rendered. A later time-stretch
divides every time by one factor (`stretch_labels`), which keeps that property.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipeline_project.synthesis.arrangement import HELPER_ARTICULATIONS, Arrangement
from pipeline_project.synthesis.instruments import Voice

DYNAMIC_LEVELS = {"pp": 36, "p": 52, "mp": 66, "mf": 80, "f": 96, "ff": 112}
DYNAMIC_SHAPES = ("flat", "crescendo", "diminuendo", "arch")
GRID_PER_QL = 48  # time-map resolution: 1/48 of a quarter note


@dataclass(frozen=True)
class Humanization:
    """Every knob of a human-like performance. All randomness comes from the seed passed to `perform`.

    rubato_depth: largest relative tempo deviation of the smooth tempo curve (0.06 = +-6 %).
    rubato_period_ql: the curve is a sum of slow sinusoids with periods in this range (quarter notes).
    final_ritardando: relative slowing over the last bar (0.1 = 10 % slower at the end).
    jitter_ms: standard deviation of per-note timing jitter.
    dynamic_level: pp, p, mp, mf, f or ff; the velocity the score's mezzo-forte maps to.
    dynamic_shape: flat, crescendo, diminuendo or arch, spanning `dynamic_range` velocity steps.
    accent: velocity added on downbeats.
    velocity_spread: uniform per-note velocity variation (+-).
    detune_cents: each part is detuned by a random amount within +-this (at most 10).
    """

    rubato_depth: float = 0.05
    rubato_period_ql: tuple[float, float] = (6.0, 24.0)
    final_ritardando: float = 0.08
    jitter_ms: float = 8.0
    dynamic_level: str = "mf"
    dynamic_shape: str = "arch"
    dynamic_range: int = 16
    accent: int = 8
    velocity_spread: int = 6
    detune_cents: float = 10.0

    def __post_init__(self):
        if not 0 <= self.detune_cents <= 10:
            raise ValueError("detune_cents must lie within 0..10 cents")
        if self.dynamic_level not in DYNAMIC_LEVELS or self.dynamic_shape not in DYNAMIC_SHAPES:
            raise ValueError(
                f"dynamic level must be one of {list(DYNAMIC_LEVELS)}, shape one of {list(DYNAMIC_SHAPES)}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


# A steady pulse with human timing and dynamics only: the demo songs and analysis tests use it so that the
# tempo they are scored against is a single number.
STEADY_TEMPO = Humanization(rubato_depth=0.0, final_ritardando=0.0)


def sample_humanization(rng: np.random.Generator) -> Humanization:
    """A random, still musical, performance style."""
    return Humanization(
        rubato_depth=round(float(rng.uniform(0.0, 0.08)), 3),
        final_ritardando=round(float(rng.uniform(0.0, 0.15)), 3),
        jitter_ms=round(float(rng.uniform(2.0, 15.0)), 2),
        dynamic_level=str(rng.choice(list(DYNAMIC_LEVELS))),
        dynamic_shape=str(rng.choice(DYNAMIC_SHAPES)),
        dynamic_range=int(rng.integers(0, 30)),
        accent=int(rng.integers(0, 14)),
        velocity_spread=int(rng.integers(2, 10)),
        detune_cents=round(float(rng.uniform(0.0, 10.0)), 2),
    )


@dataclass
class TimeMap:
    """Score time (quarter notes) to seconds, piecewise linear on a fine grid of the integrated tempo curve."""

    grid_ql: np.ndarray
    grid_s: np.ndarray

    @classmethod
    def from_tempo_curve(cls, length_ql: float, tempo_at) -> TimeMap:
        grid = np.linspace(0.0, length_ql, int(np.ceil(length_ql * GRID_PER_QL)) + 1)
        seconds_per_ql = 60.0 / tempo_at(grid)
        seconds = np.concatenate([[0.0], np.cumsum((seconds_per_ql[1:] + seconds_per_ql[:-1]) / 2 * np.diff(grid))])
        return cls(grid, seconds)

    def seconds(self, ql) -> np.ndarray:
        ql = np.asarray(ql, dtype=float)
        inside = np.interp(ql, self.grid_ql, self.grid_s)
        # Past the end (ringing notes) the last tempo continues.
        slope = (self.grid_s[-1] - self.grid_s[-2]) / (self.grid_ql[-1] - self.grid_ql[-2])
        return np.where(ql > self.grid_ql[-1], self.grid_s[-1] + (ql - self.grid_ql[-1]) * slope, inside)


def tempo_curve(base_bpm: float, length_ql: float, humanization: Humanization, bar_ql: float, rng: np.random.Generator):
    """A smooth tempo curve: base tempo times exp of a few slow sinusoids, with a ritardando in the last bar.
    Returns the function and its recorded parameters."""
    low, high = humanization.rubato_period_ql
    components = [
        (float(rng.uniform(low, high)), float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.3, 1.0)))
        for _ in range(3)
    ]
    total = sum(w for _, _, w in components)

    def tempo_at(ql):
        ql = np.asarray(ql, dtype=float)
        wave = sum(w * np.sin(2 * np.pi * ql / period + phase) for period, phase, w in components) / total
        ritardando_start = max(0.0, length_ql - bar_ql)
        progress = np.clip((ql - ritardando_start) / max(bar_ql, 1e-9), 0.0, 1.0)
        return base_bpm * np.exp(humanization.rubato_depth * wave) * (1.0 - humanization.final_ritardando * progress)

    return tempo_at, {"base_bpm": base_bpm, "components": [list(c) for c in components]}


@dataclass
class TimedNote:
    onset: float
    offset: float
    pitch: int
    velocity: int
    stem: str
    part: str
    program: int
    bank: int
    soundfont: str
    is_drum: bool
    articulation: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Performance:
    """An arrangement played by chosen voices with human timing: every label in seconds, aligned with the audio."""

    notes: list[TimedNote]
    beats: list[float]
    downbeats: list[float]
    tempo_curve: list[tuple[float, float]]  # (seconds, BPM) at every beat
    chords: list[tuple[float, float, str]]
    key: str
    time_signature: str
    beats_per_bar: int
    duration: float
    voices: dict[str, Voice]
    detune_cents: dict[str, float]
    humanization: dict
    kern: str = ""
    time_scale: float = 1.0  # labels were divided by this factor (time-stretch), already applied
    tuning_cents: float = 0.0  # pitch shift applied after rendering

    @property
    def tempo_bpm(self) -> float:
        return float(np.median([bpm for _, bpm in self.tempo_curve])) if self.tempo_curve else 0.0

    def labels(self) -> dict:
        return {
            "tempo_bpm": round(self.tempo_bpm, 3),
            "tempo_curve": [list(p) for p in self.tempo_curve],
            "key": self.key,
            "time_signature": self.time_signature,
            "beats_per_bar": self.beats_per_bar,
            "beats": self.beats,
            "downbeats": self.downbeats,
            "chords": [list(c) for c in self.chords],
            "notes": [n.to_dict() for n in self.notes],
            "drum_hits": [
                {"onset": n.onset, "articulation": n.articulation, "velocity": n.velocity}
                for n in self.notes
                if n.is_drum and n.articulation and n.articulation not in HELPER_ARTICULATIONS
            ],
            "duration": self.duration,
            "voices": {part: v.to_dict() for part, v in self.voices.items()},
            "detune_cents": self.detune_cents,
            "humanization": self.humanization,
            "time_scale": self.time_scale,
            "tuning_cents": self.tuning_cents,
            "kern": self.kern,
        }


def _dynamics(ql: np.ndarray, length_ql: float, humanization: Humanization) -> np.ndarray:
    """Velocity offset of the dynamic shape at each position."""
    x = np.clip(ql / max(length_ql, 1e-9), 0.0, 1.0)
    shape = {"flat": np.zeros_like(x), "crescendo": x - 0.5, "diminuendo": 0.5 - x, "arch": 0.5 - np.abs(2 * x - 1)}[
        humanization.dynamic_shape
    ]
    return shape * humanization.dynamic_range


def default_voices(arrangement: Arrangement, soundfont: str) -> dict[str, Voice]:
    from pipeline_project.synthesis.instruments import DRUM_BANK, family_of

    return {
        p.name: Voice(soundfont, DRUM_BANK if p.is_drum else 0, p.program, family_of(p.program, p.is_drum))
        for p in arrangement.parts()
    }


def perform(
    arrangement: Arrangement,
    tempo_bpm: float,
    seed: int,
    humanization: Humanization | None = None,
    voices: dict[str, Voice] | None = None,
    soundfont: str = "TimGM6mb.sf2",
) -> Performance:
    """Play the arrangement at `tempo_bpm` quarter notes per minute: tempo curve -> time map -> notes, beats and chords in seconds, plus jitter,
    dynamics and per-part detuning, all drawn from `seed`."""
    humanization = humanization or Humanization()
    voices = voices or default_voices(arrangement, soundfont)
    rng = np.random.default_rng(seed)
    tempo_at, curve_record = tempo_curve(float(tempo_bpm), arrangement.length_ql, humanization, arrangement.bar_ql, rng)
    time_map = TimeMap.from_tempo_curve(arrangement.length_ql, tempo_at)
    level_scale = DYNAMIC_LEVELS[humanization.dynamic_level] / DYNAMIC_LEVELS["mf"]
    downbeats_ql = set(round(b, 6) for b in arrangement.downbeats_ql())

    ordered = sorted(arrangement.notes, key=lambda n: (n.start_ql, n.part, n.pitch, n.shift_s))
    starts = np.array([n.start_ql for n in ordered])
    ends = np.array([n.start_ql + n.duration_ql for n in ordered])
    onsets, offsets = time_map.seconds(starts), time_map.seconds(ends)
    jitter = (
        rng.normal(0.0, humanization.jitter_ms / 1000.0, len(ordered))
        if humanization.jitter_ms > 0
        else np.zeros(len(ordered))
    )
    spread = rng.integers(-humanization.velocity_spread, humanization.velocity_spread + 1, len(ordered))
    dynamics = _dynamics(starts, arrangement.length_ql, humanization)
    timed: list[TimedNote] = []
    for i, note in enumerate(ordered):
        onset = max(0.0, onsets[i] + jitter[i] + note.shift_s)
        offset = max(onset + 0.03, offsets[i] + jitter[i] + note.shift_s)
        if note.articulation == "choke":
            velocity = 1  # silent: it only closes the hi-hat
        else:
            accent = humanization.accent if round(note.start_ql, 6) in downbeats_ql else 0
            velocity = int(np.clip(round(note.velocity * level_scale + dynamics[i] + accent + spread[i]), 1, 127))
        voice = voices[note.part]
        timed.append(
            TimedNote(
                round(float(onset), 6),
                round(float(offset), 6),
                note.pitch,
                velocity,
                note.stem,
                note.part,
                voice.program,
                voice.bank,
                voice.soundfont,
                note.stem == "drums",
                note.articulation,
            )
        )
    detune = {
        part: round(float(rng.uniform(-humanization.detune_cents, humanization.detune_cents)), 3)
        for part in voices
        if not voices[part].bank == 128
    }
    beats = arrangement.beats_ql()
    beat_seconds = time_map.seconds(beats)
    last = max([n.offset for n in timed], default=0.0)
    duration = max(float(time_map.seconds(arrangement.length_ql)), last) + 1.5  # let the last notes ring out
    return Performance(
        notes=timed,
        beats=[round(float(b), 6) for b in beat_seconds],
        downbeats=[round(float(b), 6) for b in time_map.seconds(arrangement.downbeats_ql())],
        tempo_curve=[
            (round(float(s), 6), round(float(tempo_at(b) / arrangement.beat_ql), 3))
            for s, b in zip(beat_seconds, beats)
        ],
        chords=[
            (round(float(time_map.seconds(s)), 6), round(float(time_map.seconds(e)), 6), c)
            for s, e, c in arrangement.chords
        ],
        key=arrangement.key,
        time_signature=arrangement.time_signature,
        beats_per_bar=arrangement.beats_per_bar,
        duration=round(duration, 6),
        voices=voices,
        detune_cents=detune,
        humanization={"seed": seed, **humanization.to_dict(), "tempo_curve": curve_record},
        kern=arrangement.kern,
    )


def stretch_labels(labels: dict, rate: float, cents: float = 0.0) -> dict:
    """Labels of the same example played `rate` times faster (time-stretch) and shifted by `cents`: every time
    divided by `rate`, tempi multiplied by it, the tuning offset recorded. Pitches stay MIDI numbers."""

    def t(x: float) -> float:
        return round(x / rate, 6)

    return {
        **labels,
        "notes": [{**n, "onset": t(n["onset"]), "offset": t(n["offset"])} for n in labels["notes"]],
        "drum_hits": [{**h, "onset": t(h["onset"])} for h in labels["drum_hits"]],
        "beats": [t(b) for b in labels["beats"]],
        "downbeats": [t(b) for b in labels["downbeats"]],
        "tempo_curve": [[t(s), round(bpm * rate, 3)] for s, bpm in labels["tempo_curve"]],
        "tempo_bpm": round(labels["tempo_bpm"] * rate, 3),
        "chords": [[t(s), t(e), c] for s, e, c in labels["chords"]],
        "duration": t(labels["duration"]),
        "time_scale": labels.get("time_scale", 1.0) * rate,
        "tuning_cents": labels.get("tuning_cents", 0.0) + cents,
    }


def midi_performance(path, soundfont: str) -> Performance:
    """A MIDI file played exactly as written (its own timing, velocities and programs) with one SoundFont:
    what a plain MIDI renderer does, for comparisons and for rendering a user's MIDI file untouched."""
    import pretty_midi

    from pipeline_project.synthesis.instruments import DRUM_BANK, family_of

    midi = pretty_midi.PrettyMIDI(str(path))
    notes, voices = [], {}
    for index, instrument in enumerate(midi.instruments):
        stem = "drums" if instrument.is_drum else "bass" if family_of(instrument.program) == "bass" else "other"
        part = f"{stem}:{index}"
        program = 0 if instrument.is_drum else instrument.program
        voices[part] = Voice(
            soundfont, DRUM_BANK if instrument.is_drum else 0, program, family_of(program, instrument.is_drum)
        )
        notes += [
            TimedNote(
                float(n.start),
                float(n.end),
                n.pitch,
                n.velocity,
                stem,
                part,
                program,
                voices[part].bank,
                soundfont,
                instrument.is_drum,
            )
            for n in instrument.notes
        ]
    beats = [float(b) for b in midi.get_beats()]
    return Performance(
        notes=sorted(notes, key=lambda n: n.onset),
        beats=beats,
        downbeats=[float(b) for b in midi.get_downbeats()],
        tempo_curve=[(b, float(midi.estimate_tempo())) for b in beats[:1]],
        chords=[],
        key="",
        time_signature="",
        beats_per_bar=0,
        duration=float(midi.get_end_time()) + 1.0,
        voices=voices,
        detune_cents={},
        humanization={},
    )
