"""Music theory over an analysed song: Roman numerals with inversions and secondary dominants, harmonic
functions, named progressions, cadences with a strength, and how complex the harmony is.

Rhythm (syncopation, metric hierarchy, rhythmic complexity) lives in `analysis.rhythm`, genre cues in
`analysis.genre_cues`; `analyze_theory` gathers all of it for one song.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import numpy as np

from pipeline_project.analysis.frames import TRIAD_OF_SEVENTH
from pipeline_project.analysis.genre_cues import genre_cues
from pipeline_project.analysis.rhythm import (
    metric_hierarchy,
    rhythmic_complexity,
    syncopation_index,
)
from pipeline_project.pitches import PITCH_CLASS

TONIC, SUBDOMINANT, DOMINANT = "T", "S", "D"
FUNCTION_OF_DEGREE = {1: TONIC, 6: TONIC, 3: TONIC, 4: SUBDOMINANT, 2: SUBDOMINANT, 5: DOMINANT, 7: DOMINANT}
# Intervals above the root, as music21 names them, so chord tones get their proper spelling (E# not F).
CHORD_INTERVALS = {
    "maj": ("M3", "P5"),
    "min": ("m3", "P5"),
    "dim": ("m3", "d5"),
    "aug": ("M3", "A5"),
    "sus4": ("P4", "P5"),
    "7": ("M3", "P5", "m7"),
    "maj7": ("M3", "P5", "M7"),
    "min7": ("m3", "P5", "m7"),
    "hdim7": ("m3", "d5", "m7"),
    "dim7": ("m3", "d5", "d7"),
}
# The triad a seventh (or suspended) chord stands on, for diatonic membership and numeral case: a sus4 is
# read as major here, though the chord decoder keeps it a triad of its own.
TRIAD_OF = TRIAD_OF_SEVENTH | {"sus4": "maj"}
# Diatonic triads as (semitones above the tonic, quality); minor keys admit the raised-leading-tone V and vii.
DIATONIC = {
    "major": {(0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min"), (11, "dim")},
    "minor": {
        (0, "min"),
        (2, "dim"),
        (3, "maj"),
        (5, "min"),
        (7, "min"),
        (7, "maj"),
        (8, "maj"),
        (10, "maj"),
        (11, "dim"),
    },
}
# Common progressions, as chord runs in Roman numerals (case = quality). Matched on the collapsed chord
# sequence, transposition-free because the numerals are relative to the detected key.
NAMED_PROGRESSIONS = {
    "I-V-vi-IV (axis)": ("I", "V", "vi", "IV"),
    "vi-IV-I-V": ("vi", "IV", "I", "V"),
    "I-vi-IV-V (doo-wop)": ("I", "vi", "IV", "V"),
    "I-IV-V": ("I", "IV", "V"),
    "ii-V-I": ("ii", "V", "I"),
    "I-IV-I-V": ("I", "IV", "I", "V"),
    "IV-V-iii-vi (royal road)": ("IV", "V", "iii", "vi"),
    "Andalusian cadence": ("i", "VII", "VI", "V"),
    "i-VI-III-VII": ("i", "VI", "III", "VII"),
    "i-iv-v": ("i", "iv", "v"),
    "circle of fifths": ("vi", "ii", "V", "I"),
}
# 12-bar blues, one chord per bar.
TWELVE_BAR_BLUES = ("I", "I", "I", "I", "IV", "IV", "I", "I", "V", "IV", "I", "I")
MINOR_NUMERALS = ("i", "ii", "iii", "iv", "v", "vi", "vii")
MAJOR_NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII")


@lru_cache(maxsize=4096)
def roman_numeral(chord_label: str, tonic: str, mode: str, bass: str | None = None) -> tuple[str, int | None]:
    """('V', 5) for 'B:maj' in E minor; ('I6', 1) for 'C:maj' over an E bass in C major; ('N', None) for no
    chord. A bass note that is not a chord tone is ignored."""
    if chord_label in ("N", "") or ":" not in chord_label:
        return "N", None
    from music21 import chord, key, pitch, roman

    root_name, quality = chord_label.split(":", 1)
    root = pitch.Pitch(_music21_name(root_name) + "3")
    tones = [root] + [root.transpose(step) for step in CHORD_INTERVALS.get(quality, CHORD_INTERVALS["maj"])]
    if bass is not None:
        matching = [t for t in tones if t.pitchClass == PITCH_CLASS[bass]]
        if matching and matching[0] is not root:
            lowest = matching[0].transpose("-P8")
            tones = [lowest] + [t for t in tones if t is not matching[0]]
    numeral = roman.romanNumeralFromChord(chord.Chord(tones), key.Key(_music21_name(tonic), mode))
    return numeral.figure, int(numeral.scaleDegree) if numeral.scaleDegree else None


def _music21_name(name: str) -> str:
    """'Eb' -> 'E-' (music21 writes flats as '-')."""
    return name[0] + name[1:].replace("b", "-")


def _interval(chord_label: str, tonic: str) -> tuple[int, str] | None:
    if ":" not in chord_label:
        return None
    root, quality = chord_label.split(":", 1)
    return (PITCH_CLASS[root] - PITCH_CLASS[tonic]) % 12, TRIAD_OF.get(quality, quality)


def is_diatonic(chord_label: str, tonic: str, mode: str) -> bool:
    return _interval(chord_label, tonic) in DIATONIC[mode]


def simple_numeral(chord_label: str, tonic: str, mode: str) -> str:
    """The numeral without inversion or accidentals, case by quality, for matching progressions: 'V', 'vi', 'VII'."""
    interval = _interval(chord_label, tonic)
    if interval is None:
        return "N"
    semitones, quality = interval
    degree = {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 4, 7: 4, 8: 5, 9: 5, 10: 6, 11: 6}[semitones]
    return (MAJOR_NUMERALS if quality in ("maj", "aug") else MINOR_NUMERALS)[degree]


def secondary_dominant(chord_label: str, next_label: str, tonic: str, mode: str) -> str | None:
    """'V/V' when a major chord outside the key resolves down a fifth to a diatonic chord other than the
    tonic (D major to G major in C major), naming the chord it tonicizes."""
    here, there = _interval(chord_label, tonic), _interval(next_label, tonic)
    if here is None or there is None or here[1] != "maj" or here in DIATONIC[mode] or there not in DIATONIC[mode]:
        return None
    if (here[0] - there[0]) % 12 != 7 or there[0] == 0:
        return None
    return f"V/{simple_numeral(next_label, tonic, mode)}"


def chord_runs(chords: list[dict]) -> list[dict]:
    """Consecutive beats with the same chord merged: {chord, bass, start (beat index), beats}."""
    runs: list[dict] = []
    for index, entry in enumerate(chords):
        if runs and runs[-1]["chord"] == entry["chord"]:
            runs[-1]["beats"] += 1
        else:
            runs.append(
                {
                    "chord": entry["chord"],
                    "bass": entry.get("bass"),
                    "start": index,
                    "beats": 1,
                    "confidence": entry.get("confidence", 1.0),
                }
            )
    return runs


def key_at(local_keys: list[dict], time: float, tonic: str, mode: str) -> tuple[str, str]:
    """(tonic, mode) of the local key span holding `time`; the song's key where no span does."""
    for span in local_keys:
        if span["start"] <= time < span["end"]:
            return span["tonic"], span["mode"]
    return tonic, mode


