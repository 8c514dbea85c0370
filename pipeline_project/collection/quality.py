"""Grades decided across the collection: each song's own findings (`song_quality`), plus near-duplicates.
Songs that are the same recording (another bitrate, a remaster, an edit) form a group; the best copy is kept
and says why, the others become "poor" naming the copy kept, so an export takes each recording once."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from pipeline_project.audio.quality import (
    Reason,
    SourceFacts,
    duplicate_groups,
    keep_best,
    near_duplicates,
    overall,
)


def decide(
    records: dict[str, dict],
    fingerprints: dict[str, tuple[np.ndarray, np.ndarray]],
    min_share: float,
    names: dict[str, str] | None = None,
) -> dict:
    """{"songs": {key: {grade, reasons, duplicate_of?, kept_over?}}, "duplicate_groups": [...]} from each song's
    quality record (`song_quality`'s quality.json) and fingerprint; `names` (a file name per key) make the
    reasons readable."""
    names = names or {}
    reasons = {key: [Reason(**reason) for reason in record["reasons"]] for key, record in records.items()}
    sources = {key: SourceFacts(**record["source"]) for key, record in records.items()}
    pairs = near_duplicates({key: fingerprints[key] for key in records if key in fingerprints}, min_share)
    shares = {(a, b): share for a, b, share in pairs}
    groups = []
    extra: dict[str, dict] = {}
    for group in duplicate_groups(pairs):
        kept, why = keep_best(group, sources, reasons)
        others = [key for key in group if key != kept]
        groups.append({"kept": kept, "why": why, "others": others})
        extra[kept] = {"kept_over": others, "kept_because": why}
        for key in others:
            share = shares.get(tuple(sorted((key, kept))))
            overlap = f", {share * 100:.0f} % of landmarks shared" if share else ""
            reasons[key].append(
                Reason(
                    "poor",
                    "duplicate",
                    f"a near-duplicate of {names.get(kept, kept)} [{kept}]{overlap}; that copy is kept: {why}",
                )
            )
            extra[key] = {"duplicate_of": kept}
    songs = {
        key: {"grade": overall(reasons[key]), "reasons": [asdict(r) for r in reasons[key]], **extra.get(key, {})}
        for key in sorted(records)
    }
    return {"songs": songs, "duplicate_groups": groups}
