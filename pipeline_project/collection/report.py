"""What the collection holds, against the balance its owner aims for: distributions of genre, decade, tempo,
key, mode, length and quality grade, each dimension's shares against target ranges, and the gaps, largest
first ("jazz is 2 % against a 10-15 % target").

Distributions other than the grade count the songs an export would take (not graded poor): the balance of
the training set, not of the folder. Genre is the song's tag folded onto the genre-cue genres, or, untagged,
the strongest genre cue of its analysis (marked in `genre_source`); decade is the tag's year.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass

from pipeline_project.analysis.genre_cues import GENRES

TEMPO_BANDS = ((0, 80, "< 80"), (80, 100, "80-100"), (100, 120, "100-120"), (120, 140, "120-140"), (140, 1e9, "140+"))
LENGTH_BANDS = (
    (0, 120, "< 2 min"),
    (120, 180, "2-3 min"),
    (180, 240, "3-4 min"),
    (240, 360, "4-6 min"),
    (360, 1e9, "6+ min"),
)
DIMENSIONS = ("genre", "decade", "tempo", "key", "mode", "length", "grade")

# A general-purpose set: no genre under 3 % or over 25 %, both modes well present, every tempo band heard.
DEFAULT_TARGETS: dict[str, dict[str, tuple[float, float]]] = {
    "genre": {
        "pop": (0.10, 0.25),
        "rock": (0.10, 0.25),
        "jazz": (0.05, 0.15),
        "classical": (0.05, 0.15),
        "blues": (0.03, 0.10),
        "folk": (0.03, 0.10),
        "funk": (0.03, 0.10),
        "disco": (0.03, 0.10),
        "ballad": (0.03, 0.10),
    },
    "mode": {"major": (0.40, 0.75), "minor": (0.25, 0.60)},
    "tempo": {band: (0.05, 0.40) for _, _, band in TEMPO_BANDS},
}


@dataclass
class Gap:
    dimension: str
    value: str
    share: float
    low: float
    high: float

    @property
    def size(self) -> float:
        """How far the share lies outside its range."""
        return self.low - self.share if self.share < self.low else self.share - self.high

    @property
    def text(self) -> str:
        side = "under" if self.share < self.low else "over"
        return (
            f"{self.dimension} {self.value} is {self.share * 100:.0f} % against a {self.low * 100:.0f}-"
            f"{self.high * 100:.0f} % target ({side})"
        )


def band(value: float, bands) -> str:
    return next(name for low, high, name in bands if low <= value < high)


def song_profile(key: str, record: dict, analysis: dict | None, theory: dict | None, grade: str) -> dict:
    """One song's value on each dimension (None where unknown: no analysis yet, no year tag)."""
    tag = (record.get("genre") or "").lower()
    genre = next((g for g in GENRES if g in tag), None)
    genre_source = "tag" if genre else None
    if genre is None and theory and theory.get("genre_cues", {}).get("genres"):
        genre = next(iter(theory["genre_cues"]["genres"]))  # the strongest cue first
        genre_source = "cue"
    year = re.search(r"(1[89]|20)\d\d", record.get("year", "") or "")
    return {
        "key": key,
        "genre": genre or ("other" if tag else None),
        "genre_source": genre_source or ("tag" if tag else None),
        "decade": f"{year.group(0)[:3]}0s" if year else None,
        "tempo": band(analysis["tempo_bpm"], TEMPO_BANDS) if analysis else None,
        "key_name": analysis["key_tonic"] if analysis else None,
        "mode": analysis["key_mode"] if analysis else None,
        "length": band(record["duration_s"], LENGTH_BANDS),
        "grade": grade,
    }


def distributions(profiles: list[dict]) -> dict[str, dict[str, int]]:
    """{dimension: {value: songs}}: the grade over every song, the rest over the songs not graded poor."""
    usable = [p for p in profiles if p["grade"] != "poor"]
    out = {"grade": dict(Counter(p["grade"] for p in profiles))}
    for dimension in DIMENSIONS[:-1]:
        field = "key_name" if dimension == "key" else dimension
        out[dimension] = dict(Counter(p[field] if p[field] is not None else "unknown" for p in usable))
    return out


def gaps(counts: dict[str, dict[str, int]], targets: dict[str, dict[str, tuple[float, float]]]) -> list[Gap]:
    """Every value whose share of its dimension's known songs lies outside its target range, largest first."""
    found = []
    for dimension, ranges in targets.items():
        values = {v: n for v, n in counts.get(dimension, {}).items() if v != "unknown"}
        total = sum(values.values())
        if not total:
            continue
        for value, (low, high) in ranges.items():
            share = values.get(value, 0) / total
            if share < low or share > high:
                found.append(Gap(dimension, value, share, low, high))
    return sorted(found, key=lambda gap: (-gap.size, gap.dimension, gap.value))


def report_plot(counts: dict[str, dict[str, int]], targets: dict[str, dict[str, tuple[float, float]]]) -> bytes:
    """A PNG of one bar chart per dimension (share of the songs whose value is known), target ranges drawn as
    grey bands."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(2, 4, figsize=(16, 7), dpi=80)
    orders = {
        "tempo": [name for _, _, name in TEMPO_BANDS],
        "length": [name for _, _, name in LENGTH_BANDS],
        "grade": ["good", "fair", "poor", *(["ungraded"] if "ungraded" in counts.get("grade", {}) else [])],
    }
    for axis, dimension in zip(axes.flat, DIMENSIONS):
        values = {value: n for value, n in counts.get(dimension, {}).items() if value != "unknown"}
        unknown = counts.get(dimension, {}).get("unknown", 0)
        names = orders.get(dimension) or sorted(set(values) | set(targets.get(dimension, {})), key=_pitch_order)
        total = max(1, sum(values.values()))
        axis.bar(range(len(names)), [values.get(name, 0) / total for name in names], color="#457b9d")
        for position, name in enumerate(names):
            if name in targets.get(dimension, {}):
                low, high = targets[dimension][name]
                axis.fill_between([position - 0.45, position + 0.45], low, high, color="grey", alpha=0.3, lw=0)
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        axis.set_title(
            f"{dimension}: {sum(values.values())} songs" + (f" ({unknown} unknown)" if unknown else ""), fontsize=10
        )
        axis.set_ylim(0, 1)
    axes.flat[-1].axis("off")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _pitch_order(name: str):
    """Pitch classes in chromatic order (C, C#, D...), anything else alphabetically after them."""
    pitches = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    flats = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}
    name = flats.get(name, name)
    return (0, pitches.index(name), "") if name in pitches else (1, 0, name)


def collection_report(profiles: list[dict], targets: dict[str, dict[str, tuple[float, float]]]) -> dict:
    counts = distributions(profiles)
    found = gaps(counts, targets)
    return {
        "songs": len(profiles),
        "usable_songs": sum(p["grade"] != "poor" for p in profiles),
        "distributions": counts,
        "targets": {d: {v: list(r) for v, r in ranges.items()} for d, ranges in targets.items()},
        "gaps": [
            {
                "dimension": g.dimension,
                "value": g.value,
                "share": round(g.share, 4),
                "target": [g.low, g.high],
                "text": g.text,
            }
            for g in found
        ],
        "genre_sources": dict(Counter(p["genre_source"] or "unknown" for p in profiles if p["grade"] != "poor")),
    }
