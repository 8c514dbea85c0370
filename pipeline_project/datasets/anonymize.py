"""Keyed hashing and coarsening for everything that leaves the private lake.

Ids are HMAC-SHA256 with a secret that never enters a dataset: without the secret nobody can link an
exported id back to a song file, even by hashing a suspected file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SPLIT_FRACTIONS = (("train", 0.70), ("validation", 0.15), ("test", 0.15))
DURATION_BUCKETS = ((30, "<30s"), (60, "30s-1m"), (120, "1-2m"), (240, "2-4m"), (480, "4-8m"))


def load_or_create_secret(path: str | os.PathLike) -> bytes:
    """The anonymization key kept in `path`: a random one, created the first time."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, secrets.token_hex(32))
    return path.read_text().strip().encode()


def write_private(path: Path, text: str) -> None:
    """Create `path` readable by its owner only (0600) holding `text`; an existing file is never replaced."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w") as out:
        out.write(text)


def keyed_hash(secret: bytes, value: str, length: int = 16) -> str:
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:length]


def round_tempo(bpm: float, step: int = 5) -> int:
    return int(step * round(bpm / step))


def duration_bucket(seconds: float) -> str:
    for limit, label in DURATION_BUCKETS:
        if seconds < limit:
            return label
    return ">8m"


def assign_splits(groups: list[str], secret: bytes) -> dict[str, str]:
    """train/validation/test 70/15/15 by group, from a keyed hash: the same group always lands in the same split.

    With three or more groups every split gets at least one: an empty split takes the group of the
    largest split whose hash lies closest to it, so small collections still have a test set.
    """
    unique = sorted(set(groups))
    position = {g: int(keyed_hash(secret, f"split:{g}", 12), 16) / 16**12 for g in unique}
    assignment = {}
    for group, where in position.items():
        cumulative = 0.0
        for name, fraction in SPLIT_FRACTIONS:
            cumulative += fraction
            if where < cumulative or name == "test":
                assignment[group] = name
                break
    if len(unique) >= 3:
        boundaries = {"train": 0.0, "validation": 0.775, "test": 1.0}
        for name in ("test", "validation", "train"):
            if name not in assignment.values():
                members = {s: [g for g in unique if assignment[g] == s] for s, _ in SPLIT_FRACTIONS}
                donor = max(members, key=lambda s: len(members[s]))
                moved = min(members[donor], key=lambda g: abs(position[g] - boundaries[name]))
                assignment[moved] = name
    return assignment


def splits_of(groups, secret: bytes):
    """The split of every row of a pandas Series of group ids (see `assign_splits`)."""
    return groups.map(assign_splits(list(groups), secret)).astype(str)


def microaggregate(
    table,
    k: int,
    numeric: list[str],
    categorical: list[str],
    stratum: str | None = None,
    precision: dict[str, int] | None = None,
):
    """(table, report): every row made identical, on every released column, to at least k - 1 others, so that
    nobody who recomputes a row from their own copy of a song can tell it from k - 1 others (a linkage attack
    succeeds on at most 1 / k of the rows, however many columns are matched).

    Rows are grouped by MDAV (maximum distance to average vector: repeatedly, the row farthest from the centre
    with its k - 1 nearest neighbours, then the row farthest from that one with its neighbours) on the z-scored
    `numeric` columns, within each value of `stratum` that has k rows or more (the genre, which a classifier
    learns); the rows of rarer values are grouped together. Each numeric value is replaced by its group's mean
    (rounded to `precision` decimals, per column), each categorical value by the group's common value, or "*"
    where the group's rows differ. A table of fewer than k rows cannot be released at all: it comes back empty."""
    import numpy as np

    precision = precision or {}
    report = {
        "method": "microaggregation (MDAV)",
        "k_required": k,
        "stratum": stratum,
        "aggregated_columns": list(numeric),
        "generalized_columns": list(categorical),
    }
    if table.empty or k <= 1:
        return table, report | {"k_achieved": 1 if len(table) else 0, "suppressed_rows": 0}
    if len(table) < k:
        return table.iloc[0:0], report | {"k_achieved": 0, "suppressed_rows": len(table)}
    values = table[numeric].to_numpy(dtype=float)
    scaled = (values - values.mean(axis=0)) / np.maximum(values.std(axis=0), 1e-9)
    if stratum is None:
        strata = [np.arange(len(table))]
    else:
        counts = table[stratum].value_counts()
        common = table[stratum].isin(counts[counts >= k].index).to_numpy()
        strata = [np.flatnonzero((table[stratum] == value).to_numpy()) for value in sorted(counts[counts >= k].index)]
        rare = np.flatnonzero(~common)
        if len(rare):
            strata.append(rare)  # grouped together; under k rows, each joins its nearest group below
    groups: list[list[int]] = []
    orphans: list[int] = []
    for members in strata:
        if len(members) < k:
            orphans += list(members)
            continue
        groups += _mdav(scaled, list(members), k)
    if orphans:  # too few for a group of their own: together they join the one group nearest to them
        centre = scaled[orphans].mean(axis=0)
        nearest = min(range(len(groups)), key=lambda g: np.linalg.norm(scaled[groups[g]].mean(axis=0) - centre))
        groups[nearest] += orphans
    released = table.copy()
    for column in numeric:
        released[column] = released[column].astype(float)
    for members in groups:
        index = table.index[members]
        for column in numeric:
            released.loc[index, column] = round(
                float(table.loc[index, column].astype(float).mean()), precision.get(column, 4)
            )
        for column in categorical:
            distinct = table.loc[index, column].astype(str).unique()
            released.loc[index, column] = distinct[0] if len(distinct) == 1 else "*"
    return released, report | {"k_achieved": min(len(g) for g in groups), "suppressed_rows": 0}


def _mdav(scaled, members: list[int], k: int) -> list[list[int]]:
    """MDAV groups (lists of row indices) of `members`, each of k to 2k - 1 rows."""
    import numpy as np

    remaining, groups = list(members), []

    def take_around(row: int) -> list[int]:
        order = sorted(remaining, key=lambda other: (np.linalg.norm(scaled[other] - scaled[row]), other))
        group = order[:k]
        for member in group:
            remaining.remove(member)
        return group

    def farthest_from(point) -> int:
        return max(remaining, key=lambda row: (np.linalg.norm(scaled[row] - point), -row))

    while len(remaining) >= 3 * k:
        centre = scaled[remaining].mean(axis=0)
        first = farthest_from(centre)
        groups.append(take_around(first))
        second = farthest_from(scaled[first])
        groups.append(take_around(second))
    if len(remaining) >= 2 * k:
        groups.append(take_around(farthest_from(scaled[remaining].mean(axis=0))))
    if remaining:
        groups.append(list(remaining))
    return groups


def keyed_order(ids, secret: bytes):
    """Positions that sort rows by a keyed hash of their id: an order nobody without the secret can relate to
    anything (not the content hash, not the row count)."""
    import numpy as np

    return np.argsort([keyed_hash(secret, f"order:{value}") for value in ids], kind="stable")


def smallest_group(table, quasi_identifiers) -> int:
    """The table's k: the size of its rarest combination of `quasi_identifiers` (0 for an empty table)."""
    if table.empty:
        return 0
    return int(table.groupby(list(quasi_identifiers), dropna=False).size().min())


def size_range(count: int) -> str:
    """A count as the power-of-two range it falls in ("16-31"), for manifests that must not state it exactly."""
    if count == 0:
        return "0"
    low = 1 << (count.bit_length() - 1)
    return f"{low}-{2 * low - 1}"
