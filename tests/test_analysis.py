import numpy as np
import pytest

from pipeline_project.analysis.drum_hits import features_at_onsets, isolated_hits
from pipeline_project.analysis.mir import MAJOR_PROFILE, analyze, estimate_key, find_meter
from pipeline_project.analysis.rhythm import metric_hierarchy, rhythmic_complexity, syncopation_index
from pipeline_project.analysis.theory import (
    analyze_theory,
    chord_runs,
    find_cadences,
    find_progressions,
    harmonic_complexity,
    label_runs,
    roman_numeral,
)
from pipeline_project.synthesis.arrangement import from_corpus
from pipeline_project.synthesis.grooves import groove_only, with_rhythm_section
from pipeline_project.synthesis.performance import STEADY_TEMPO, Humanization, perform
from pipeline_project.synthesis.render import render


@pytest.fixture(scope="module")
def rendered_chorale():
    # The whole chorale: its first phrases dwell on the dominant, so an excerpt has no single right key.
    arrangement = with_rhythm_section(from_corpus("bach/bwv45.7"), "rock", seed=2)
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
    assert result["time_signature"] == "4/4" and result["pulse_source"] == "drums"
    assert result["tempo_curve"] and all(abs(bpm - 110) < 6 for _, bpm in result["tempo_curve"])
    assert len(result["short_term_lufs"]) == int(result["duration_s"]) - 2 and result["loudness_range_lu"] >= 0
    assert all(
        0 <= result[name] <= 1 for name in ("tempo_confidence", "key_confidence", "meter_confidence", "tempo_stability")
    )


def test_beats_survive_an_arena_and_crowd_level_noise(rendered_chorale):
    # The concert chain at -5 dB SNR: librosa's default onset envelope loses the pulse here and its tempo
    # drifts to its 120 BPM prior; the band-weighted envelope keeps the drums' pulse.
    from pipeline_project.analysis.accuracy import score_analysis
    from pipeline_project.augmentation.chains import apply_chain, sample_chain
    from pipeline_project.resources import SeparatorResource

    performance, audio = rendered_chorale
    concert = apply_chain(audio.mix, audio.sample_rate, sample_chain(["concert"], seed=5, snr_db=-5.0)).audio
    result = analyze(SeparatorResource(weights="never").separate(concert, audio.sample_rate).stems, audio.sample_rate)
    assert result["tempo_bpm"] == pytest.approx(110, rel=0.04)
    assert score_analysis(result, performance.labels(), performance.duration)["beat_f"] > 0.8


def test_key_profile_recovers_a_rotated_major_profile():
    tonic, mode, confidence, _ = estimate_key(np.roll(MAJOR_PROFILE, 7))
    assert (tonic, mode) == ("G", "major") and confidence > 0.5


@pytest.mark.parametrize(
    "chord,tonic,mode,expected",
    [
        ("G:maj", "C", "major", "V"),
        ("A:min", "C", "major", "vi"),
        ("F:maj", "C", "major", "IV"),
        ("B:maj", "E", "minor", "V"),
        ("C#:maj", "F#", "minor", "V"),
        ("Eb:maj", "Bb", "major", "IV"),
        ("N", "C", "major", "N"),
        ("F##:dim7", "G#", "minor", "viio7"),  # a score's double sharp: the leading-tone chord of G# minor
    ],
)
def test_roman_numerals(chord, tonic, mode, expected):
    assert roman_numeral(chord, tonic, mode)[0] == expected


def _labelled(chords, tonic="C", mode="major", basses=None):
    basses = basses or [None] * len(chords)
    return label_runs(chord_runs([{"chord": c, "bass": b} for c, b in zip(chords, basses)]), tonic, mode)


def test_cadences_by_kind_with_strength():
    chords = [
        "C:maj",
        "F:maj",
        "G:maj",
        "C:maj",
        "G:maj",
        "A:min",
        "F:maj",
        "C:maj",
        "G:maj",
        "G:maj",
        "F:maj",
        "G:maj",
        "C:maj",
    ]
    basses = [None] * 11 + ["B", None]  # the last V in first inversion: imperfect
    cadences = find_cadences(_labelled(chords, basses=basses), beats_per_bar=1)
    assert [c["type"] for c in cadences] == ["perfect_authentic", "deceptive", "plagal", "half", "imperfect_authentic"]
    assert all(0.0 <= c["strength"] <= 1.0 for c in cadences)
    on_downbeat, off_downbeat = (
        find_cadences(_labelled(["D:min", "G:maj", "C:maj", "C:maj"]), beats_per_bar=4, downbeat_phase=p)[0]
        for p in (2, 0)
    )
    assert on_downbeat["strength"] > off_downbeat["strength"]


