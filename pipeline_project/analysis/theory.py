"""Music theory over an analysed song: Roman numerals in the detected key, harmonic functions, cadences,
and a syncopation index of the onsets against the beat grid."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

TONIC, SUBDOMINANT, DOMINANT = "T", "S", "D"
FUNCTION_OF_DEGREE = {1: TONIC, 6: TONIC, 3: TONIC, 4: SUBDOMINANT, 2: SUBDOMINANT, 5: DOMINANT, 7: DOMINANT}
# Intervals above the root, as music21 names them, so chord tones get their proper spelling (E# not F).
CHORD_INTERVALS = {"maj": ("M3", "P5"), "min": ("m3", "P5"), "dim": ("m3", "d5"), "aug": ("M3", "A5")}


@lru_cache(maxsize=4096)
def roman_numeral(chord_label: str, tonic: str, mode: str) -> tuple[str, int | None]:
    """('V', 5) for 'B:maj' in E minor; ('N', None) for no chord."""
    if chord_label in ("N", "") or ":" not in chord_label:
        return "N", None
    from music21 import chord, key, pitch, roman

    root_name, quality = chord_label.split(":", 1)
    root = pitch.Pitch(_music21_name(root_name) + "3")
    tones = [root] + [root.transpose(step) for step in CHORD_INTERVALS.get(quality, CHORD_INTERVALS["maj"])]
    numeral = roman.romanNumeralFromChord(chord.Chord(tones), key.Key(_music21_name(tonic), mode))
    return numeral.figure, int(numeral.scaleDegree) if numeral.scaleDegree else None


def _music21_name(name: str) -> str:
    """'Eb' -> 'E-' (music21 writes flats as '-')."""
    return name[0] + name[1:].replace("b", "-")


def _collapse(sequence: list[tuple[str, int | None]]) -> list[tuple[str, int | None, int, int]]:
    """Consecutive repeats merged: (figure, degree, first beat index, length in beats)."""
    runs: list[tuple[str, int | None, int, int]] = []
    for index, (figure, degree) in enumerate(sequence):
        if runs and runs[-1][0] == figure:
            f, d, start, length = runs[-1]
            runs[-1] = (f, d, start, length + 1)
        else:
            runs.append((figure, degree, index, 1))
    return runs


def find_cadences(runs: list[tuple[str, int | None, int, int]]) -> list[dict]:
    """Authentic (V-I), plagal (IV-I), deceptive (V-vi) and half (a held V not resolving to I) cadences."""
    cadences = []
    for previous, current in zip(runs, runs[1:]):
        _, prev_degree, _, prev_length = previous
        figure, degree, start, _ = current
        kind = None
        if prev_degree == 5 and degree == 1:
            kind = "authentic"
        elif prev_degree == 4 and degree == 1:
            kind = "plagal"
        elif prev_degree == 5 and degree == 6:
            kind = "deceptive"
        elif prev_degree == 5 and prev_length >= 2 and degree != 1:
            kind = "half"
        if kind:
            cadences.append({"type": kind, "beat_index": start, "to": figure})
    return cadences


def syncopation_index(onset_times: list[float], beat_times: list[float]) -> float:
    """Mean metric weight of onsets: 0 on the beat, 0.5 on the off-beat eighth, 1 on sixteenth positions."""
    beats = np.asarray(beat_times)
    if len(beats) < 2 or not onset_times:
        return 0.0
    weights = []
    for onset in onset_times:
        index = np.searchsorted(beats, onset) - 1
        if index < 0 or index >= len(beats) - 1:
            continue
        phase = (onset - beats[index]) / (beats[index + 1] - beats[index])
        position = round(phase * 4) % 4  # nearest sixteenth within the beat
        weights.append({0: 0.0, 2: 0.5}.get(position, 1.0))
    return round(float(np.mean(weights)), 4) if weights else 0.0


def analyze_theory(analysis: dict) -> dict:
    tonic, mode = analysis["key_tonic"], analysis["key_mode"]
    sequence = [roman_numeral(c["chord"], tonic, mode) for c in analysis["chords"]]
    runs = _collapse(sequence)
    functions = [FUNCTION_OF_DEGREE.get(degree, "?") if degree else "N" for _, degree in sequence]
    counts = {name: functions.count(name) for name in (TONIC, SUBDOMINANT, DOMINANT)}
    total = max(1, sum(counts.values()))
    return {
        "key": f"{tonic} {mode}",
        "roman_numerals": [figure for figure, _ in sequence],
        "progression": [figure for figure, _, _, _ in runs],
        "functions": functions,
        "function_shares": {name: round(count / total, 4) for name, count in counts.items()},
        "cadences": find_cadences(runs),
        "syncopation_index": syncopation_index(analysis["onset_times"], analysis["beat_times"]),
    }


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
