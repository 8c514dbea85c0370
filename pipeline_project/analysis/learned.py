"""Beats, downbeats, chords, bass and local keys from the learned analysers (ONNX, run by onnxruntime).

A model set is a folder with a model card per family (`<name>.json`: version, training data, seed, measured
accuracy, decoder settings, the ONNX `file` it runs, and for the beat tracker the tempo histogram its decoder
uses as prior) beside the networks (`beat_tracker.onnx`, `chord_recognizer.onnx`). The project ships a small trained set (`pipeline_project/models/`,
made by `make train-analysis`), registered in MLflow on the first run (`training.analysis_registry`), so a
fresh clone analyses with it; `analysis.mir.analyze` falls back to its DSP path for every family without a
champion.

The chord recognizer's third head gives the key of every frame; pooled per bar and smoothed by Viterbi it is
the local key that Roman numerals are computed in, so numerals follow modulations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline_project.analysis import decoding, frames

SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models"
# The model families, each with its own card and promotion; the key tracker is the chord recognizer's key
# head (one network hears the harmony once), promoted on its own metric.
MODEL_NAMES = ("beat_tracker", "chord_recognizer", "key_tracker")
NETWORK_OF = {"beat_tracker": "beat_tracker", "chord_recognizer": "chord_recognizer", "key_tracker": "chord_recognizer"}
CHORD_CHANGE_PENALTY = 0.5  # in mean log-probability per beat: a chord must fit better to change (default)
KEY_CHANGE_PENALTY = 4.0  # per bar: a modulation must be heard over a few bars
# Per bar, in mean log-probability: a stretch of bars leaves the song's key only where the key tracker hears
# another key that much more clearly (on the validation renders it raised Roman-numeral agreement by about
# 0.02 over local keys without it, and over one key per song).
SONG_KEY_BONUS = 2.0
# The chord head hears each song at its own pitch and a semitone either side; the three readings, moved back
# to the song's pitch, are averaged (`harmony_log_probabilities`). The network was trained on excerpts
# transposed by -5..+6 semitones, and its chord errors at neighbouring pitches are partly independent. The
# bass and key heads are read at the song's own pitch: averaged, the key head followed modulations less well.
CHORD_TRANSPOSITIONS = (-1, 0, 1)


class ModelSetError(RuntimeError):
    """A model set is missing a file or cannot be loaded."""


@dataclass
class ModelSet:
    """Model families with their cards; each card's `file` names the ONNX network that family runs (the key
    tracker's may be the chord recognizer's file: one network, two heads). A set may lack families: those
    come from the DSP path."""

    folder: Path
    cards: dict[str, dict] = field(default_factory=dict)
    sessions: dict = field(default_factory=dict)  # ONNX file name -> onnxruntime session

    @property
    def versions(self) -> dict[str, str]:
        """Each family's version: the registry's (`name/N`) where the set came from MLflow, with the training
        run's own version."""
        return {
            name: (
                f"{name}/{card['registry_version']} ({card.get('version', 'unknown')})"
                if "registry_version" in card
                else card.get("version", "unknown")
            )
            for name, card in self.cards.items()
        }

    @property
    def promoted(self) -> frozenset[str]:
        """The families that did at least as well as the DSP path on the validation renders, each on its own
        metric (`make train-analysis` decides, or the champion gate where the set comes from the registry):
        the ones the pipeline uses."""
        return frozenset(name for name, card in self.cards.items() if card.get("promoted", False))

    def session(self, name: str):
        return self.sessions[self.cards[name]["file"]]


def _missing(folder: Path, names: tuple[str, ...]) -> list[str]:
    wanted = [f"{n}.json" for n in names]
    missing = [name for name in wanted if not (folder / name).is_file()]
    for name in names:
        if (folder / f"{name}.json").is_file():
            file = json.loads((folder / f"{name}.json").read_text()).get("file") or f"{NETWORK_OF[name]}.onnx"
            if not (folder / file).is_file() and file not in missing:
                missing.append(file)
    return missing


def available(folder: str | Path | None = None) -> bool:
    """Whether `folder` (default: the shipped set) holds every family with its network."""
    return not _missing(Path(folder) if folder else SHIPPED_MODELS, MODEL_NAMES)


