"""Genre cues: musical traits that point toward genres, each with how strongly it is present, and a
confidence per genre from the cues that vote for it.

These are explainable hints for browsing and for weak labels, not a classifier: the genre classifier is
trained on the datasets (see `training`). A cue's strength is in 0..1; a genre's confidence is its share of
the votes, with a small floor so that no genre is ever certain from cues alone.
"""

from __future__ import annotations

from pipeline_project.analysis.rhythm import swing_ratio

GENRES = ("pop", "rock", "funk", "disco", "jazz", "blues", "folk", "ballad", "classical")
VOTE_FLOOR = 0.05


def _ramp(value: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, linear between."""
    return float(min(1.0, max(0.0, (value - low) / (high - low))))


def genre_cues(analysis: dict, complexity: dict, rhythm: dict, progressions: list[dict]) -> dict:
    tempo = float(analysis["tempo_bpm"])
    signature = analysis.get("time_signature", "4/4")
    names = {p["name"] for p in progressions}
    swing = swing_ratio(analysis["onset_times"], analysis["beat_times"])
    cues = [
        ("triple metre", 1.0 if signature == "3/4" else 0.0, {"folk": 1.0, "classical": 0.5}),
        ("compound metre", 1.0 if signature in ("6/8", "12/8") else 0.0, {"ballad": 1.0, "blues": 0.7, "folk": 0.4}),
        ("swing feel", _ramp(swing, 0.3, 0.7), {"jazz": 1.0, "blues": 0.8}),
        ("syncopation", _ramp(rhythm["syncopation_index"], 0.25, 0.5), {"funk": 1.0, "jazz": 0.5, "pop": 0.3}),
        (
            "dense rhythm",
            _ramp(rhythm["rhythmic_complexity"]["onsets_per_beat"], 2.0, 3.5),
            {"funk": 0.8, "disco": 0.6},
        ),
        ("dance tempo", _ramp(120 - abs(tempo - 122), 108, 116), {"disco": 1.0, "pop": 0.4}),
        ("slow tempo", _ramp(90 - tempo, 0, 20), {"ballad": 1.0, "blues": 0.3}),
        ("no drums", 1.0 if analysis.get("pulse_source") == "mix" else 0.0, {"classical": 1.0, "folk": 0.5}),
        ("chromatic harmony", _ramp(complexity["chromaticism"], 0.1, 0.35), {"jazz": 1.0, "classical": 0.4}),
        (
            "rich harmonic vocabulary",
            _ramp(complexity["transition_entropy_bits"], 3.0, 5.0),
            {"jazz": 0.8, "classical": 0.8},
        ),
        ("ii-V-I", 1.0 if "ii-V-I" in names else 0.0, {"jazz": 1.0}),
        ("12-bar blues", 1.0 if "12-bar blues" in names else 0.0, {"blues": 1.0, "rock": 0.4}),
        (
            "pop progression",
            1.0 if names & {"I-V-vi-IV (axis)", "vi-IV-I-V", "I-vi-IV-V (doo-wop)"} else 0.0,
            {"pop": 1.0, "rock": 0.4},
        ),
        ("three-chord rock", 1.0 if "I-IV-V" in names else 0.0, {"rock": 1.0, "folk": 0.4, "blues": 0.3}),
        (
            "simple harmony",
            _ramp(3.0 - complexity["transition_entropy_bits"], 0.0, 1.5),
            {"rock": 0.6, "pop": 0.6, "folk": 0.5},
        ),
    ]
    votes = {genre: VOTE_FLOOR for genre in GENRES}
    for _, strength, suggests in cues:
        for genre, weight in suggests.items():
            votes[genre] += strength * weight
    total = sum(votes.values())
    return {
        "cues": [
            {"cue": name, "strength": round(strength, 3), "suggests": sorted(suggests, key=lambda g: -suggests[g])}
            for name, strength, suggests in cues
            if strength > 0
        ],
        "genres": {genre: round(votes[genre] / total, 4) for genre in sorted(GENRES, key=lambda g: -votes[g])},
        "swing_ratio": swing,
    }
