import numpy as np

from pipeline_project.augmentation.chains import apply_chain, sample_chain
from pipeline_project.synthesis.arrangement import Arrangement, from_corpus, perform
from pipeline_project.synthesis.grooves import groove_only, with_rhythm_section
from pipeline_project.synthesis.render import available_soundfonts, bundled_soundfont, render


def test_fluidsynth_renders_every_stem_and_the_mix_is_their_sum():
    performance = perform(groove_only("rock", 2, seed=3), 120, seed=3)
    audio = render(performance)
    assert set(audio.stems) == {"drums", "bass", "other", "vocals"}
    assert np.abs(audio.stems["drums"]).max() > 0.05 and np.abs(audio.stems["bass"]).max() > 0.05
    assert np.allclose(audio.mix, sum(audio.stems.values()), atol=1e-6)
    assert np.abs(audio.mix).max() <= 10 ** (-1 / 20) + 1e-4


def test_note_labels_line_up_with_the_rendered_audio():
    groove = groove_only("rock", 3, seed=5)
    sparse = Arrangement(groove.name, groove.origin, groove.licence, groove.beats_per_bar, 0.0, groove.length_ql,
                         groove.key, [n for n in groove.notes if n.stem == "drums" and n.pitch == 38], groove.chords)
    performance = perform(sparse, 100, seed=5)  # jittered onsets: the labels must follow the jitter
    audio = render(performance)
    drums = np.abs(audio.stems["drums"].mean(axis=0))
    rate = audio.sample_rate
    threshold = 0.05 * drums.max()
    for note in performance.notes:
        start = int((note.onset - 0.05) * rate)
        first_loud = start + int(np.argmax(drums[start:start + int(0.1 * rate)] > threshold))
        assert -0.001 <= first_loud / rate - note.onset <= 0.01, f"hit at {first_loud / rate:.4f} s, label {note.onset:.4f} s"


def test_rendering_is_deterministic_from_the_seed():
    arrangement = groove_only("funk", 2, seed=9)
    first = render(perform(arrangement, 110, seed=9)).mix
    second = render(perform(arrangement, 110, seed=9)).mix
    other = render(perform(arrangement, 110, seed=10)).mix
    assert np.array_equal(first, second)
    assert not np.array_equal(first[: other.shape[0]], other[: first.shape[0]])


def test_corpus_score_gives_melody_harmony_and_chords():
    arrangement = with_rhythm_section(from_corpus("bach/bwv66.6", max_ql=8), "rock", seed=1)
    stems = {n.stem for n in arrangement.notes}
    assert stems == {"drums", "bass", "other", "vocals"}
    assert arrangement.key == "F#:minor"
    assert arrangement.chords and all(":" in label for _, _, label in arrangement.chords)


def test_bundled_soundfont_is_always_available():
    assert bundled_soundfont() in available_soundfonts() and bundled_soundfont().is_file()


def test_augmentation_rebuilds_bit_for_bit_from_its_record():
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((2, 44_100 * 2)) * 0.1).astype(np.float32)
    record = sample_chain(1234)
    once = apply_chain(audio, 44_100, record)
    again = apply_chain(audio, 44_100, record)
    assert np.array_equal(once, again)
    assert [s["name"] for s in record["steps"]] == ["room_reverb", "noise", "mic_eq", "compressor", "limiter"]
    assert not np.allclose(once, audio)
    assert np.abs(once).max() <= 1.0