def test_inversions_and_secondary_dominants():
    runs = _labelled(["C:maj", "D:maj", "G:maj", "C:maj", "E:maj", "A:min"], basses=["E", None, None, "G", None, None])
    assert [r["figure"] for r in runs] == ["I6", "V/V", "V", "I64", "V/vi", "vi"]
    assert [r["function"] for r in runs] == ["T", "D", "D", "T", "D", "T"]


def test_named_progressions_and_blues():
    axis = _labelled(["C:maj", "G:maj", "A:min", "F:maj"] * 3)
    names = {p["name"]: p["count"] for p in find_progressions(axis, [])}
    assert names["I-V-vi-IV (axis)"] == 3
    andalusian = _labelled(["A:min", "G:maj", "F:maj", "E:maj"], tonic="A", mode="minor")
    assert "Andalusian cadence" in {p["name"] for p in find_progressions(andalusian, [])}
    blues = ["I", "I", "I", "I", "IV", "IV", "I", "I", "V", "IV", "I", "I"]
    assert "12-bar blues" in {p["name"] for p in find_progressions([], blues)}


def test_harmonic_complexity_grows_with_chromatic_and_varied_harmony():
    plain = harmonic_complexity(_labelled(["C:maj", "G:maj"] * 8))
    rich = harmonic_complexity(
        _labelled(["C:maj", "Eb:maj", "A:min", "D:maj", "F:min", "G:maj", "Db:maj", "E:maj"] * 2)
    )
    assert plain["chromaticism"] == 0.0 and rich["chromaticism"] > 0.3
    assert rich["transition_entropy_bits"] > plain["transition_entropy_bits"] + 1.5


def test_meter_and_metric_hierarchy():
    rng = np.random.default_rng(0)
    beats = 48
    for bar in (3, 4):
        accent = np.where(np.arange(beats) % bar == 1, 1.0, 0.0)  # downbeats on the second beat
        evidence = np.vstack([accent + 0.1 * rng.standard_normal(beats), accent + 0.1 * rng.standard_normal(beats)])
        meter = find_meter(evidence, np.array([0.0, 0.5] * 20))
        assert (meter["beats_per_bar"], meter["downbeat_phase"], meter["time_signature"]) == (bar, 1, f"{bar}/4")
        assert meter["confidence"] > 0.5
    compound = find_meter(
        np.vstack([np.where(np.arange(beats) % 2 == 0, 1.0, 0.0)] * 2), np.array([0.0, 1 / 3, 2 / 3] * 20)
    )
    assert compound["time_signature"] == "6/8"
    beat_times = list(np.arange(33) * 0.5)
    on_grid = metric_hierarchy(beat_times[:-1], [1.0 if i % 4 == 0 else 0.5 for i in range(32)], beat_times, 4)
    against = metric_hierarchy([t + 0.125 for t in beat_times[:-1]], None, beat_times, 4)
    assert on_grid["hierarchy_correlation"] > 0.5 > against["hierarchy_correlation"]
    straight = rhythmic_complexity(list(np.arange(64) * 0.25), beat_times)
    irregular = rhythmic_complexity(sorted(rng.choice(np.arange(128) * 0.125, 48, replace=False)), beat_times)
    assert irregular["complexity"] > straight["complexity"]


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
    assert theory["cadences"] and all(0.0 <= c["strength"] <= 1.0 for c in theory["cadences"])
    assert abs(sum(theory["genre_cues"]["genres"].values()) - 1.0) < 1e-3
    assert set(theory["harmonic_complexity"]) >= {"transition_entropy_bits", "chromaticism"}
    assert abs(sum(theory["function_shares"].values()) - 1.0) < 1e-3 or sum(theory["function_shares"].values()) == 0