def label_runs(runs: list[dict], tonic: str, mode: str, keys: list[tuple[str, str]] | None = None) -> list[dict]:
    """Each run with its figure (inversion included; secondary dominants as V/x), scale degree, function and
    whether it belongs to the key: the song's key, or with `keys` (one per run) the local key it sounds in,
    so numerals follow modulations."""
    labelled = []
    song_tonic, song_mode = tonic, mode
    for index, run in enumerate(runs):
        tonic, mode = keys[index] if keys else (song_tonic, song_mode)
        figure, degree = roman_numeral(run["chord"], tonic, mode, run["bass"])
        following = runs[index + 1]["chord"] if index + 1 < len(runs) else "N"
        applied = secondary_dominant(run["chord"], following, tonic, mode)
        function = "N" if degree is None else (DOMINANT if applied else FUNCTION_OF_DEGREE.get(degree, "?"))
        root_position = run["bass"] is None or run["bass"] == run["chord"].split(":")[0]
        labelled.append(
            run
            | {
                "key": f"{tonic} {mode}",
                "figure": applied or figure,
                "degree": degree,
                "function": function,
                "secondary": applied is not None,
                "diatonic": is_diatonic(run["chord"], tonic, mode),
                "root_position": root_position,
                "numeral": simple_numeral(run["chord"], tonic, mode),
            }
        )
    return labelled


