import numpy as np
import pytest

from pipeline_project.analysis.drum_hits import features_at_onsets, isolated_hits
from pipeline_project.analysis.mir import analyze, estimate_key, MAJOR_PROFILE
from pipeline_project.analysis.theory import analyze_theory, find_cadences, roman_numeral, syncopation_index, _collapse
from pipeline_project.synthesis.arrangement import from_corpus
from pipeline_project.synthesis.grooves import groove_only, with_rhythm_section
from pipeline_project.synthesis.performance import STEADY_TEMPO, Humanization, perform
from pipeline_project.synthesis.render import render


@pytest.fixture(scope="module")
def rendered_chorale():
    arrangement = with_rhythm_section(from_corpus("bach/bwv86.6", max_ql=24), "rock", seed=2)
    performance = perform(arrangement, 110, seed=2, humanization=STEADY_TEMPO)
    return performance, render(performance)


def test_analysis_of_rendered_stems_finds_tempo_and_key(rendered_chorale):
    performance, audio = rendered_chorale
    result = analyze(audio.stems, audio.sample_rate)
    assert result["tempo_bpm"] == pytest.approx(110, rel=0.05)
    assert f"{result['key_tonic']}:{result['key_mode']}" == "E:major"
    assert 0 <= result["key_confidence"] <= 1
    assert len(result["chords"]) == len(result["beat_times"]) > 10
    assert -40 < result["loudness_lufs"] < 0


def test_key_profile_recovers_a_rotated_major_profile():
    tonic, mode, confidence, _ = estimate_key(np.roll(MAJOR_PROFILE, 7))
    assert (tonic, mode) == ("G", "major") and confidence > 0.5


@pytest.mark.parametrize("chord,tonic,mode,expected", [
    ("G:maj", "C", "major", "V"), ("A:min", "C", "major", "vi"), ("F:maj", "C", "major", "IV"),
    ("B:maj", "E", "minor", "V"), ("C#:maj", "F#", "minor", "V"), ("Eb:maj", "Bb", "major", "IV"), ("N", "C", "major", "N"),
])
def test_roman_numerals(chord, tonic, mode, expected):
    assert roman_numeral(chord, tonic, mode)[0] == expected


def test_cadences():
    sequence = [roman_numeral(c, "C", "major") for c in ["C:maj", "F:maj", "G:maj", "C:maj", "G:maj", "A:min", "F:maj", "C:maj", "G:maj", "G:maj", "F:maj"]]
    kinds = [c["type"] for c in find_cadences(_collapse(sequence))]
    assert kinds == ["authentic", "deceptive", "plagal", "half"]


def test_syncopation_index_is_higher_off_the_beat():
    beats = [i * 0.5 for i in range(9)]
    on_beat = syncopation_index(beats[:-1], beats)
    off_beat = syncopation_index([b + 0.25 for b in beats[:-1]], beats)
    assert on_beat == 0.0 and off_beat == 0.5


def test_theory_output_shape(rendered_chorale):
    _, audio = rendered_chorale
    theory = analyze_theory(analyze(audio.stems, audio.sample_rate))
    assert len(theory["roman_numerals"]) == len(theory["functions"])
    assert 0.0 <= theory["syncopation_index"] <= 1.0
    assert abs(sum(theory["function_shares"].values()) - 1.0) < 1e-3 or sum(theory["function_shares"].values()) == 0


def test_open_hihat_sustains_longer_than_closed():
    performance = perform(groove_only("rock", 4, seed=4), 100, seed=4,
                          humanization=Humanization(rubato_depth=0, final_ritardando=0, jitter_ms=0))
    audio = render(performance)
    notes = [n.to_dict() for n in performance.notes if n.stem == "drums"]
    hits = isolated_hits(notes)
    rows = features_at_onsets(audio.stems["drums"].mean(axis=0), audio.sample_rate, [t for t, _ in hits])
    by_class = {}
    for (_, label), row in zip(hits, rows):
        by_class.setdefault(label, []).append(row)
    assert {"kick", "snare", "closed_hihat", "open_hihat"} <= set(by_class)
    sustain = {k: np.median([r["SustainMs"] for r in v]) for k, v in by_class.items()}
    sizzle = {k: np.median([r["SizzleE"] for r in v]) for k, v in by_class.items()}
    assert sustain["open_hihat"] > sustain["closed_hihat"]
    assert sizzle["closed_hihat"] > sizzle["kick"]
    assert all(r["GeoMean"] == pytest.approx(np.sqrt(r["BodyE"] * r["SizzleE"]), rel=1e-3, abs=1e-3) for r in rows)


def test_chords_per_beat_match_the_score(rendered_chorale):
    """Each beat's chord describes the audio from that beat on (not the beat before)."""
    performance, audio = rendered_chorale
    result = analyze(audio.stems, audio.sample_rate)
    matches = []
    for chord in result["chords"]:
        probe = chord["time"] + 0.05
        reference = next((label for start, end, label in performance.chords if start <= probe < end), None)
        if reference and reference.split(":")[1] in ("maj", "min"):
            matches.append(reference == chord["chord"])
    assert len(matches) >= 10 and np.mean(matches) >= 0.6


def test_sections_find_a_change_and_a_return():
    from pipeline_project.analysis.sections import find_sections

    rng = np.random.default_rng(0)
    a, b = rng.random(20), rng.random(20)
    features = np.hstack([np.tile(a[:, None], 32), np.tile(b[:, None], 32), np.tile(a[:, None], 32)])
    features += rng.random(features.shape) * 0.05
    beat_times = list(np.arange(96) * 0.5)
    sections = find_sections(features, beat_times, 48.0)
    assert [s["label"] for s in sections] == ["A", "B", "A"]
    assert abs(sections[1]["start"] - 16.0) <= 1.0 and abs(sections[2]["start"] - 32.0) <= 1.0
    assert sections[0]["start"] == 0.0 and sections[-1]["end"] == 48.0


def test_analysis_has_sections_and_a_plot_and_a_chord_table(rendered_chorale):
    from pipeline_project.analysis.plots import analysis_plot
    from pipeline_project.analysis.theory import chord_timeline_markdown

    _, audio = rendered_chorale
    result = analyze(audio.stems, audio.sample_rate)
    assert result["sections"] and result["sections"][-1]["end"] == pytest.approx(result["duration_s"], abs=0.01)
    png = analysis_plot(audio.mix, audio.sample_rate, result)
    assert png.startswith(b"\x89PNG") and len(png) < 200_000
    table = chord_timeline_markdown(result, analyze_theory(result))
    assert table.startswith("| time | chord | Roman numeral |") and table.count("\n") >= 4