def test_open_hihat_sustains_longer_than_closed():
    performance = perform(
        groove_only("rock", 4, seed=4),
        100,
        seed=4,
        humanization=Humanization(rubato_depth=0, final_ritardando=0, jitter_ms=0),
    )
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
        if reference and reference.endswith((":maj", ":min")):
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
    from pipeline_project.analysis.streaming import StemArrays, waveform_peaks
    from pipeline_project.analysis.theory import chord_timeline_markdown

    _, audio = rendered_chorale
    result = analyze(audio.stems, audio.sample_rate)
    assert result["sections"] and result["sections"][-1]["end"] == pytest.approx(result["duration_s"], abs=0.01)
    png = analysis_plot(waveform_peaks(StemArrays(audio.stems, audio.sample_rate)), result["duration_s"], result)
    assert png.startswith(b"\x89PNG") and len(png) < 200_000
    table = chord_timeline_markdown(result, analyze_theory(result))
    assert table.startswith("| time | chord | Roman numeral |") and table.count("\n") >= 4


def test_short_term_loudness_and_loudness_range_follow_a_level_step():
    from pipeline_project.audio.loudness import integrated_loudness, loudness_range, short_term_loudness

    rate = 44_100
    t = np.arange(20 * rate) / rate
    tone = 0.1 * np.sin(2 * np.pi * 997 * t)
    steady = np.vstack([tone, tone])
    stepped = steady * np.where(t < 10, 1.0, 10 ** (-10 / 20))
    short_term = short_term_loudness(steady, rate)
    assert len(short_term) == 18 and np.ptp(short_term) < 0.05
    assert short_term[0] == pytest.approx(integrated_loudness(steady, rate), abs=0.05)
    assert loudness_range(short_term) < 0.1
    assert loudness_range(short_term_loudness(stepped, rate)) == pytest.approx(10.0, abs=0.6)


@pytest.mark.parametrize("path", ["dsp", "learned"])
def test_no_beat_and_no_chord_but_n_inside_silence_or_the_hiss_around_the_music(rendered_chorale, path):
    """Twenty seconds of digital silence between two halves of a song (a gap between tracks), and four seconds of
    tape hiss at -60 dBFS before and after it: trackers carry their pulse and last chord on through both; the
    analysis must not."""
    from pipeline_project.analysis import learned

    _, audio = rendered_chorale
    rate, cut, gap, edge = audio.sample_rate, 12 * audio.sample_rate, 20.0, 4.0
    hiss = 10 ** (-60 / 20) * np.random.default_rng(3).standard_normal((2, int(edge * rate)))

    def quiet(name: str, stem: np.ndarray, seconds: float, sound: np.ndarray | None) -> np.ndarray:
        return (sound if name == "other" and sound is not None else np.zeros((2, int(seconds * rate)))).astype(
            stem.dtype
        )

    stems = {
        name: np.concatenate(
            [
                quiet(name, stem, edge, hiss),
                stem[:, :cut],
                quiet(name, stem, gap, None),
                stem[:, cut : cut + 12 * rate],
                quiet(name, stem, edge, hiss[:, ::-1]),
            ],
            axis=1,
        )
        for name, stem in audio.stems.items()
    }
    result = analyze(stems, rate, models=learned.load() if path == "learned" else None)
    start, end = edge + 12.0, edge + 12.0 + gap
    music_ends = end + 12.0
    silences = result["silences"]
    assert len(silences) == 3 and silences[0][0] == 0.0 and silences[0][1] == pytest.approx(edge, abs=0.1)
    assert silences[1] == pytest.approx([start, end], abs=0.1)
    assert silences[2][0] == pytest.approx(music_ends, abs=1.0) and silences[2][1] == result["duration_s"]
    assert not [t for t in result["beat_times"] if t < edge - 0.1 or start + 0.1 < t < end - 0.1]
    assert not [t for t in result["beat_times"] if t > silences[2][0] + 0.1]
    assert len([t for t in result["beat_times"] if end < t < music_ends]) > 10  # the pulse is found after the gap
    times = np.array([c["time"] for c in result["chords"]])
    for moment in [*np.arange(0.0, edge - 0.1, 0.25), *np.arange(start + 0.1, end - 0.1, 0.25)]:
        assert result["chords"][int(np.searchsorted(times, moment, side="right")) - 1]["chord"] == "N", moment