def find_cadences(runs: list[dict], beats_per_bar: int = 4, downbeat_phase: int = 0) -> list[dict]:
    """Cadences between consecutive chord runs, each with a strength in 0..1.

    Perfect authentic: V to I, both in root position, arriving on a downbeat; imperfect authentic: any
    other V (or vii) to I; plagal: IV to I; deceptive: V to vi (VI in minor); half: a V held at least two
    beats that does not go to I. Strength rises with an arrival on the downbeat, a longer arrival chord,
    root position, a predominant (ii or IV) before the dominant, and the detector's chord confidences.
    """
    cadences = []
    for index in range(1, len(runs)):
        previous, current = runs[index - 1], runs[index]
        before, after = previous["degree"], current["degree"]
        if previous.get("secondary") or before is None:
            continue
        kind = None
        if before in (5, 7) and after == 1:
            perfect = (
                before == 5
                and previous["root_position"]
                and current["root_position"]
                and (current["start"] - downbeat_phase) % beats_per_bar == 0
            )
            kind = "perfect_authentic" if perfect else "imperfect_authentic"
        elif before == 4 and after == 1:
            kind = "plagal"
        elif before == 5 and after == 6:
            kind = "deceptive"
        elif before == 5 and previous["beats"] >= 2 and after != 1:
            kind = "half"
        if kind is None:
            continue
        arrival = previous if kind == "half" else current
        on_downbeat = (arrival["start"] - downbeat_phase) % beats_per_bar == 0
        prepared = index >= 2 and runs[index - 2]["degree"] in (2, 4)
        strength = (
            0.3 * on_downbeat
            + 0.2 * min(1.0, arrival["beats"] / beats_per_bar)
            + 0.15 * (previous["root_position"] and current["root_position"])
            + 0.15 * prepared
            + 0.2 * min(previous["confidence"], current["confidence"])
        )
        cadences.append(
            {
                "type": kind,
                "beat_index": current["start"],
                "to": current["figure"],
                "strength": round(float(strength), 3),
            }
        )
    return cadences


def _occurrences(sequence: list[str], pattern: tuple[str, ...]) -> list[int]:
    width = len(pattern)
    return [i for i in range(len(sequence) - width + 1) if tuple(sequence[i : i + width]) == pattern]


def find_progressions(runs: list[dict], bar_chords: list[str]) -> list[dict]:
    """Named progressions found in the chord runs (and the 12-bar blues in the chord of each bar), with
    how often each occurs and the beat index where it first does."""
    numerals = [r["numeral"] for r in runs]
    found = []
    for name, pattern in NAMED_PROGRESSIONS.items():
        hits = _occurrences(numerals, pattern)
        if hits:
            found.append({"name": name, "count": len(hits), "first_beat": runs[hits[0]]["start"]})
    blues = _occurrences(bar_chords, TWELVE_BAR_BLUES)
    if blues:
        found.append({"name": "12-bar blues", "count": len(blues), "first_bar": blues[0]})
    return sorted(found, key=lambda p: -p["count"])


def harmonic_complexity(runs: list[dict]) -> dict:
    """Transition entropy (bits) of chord-to-chord moves, chromaticism (share of beats on chords outside the
    key, secondary dominants included), chord vocabulary and changes per beat."""
    moves = Counter(
        (a["numeral"], b["numeral"]) for a, b in zip(runs, runs[1:]) if "N" not in (a["numeral"], b["numeral"])
    )
    total = sum(moves.values())
    entropy = -sum((n / total) * np.log2(n / total) for n in moves.values()) if total else 0.0
    beats = sum(r["beats"] for r in runs if r["chord"] != "N")
    outside = sum(r["beats"] for r in runs if r["chord"] != "N" and not r["diatonic"])
    return {
        "transition_entropy_bits": round(float(entropy), 4),
        "chromaticism": round(outside / beats, 4) if beats else 0.0,
        "chord_vocabulary": len({r["chord"] for r in runs if r["chord"] != "N"}),
        "changes_per_beat": round(max(0, len(runs) - 1) / max(1, beats), 4),
    }


