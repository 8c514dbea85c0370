import json
import shutil

import numpy as np
import pytest

from pipeline_project.augmentation.chains import (
    CONCERT_SNRS_DB,
    NOISE_KINDS,
    SNR_CHOICES_DB,
    NoisePool,
    apply_chain,
    sample_chain,
)
from pipeline_project.synthesis.arrangement import Arrangement, ScoreNote, from_corpus
from pipeline_project.synthesis.examples import all_sources, example_specs, rebuild_example, render_example
from pipeline_project.synthesis.grooves import GROOVE_STYLES, PROGRESSIONS, groove_only, with_rhythm_section
from pipeline_project.synthesis.instruments import FAMILY_OF_PROGRAM, family_of
from pipeline_project.synthesis.performance import Humanization, perform, stretch_labels
from pipeline_project.synthesis.render import available_soundfonts, bundled_soundfont, render, soundfont_presets

RATE = 44_100


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """Every SoundFont on this machine plus a second copy of the bundled one under a user's name, so at
    least two SoundFonts are always in play."""
    user_dir = tmp_path_factory.mktemp("soundfonts")
    shutil.copy(bundled_soundfont(), user_dir / "UserKit.sf2")
    return available_soundfonts(user_dir)


def onsets_in(audio: np.ndarray, rate: int, threshold_ratio: float = 0.1, refractory_s: float = 0.08) -> np.ndarray:
    """Times where the amplitude envelope first rises above a fraction of its peak (after a quiet gap)."""
    envelope = np.abs(audio).max(axis=0) if audio.ndim == 2 else np.abs(audio)
    above = envelope > threshold_ratio * envelope.max()
    found, last = [], -np.inf
    for index in np.flatnonzero(above[1:] & ~above[:-1]) + 1:
        if index - last > refractory_s * rate:
            found.append(index / rate)
        last = index
    return np.array(found)


def test_click_track_labels_stay_within_5_ms_through_rubato_jitter_and_time_stretch():
    clicks = [ScoreNote(float(q), 0.25, 76, 110, "drums", articulation="click") for q in np.arange(0, 24, 1.0)]
    score = Arrangement("clicks", "test", "CC0", 4, 0.0, 24.0, "C:major", clicks, [(0.0, 24.0, "C:maj")])
    human = Humanization(rubato_depth=0.08, final_ritardando=0.15, jitter_ms=12.0, accent=0, dynamic_shape="flat")
    performance = perform(score, 110, seed=3, humanization=human)
    spacing = np.diff([n.onset for n in performance.notes])
    assert spacing.std() > 0.01, "rubato and jitter must actually move the clicks"
    mix = render(performance).mix
    for presets, seed in ((["stretch"], 1), (["stretch"], 2)):
        record = sample_chain(presets, seed)
        augmented = apply_chain(mix, RATE, record)
        assert augmented.time_scale != 1.0
        labels = stretch_labels(performance.labels(), augmented.time_scale, augmented.tuning_cents)
        detected = onsets_in(augmented.audio, RATE)
        labelled = np.array([n["onset"] for n in labels["notes"]])
        assert len(detected) == len(labelled)
        errors_ms = np.abs(detected[:, None] - labelled[None, :]).min(axis=0) * 1000
        assert errors_ms.max() <= 5.0, f"worst label is {errors_ms.max():.2f} ms off (rate {augmented.time_scale})"


