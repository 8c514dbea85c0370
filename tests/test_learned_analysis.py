"""The learned analysers: corpus splits and reserved pieces, frame targets, decoders, the shipped model set in
the analysis path, numerals in local keys, and `make train-analysis` end to end on a tiny corpus."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_project.analysis import decoding, frames, learned
from pipeline_project.synthesis import corpus_split
from pipeline_project.training.analysis_registry import MINIMUM_GAIN


def test_reserved_pieces_are_never_listed_or_parsed():
    from music21 import corpus

    from pipeline_project.synthesis.arrangement import from_corpus

    assert len(corpus_split.RESERVED_DIGESTS) == 40
    analyses = [f"riemenschneider{i:03d}.rntxt" for i in range(1, 21)]
    assert all(corpus_split.is_reserved(name) for name in analyses)
    reserved = sorted(
        {corpus_split.canonical_name(str(p)) for p in corpus.getComposer("bach") if corpus_split.is_reserved(str(p))}
    )
    assert len(reserved) == 40  # every reserved chorale and analysis is in the corpus, and found by digest
    chorales = corpus_split.corpus_chorales()
    assert len(chorales) > 300 and not any(corpus_split.is_reserved(name) for name in chorales)
    chorale = next(name for name in reserved if name.startswith("bwv"))
    with pytest.raises(corpus_split.ReservedPieceError, match="reserved"):
        from_corpus(f"bach/{chorale}")


def test_examples_demo_songs_and_benchmarks_use_no_reserved_piece():
    from pipeline_project.synthesis.demo import DEMO_SONGS
    from pipeline_project.synthesis.examples import CORPUS_PIECES

    used = [name for name, _, _ in CORPUS_PIECES] + [song.corpus_name for song in DEMO_SONGS]
    assert not [name for name in used if corpus_split.is_reserved(name)]


def test_splits_are_disjoint_stable_and_hold_out_soundfonts():
    chorales = corpus_split.corpus_chorales()
    splits = {split: set(corpus_split.pieces_in(split)) for split in ("train", "validation", "test")}
    assert sum(len(s) for s in splits.values()) == len(chorales)
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["validation"])
    assert len(splits["test"]) >= 20 and len(splits["validation"]) >= 20
    assert corpus_split.split_of("bach/bwv66.6.mxl") == corpus_split.split_of("bach/bwv66.6")
    fonts = corpus_split.soundfont_split(["TimGM6mb.sf2", "FluidR3_GM.sf2", "MuseScore_General.sf3"])
    assert fonts == {"train": ["FluidR3_GM.sf2", "TimGM6mb.sf2"], "evaluation": ["MuseScore_General.sf3"]}
    assert corpus_split.soundfont_split(["A.sf2", "B.sf2"]) == {"train": ["A.sf2"], "evaluation": ["B.sf2"]}


def test_chord_vocabulary_and_transposition_move_labels_together():
    from pipeline_project.synthesis.arrangement import chord_quality
    from pipeline_project.training.analysis_models import transpose_harmony

    assert [chord_quality(s) for s in ({0, 4, 7, 10}, {0, 3, 7, 10}, {0, 5, 7}, {0, 4}, {0, 3, 7, 2})] == [
        "7",
        "min7",
        "sus4",
        "maj",
        "min",
    ]
    for label in ("C:maj", "F#:min7", "Bb:sus4", "N"):
        assert frames.chord_label(frames.chord_class(label)) == label.replace("F#", "F#")
    assert (
        frames.chord_class("D:hdim7") == frames.chord_class("D:dim") and frames.chord_class("D:other") == frames.IGNORE
    )
    features = np.zeros((4, frames.HARMONY_BINS), dtype=np.float32)
    features[:, 30] = 1.0
    chord = np.array([frames.chord_class("C:maj"), frames.NO_CHORD, frames.IGNORE, frames.chord_class("A:min")])
    moved, chord2, bass2, key2 = transpose_harmony(
        features, chord, np.array([0, 12, 11, 9]), np.array([0, 12, 21, 23]), 2
    )
    assert moved[0, 36] == 1.0 and moved[0, 30] == 0.0
    assert [frames.chord_label(c) if c >= 0 else c for c in chord2] == ["D:maj", "N", frames.IGNORE, "B:min"]
    assert bass2.tolist() == [2, 12, 1, 11] and key2.tolist() == [2, 14, 23, 13]


def test_the_chord_head_is_heard_at_neighbouring_pitches_and_read_back_at_the_songs_own():
    from pipeline_project.training.analysis_models import transpose_harmony

    # What a network says of features moved up by s semitones is moved back to the song's pitch: a label that
    # `transpose_harmony` moves from class c to c' is read back from c' at c, for every head's layout.
    chord = np.array([frames.chord_class(label) for label in ("C:maj", "B:min7", "N")])
    bass, key = np.array([0, 11, frames.NO_BASS]), np.array([0, 23, 12])
    for semitones in (-1, 1, 5):
        _, *moved = transpose_harmony(np.zeros((3, frames.HARMONY_BINS)), chord, bass, key, semitones)
        for labels, heard, classes in zip(
            (chord, bass, key), moved, (frames.CHORD_CLASSES, frames.NO_BASS + 1, frames.KEY_CLASSES)
        ):
            one_hot = np.eye(classes)[heard]
            assert frames.shift_classes_back(one_hot, semitones).argmax(axis=1).tolist() == labels.tolist()

    # A network that names the loudest semitone as a major chord's root and as the bass is heard the same at
    # every pitch, so the chord averaged over transpositions is what it reads alone, normalized. Its key head
    # always says C major a little: bass and key are read at the song's own pitch only, never averaged.
    def loudest_semitone(features: np.ndarray) -> list[np.ndarray]:
        semitone = features.reshape(len(features), frames.SEMITONES, frames.BINS_PER_SEMITONE).sum(axis=2)
        root = (semitone.argmax(axis=1) + frames.LOWEST_MIDI) % 12
        key = np.zeros((len(features), frames.KEY_CLASSES))
        key[:, frames.key_class("C:major")] = 1.0
        return [4.0 * np.eye(frames.CHORD_CLASSES)[root], 4.0 * np.eye(frames.NO_BASS + 1)[root], key]

    features = np.zeros((3, frames.HARMONY_BINS), dtype=np.float32)
    for frame, semitone in enumerate((7, 30, 44)):  # G2, F#4, Ab5: well inside the range either way
        features[frame, semitone * frames.BINS_PER_SEMITONE + 1] = 1.0
    chord, bass, key = learned.harmony_log_probabilities(loudest_semitone, features)
    assert learned.CHORD_TRANSPOSITIONS == (-1, 0, 1)
    assert [frames.chord_label(int(c)) for c in chord.argmax(axis=1)] == ["G:maj", "F#:maj", "Ab:maj"]
    assert bass.argmax(axis=1).tolist() == [7, 6, 8]
    assert np.allclose(key, learned._softmax_log(loudest_semitone(features)[2]))
    for log_probabilities in (chord, bass, key):
        assert np.allclose(np.exp(log_probabilities).sum(axis=1), 1.0)


def test_a_beats_chord_is_the_likeliest_on_the_triad_its_chords_share():
    # The head splits most of each beat between C and C7 and gives A minor the largest single share: the
    # beat is heard as a C major triad (0.3 + 0.31 against 0.35), and each beat names its likelier chord on it.
    fps, beat = frames.HARMONY_FPS, 1.0
    count = int(8 * fps)
    beat_times = np.arange(0.0, 8.0, beat)
    log_probs = np.full((count, frames.CHORD_CLASSES), np.log(0.04 / (frames.CHORD_CLASSES - 3)))
    seventh_from = int(4 * fps)  # the seventh leads from the fifth beat on
    for label, early, late in (("C:maj", 0.31, 0.3), ("C:7", 0.3, 0.31), ("A:min", 0.35, 0.35)):
        log_probs[:seventh_from, frames.chord_class(label)] = np.log(early)
        log_probs[seventh_from:, frames.chord_class(label)] = np.log(late)
    triads = frames.triad_log_probabilities(log_probs)
    assert np.allclose(np.exp(triads).sum(axis=1), 1.0)
    c_major = frames.TRIADS.index("maj") * 12
    assert np.allclose(np.exp(triads[:, c_major]), 0.61 + np.exp(log_probs[:, frames.chord_class("C:maj7")]))
    assert triads[0, frames.NO_TRIAD] == log_probs[0, frames.NO_CHORD]
    assert frames.chord_on_triad(frames.NO_TRIAD, log_probs[0]) == frames.NO_CHORD
    act = {"chord": log_probs, "bass": np.zeros((count, frames.NO_BASS + 1))}
    chords = learned.decode_chords(act, 8.0, learned.DecoderSettings(chord_change_penalty=0.1), beat_times)
    assert [chord["chord"] for chord in chords["chords"]] == ["C:maj"] * 4 + ["C:7"] * 4
    assert frames.chord_label(int(decoding.pool_frames(log_probs, fps, beat_times, 8.0)[0].argmax())) == "A:min"


def _bars_of(pitch_classes: list[int], start_bar: int, bars: int) -> list[dict]:
    return [
        {"onset": 2.0 * bar + 0.5 * i, "offset": 2.0 * bar + 0.5 * i + 0.5, "pitch": 60 + pc, "is_drum": False}
        for bar in range(start_bar, start_bar + bars)
        for i, pc in enumerate(pitch_classes)
    ]


def test_the_songs_key_weighs_the_sounds_own_evidence_and_local_keys_leave_it_only_for_a_while():
    bars, per_bar = 12, round(2.0 * frames.HARMONY_FPS)
    duration = bars * 2.0
    key = np.full((bars * per_bar, frames.KEY_CLASSES), np.log(0.01))
    g_major = frames.key_class("G:major")
    key[:, frames.key_class("C:major")], key[:, g_major] = np.log(0.45), np.log(0.5)  # the network leans to G
    modulation = slice(6 * per_bar, 10 * per_bar)  # four bars clearly in E minor
    key[modulation] = np.log(0.001)
    key[modulation, frames.key_class("E:minor")] = np.log(0.97)
    pitch_classes = np.zeros((len(key), 12))
    pitch_classes[:, [0, 2, 4, 5, 7, 9, 11]] = [6, 2, 4, 3, 5, 2, 1]  # C major's profile, no F#
    act = {"key": key, "pitch_classes": pitch_classes}
    chords = [{"chord": "C:maj"}] * 6 + [{"chord": "G:maj"}] * 3 + [{"chord": "F:maj"}] * 3
    downbeats = np.arange(bars) * 2.0
    alone = learned.decode_keys(act, duration, downbeats, learned.DecoderSettings(), chords)
    assert (alone["key_tonic"], alone["key_mode"]) == ("G", "major")
    weighed = learned.decode_keys(act, duration, downbeats, learned.DecoderSettings(key_evidence_weight=2.0), chords)
    assert (weighed["key_tonic"], weighed["key_mode"]) == ("C", "major")
    assert [(k["tonic"], k["mode"]) for k in weighed["local_keys"]] == [("C", "major"), ("E", "minor"), ("C", "major")]
    assert weighed["local_keys"][1]["start"] == 12.0 and weighed["local_keys"][-1]["end"] == duration


def test_local_keys_follow_a_modulation_in_the_score():
    c_major, e_major = [0, 4, 7, 5, 2, 11, 0, 7], [4, 8, 11, 9, 6, 3, 4, 11]
    labels = {
        "downbeats": [2.0 * b for b in range(16)],
        "duration": 32.0,
        "key": "C:major",
        "notes": _bars_of(c_major, 0, 8) + _bars_of(e_major, 8, 8),
    }
    spans = frames.local_keys(labels)
    assert [s[2] for s in spans] == ["C:major", "E:major"]
    assert abs(spans[1][0] - 16.0) <= 4.0 and spans[-1][1] == 32.0


def test_local_keys_of_a_piece_that_never_modulates_are_the_scores_own_key():
    # vi-IV-I-V in F major as a groove plays it (the bass on roots and fifths, no E anywhere): bar by bar the
    # notes match Bb major's profile best, yet the piece is in F and its numerals must be read in F.
    loop = [[2, 2, 2, 2, 9, 10, 10], [5, 5, 5, 10, 10, 10], [0, 5, 5, 5], [0, 0, 0, 0, 0, 2, 2, 7]]
    notes = []
    for bar in range(16):
        step = 2.0 / len(loop[bar % 4])
        notes += [
            {"onset": 2.0 * bar + step * i, "offset": 2.0 * bar + step * (i + 1), "pitch": 60 + pc, "is_drum": False}
            for i, pc in enumerate(loop[bar % 4])
        ]
    labels = {"downbeats": [2.0 * b for b in range(16)], "duration": 32.0, "key": "F:major", "notes": notes}
    assert frames.local_keys(labels) == [(0.0, 32.0, "F:major")]


def test_beat_decoder_keeps_slow_tempi_slow_and_finds_the_metre():
    fps, frames_count = frames.BEAT_FPS, 6000
    period = 60 / 75 * fps
    truth = np.arange(50, frames_count - period, period)
    activation = np.full(frames_count, 0.003)
    for beat in truth:
        activation[int(round(beat))] = 0.9
        activation[int(round(beat + period / 2))] = 0.2  # clear off-beats: the double tempo is tempting
    beats = decoding.decode_beats(activation, fps)
    assert 60 / np.median(np.diff(beats)) == pytest.approx(75, rel=0.03)
    assert np.median(np.abs(beats[:, None] - truth[None, :] / fps).min(axis=1)) < 0.02
    downbeat = np.tile([0.9, 0.1, 0.2], 12)
    assert decoding.choose_meter(downbeat)[:2] == (3, 0)
    path = decoding.viterbi_segments(
        np.log(np.array([[0.6, 0.4], [0.45, 0.55], [0.6, 0.4], [0.1, 0.9], [0.1, 0.9]])), 0.5
    )
    assert path.tolist() == [0, 0, 0, 1, 1]


def test_under_noise_the_beat_prior_drops_so_the_decoder_does_not_settle_on_its_slowest_tempo():
    period = 60 / 120 * frames.BEAT_FPS
    activation = np.random.default_rng(0).uniform(0.1, 0.25, 3000)  # noise the network half takes for onsets
    activation[np.round(np.arange(20, 2995, period)).astype(int)] = 0.3  # the beats, barely above it
    act = {"beat": activation, "downbeat": np.zeros_like(activation)}
    as_tuned = learned.DecoderSettings(activation_prior=0.3)
    assert learned.decode_rhythm(act, 30.0, as_tuned)["tempo_bpm"] < 41  # every beat costs more than it earns
    floored = learned.DecoderSettings(activation_prior=0.3, noise_floor=0.12)
    assert learned.beat_prior(floored, activation) == pytest.approx(0.3 - (activation.mean() - 0.12))
    assert learned.decode_rhythm(act, 30.0, floored)["tempo_bpm"] == pytest.approx(120, rel=0.02)
    quiet = np.full(3000, 0.05)
    assert learned.beat_prior(floored, quiet) == 0.3  # a clean song's decoding is untouched
    assert learned.beat_prior(learned.DecoderSettings(activation_prior=0.3, noise_floor=0.0), np.ones(9)) == 0.15


def test_the_downbeat_head_settles_the_metrical_level_the_beat_head_leaves_open():
    # As the validation renders of slow pieces show it: the beat head fires on the eighth notes between the
    # beats more than half as strongly as on the beats, the downbeat head answers on every beat (most on the
    # bar's first) and not between them.
    fps, period = frames.BEAT_FPS, 60 / 60 * frames.BEAT_FPS
    beat, downbeat = np.full(3000, 0.02), np.full(3000, 0.001)
    beat_frames = np.round(np.arange(20, 2990, period)).astype(int)
    beat[beat_frames] = 0.6
    beat[np.round(beat_frames + period / 2).astype(int)[:-1]] = 0.45
    downbeat[beat_frames] = 0.3
    downbeat[beat_frames[::4]] = 0.7
    alone = decoding.decode_beats(beat, fps)
    assert 60 / np.median(np.diff(alone)) == pytest.approx(120, rel=0.03)  # the beat head alone: double time
    both = decoding.decode_beats(beat, fps, downbeat=downbeat, downbeat_weight=0.5, downbeat_level=0.1)
    assert 60 / np.median(np.diff(both)) == pytest.approx(60, rel=0.03)
    assert np.abs(both[:, None] - beat_frames[None, :] / fps).min(axis=1).max() < 0.02
    # Settings without the weight (a card that predates it) decode with the beat head alone, as before.
    settings = learned.DecoderSettings(activation_prior=0.3)
    assert settings.downbeat_weight == 0.0
    rhythm = learned.decode_rhythm({"beat": beat, "downbeat": downbeat}, 30.0, settings)
    assert rhythm["tempo_bpm"] == pytest.approx(120, rel=0.03)
    tuned = learned.decode_rhythm(
        {"beat": beat, "downbeat": downbeat}, 30.0, learned.DecoderSettings(activation_prior=0.3, downbeat_weight=0.5)
    )
    assert tuned["tempo_bpm"] == pytest.approx(60, rel=0.03) and tuned["beats_per_bar"] == 4


def _chords_changing_at(times_s: np.ndarray, duration: float) -> np.ndarray:
    """Chord-head log-probabilities (harmony frames) of a major chord on a new root from each of `times_s`."""
    count = int(duration * frames.HARMONY_FPS)
    which = np.searchsorted(times_s, (np.arange(count) + 0.5) / frames.HARMONY_FPS, side="right")
    probabilities = np.full((count, frames.CHORD_CLASSES), 0.1 / (frames.CHORD_CLASSES - 1))
    probabilities[np.arange(count), (which * 5) % 12] = 0.9  # roots a fourth apart: C F Bb Eb ...
    return np.log(probabilities)


def test_the_harmonic_rhythm_doubles_beats_half_as_fast_as_the_chords_change():
    # A piece at 80 BPM whose chords change on every beat, heard under noise that leaves the beat network
    # only every other beat clearly: the decoder alone takes the slower level.
    duration, fps = 40.0, frames.BEAT_FPS
    truth = np.arange(1.0, 38.5, 0.75)
    beat = np.full(int(duration * fps), 0.02)
    beat[np.round(truth * fps).astype(int)] = 0.08
    beat[np.round(truth[::2] * fps).astype(int)] = 0.7
    act = {"beat": beat, "downbeat": np.zeros_like(beat), "chord": _chords_changing_at(truth, duration)}
    doubled, level = learned.harmonic_level(truth[::2], act, duration)
    assert level == "doubled" and np.abs(doubled - truth[: len(doubled)]).max() <= 0.5 / fps
    assert learned.harmonic_level(truth, act, duration) == (truth, "as decoded")
    # Chords pushed half a beat ahead change into the middles of the beats only: the beat stays.
    pushed = act | {"chord": _chords_changing_at(truth - 0.375, duration)}
    assert learned.harmonic_level(truth, pushed, duration)[1] == "as decoded"
    # Chords that change every two beats at the right tempo (a 6/8 ballad's, bar by bar) look like a path at
    # double tempo: the beats are never halved.
    every_two = act | {"chord": _chords_changing_at(truth[::2], duration)}
    assert learned.harmonic_level(truth, every_two, duration) == (truth, "as decoded")
    # Through the decoder, only where a card allows it (a card that predates it decodes as before).
    alone = learned.decode_rhythm(act, duration, learned.DecoderSettings(activation_prior=0.3))
    assert alone["tempo_bpm"] == pytest.approx(40, rel=0.03) and alone["metrical_level"] == "as decoded"
    allowed = learned.DecoderSettings(activation_prior=0.3, harmonic_level=True)
    rhythm = learned.decode_rhythm(act, duration, allowed)
    assert rhythm["tempo_bpm"] == pytest.approx(80, rel=0.03) and rhythm["metrical_level"] == "doubled"
    # Never above the training renders' fastest tempo.
    fast = np.arange(1.0, 38.5, 0.25)
    quick = act | {"chord": _chords_changing_at(fast, duration)}
    assert learned.harmonic_level(fast[::2], quick, duration)[1] == "as decoded"


def test_beat_decoder_in_checkpointed_stretches_finds_the_same_path_as_in_one():
    """The decoder keeps back-pointers for one stretch of frames at a time (memory flat for any length) and
    recomputes them from saved scores: the path is exactly the one a single pass finds."""
    fps = frames.BEAT_FPS
    rng = np.random.default_rng(7)
    t = np.arange(4000) / fps
    activation = np.clip(0.05 + 0.85 * (((t * 1.9) % 1.0) < 0.012) + rng.uniform(0, 0.25, len(t)), 1e-6, 1 - 1e-6)
    periods = decoding.tempo_periods(fps)
    ratio = periods[None, :] / periods[:, None]
    transition = -decoding.TEMPO_CHANGE_LAMBDA * np.abs(ratio - 1.0)
    transition -= np.log(np.exp(transition).sum(axis=1, keepdims=True))
    evidence = (
        np.log(activation) - np.log(0.3),
        np.log(1 - activation) - np.log(0.7),
        periods,
        decoding.tempo_prior(periods, fps, None),
        transition,
    )
    one_pass = decoding._viterbi_beats(*evidence, checkpoint=len(activation))
    assert one_pass.sum() > 60
    for checkpoint in (1, 37, 1000):
        assert np.array_equal(decoding._viterbi_beats(*evidence, checkpoint=checkpoint), one_pass)


def test_beats_through_a_final_ring_out_are_trimmed_and_the_first_beat_kept():
    fps, period = frames.BEAT_FPS, 50
    activation = np.full(1200, 0.01)
    activation[0] = 0.3  # the network hears the first beat weakly: no context before it
    activation[period:800:period] = 0.8
    activation[800::period] = 0.15  # the last chord rings: the decoder's pulse goes on, the network hardly fires
    beats = decoding.decode_beats(activation, fps, activation_prior=0.1)
    assert beats[-1] > 9.0
    trimmed = decoding.trim_ring_out(beats, activation, fps, 0.7)
    assert trimmed[0] == beats[0] and trimmed[-1] == pytest.approx(750 / fps, abs=0.02)
    assert decoding.trim_ring_out(beats, activation, fps, 0.0) is beats


def test_a_beats_chord_is_read_from_the_frames_inside_it_not_those_that_hear_its_neighbours():
    # As a harmony frame hears it (372 ms of sound): C and G change every beat, and the frames next to each
    # change hear the next chord loudly while the frames inside the beat hear their own chord a little more.
    fps, beat = frames.HARMONY_FPS, 0.75
    c, g = frames.chord_class("C:maj"), frames.chord_class("G:maj")
    count = int(12 * fps)
    centres = (np.arange(count) + 0.5) / fps  # where the network's targets were read (frames.targets)
    beat_times = np.arange(0.0, 12.0, beat)
    truth = np.where((centres // beat).astype(int) % 2 == 0, c, g)
    log_probs = np.full((count, frames.CHORD_CLASSES), np.log(1e-4))
    to_edge = np.minimum(centres % beat, beat - centres % beat)
    for index, own in enumerate(truth):
        other = g if own == c else c
        log_probs[index, own], log_probs[index, other] = (
            (np.log(0.45), np.log(0.3)) if to_edge[index] > 0.12 else (np.log(0.02), np.log(0.95))
        )
    expected = np.where(np.arange(len(beat_times)) % 2 == 0, c, g)
    everything = decoding.pool_frames(log_probs, fps, beat_times, 12.0)
    assert (everything.argmax(axis=1) != expected).any()
    inside = decoding.pool_frames(log_probs, fps, beat_times, 12.0, margin_s=0.12)
    assert inside.argmax(axis=1).tolist() == expected.tolist()
    # A beat shorter than both margins is read from the frame nearest its middle.
    short = decoding.pool_frames(log_probs, fps, np.array([1.5, 1.6]), 1.7, margin_s=0.12)
    assert np.allclose(short, log_probs[[int(1.55 * fps), int(1.65 * fps)]])
    # The decoder reads chords with the card's margin; settings without it (an older card) use every frame.
    act = {"chord": log_probs, "bass": np.zeros((count, frames.NO_BASS + 1))}
    labels = [frames.chord_label(int(i)) for i in expected]

    def decoded(settings: learned.DecoderSettings) -> list[str]:
        return [chord["chord"] for chord in learned.decode_chords(act, 12.0, settings, beat_times)["chords"]]

    assert decoded(learned.DecoderSettings(chord_change_penalty=0.1, chord_margin_s=0.12)) == labels
    assert decoded(learned.DecoderSettings(chord_change_penalty=0.1)) != labels


def test_numerals_are_read_in_the_local_key():
    from pipeline_project.analysis.theory import analyze_theory

    beats = [0.5 * i for i in range(8)]
    chords = ["C:maj", "C:maj", "G:maj", "G:maj", "D:maj", "D:maj", "G:maj", "G:maj"]
    analysis = {
        "key_tonic": "C",
        "key_mode": "major",
        "beat_times": beats,
        "downbeat_times": beats[::4],
        "beats_per_bar": 4,
        "onset_times": beats,
        "onset_strengths": [1.0] * 8,
        "tempo_bpm": 120.0,
        "sections": [],
        "chords": [{"time": t, "chord": c, "bass": None, "confidence": 0.9} for t, c in zip(beats, chords)],
        "local_keys": [
            {"start": 0.0, "end": 2.0, "tonic": "C", "mode": "major"},
            {"start": 2.0, "end": 4.0, "tonic": "G", "mode": "major"},
        ],
    }
    theory = analyze_theory(analysis)
    assert theory["progression"] == ["I", "V", "V", "I"]
    assert theory["local_keys"] == ["C major from 0.00 s", "G major from 2.00 s"]


@pytest.mark.skipif(not learned.available(), reason="no shipped model set (make train-analysis)")
def test_the_shipped_model_set_analyses_a_rendered_song_and_names_its_versions():
    from pipeline_project.analysis.mir import analyze
    from pipeline_project.analysis.theory import analyze_theory
    from pipeline_project.synthesis.arrangement import from_corpus
    from pipeline_project.synthesis.grooves import with_rhythm_section
    from pipeline_project.synthesis.performance import STEADY_TEMPO, perform
    from pipeline_project.synthesis.render import render

    models = learned.load()
    assert set(models.versions) == {"beat_tracker", "chord_recognizer", "key_tracker"}
    assert models.versions["key_tracker"] == models.versions["chord_recognizer"]  # the same network's key head
    performance = perform(
        with_rhythm_section(from_corpus("bach/bwv45.7", max_ql=32), "rock", seed=3),
        96,
        seed=3,
        humanization=STEADY_TEMPO,
    )
    audio = render(performance)
    result = analyze(audio.stems, audio.sample_rate, models, use=frozenset(learned.MODEL_NAMES))
    assert (
        result["analysers"]
        == {
            "rhythm": "learned",
            "chords": "learned",
            "keys": "learned",
            "local_keys": "learned",
            "metrical_level": "as decoded",
        }
        and result["models"] == models.versions
    )
    assert result["tempo_bpm"] == pytest.approx(96, rel=0.04)
    assert len(result["chords"]) == len(result["beat_times"]) and result["local_keys"][0]["start"] == 0.0
    assert result["local_keys"][-1]["end"] == pytest.approx(result["duration_s"], abs=0.01)
    assert analyze_theory(result)["roman_numerals"]
    fallback = analyze(audio.stems, audio.sample_rate)
    assert (
        fallback["analysers"]
        == {"rhythm": "dsp", "chords": "dsp", "keys": "dsp", "local_keys": "song key", "metrical_level": "as decoded"}
        and fallback["models"] == {}
        and len(fallback["local_keys"]) == 1
    )
    beats_only = analyze(audio.stems, audio.sample_rate, models, use=frozenset({"beat_tracker"}))
    assert beats_only["analysers"] == {
        "rhythm": "learned",
        "chords": "dsp",
        "keys": "dsp",
        "local_keys": "song key",
        "metrical_level": "as decoded",
    } and set(beats_only["models"]) == {"beat_tracker"}
    assert beats_only["beat_times"] == result["beat_times"] and len(beats_only["chords"]) == len(result["beat_times"])
    no_keys = analyze(audio.stems, audio.sample_rate, models, use=frozenset({"beat_tracker", "chord_recognizer"}))
    # The DSP path's song key, with local keys around it from the chord recognizer's key head.
    assert no_keys["chords"] == result["chords"] and no_keys["analysers"]["local_keys"] == "learned"
    song_key = (no_keys["key_tonic"], no_keys["key_mode"])
    assert no_keys["local_keys"][0]["start"] == 0.0 and song_key in {
        (k["tonic"], k["mode"]) for k in no_keys["local_keys"]
    }


@pytest.mark.skipif(not learned.available(), reason="no shipped model set (make train-analysis)")
def test_a_model_set_is_used_only_when_promoted_over_the_dsp_path(tmp_path):
    import json
    import shutil

    for promoted in (True, False):
        folder = tmp_path / str(promoted)
        shutil.copytree(learned.SHIPPED_MODELS, folder)
        for name in learned.MODEL_NAMES:
            card = json.loads((folder / f"{name}.json").read_text())
            (folder / f"{name}.json").write_text(json.dumps(card | {"promoted": promoted}))
        assert learned.load(folder).promoted == (frozenset(learned.MODEL_NAMES) if promoted else frozenset())
    shipped = learned.load()
    for name, card in shipped.cards.items():
        scores, dsp, by_condition = (
            card["validation_scores"],
            card["dsp_validation_scores"],
            card["validation_by_condition"],
        )
        metrics = card["promotion_metrics"]
        earned = all(scores[m] >= dsp[m] + MINIMUM_GAIN for m in metrics) and all(
            by_condition["learned"][c][m] >= by_condition["dsp"][c][m] for c in by_condition["dsp"] for m in metrics
        )
        assert (name in shipped.promoted) == earned
    assert "chord_change_penalty" in shipped.cards["chord_recognizer"]
    assert 0.0 < shipped.cards["beat_tracker"]["activation_prior"] < 1.0


def test_the_key_tracker_is_judged_against_the_dsp_key_fed_the_chords_the_pipeline_would_use():
    from pipeline_project.training.train_analysis import judge

    # An F#-minor piece in two conditions. The DSP path's own chords mislead its key (0.0); its pitch-class
    # profile with the learned chords finds F# minor. The key tracker scores 0.9 in between.
    profile = np.zeros(12)
    for pitch_class in (6, 9, 1, 1, 5, 8):  # F# A C#, then C# E# G#
        profile[pitch_class] += 1
    decoded = [{"chords": [{"chord": "F#:min"}] * 3 + [{"chord": "C#:maj"}]}] * 2
    corpus = [{"meta": {"key": "F#:minor"}}] * 2
    conditions = ["clean", "concert"]
    dsp = [{"beat_f": 0.6, "chord_majmin": 0.6, "key": 0.0}] * 2

    def judged(learned_chords: float) -> dict:
        rows = [{"beat_f": 0.9, "chord_majmin": learned_chords, "key": 0.9}] * 2
        return judge(rows, dsp, [profile] * 2, decoded, corpus, conditions)

    with_chords = judged(0.8)
    assert with_chords["promoted"] == {"beat_tracker": True, "chord_recognizer": True, "key_tracker": False}
    assert with_chords["dsp_key_chords"] == "learned" and with_chords["dsp_validation_scores"]["key"] == 1.0
    assert with_chords["dsp_validation_scores"]["chord_majmin"] == 0.6
    # Without a promoted chord recognizer the pipeline's key is the DSP path's own, and the key tracker beats it.
    without = judged(0.5)
    assert without["promoted"] == {"beat_tracker": True, "chord_recognizer": False, "key_tracker": True}
    assert without["dsp_key_chords"] == "dsp" and without["dsp_validation_scores"]["key"] == 0.0


@pytest.mark.skipif(not learned.available(), reason="no shipped model set (make train-analysis)")
def test_the_shipped_set_is_registered_once_and_its_champions_analyse(tmp_path):
    import json
    import shutil

    from pipeline_project.training import analysis_registry
    from pipeline_project.training.registry import Registry, sqlite_tracking_uri

    registry, cache = Registry(sqlite_tracking_uri(tmp_path), str(tmp_path / "artifacts")), tmp_path / "cache"
    assert analysis_registry.champion_model_set(registry, cache) is None  # no champion: the DSP path
    models = analysis_registry.pipeline_models(registry, "test", cache)
    shipped = learned.load()
    assert (
        models.promoted == shipped.promoted == frozenset(models.cards)
    )  # the champions: the families that beat the DSP path
    for name in learned.MODEL_NAMES:
        (version,) = registry.versions(name)
        card = registry.model_card(name, version.version)
        assert all(card["checks"].values()) and card["promotion"]["promoted"] == (name in shipped.promoted)
        assert (
            "DSP path" in card["promotion"]["reason"]
            and version.tags["analysis_version"] == shipped.cards[name]["version"]
        )
        # Lineage to the code that trained it, not only to the code that registered it.
        params = registry.client.get_run(version.run_id).data.params
        assert params["source_commit"] == shipped.cards[name]["source_commit"]
    assert models.versions["beat_tracker"] == f"beat_tracker/1 ({shipped.cards['beat_tracker']['version']})"
    assert analysis_registry.pipeline_models(registry, "test", cache) is models  # registered once, downloaded once
    assert [len(registry.versions(name)) for name in learned.MODEL_NAMES] == [1, 1, 1]
    rng = np.random.default_rng(0)
    act = learned.activations(models, rng.normal(0, 0.1, frames.RATE * 6).astype(np.float32), tuple(models.promoted))
    assert len(learned.decode_rhythm(act, 6.0, learned.DecoderSettings.of(models))["beat_times"]) and "chord" in act

    # A better beat tracker takes champion and the pipeline's set follows; the gate re-scores the champion.
    better = tmp_path / "better"
    shutil.copytree(learned.SHIPPED_MODELS, better)
    card = json.loads((better / "beat_tracker.json").read_text())
    champion_score = card["validation_scores"]["beat_f"]
    card["validation_scores"] = card["validation_scores"] | {"beat_f": champion_score + 0.05}
    (better / "beat_tracker.json").write_text(json.dumps(card))
    (result,) = analysis_registry.register_model_set(
        registry, "test", better, ("beat_tracker",), {}, 0.01, lambda name: lambda champion: champion_score
    )
    assert result.promoted and result.champion_score_before == champion_score
    assert analysis_registry.champion_model_set(registry, cache).versions["beat_tracker"].startswith("beat_tracker/2 ")


def test_an_incomplete_model_set_is_refused_with_the_missing_files(tmp_path):
    import json

    (tmp_path / "beat_tracker.onnx").write_bytes(b"")
    for name in learned.MODEL_NAMES:
        (tmp_path / f"{name}.json").write_text(json.dumps({"file": f"{learned.NETWORK_OF[name]}.onnx"}))
    assert not learned.available(tmp_path)
    with pytest.raises(learned.ModelSetError, match="missing chord_recognizer.onnx$"):
        learned.load(tmp_path)
    (tmp_path / "key_tracker.json").unlink()
    with pytest.raises(learned.ModelSetError, match="key_tracker.json"):
        learned.load(tmp_path, ("beat_tracker", "key_tracker"))


@pytest.mark.slow
def test_train_analysis_makes_a_model_set_the_pipeline_loads(tmp_path):
    from pipeline_project.training import train_analysis

    out = tmp_path / "models"
    train_analysis.main(
        ["--out", str(out), "--corpus", str(tmp_path / "corpus"), "--max-pieces", "3", "--steps", "2", "--workers", "1"]
    )
    models = learned.load(out)
    assert models.cards["beat_tracker"]["seed"] == 0 and len(models.cards["beat_tracker"]["tempo_histogram"]) > 100
    assert "validation_scores" in models.cards["chord_recognizer"]
    rng = np.random.default_rng(0)
    result = learned.analyze_learned(models, rng.normal(0, 0.1, frames.RATE * 8).astype(np.float32))
    assert {"beat_times", "chords", "local_keys", "models"} <= set(result)
    # Scored again without training (as after a change of the validation labels): same networks, same figures.
    before = models.cards["key_tracker"]
    train_analysis.main(
        ["--out", str(out), "--corpus", str(tmp_path / "corpus"), "--max-pieces", "3", "--rescore", "--workers", "1"]
    )
    after = learned.load(out).cards["key_tracker"]
    assert after["version"] == before["version"] and after["rescored_with_plan_version"] >= 1
    assert after["validation_scores"].keys() == before["validation_scores"].keys()
    assert after["key_evidence_weight"] in train_analysis.KEY_EVIDENCE_WEIGHTS

    # The cards name the commit and the command that made the networks; made again from there (in a checkout
    # of that commit), the weights are the same.
    from pipeline_project.training import analysis_models as network_code
    from pipeline_project.training import reproduce

    width = str(network_code.TrainingSettings.width)
    assert after["made_with"] == {
        "module": "pipeline_project.training.train_analysis",
        "arguments": ["--seed", "0", "--renders-per-piece", "2", "--steps", "2", "--width", width, "--max-pieces", "3"],
    }
    if after["source_changed"]:  # trained from uncommitted code (a working copy; CI tests a clean clone)
        with pytest.raises(reproduce.ReproductionError, match="not committed"):
            reproduce.reproduce(out)
    else:
        assert reproduce.reproduce(out, tmp_path / "reproduce") == {name: True for name in learned.MODEL_NAMES}

    # The training asset: it registers the shipped set, then trains a set on the same (cached) corpus and puts
    # each family through the gate: the shipped champions are re-scored on the new validation renders, and
    # the blocking checks fail the new versions (one validation piece in four conditions, fewer renders than
    # the 10 a score needs).
    import dagster as dg

    from pipeline_project.assets.training import analysis_models
    from pipeline_project.definitions import default_resources

    resources = default_resources(str(tmp_path / "data"))
    config = {"train": True, "max_pieces": 3, "steps": 2, "corpus_dir": str(tmp_path / "corpus")}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [analysis_models],
            resources=resources,
            instance=instance,
            raise_on_error=False,
            run_config={"ops": {"analysis_models": {"config": config}}},
        )
    assert not result.success  # a blocking check failed
    registry = resources["mlflow"].registry()
    shipped = learned.load()
    for name in learned.MODEL_NAMES:
        first, second = registry.versions(name)
        champion = registry.champion_version(name)
        assert (champion is not None and champion.version == first.version) == (name in shipped.promoted)
        assert second.tags["promotion"].startswith("failed blocking checks: test_split_has_10_rows")
        rescored = registry.client.get_run(second.run_id).data.metrics.get("champion_score_same_split")
        assert (rescored is not None) == (name in shipped.promoted)
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 3 and not any(c.passed for c in checks)