@pytest.mark.parametrize("path", ["dsp", "learned"])
def test_analysis_in_windows_from_stem_files_agrees_with_the_whole_song_at_once(
    rendered_chorale, tmp_path, monkeypatch, path
):
    """Long songs are analysed a window at a time from the stem files (memory stays flat); windows of 10 s
    here, against the whole song in memory: the beat network sees all the context it needs, loudness is
    metered across windows exactly, and the rest agrees where it matters."""
    import mir_eval
    import soundfile as sf

    from pipeline_project.analysis import learned, streaming

    _, audio = rendered_chorale
    models = learned.load() if path == "learned" else None
    whole = analyze(audio.stems, audio.sample_rate, models=models)
    for name, stem in audio.stems.items():
        sf.write(tmp_path / f"{name}.flac", stem.T, audio.sample_rate, subtype="PCM_24")
    monkeypatch.setattr(streaming, "WINDOW", 2 * streaming.ALIGN)
    assert whole["duration_s"] > 3 * 2 * streaming.ALIGN / streaming.ANALYSIS_RATE  # at least four windows
    with streaming.StemFiles(tmp_path, tuple(audio.stems)) as stems:
        windowed = analyze(stems, models=models)

    assert windowed["duration_s"] == whole["duration_s"]
    assert windowed["loudness_lufs"] == pytest.approx(whole["loudness_lufs"], abs=0.01)
    assert np.allclose(windowed["short_term_lufs"], whole["short_term_lufs"], atol=0.11)
    assert (windowed["key_tonic"], windowed["key_mode"]) == (whole["key_tonic"], whole["key_mode"])
    assert windowed["tempo_bpm"] == pytest.approx(whole["tempo_bpm"], rel=0.02)
    if path == "learned":  # the same activations, so the same beats
        assert np.allclose(windowed["beat_times"], whole["beat_times"], atol=0.011)
    else:  # band weights and noise floors are measured per window
        assert mir_eval.beat.f_measure(np.array(whole["beat_times"]), np.array(windowed["beat_times"])) > 0.9
    same = [a["chord"] == b["chord"] for a, b in zip(whole["chords"], windowed["chords"])]
    assert len(windowed["chords"]) == len(whole["chords"]) and np.mean(same) > 0.9


def test_loudness_metered_block_by_block_equals_the_whole_at_once():
    from pipeline_project.audio.loudness import KWeightedSteps, integrated_loudness, integrated_loudness_of_steps

    rate = 44_100
    audio = (np.random.default_rng(3).standard_normal((2, rate * 7)) * 0.1).astype(np.float32)
    audio[:, rate * 3 : rate * 4] *= 0.01
    meter = KWeightedSteps(rate, 2)
    for start in range(0, audio.shape[1], 12_345):  # blocks that split the 100 ms steps anywhere
        meter.push(audio[:, start : start + 12_345])
    assert len(meter.energies()) == 70
    assert integrated_loudness_of_steps(meter.energies()) == pytest.approx(integrated_loudness(audio, rate), abs=1e-9)


def test_novelty_from_the_band_of_the_self_similarity_matrix_equals_the_whole_matrix():
    from pipeline_project.analysis import sections

    features = np.random.default_rng(4).standard_normal((25, 300))
    normed = features / (np.linalg.norm(features, axis=0, keepdims=True) + 1e-9)
    similarity = np.pad(normed.T @ normed, sections.KERNEL_BEATS, mode="edge")
    kernel = sections._checkerboard(sections.KERNEL_BEATS)
    size = 2 * sections.KERNEL_BEATS
    expected = np.clip([np.sum(kernel * similarity[i : i + size, i : i + size]) for i in range(300)], 0.0, None)
    assert np.allclose(sections.novelty(features), expected)


def test_the_plot_of_a_three_hour_song_leaves_out_what_would_cover_it():
    from pipeline_project.analysis.plots import analysis_plot

    duration = 3 * 3600.0
    beats = np.arange(0.5, duration, 0.5).tolist()
    sections = [
        {"start": float(s), "end": float(s + 6), "label": "AB"[i % 2], "confidence": 1.0}
        for i, s in enumerate(np.arange(0, duration, 6))
    ]
    analysis = {"tempo_bpm": 120.0, "key_tonic": "C", "key_mode": "major", "beat_times": beats, "sections": sections}
    png = analysis_plot(np.abs(np.sin(np.arange(2000))), duration, analysis)
    assert png.startswith(b"\x89PNG") and len(png) < 200_000
