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

SECRET_ENV = "PIPELINE_ANON_SECRET"
SPLIT_FRACTIONS = (("train", 0.70), ("validation", 0.15), ("test", 0.15))
DURATION_BUCKETS = ((30, "<30s"), (60, "30s-1m"), (120, "1-2m"), (240, "2-4m"), (480, "4-8m"))


def load_or_create_secret(path: str | os.PathLike) -> bytes:
    """The anonymization key: $PIPELINE_ANON_SECRET if set, else a random key kept in `path` (created once)."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env.encode()
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

QUASI_IDENTIFIERS = ("tempo_bpm", "key_tonic", "key_mode", "duration_bucket", "genre")
COARSE_DURATIONS = {"<30s": "<1m", "30s-1m": "<1m", "1-2m": "1-4m", "2-4m": "1-4m", "4-8m": ">4m", ">8m": ">4m"}
# Rows that may be suppressed at one coarsening level before the next, coarser level is tried.
SUPPRESSION_BUDGET = 0.10
GENERALIZATION_LEVELS = 6


def _generalize(table, level: int):
    """Level 0 leaves the quasi-identifiers as they are; each level coarsens one more of them."""
    table = table.copy()
    if level >= 1:
        table["tempo_bpm"] = (table["tempo_bpm"] // 10 * 10).astype("int64")
    if level >= 2:
        table["tempo_bpm"] = (table["tempo_bpm"] // 20 * 20).astype("int64")
        table["duration_bucket"] = table["duration_bucket"].map(COARSE_DURATIONS).fillna("*")
    if level >= 3:
        table["key_tonic"] = "*"
    # The mode goes before the genre: the genre is the genre classifier's label, the mode one feature among many.
    if level >= 4:
        table["key_mode"] = "*"
    if level >= 5:
        table["genre"] = "*"
    return table


def smallest_group(table, quasi_identifiers=QUASI_IDENTIFIERS) -> int:
    """The table's k: the size of its rarest combination of quasi-identifiers (0 for an empty table)."""
    if table.empty:
        return 0
    return int(table.groupby(list(quasi_identifiers), dropna=False).size().min())


def k_anonymize(table, k: int, quasi_identifiers=QUASI_IDENTIFIERS):
    """(table, report): the quasi-identifiers coarsened level by level (tempo to 10 then 20 BPM, duration to
    three buckets, key to its mode, mode dropped, genre dropped) until at most 10 % of the rows sit in
    combinations rarer than `k`; those rows are suppressed. The report says the level, the rows suppressed and
    the k reached."""
    columns = list(quasi_identifiers)
    if table.empty or k <= 1:
        return table, {"k_required": k, "k_achieved": smallest_group(table, columns), "level": 0, "suppressed_rows": 0}
    for level in range(GENERALIZATION_LEVELS):
        coarse = _generalize(table, level)
        sizes = coarse.groupby(columns, dropna=False)[columns[0]].transform("size")
        rare = sizes < k
        if rare.mean() <= SUPPRESSION_BUDGET or level == GENERALIZATION_LEVELS - 1:
            kept = coarse[~rare].reset_index(drop=True)
            return kept, {"k_required": k, "k_achieved": smallest_group(kept, columns), "level": level,
                          "suppressed_rows": int(rare.sum())}
    raise AssertionError("unreachable")