def analyze_theory(analysis: dict) -> dict:
    tonic, mode = analysis["key_tonic"], analysis["key_mode"]
    bar = analysis.get("beats_per_bar", 4)
    phase = _downbeat_phase(analysis)
    runs = chord_runs(analysis["chords"])
    local_keys = analysis.get("local_keys") or []
    keys = [key_at(local_keys, analysis["chords"][run["start"]]["time"], tonic, mode) for run in runs]
    labelled = label_runs(runs, tonic, mode, keys)
    figures, functions, numerals = [], [], []
    for run in labelled:
        figures.extend([run["figure"]] * run["beats"])
        functions.extend([run["function"]] * run["beats"])
        numerals.extend([run["numeral"]] * run["beats"])
    counts = {name: functions.count(name) for name in (TONIC, SUBDOMINANT, DOMINANT)}
    total = max(1, sum(counts.values()))
    cadences = find_cadences(labelled, bar, phase)
    progressions = find_progressions(labelled, numerals[phase::bar])  # the chord at each downbeat
    complexity = harmonic_complexity(labelled)
    rhythm = {
        "syncopation_index": syncopation_index(analysis["onset_times"], analysis["beat_times"]),
        "metric_hierarchy": metric_hierarchy(
            analysis["onset_times"], analysis.get("onset_strengths"), analysis["beat_times"], bar, phase
        ),
        "rhythmic_complexity": rhythmic_complexity(analysis["onset_times"], analysis["beat_times"]),
    }
    return {
        "key": f"{tonic} {mode}",
        "local_keys": [f"{span['tonic']} {span['mode']} from {span['start']:.2f} s" for span in local_keys],
        "roman_numerals": figures,
        "progression": [r["figure"] for r in labelled],
        "functions": functions,
        "function_shares": {name: round(count / total, 4) for name, count in counts.items()},
        "secondary_dominants": sorted({r["figure"] for r in labelled if r["secondary"]}),
        "inversions": round(
            sum(r["beats"] for r in labelled if not r["root_position"] and r["chord"] != "N") / max(1, total), 4
        ),
        "cadences": cadences,
        "progressions": progressions,
        "harmonic_complexity": complexity,
        **rhythm,
        "genre_cues": genre_cues(analysis, complexity, rhythm, progressions),
    }


def _downbeat_phase(analysis: dict) -> int:
    """Index of the first downbeat in the beat list."""
    downbeats, beats = analysis.get("downbeat_times") or [], analysis["beat_times"]
    if not downbeats or not beats:
        return 0
    return int(np.argmin(np.abs(np.asarray(beats) - downbeats[0])))


def chord_timeline_markdown(analysis: dict, theory: dict, max_rows: int = 64) -> str:
    """The chord timeline as a markdown table: one row per chord change with its time, chord, Roman numeral
    and function in the song's key, and the section it falls in."""
    sections = analysis.get("sections", [])
    rows = ["| time | chord | Roman numeral | function | section |", "|---|---|---|---|---|"]
    previous = None
    for chord, figure, function in zip(analysis["chords"], theory["roman_numerals"], theory["functions"]):
        if chord["chord"] == previous:
            continue
        previous = chord["chord"]
        section = next((s["label"] for s in sections if s["start"] <= chord["time"] < s["end"]), "")
        minutes, seconds = divmod(chord["time"], 60)
        rows.append(f"| {int(minutes)}:{seconds:05.2f} | {chord['chord']} | {figure} | {function} | {section} |")
        if len(rows) - 2 >= max_rows:
            rows.append(f"| ... | ({len(analysis['chords'])} beats in all) | | | |")
            break
    return "\n".join(rows)
