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
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


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
