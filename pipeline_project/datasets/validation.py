"""Validation of a dataset snapshot: schema, value ranges, NaN and infinity, class counts, outliers and
duplicates. Problems fail the check (as a warning); observations (outliers, near duplicates) are reported."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline_project.analysis.drum_hits import FEATURE_NAMES
from pipeline_project.datasets.tables import CONTRIBUTION_COLUMNS, K_ANONYMOUS_TABLES, SONG_FEATURE_COLUMNS
from pipeline_project.labeling.queues import RELEASE_COLUMNS

# Columns every snapshot of a dataset must have, and the ranges its numeric features must stay in.
EXPECTED_COLUMNS = {
    "song_features": SONG_FEATURE_COLUMNS,
    "drum_hits": ("hit_id", "group_id", "split", "label", "tempo_bpm", *FEATURE_NAMES),
    "synthetic_examples": ("example_id", "source_id", "split", "labels"),
    "concert_pairs": ("pair_id", "track_id", "split", "snr_db", "clean_logmel", "degraded_logmel"),
    "contributed_hits": CONTRIBUTION_COLUMNS,
    "human_labels": RELEASE_COLUMNS,
}
RANGES = {
    "tempo_bpm": (20, 320),
    "loudness_lufs": (-70, 0),
    "key_confidence": (0, 1),
    "tempo_confidence": (0, 1),
    "syncopation_index": (0, 1),
    "chromaticism": (0, 1),
    "rhythmic_complexity": (0, 1),
    "snr_db": (-30, 60),
    # Band energies of a hit scale with its loudness: only negative or absurd values are errors.
    "BodyE": (0, 1e6),
    "SizzleE": (0, 1e6),
    "GeoMean": (0, 1e6),
    "SustainMs": (0, 5_000),
    "OpenHH": (0, 1),
}
OPTIONAL = {"snr_db", "rt60_s"}  # NaN by design for clean examples
LABEL_COLUMNS = ("label", "OpenHH")
# Datasets that are no training set, where a class with one example is no defect: the review queue holds
# whatever hits the champion is unsure of, for a person to label, and people label what they are shown.
NOT_TRAINING_SETS = ("review_queue", "human_labels")
# Datasets empty by nature until a person acts: no one has labelled anything yet.
MAY_BE_EMPTY = ("human_labels",)
ID_SUFFIX = "_id"
OUTLIER_SIGMA = 3.0


def _duplicates(table: pd.DataFrame) -> int:
    """Rows equal to an earlier row, compared through one 64-bit hash per row (a million rows in a blink)."""
    try:
        hashes = pd.util.hash_pandas_object(table, index=False)
    except TypeError:  # unhashable cells (lists, arrays): compare their text
        hashes = pd.util.hash_pandas_object(table.astype(str), index=False)
    return int(hashes.duplicated().sum())


def _near_duplicates(columns: list[np.ndarray]) -> int:
    """Rows equal to an earlier row once every feature is rounded to 0.1, compared through one 64-bit hash
    per row mixed straight from the rounded values' bits (no table of rounded copies is built)."""
    if not columns:
        return 0
    hashes = np.full(len(columns[0]), 0x9E3779B97F4A7C15, dtype=np.uint64)
    rounded = np.empty(len(columns[0]))
    for values in columns:
        np.multiply(values, 10.0, out=rounded)
        np.rint(rounded, out=rounded)
        rounded += 0.0  # -0.0 and 0.0 round to the same feature value and must hash alike
        hashes ^= rounded.view(np.uint64)
        hashes *= np.uint64(0xBF58476D1CE4E5B9)
        hashes ^= hashes >> np.uint64(31)
    return int(pd.Series(hashes, copy=False).duplicated().sum())


def validate_table(name: str, table: pd.DataFrame) -> dict:
    """{"problems": [...], "outliers": {column: count}, "exact_duplicates": n, "near_duplicates": n}."""
    problems = []
    if table.empty and name not in MAY_BE_EMPTY:
        problems.append("no rows")
    missing = [c for c in EXPECTED_COLUMNS.get(name, ()) if c not in table.columns]
    if missing:
        problems.append(f"schema: missing columns {', '.join(missing)}")
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c].dtype)]
    values = {c: table[c].to_numpy(dtype="float64") for c in numeric}
    bad = [c for c in numeric if c not in OPTIONAL and not np.isfinite(values[c]).all()]
    if bad:
        problems.append(f"NaN or infinity in {', '.join(bad)}")
    for column, (low, high) in RANGES.items():
        if column in values:
            column_values = values[column][~np.isnan(values[column])]
            outside = int(((column_values < low) | (column_values > high)).sum())
            if outside:
                problems.append(f"{outside} values of {column} outside [{low}, {high}]")
    id_column = next(
        (c for c in table.columns if c.endswith(ID_SUFFIX) and c not in ("group_id", "source_id", "track_id")), None
    )
    if id_column and table[id_column].duplicated().any():
        problems.append(f"duplicate values in {id_column}")
    for label in LABEL_COLUMNS if name not in NOT_TRAINING_SETS else ():
        if label in table:
            counts = table[label].value_counts()
            rare = counts[(counts < 2) & (counts > 0)]  # categorical columns list unused categories with 0
            if len(rare):
                problems.append(f"classes with fewer than 2 examples in {label}: {', '.join(map(str, rare.index))}")
    content = [c for c in table.columns if not c.endswith(ID_SUFFIX) and c != "split"]
    features = [c for c in numeric if c not in OPTIONAL and not c.endswith(ID_SUFFIX)]
    near = _near_duplicates([values[c] for c in features])
    # Exact duplicates are near duplicates too: with none of those, there is nothing more to look for.
    exact = _duplicates(table[content]) if content and (near or not features) else 0
    near -= exact
    outliers = {}
    for column in features:
        column_values = values[column]
        spread = column_values.std() if len(column_values) else 0.0  # an empty release has no spread
        if spread > 0:
            count = int((np.abs(column_values - column_values.mean()) > OUTLIER_SIGMA * spread).sum())
            if count:
                outliers[column] = count
    if exact and name not in K_ANONYMOUS_TABLES:  # groups of identical rows are its k-anonymity
        problems.append(f"{exact} exact duplicate rows")
    return {"problems": problems, "outliers": outliers, "exact_duplicates": exact, "near_duplicates": max(0, near)}