@pytest.mark.parametrize("snr_db", sorted(set(CONCERT_SNRS_DB) | set(SNR_CHOICES_DB)))
def test_noise_lands_within_half_a_db_of_each_preset_snr(snr_db):
    rng = np.random.default_rng(0)
    signal = (rng.standard_normal((2, RATE * 4)) * 0.1 * np.sin(np.linspace(0, 20, RATE * 4)) ** 2).astype(np.float32)
    pool = NoisePool({f"clip{i}": (rng.standard_normal((2, RATE)) * 0.2).astype(np.float32) for i in range(4)})
    for kind in NOISE_KINDS:
        step = next(s for s in sample_chain(["noise"], 11, pool.ids())["steps"] if s["name"] == "noise")
        if kind in ("babble", "crowd") and "clips" not in step:
            step["clips"] = [[c, 0.3, 0.8] for c in pool.ids()]
        step.update(kind=kind, snr_db=snr_db)
        noisy = apply_chain(signal, RATE, {"seed": 11, "presets": ["noise"], "steps": [step]}, pool).audio
        noise = noisy.astype(np.float64) - signal
        measured = 10 * np.log10(np.mean(signal.astype(np.float64) ** 2) / np.mean(noise**2))
        assert abs(measured - snr_db) <= 0.5, f"{kind} noise at {snr_db} dB measured {measured:.2f} dB"


def test_crowd_in_the_concert_chain_lands_at_its_snr_over_the_reverberant_music():
    rng = np.random.default_rng(3)
    music = (rng.standard_normal((2, RATE * 6)) * 0.1).astype(np.float32)
    pool = NoisePool({f"clip{i}": (rng.standard_normal((2, RATE * 2)) * 0.2).astype(np.float32) for i in range(5)})
    record = sample_chain(["concert"], 8, pool.ids())
    before_noise = [s for s in record["steps"] if s["name"] in ("eq", "room")]
    up_to_noise = [s for s in record["steps"] if s["name"] != "limiter"]
    reverberant = apply_chain(music, RATE, {**record, "steps": before_noise}, pool).audio.astype(np.float64)
    noisy = apply_chain(music, RATE, {**record, "steps": up_to_noise}, pool).audio.astype(np.float64)
    measured = 10 * np.log10(np.mean(reverberant**2) / np.mean((noisy - reverberant) ** 2))
    assert abs(measured - record["steps"][2]["snr_db"]) <= 0.5


def test_concert_preset_draws_its_snr_from_the_concert_set_and_uses_an_arena():
    for seed in range(8):
        steps = {s["name"]: s for s in sample_chain(["concert"], seed, ["a", "b"])["steps"]}
        assert steps["noise"]["snr_db"] in CONCERT_SNRS_DB and steps["noise"]["kind"] == "crowd"
        assert steps["room"]["room"]["room_type"] == "arena" and 1.8 <= steps["room"]["room"]["rt60_s"] <= 2.5
        assert steps["eq"]["preset"] == "pa" and "limiter" in steps
        assert 5.0 <= steps["room"]["room"]["directivity_q"] <= 15.0


def test_a_directional_source_lowers_the_reverberation_by_its_directivity():
    from pipeline_project.augmentation.rooms import impulse_response, sample_room

    room = sample_room("hall", np.random.default_rng(3))
    after_direct = int(0.002 * 44_100)
    omni, directional = (impulse_response(room | extra, 44_100) for extra in ({}, {"directivity_q": 10.0}))
    assert np.array_equal(omni[:, :after_direct], directional[:, :after_direct])  # the direct sound is untouched
    ratio = np.sum(directional[:, after_direct:] ** 2) / np.sum(omni[:, after_direct:] ** 2)
    assert ratio == pytest.approx(0.1, rel=1e-3)


def test_twenty_examples_rebuild_bit_for_bit_from_their_records(catalog):
    presets = soundfont_presets(catalog)
    specs = example_specs(all_sources(), seed=5, renderings_per_source=1, score_bars=1, groove_bars=1)[:20]
    combos = [["room", "noise", "mic", "dynamics"], ["concert", "codec"], ["stretch", "phone"], ["room", "distortion"]]
    first = []
    for index, spec in enumerate(specs):
        example = render_example(spec, catalog, presets)
        chain = sample_chain(combos[index % len(combos)], 100 + index)
        record = json.loads(json.dumps({"labels": example.labels(), "chain": chain}))  # as stored on disk
        first.append((record, example.audio.mix, apply_chain(example.audio.mix, RATE, chain).audio))
    for record, mix, augmented in reversed(first):  # reverse order: no state may leak between renders
        again = rebuild_example(record["labels"], catalog)
        assert np.array_equal(again.audio.mix, mix)
        assert np.array_equal(apply_chain(again.audio.mix, RATE, record["chain"]).audio, augmented)