@lru_cache(maxsize=8)
def load(folder: str | Path | None = None, names: tuple[str, ...] = MODEL_NAMES) -> ModelSet:
    """The families `names` in `folder` (default: the shipped set), with one onnxruntime session per network."""
    import onnxruntime

    folder = Path(folder) if folder else SHIPPED_MODELS
    if _missing(folder, names):
        raise ModelSetError(
            f"learned analysers in {folder} are incomplete: missing {', '.join(_missing(folder, names))}"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # songs are analysed in parallel processes; one thread each
    options.inter_op_num_threads = 1
    models = ModelSet(folder)
    for name in names:
        card = json.loads((folder / f"{name}.json").read_text())
        models.cards[name] = card | {"file": card.get("file") or f"{NETWORK_OF[name]}.onnx"}
    for file in sorted({card["file"] for card in models.cards.values()}):
        models.sessions[file] = onnxruntime.InferenceSession(
            str(folder / file), options, providers=["CPUExecutionProvider"]
        )
    return models


def _softmax_log(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def harmony_log_probabilities(run, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chord, bass and key log-probabilities per frame of harmony features (frames, HARMONY_BINS), where `run`
    is the harmony network (features -> chord, bass and key logits, each (frames, classes)). Bass and key are
    what it hears at the song's pitch; the chord is its readings of the features moved by each of
    CHORD_TRANSPOSITIONS semitones, moved back, averaged and normalized again."""
    heard = {
        semitones: run(features if semitones == 0 else frames.shift_pitch(features, semitones))
        for semitones in sorted({0, *CHORD_TRANSPOSITIONS})
    }
    readings = [
        frames.shift_classes_back(_softmax_log(np.asarray(heard[semitones][0])), semitones)
        for semitones in CHORD_TRANSPOSITIONS
    ]
    chord = _softmax_log(np.mean(readings, axis=0))
    bass, key = (_softmax_log(np.asarray(logits)) for logits in heard[0][1:])
    return chord, bass, key


def activations(models: ModelSet, mono: np.ndarray, names: tuple[str, ...] = MODEL_NAMES) -> dict[str, np.ndarray]:
    """Frame activations of 22 050 Hz mono audio from the networks of the named families: beat and downbeat
    probabilities (beat grid); chord, bass and key log-probabilities (harmony grid)."""
    beat = frames.beat_features(mono) if "beat_tracker" in names else None
    harmony = frames.harmony_features(mono) if {"chord_recognizer", "key_tracker"} & set(names) else None
    return activations_of_features(models, names, beat, harmony)


def activations_of_features(
    models: ModelSet, names: tuple[str, ...], beat_features: np.ndarray | None, harmony_features: np.ndarray | None
) -> dict[str, np.ndarray]:
    """`activations` from features already computed (`frames.beat_features`, `frames.harmony_features`)."""
    act, outputs = {}, {}
    if "beat_tracker" in names:
        (pulse,) = models.session("beat_tracker").run(None, {"features": beat_features[None]})
        probabilities = 1.0 / (1.0 + np.exp(-pulse[0]))
        act |= {"beat": probabilities[:, 0], "downbeat": probabilities[:, 1]}
    for name in ("chord_recognizer", "key_tracker"):
        if name not in names:
            continue
        file = models.cards[name]["file"]
        if file not in outputs:  # the key tracker usually shares the chord recognizer's network
            session = models.sessions[file]
            outputs[file] = harmony_log_probabilities(
                lambda heard, session=session: [logits[0] for logits in session.run(None, {"features": heard[None]})],
                harmony_features,
            )
        chord, bass, key = outputs[file]
        # The chord recognizer's key head comes with its chords: local keys follow it even where the song's
        # key is the DSP path's (see `local_keys_around`).
        act |= (
            {"chord": chord, "bass": bass, "key": key}
            if name == "chord_recognizer"
            else {"key": key, "pitch_classes": frames.pitch_class_energy(harmony_features)}
        )
    return act


@dataclass(frozen=True)
class DecoderSettings:
    """How activations become beats and chords; tuned on the validation renders and kept in the model cards."""

    tempo_histogram: tuple[int, ...] | None = None
    activation_prior: float = 0.3
    ring_out_ratio: float = 0.0  # see decoding.trim_ring_out; 0 keeps every decoded beat
    # Under heavy noise the beat network fires a little everywhere: where a song's mean beat activation is
    # above this floor, the activation prior drops by the excess (see `beat_prior`). None: the prior as tuned.
    noise_floor: float | None = None
    # How much a beat weighs the downbeat head's activation against `downbeat_level` (see
    # `decoding.decode_beats`); 0: the beat head alone.
    downbeat_weight: float = 0.0
    downbeat_level: float = 0.1
    # Whether the chord head's harmonic rhythm may double the decoded beats where they are half as fast as
    # the music (see `harmonic_level`); only where the chords come from the network too.
    harmonic_level: bool = False
    chord_change_penalty: float = CHORD_CHANGE_PENALTY
    # Seconds at each end of a beat whose harmony frames its chord and bass note leave out (see
    # `decoding.pool_frames`); 0: every frame of the beat.
    chord_margin_s: float = 0.0
    # The song's key: the key tracker's mean log-probability plus this weight times the sound's own evidence
    # (the pitch-class profile's correlation with each key profile, and how much of the song sits on each
    # key's tonic and dominant chords, as the DSP path weighs them). 0: the network alone.
    key_evidence_weight: float = 0.0

    @classmethod
    def of(cls, models: ModelSet) -> DecoderSettings:
        beat, chord = models.cards.get("beat_tracker", {}), models.cards.get("chord_recognizer", {})
        key = models.cards.get("key_tracker", {})
        histogram = beat.get("tempo_histogram")
        return cls(
            tuple(histogram) if histogram else None,
            activation_prior=beat.get("activation_prior", cls.activation_prior),
            ring_out_ratio=beat.get("ring_out_ratio", cls.ring_out_ratio),
            noise_floor=beat.get("noise_floor", cls.noise_floor),
            downbeat_weight=beat.get("downbeat_weight", cls.downbeat_weight),
            downbeat_level=beat.get("downbeat_level", cls.downbeat_level),
            harmonic_level=beat.get("harmonic_level", cls.harmonic_level),
            chord_change_penalty=chord.get("chord_change_penalty", cls.chord_change_penalty),
            chord_margin_s=chord.get("chord_margin_s", cls.chord_margin_s),
            key_evidence_weight=key.get("key_evidence_weight", cls.key_evidence_weight),
        )


def analyze_learned(models: ModelSet, mono: np.ndarray) -> dict:
    """Tempo, beats, downbeats, metre, chords with bass per beat, the key, and local keys per bar."""
    return decode(activations(models, mono), len(mono) / frames.RATE, DecoderSettings.of(models)) | {
        "models": models.versions
    }


def decode(
    act: dict[str, np.ndarray],
    duration: float,
    settings: DecoderSettings = DecoderSettings(),
    rhythm: dict | None = None,
) -> dict:
    """`analyze_learned`'s result from frame activations (see `activations`). `rhythm`: `decode_rhythm`'s result
    for these activations and settings where it is already at hand (it is nearly all of the decoding time)."""
    if rhythm is None:
        rhythm = decode_rhythm(act, duration, settings)
    return rhythm | decode_harmony(act, duration, settings, rhythm["beat_times"], rhythm["downbeat_times"])


def beat_prior(settings: DecoderSettings, beat_activation: np.ndarray) -> float:
    """The activation prior the beat decoder uses for one song. Noise the network half mistakes for onsets
    raises its activation everywhere (a song's mean is 0.04-0.1 when clean, 0.15-0.2 at 0 dB SNR or below):
    against the prior tuned on all conditions every beat then costs more than it earns, and the decoder
    settles on its slowest tempo. Lowering the prior by the mean's excess over `noise_floor` keeps it
    asking for beats where the network is least unsure (never below half the tuned prior)."""
    if settings.noise_floor is None or not len(beat_activation):
        return settings.activation_prior
    excess = max(0.0, float(np.mean(beat_activation)) - settings.noise_floor)
    return max(settings.activation_prior / 2, settings.activation_prior - excess)


def decode_rhythm(act: dict[str, np.ndarray], duration: float, settings: DecoderSettings = DecoderSettings()) -> dict:
    """Beats, downbeats, metre and tempo from the beat tracker's activations."""
    histogram = np.asarray(settings.tempo_histogram) if settings.tempo_histogram else None
    beat_times = decoding.decode_beats(
        act["beat"],
        frames.BEAT_FPS,
        histogram,
        beat_prior(settings, act["beat"]),
        act["downbeat"],
        settings.downbeat_weight,
        settings.downbeat_level,
    )
    beat_times = decoding.trim_ring_out(beat_times, act["beat"], frames.BEAT_FPS, settings.ring_out_ratio)
    level = "as decoded"
    if settings.harmonic_level and "chord" in act:
        beat_times, level = harmonic_level(beat_times, act, duration)
    if len(beat_times) < 2:
        beat_times = np.arange(0.0, duration, 0.5)
    at_beats = np.array(
        [
            act["downbeat"][max(0, int(round(t * frames.BEAT_FPS)) - 1) : int(round(t * frames.BEAT_FPS)) + 2].max()
            for t in beat_times
        ]
    )
    beats_per_bar, phase, meter_confidence = decoding.choose_meter(at_beats)
    downbeat_times = beat_times[phase::beats_per_bar]
    periods = np.diff(beat_times)
    tempo = float(60.0 / np.median(periods))
    confidence = act["beat"][np.round(beat_times * frames.BEAT_FPS).astype(int).clip(0, len(act["beat"]) - 1)].mean()
    return {
        "tempo_bpm": round(tempo, 2),
        "beat_times": beat_times,
        "downbeat_times": downbeat_times,
        "beats_per_bar": beats_per_bar,
        "meter_confidence": round(meter_confidence, 4),
        "tempo_confidence": round(float(np.clip(confidence, 0, 1)), 4),
        "metrical_level": level,
    }


# The harmonic rhythm's word on the metrical level (`harmonic_level`), tuned on the validation renders: the
# chords change into the middles of the decoded beats about as much as into the beats (at least this share
# of it) ...
DOUBLE_SHARE = 0.65
# ... and often into both (a mean change of at least this much each, the change being the total variation
# between the chord head's triads pooled over consecutive half beats, the frames 0.05 s inside each end left
# out): a chord pushed ahead of the beat changes into the middles only, and keeps its beat.
DOUBLE_CHANGE = 0.4
HALF_BEAT_MARGIN_S = 0.05
# Never above the training renders' fastest tempo.
DOUBLE_MAX_BPM = 200.0


def last_beat_end(beat_times: np.ndarray, duration: float) -> float:
    """Where the last beat's harmony ends: a beat after it, not through the ring-out that may follow it."""
    if len(beat_times) < 2:
        return duration
    return min(duration, float(beat_times[-1]) + float(np.median(np.diff(beat_times))))


def harmonic_level(beat_times: np.ndarray, act: dict[str, np.ndarray], duration: float) -> tuple[np.ndarray, str]:
    """The decoded beats, doubled where the chord head's harmonic rhythm says they are half as fast as the
    music's, with which ("doubled" or "as decoded").

    Under heavy noise the beat network loses the weak beats of the bar, and the beat decoder may then take a
    level half as fast. Chords in a chorale change with the beat: a path at half tempo finds as many changes
    in the middles of its beats as on them. On the validation renders this doubled 6 renders, 5 of them at
    half the true tempo (the sixth, at 0.43 times the true tempo, is now at 0.86 times it), and no other (beat F
    0.926 to 0.930; octave errors 5.4 % to 2.4 %).

    The other way does not work: a path at double tempo finds a chord change into every other beat and none
    into the ones between, and so does music whose chords change every two beats at the right tempo, as a
    6/8 ballad's do with each bar of two beats (halving such paths found the level of 3 validation renders of
    a slow chorale and broke a ballad in three conditions of the accuracy benchmark)."""
    if len(beat_times) < 8:
        return beat_times, "as decoded"
    period = float(np.median(np.diff(beat_times)))
    if 2 * 60.0 / period > DOUBLE_MAX_BPM:
        return beat_times, "as decoded"
    end = last_beat_end(beat_times, duration)
    middles = (beat_times[:-1] + beat_times[1:]) / 2
    both = np.sort(np.concatenate([beat_times, middles]))
    triads = frames.triad_log_probabilities(act["chord"])
    into = decoding.segment_changes(triads, frames.HARMONY_FPS, both, end, HALF_BEAT_MARGIN_S)
    into_middles, into_beats = float(into[0::2].mean()), float(into[1::2].mean())
    if min(into_middles, into_beats) < DOUBLE_CHANGE or into_middles < DOUBLE_SHARE * into_beats:
        return beat_times, "as decoded"
    # Each new beat at the beat network's strongest frame within an eighth of a beat of the middle.
    reach, beat = int(round(period * frames.BEAT_FPS / 8)), act["beat"]
    added = []
    for middle in middles:
        centre = int(round(middle * frames.BEAT_FPS))
        first, last = max(0, centre - reach), min(len(beat), centre + reach + 1)
        added.append((first + int(np.argmax(beat[first:last]))) / frames.BEAT_FPS if last > first else middle)
    return np.sort(np.concatenate([beat_times, added])), "doubled"


def decode_harmony(
    act: dict[str, np.ndarray],
    duration: float,
    settings: DecoderSettings,
    beat_times: np.ndarray,
    downbeat_times: np.ndarray,
) -> dict:
    """Chords with bass notes per beat, the song's key and the local key of each stretch of bars, from the
    chord recognizer's activations on the given beats and bars."""
    chords = decode_chords(act, duration, settings, beat_times)
    return chords | decode_keys(act, duration, downbeat_times, settings, chords["chords"])


def decode_chords(
    act: dict[str, np.ndarray], duration: float, settings: DecoderSettings, beat_times: np.ndarray
) -> dict:
    """A chord and a bass note per beat."""
    end = last_beat_end(beat_times, duration)
    margin = settings.chord_margin_s
    per_beat = decoding.pool_frames(act["chord"], frames.HARMONY_FPS, beat_times, end, margin)
    # The path runs over triads, each heard as the sum of the chords built on it: where the head splits a
    # beat between C and C7 it still hears a C major triad more clearly than the A minor it may rank first
    # alone. Each beat then names the likeliest chord on its triad, so a seventh may come and go in a chord.
    triad_per_beat = decoding.pool_frames(
        frames.triad_log_probabilities(act["chord"]), frames.HARMONY_FPS, beat_times, end, margin
    )
    triads = decoding.viterbi_segments(triad_per_beat, settings.chord_change_penalty)
    path = [frames.chord_on_triad(int(triad), scores) for triad, scores in zip(triads, per_beat)]
    bass_per_beat = decoding.pool_frames(act["bass"], frames.HARMONY_FPS, beat_times, end, margin).argmax(axis=1)
    chords = []
    for time, index, scores, bass in zip(beat_times, path, per_beat, bass_per_beat):
        chords.append(
            {
                "time": round(float(time), 4),
                "chord": frames.chord_label(int(index)),
                "confidence": round(float(np.exp(scores[index])), 4),
                "bass": None if bass == frames.NO_BASS else frames.PITCH_NAMES[int(bass)],
            }
        )
    return {"chords": chords}


def song_key_scores(act: dict[str, np.ndarray], settings: DecoderSettings, chords: list[dict] | None) -> np.ndarray:
    """(24,) score of each key for the whole song: the key tracker's mean log-probability, plus
    `settings.key_evidence_weight` times the sound's own evidence where the activations carry the pitch-class
    energy (`activations`): profile correlation and `mir.chord_key_evidence` of the song's chords."""
    from pipeline_project.analysis.mir import chord_key_evidence, key_profile_scores

    scores = act["key"].mean(axis=0)
    if settings.key_evidence_weight and "pitch_classes" in act:
        profile = key_profile_scores(act["pitch_classes"].sum(axis=0))
        scores = scores + settings.key_evidence_weight * (profile + chord_key_evidence(chords or []))
    return scores


def local_keys_around(
    act: dict[str, np.ndarray], duration: float, downbeat_times: np.ndarray, song_key: int
) -> list[dict]:
    """The local key of each stretch of bars, as {start, end, tonic, mode} spans covering the song: the key
    head's log-probabilities per bar, the song's key (a `frames.key_class` index, from whichever path found
    it) favoured by SONG_KEY_BONUS, smoothed by Viterbi so a modulation must hold for a few bars."""
    bar_starts = downbeat_times if len(downbeat_times) and downbeat_times[0] <= 0.05 else np.append(0.0, downbeat_times)
    per_bar = decoding.pool_frames(act["key"], frames.HARMONY_FPS, bar_starts, duration)
    per_bar[:, song_key] += SONG_KEY_BONUS
    keys = decoding.viterbi_segments(per_bar, KEY_CHANGE_PENALTY)
    local_keys = []
    for start, index in zip(bar_starts, keys):
        tonic, mode = frames.key_label(int(index))
        if local_keys and local_keys[-1]["tonic"] == tonic and local_keys[-1]["mode"] == mode:
            continue
        local_keys.append({"start": round(float(start), 4), "tonic": tonic, "mode": mode})
    for here, following in zip(local_keys, local_keys[1:] + [{"start": round(duration, 4)}]):
        here["end"] = following["start"]
    return local_keys


def decode_keys(
    act: dict[str, np.ndarray],
    duration: float,
    downbeat_times: np.ndarray,
    settings: DecoderSettings = DecoderSettings(),
    chords: list[dict] | None = None,
) -> dict:
    """The song's key (`song_key_scores`, with `chords` the song's chords per beat) and the local key of each
    stretch of bars around it (`local_keys_around`)."""
    scores = song_key_scores(act, settings, chords)
    best_key = int(np.argmax(scores))
    local_keys = local_keys_around(act, duration, downbeat_times, best_key)
    weights = np.exp(scores - scores.max())
    tonic, mode = frames.key_label(best_key)
    return {
        "key_tonic": tonic,
        "key_mode": mode,
        "key_confidence": round(float(weights[best_key] / weights.sum()), 4),
        "local_keys": local_keys,
    }