def test_two_hundred_examples_keep_every_part_in_its_instrument_family(catalog):
    presets = soundfont_presets(catalog)
    sources = all_sources()
    per_source = -(-200 // len(sources))
    specs = example_specs(sources, seed=9, renderings_per_source=per_source, score_bars=1, groove_bars=1)
    assert len(specs) >= 200
    programs_by_family, soundfonts = {}, set()
    for spec in specs:
        example = render_example(spec, catalog, presets)
        written = {p.name: p for p in example.arrangement.parts()}
        for part, voice in example.performance.voices.items():
            assert voice.family == family_of(written[part].program, written[part].is_drum)
            if voice.bank == 128:
                assert voice.program in (0, 8, 16, 32, 40)
            else:
                assert FAMILY_OF_PROGRAM[voice.program] == family_of(written[part].program)
            assert (voice.bank, voice.program) in presets[voice.soundfont]
            programs_by_family.setdefault(voice.family, set()).add(voice.program)
            soundfonts.add(voice.soundfont)
        assert {n.program for n in example.performance.notes if not n.is_drum} <= {
            v.program for v in example.performance.voices.values()
        }
    assert len(programs_by_family["piano"]) > 1 and len(programs_by_family["bass"]) > 1, (
        "same-family randomization varies the sound"
    )
    assert len(soundfonts) >= 2


def test_stems_are_loudness_normalized_and_sum_to_the_limited_mix(catalog):
    import pyloudnorm

    performance = perform(with_rhythm_section(from_corpus("bach/bwv66.6", max_ql=16), "rock", seed=1), 110, seed=1)
    audio = render(performance, catalog)
    assert set(audio.stems) == {"drums", "bass", "other", "vocals"}
    assert np.allclose(audio.mix, sum(audio.stems.values()), atol=1e-6)
    assert np.abs(audio.mix).max() <= 10 ** (-1 / 20) + 1e-3
    meter = pyloudnorm.Meter(RATE)
    loudness = {s: meter.integrated_loudness(a.T.astype(np.float64)) for s, a in audio.stems.items()}
    gaps = [loudness[s] - audio.stem_loudness_lufs[s] for s in loudness]
    assert max(gaps) <= 0.2 and min(gaps) >= audio.limiter_gain_db - 0.5


def test_performance_labels_cover_the_issue_list():
    arrangement = with_rhythm_section(from_corpus("bach/bwv366.krn", max_ql=8), "funk", seed=2)
    labels = perform(arrangement, 100, seed=2).labels()
    assert labels["kern"].startswith("!!") or "**kern" in labels["kern"]
    assert {"notes", "beats", "downbeats", "time_signature", "tempo_curve", "key", "chords", "drum_hits"} <= set(labels)
    note = labels["notes"][0]
    assert {"onset", "offset", "pitch", "velocity", "program", "stem", "soundfont"} <= set(note)
    assert {"ghost_snare", "half_open_hihat"} & {h["articulation"] for h in labels["drum_hits"]}
    assert max(abs(c) for c in labels["detune_cents"].values()) <= 10


def test_groove_library_covers_meters_articulations_and_progressions():
    meters = {"{}/{}".format(*style["meter"]) for style in GROOVE_STYLES.values()}
    assert {"4/4", "3/4", "6/8", "12/8", "5/4"} <= meters
    articulations = set()
    for style in GROOVE_STYLES:
        arrangement = groove_only(style, 4, seed=1, key="A:minor", progression="andalusian")
        articulations |= {n.articulation for n in arrangement.notes if n.stem == "drums"}
        bass = [n for n in arrangement.notes if n.stem == "bass"]
        assert bass and all(n.start_ql < arrangement.length_ql for n in bass)
    assert {
        "closed_hihat",
        "open_hihat",
        "half_open_hihat",
        "pedal_hihat",
        "ghost_snare",
        "flam_snare",
        "crash",
        "ride",
        "choke",
        "flam_grace",
    } <= articulations


def test_a_grooves_key_is_the_one_its_progression_comes_home_to():
    for progression in PROGRESSIONS:
        for asked in ("A:minor", "D:major"):
            arrangement = groove_only("rock", 4, seed=1, key=asked, progression=progression)
            tonic, mode = arrangement.key.split(":")
            assert f"{tonic}:{mode[:3]}" in {label for _, _, label in arrangement.chords}, (progression, asked)
    andalusian = groove_only("rock", 4, seed=1, key="A:minor", progression="andalusian")
    assert andalusian.key == "F#:minor" and andalusian.chords[0][2] == "F#:min"
    assert groove_only("rock", 4, seed=1, key="A:minor", progression="I-IV-V-I").key == "A:major"


def test_velocity_curves_follow_the_dynamic_level():
    arrangement = groove_only("rock", 4, seed=1)
    soft = perform(arrangement, 100, seed=1, humanization=Humanization(dynamic_level="pp"))
    loud = perform(arrangement, 100, seed=1, humanization=Humanization(dynamic_level="ff"))
    assert np.mean([n.velocity for n in loud.notes]) > np.mean([n.velocity for n in soft.notes]) + 30
    with pytest.raises(ValueError):
        Humanization(detune_cents=25)


def test_user_midi_files_are_sources_with_their_own_instruments(tmp_path, catalog):
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    piano, bass = pretty_midi.Instrument(program=4), pretty_midi.Instrument(program=34)
    for i, pitch in enumerate([60, 64, 67, 72]):
        piano.notes.append(pretty_midi.Note(90, pitch, i * 0.5, i * 0.5 + 0.45))
        bass.notes.append(pretty_midi.Note(90, 36, i * 0.5, i * 0.5 + 0.45))
    midi.instruments += [piano, bass]
    midi.write(str(tmp_path / "my tune.mid"))
    (tmp_path / "broken.krn").write_text("this is not kern")
    sources = [s for s in all_sources(tmp_path) if s.kind == "user"]
    assert {s.format for s in sources} == {"midi", "kern"} and all(s.source_id.startswith("user:") for s in sources)
    midi_source = next(s for s in sources if s.format == "midi")
    spec = example_specs([midi_source], seed=1)[0]
    example = render_example(spec, catalog, soundfont_presets(catalog))
    families = {v.family for v in example.performance.voices.values()}
    assert {"piano", "bass", "drum_kit"} <= families
    assert "my tune" not in spec.example_key


def test_augmentation_presets_are_recorded_and_keep_the_audio_musical():
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((2, RATE * 2)) * 0.1).astype(np.float32)
    for presets in (["room"], ["phone"], ["distortion", "codec"], ["mic", "dynamics"]):
        record = sample_chain(presets, 1234)
        out = apply_chain(audio, RATE, record).audio
        assert out.shape == audio.shape and np.isfinite(out).all() and np.abs(out).max() <= 1.0
        assert not np.allclose(out, audio)
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        sample_chain(["reverb"], 1)


def test_examples_rendered_in_two_processes_are_the_ones_rendered_in_one(catalog, tmp_path):
    from pipeline_project.parallel import map_in_processes
    from pipeline_project.synthesis.examples import render_to_folder

    presets = soundfont_presets(catalog)
    specs = example_specs(all_sources(), seed=9, renderings_per_source=1, score_bars=1, groove_bars=1)[:4]
    entries = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        entries[workers] = list(
            map_in_processes(render_to_folder, [(spec, catalog, presets, out) for spec in specs], workers)
        )
    assert entries[1] == entries[2] and [e["example_key"] for e in entries[1]] == [s.example_key for s in specs]
    for spec in specs:
        for name in ("mix.flac", "labels.json"):
            one, two = (tmp_path / f"workers{w}" / spec.example_key / name for w in (1, 2))
            assert one.read_bytes() == two.read_bytes(), (spec.example_key, name)
