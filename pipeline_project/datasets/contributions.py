"""Community contributions of labelled drum-hit features: the exchange format, its validation, and export.

One JSON file per submission:

    {"version": "1.0", "instrument": "hihat",
     "features": [{"BodyE": 251.6, "SizzleE": 3264.1, "GeoMean": 906.2, "SustainMs": 181.6, "OpenHH": 1}, ...],
     "metadata": {"tempo": 124, "genre": "pop", "sample_count": 160, "open_count": 6}}

A submission is accepted into the training pool only if it is well formed, in range, labelled with both
classes, consistent with its own metadata, new, and plausible against a reference (the local `drum_hits`
hi-hats plus everything accepted so far): not scaled, not mostly outliers, and not labelled against what
the reference predicts (flipped labels). Every decision comes with its reasons.

Files come from strangers, so they are read defensively before anything else looks at them: a regular file (never
a symbolic link), at most `max_bytes`, UTF-8, nested at most `MAX_DEPTH` levels, numbers of at most
`MAX_NUMBER_CHARS` characters and finite, every field of its declared type (a label is the integer 0 or 1, not
`true` or `"1"`). What is accepted is kept in canonical form: fields the format does not define are dropped.
Without a reference (no local hi-hats of both kinds) nothing can be judged, so nothing is accepted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline_project.analysis.drum_hits import MAX_WINDOW_S
from pipeline_project.layout import ContributionsInbox

FORMAT_VERSION = "1.0"
FEATURES = ("BodyE", "SizzleE", "GeoMean", "SustainMs")
LABEL = "OpenHH"
INSTRUMENTS = {"hihat": ("closed_hihat", "open_hihat")}  # instrument -> (label 0, label 1) in drum_hits
# Ranges of the features as `analysis.drum_hits` measures them: energies of a normalized hit, and a sustain
# measured inside the hit's window (at most MAX_WINDOW_S), so a longer one was not measured, it was made up.
RANGES = {
    "BodyE": (0.0, 20_000.0),
    "SizzleE": (0.0, 20_000.0),
    "GeoMean": (0.0, 20_000.0),
    "SustainMs": (0.0, MAX_WINDOW_S * 1000.0),
}
# GeoMean is the geometric mean of BodyE and SizzleE; exported values are rounded to 0.1 (ROUNDING is half
# that), hence the tolerances.
GEOMEAN_TOLERANCE = 0.02
ROUNDING = 0.05
MAX_INCONSISTENT_SHARE = 0.05
MAX_DEPTH = 4  # the format nests three levels: {"features": [{...}]}
MAX_NUMBER_CHARS = 32  # longer is no measurement (10**400 would overflow every float downstream)
METADATA_FIELDS = ("tempo", "genre", "sample_count", "open_count")
TEMPO_RANGE = (30, 300)
ALLOWED_GENRES = (
    "pop",
    "rock",
    "funk",
    "disco",
    "jazz",
    "blues",
    "folk",
    "ballad",
    "classical",
    "electronic",
    "hip-hop",
    "metal",
    "latin",
    "reggae",
    "world",
    "other",
)
MIN_PER_CLASS = 2
OUTLIER_Z = 3.0
MAX_OUTLIER_SHARE = 0.25  # more rows than this beyond 3 sigma of the reference: the submission is rejected
# Hits from other grooves, kits and rooms legitimately differ: a spread below half a log unit (a factor 1.6)
# is widened to that, so 3 sigma never means less than a factor 4.5.
MIN_LOG_SPREAD = 0.5
SCALE_LIMIT = 10.0  # a feature whose median is 10x off the reference's looks rescaled
MIN_LABEL_AGREEMENT = 0.5  # below this the labels contradict the reference more often than not
DUPLICATE_ROW_SHARE = 0.5


@dataclass
class Verdict:
    submission_id: str
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    quality: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def report(self, file_name: str) -> dict:
        return {
            "submission_id": self.submission_id,
            "file": file_name,
            "accepted": self.accepted,
            "reasons": self.reasons,
            "quality": self.quality,
            "summary": self.summary,
        }


def submission_id(submission: dict) -> str:
    """Content id: the same instrument and feature rows give the same id, however the file is formatted."""
    canonical = json.dumps(
        {"instrument": submission.get("instrument"), "features": submission.get("features")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _log_features(table: pd.DataFrame) -> np.ndarray:
    return np.log1p(table[list(FEATURES)].to_numpy(dtype=float).clip(min=0.0))


@dataclass
class Reference:
    """What submissions are judged against: labelled hits (FEATURES + OpenHH) and the ids already taken."""

    rows: pd.DataFrame
    known_ids: set[str] = field(default_factory=set)

    def centroids(self) -> dict[int, np.ndarray]:
        logs = _log_features(self.rows)
        labels = self.rows[LABEL].to_numpy()
        return {label: logs[labels == label].mean(axis=0) for label in (0, 1) if (labels == label).any()}


class UnreadableSubmission(ValueError):
    """The file cannot be taken as a submission at all; the message says why without quoting its content."""


def read_submission_file(path: Path, max_bytes: int) -> dict:
    """The JSON value of a regular file at `path`, read within the limits in the module docstring. Symbolic links
    are refused, not followed (a link could point at any file this process can read: the anonymization key)."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UnreadableSubmission(
            "a symbolic link, not a file: links are not followed"
            if path.is_symlink()
            else f"cannot be opened ({exc.strerror})"
        ) from None
    with os.fdopen(handle, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise UnreadableSubmission("not a regular file")
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        size = path.stat().st_size
        raise UnreadableSubmission(f"file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit; not read")
    return parse_submission(data)


def _bounded_number(text: str) -> float | int:
    if len(text) > MAX_NUMBER_CHARS:
        raise UnreadableSubmission(
            f"a number written with {len(text)} characters; at most {MAX_NUMBER_CHARS} are allowed"
        )
    value = float(text) if any(c in text for c in ".eE") else int(text)
    if not math.isfinite(value):
        raise UnreadableSubmission("a number too large for a float")
    return value


def _refuse_constant(name: str):
    raise UnreadableSubmission(f"{name} is not a number the format allows")


def _nesting_depth(text: str) -> int:
    """How deep arrays and objects nest, brackets inside strings not counted."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text).encode()
    codes = np.frombuffer(bare, dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def parse_submission(data: bytes) -> dict:
    """The JSON value in `data`, or UnreadableSubmission: not UTF-8, nested too deep, a number out of bounds,
    not JSON. Messages give positions, never content."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableSubmission(f"not UTF-8 text (an invalid byte at offset {exc.start})") from None
    depth = _nesting_depth(text)
    if depth > MAX_DEPTH:
        raise UnreadableSubmission(f"nested {depth} levels deep; the format needs {MAX_DEPTH - 1}")
    try:
        return json.loads(text, parse_int=_bounded_number, parse_float=_bounded_number, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise UnreadableSubmission(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise UnreadableSubmission("nested too deeply") from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _structure_problems(submission) -> list[str]:
    if not isinstance(submission, dict):
        return ["the file must hold one JSON object"]
    problems = []
    if submission.get("version") != FORMAT_VERSION:
        problems.append(f"version must be {FORMAT_VERSION!r}, got {_shown(submission.get('version'))}")
    if not isinstance(submission.get("instrument"), str) or submission["instrument"] not in INSTRUMENTS:
        problems.append(f"instrument must be one of {sorted(INSTRUMENTS)}, got {_shown(submission.get('instrument'))}")
    features = submission.get("features")
    if not isinstance(features, list) or not features:
        problems.append("features must be a non-empty list")
    elif not all(isinstance(row, dict) for row in features):
        problems.append("every feature row must be an object")
    else:
        bad_labels = sum(1 for row in features if type(row.get(LABEL)) is not int or row[LABEL] not in (0, 1))
        if bad_labels:
            problems.append(
                f"{bad_labels} feature rows have no {LABEL} label of 0 or 1 (an integer, not true/false or text)"
            )
        missing = sorted({name for row in features for name in FEATURES if name not in row})
        if missing:
            problems.append(f"feature rows lack {', '.join(missing)}")
        not_numbers = sum(1 for row in features if any(name in row and not _is_number(row[name]) for name in FEATURES))
        if not_numbers:
            problems.append(f"{not_numbers} feature rows hold values that are not numbers (text, true/false or null)")
    metadata = submission.get("metadata")
    if not isinstance(metadata, dict):
        problems.append("metadata must be an object")
    else:
        wrong = [
            name
            for name, ok in (
                ("tempo", _is_number),
                ("genre", lambda v: isinstance(v, str)),
                ("sample_count", lambda v: type(v) is int),
                ("open_count", lambda v: type(v) is int),
            )
            if not ok(metadata.get(name))
        ]
        if wrong:
            problems.append(
                f"metadata fields of the wrong type or missing: {', '.join(wrong)} (tempo a number, genre "
                "text, the counts integers)"
            )
    return problems


def _shown(value) -> str:
    """A value quoted in a reason: short, and only if it is a plain scalar."""
    return repr(value)[:40] if isinstance(value, (str, int, float, type(None))) else type(value).__name__


def canonical(submission: dict) -> dict:
    """The submission with only the fields the format defines, in its own order: what is kept when accepted."""
    return {
        "version": submission["version"],
        "instrument": submission["instrument"],
        "features": [{name: row[name] for name in (*FEATURES, LABEL)} for row in submission["features"]],
        "metadata": {name: submission["metadata"][name] for name in METADATA_FIELDS},
    }


def validate_submission(path: Path, reference: Reference, max_bytes: int = 1_000_000) -> tuple[Verdict, dict | None]:
    """The verdict on one submission file, and the canonical submission when it is accepted; never raises for bad
    content."""
    try:
        submission = read_submission_file(path, max_bytes)
    except UnreadableSubmission as exc:
        return Verdict("", False, [str(exc)]), None
    problems = _structure_problems(submission)
    if problems:
        return Verdict("", False, problems), None
    submission = canonical(submission)
    verdict = judge(submission, reference)
    return verdict, submission if verdict.accepted else None


def judge(submission: dict, reference: Reference) -> Verdict:
    """The verdict on a well-formed canonical submission."""
    sid = submission_id(submission)
    table = pd.DataFrame(submission["features"])
    values = table[list(FEATURES)].to_numpy(dtype=float)
    reasons = []
    if not np.isfinite(values).all():
        reasons.append(f"{int((~np.isfinite(values)).any(axis=1).sum())} rows hold NaN, infinity or non-numbers")
        return Verdict(sid, False, reasons)
    table[list(FEATURES)] = values
    labels = table[LABEL].astype(int)
    counts = labels.value_counts()
    if len(counts) < 2:
        reasons.append(f"only one class ({LABEL}={int(counts.index[0])}); both open and closed hits are needed")
    elif counts.min() < MIN_PER_CLASS:
        reasons.append(f"at least {MIN_PER_CLASS} hits of each class are needed, got {dict(counts)}")
    for name, (low, high) in RANGES.items():
        outside = int(((table[name] < low) | (table[name] > high)).sum())
        if outside:
            reasons.append(f"{outside} values of {name} outside [{low:g}, {high:g}]")
    metadata = submission["metadata"]
    tempo = metadata.get("tempo")
    if not isinstance(tempo, (int, float)) or not TEMPO_RANGE[0] <= tempo <= TEMPO_RANGE[1]:
        reasons.append(f"metadata.tempo must be a number in {list(TEMPO_RANGE)}, got {_shown(tempo)}")
    if metadata.get("genre") not in ALLOWED_GENRES:
        reasons.append(f"metadata.genre {_shown(metadata.get('genre'))} is not one of {', '.join(ALLOWED_GENRES)}")
    if metadata.get("sample_count") != len(table):
        reasons.append(f"metadata.sample_count is {metadata.get('sample_count')} but there are {len(table)} rows")
    if metadata.get("open_count") != int(labels.sum()):
        reasons.append(
            f"metadata.open_count is {metadata.get('open_count')} but {int(labels.sum())} rows have {LABEL}=1"
        )
    # Each value may be rounded by up to ROUNDING: GeoMean must lie between what the rounded energies allow.
    body, sizzle, geo = (table[name].to_numpy() for name in ("BodyE", "SizzleE", "GeoMean"))
    lowest = np.sqrt(np.clip(body - ROUNDING, 0, None) * np.clip(sizzle - ROUNDING, 0, None))
    highest = np.sqrt((body + ROUNDING) * (sizzle + ROUNDING))
    inconsistent = float(
        (
            (geo < lowest * (1 - GEOMEAN_TOLERANCE) - ROUNDING) | (geo > highest * (1 + GEOMEAN_TOLERANCE) + ROUNDING)
        ).mean()
    )
    if inconsistent > MAX_INCONSISTENT_SHARE:
        reasons.append(
            f"GeoMean is not the geometric mean of BodyE and SizzleE in {inconsistent:.0%} of the rows "
            "(features edited or rescaled one by one?)"
        )
    if sid in reference.known_ids:
        reasons.append(f"duplicate of submission {sid}, already in the pool")
    quality = {}
    reference_counts = reference.rows[LABEL].value_counts() if len(reference.rows) else pd.Series(dtype=int)
    if min(reference_counts.get(0, 0), reference_counts.get(1, 0)) < MIN_PER_CLASS:
        reasons.append(
            f"nothing to check it against: the local drum hits hold fewer than {MIN_PER_CLASS} closed and "
            f"{MIN_PER_CLASS} open hi-hats, so scaled or flipped data could not be told from honest data "
            "(process songs with hi-hats first, then submit again)"
        )
    else:
        reasons += _plausibility(table, labels, reference)
        quality = quality_score(table, labels, reference)
    summary = {
        "instrument": submission["instrument"],
        "samples": len(table),
        "open": int(labels.sum()),
        "genre": metadata.get("genre"),
        "tempo": tempo,
    }
    return Verdict(sid, not reasons, reasons, quality, summary)


def _plausibility(table: pd.DataFrame, labels: pd.Series, reference: Reference) -> list[str]:
    """Poisoning checks against the reference: rescaled features, mostly outliers, flipped labels, copied rows."""
    reasons = []
    logs, reference_logs = _log_features(table), _log_features(reference.rows)
    mine_labels, reference_labels = labels.to_numpy(), reference.rows[LABEL].to_numpy()
    classes = [c for c in (0, 1) if (mine_labels == c).any() and (reference_labels == c).any()]
    for index, name in enumerate(FEATURES):
        # Per class, since open and closed hits differ by orders of magnitude; a rescaling moves both.
        ratio = min(
            (
                math.exp(
                    abs(
                        np.median(logs[mine_labels == c, index])
                        - np.median(reference_logs[reference_labels == c, index])
                    )
                )
                for c in classes
            ),
            default=1.0,
        )
        if ratio > SCALE_LIMIT:
            reasons.append(f"{name} looks rescaled: its median is {ratio:.0f}x away from the pool's")
    # Robust z-scores against the pool's hits of the same class: open and closed hits differ too much for
    # one centre to describe both.
    outliers = np.zeros(len(table), dtype=bool)
    for label in (0, 1):
        mine, theirs = labels.to_numpy() == label, reference_logs[reference_labels == label]
        if mine.any() and len(theirs) >= MIN_PER_CLASS:
            center = np.median(theirs, axis=0)
            spread = np.maximum(1.4826 * np.median(np.abs(theirs - center), axis=0), MIN_LOG_SPREAD)
            outliers[mine] = (np.abs((logs[mine] - center) / spread) > OUTLIER_Z).any(axis=1)
    if outliers.mean() > MAX_OUTLIER_SHARE:
        reasons.append(f"{outliers.mean():.0%} of the rows lie beyond {OUTLIER_Z:g} sigma of the pool")
    centroids = reference.centroids()
    if len(centroids) == 2:
        predicted = (np.linalg.norm(logs - centroids[1], axis=1) < np.linalg.norm(logs - centroids[0], axis=1)).astype(
            int
        )
        agreement = float((predicted == labels.to_numpy()).mean())
        if agreement < MIN_LABEL_AGREEMENT:
            reasons.append(
                f"labels agree with the pool's reference on only {agreement:.0%} of the hits (flipped labels?)"
            )
    rounded = set(map(tuple, np.round(reference.rows[list(FEATURES)].to_numpy(dtype=float), 1)))
    copied = np.mean([tuple(row) in rounded for row in np.round(table[list(FEATURES)].to_numpy(dtype=float), 1)])
    if copied > DUPLICATE_ROW_SHARE:
        reasons.append(f"{copied:.0%} of the rows already are in the pool (near-duplicate submission)")
    return reasons


def quality_score(table: pd.DataFrame, labels: pd.Series, reference: Reference) -> dict:
    """Diversity (how far the hits lie from their nearest pool hit, against the pool's own spacing),
    completeness (rows with every feature and a label), class balance (minority share over one half), and
    their mean, each in 0..1."""
    logs, reference_logs = _log_features(table), _log_features(reference.rows)
    sample = reference_logs[:: max(1, len(reference_logs) // 500)]
    nearest = np.sqrt(((logs[:, None, :] - sample[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    own = np.sqrt(((sample[:, None, :] - sample[None, :, :]) ** 2).sum(axis=2))
    np.fill_diagonal(own, np.inf)
    typical = float(np.median(own.min(axis=1))) if len(sample) > 1 else 1.0
    diversity = float(np.clip(np.median(nearest) / (2 * typical + 1e-9), 0.0, 1.0))
    completeness = float(table[list(FEATURES)].notna().all(axis=1).mean())
    balance = float(min(labels.mean(), 1 - labels.mean()) / 0.5)
    return {
        "diversity": round(diversity, 3),
        "completeness": round(completeness, 3),
        "class_balance": round(balance, 3),
        "score": round((diversity + completeness + balance) / 3, 3),
    }


def rows_of(submission: dict) -> pd.DataFrame:
    table = pd.DataFrame(submission["features"])[[*FEATURES, LABEL]]
    return table.astype({name: float for name in FEATURES} | {LABEL: int})


def reference_from(drum_hits: pd.DataFrame | None, accepted: list[dict], instrument: str = "hihat") -> Reference:
    """The local hits of that instrument (labels mapped to 0/1) plus every accepted submission's rows."""
    parts = []
    if drum_hits is not None and len(drum_hits):
        closed, opened = INSTRUMENTS[instrument]
        local = drum_hits[drum_hits["label"].isin([closed, opened])]
        parts.append(local[list(FEATURES)].assign(**{LABEL: (local["label"] == opened).astype(int)}))
    parts += [rows_of(s) for s in accepted]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*FEATURES, LABEL])
    return Reference(rows, {submission_id(s) for s in accepted})


def export_submission(drum_hits: pd.DataFrame, instrument: str, genre: str) -> tuple[dict, str]:
    """(submission, review summary) built from the local drum_hits of one instrument."""
    if instrument not in INSTRUMENTS:
        raise ValueError(f"instrument must be one of {sorted(INSTRUMENTS)}")
    if genre not in ALLOWED_GENRES:
        raise ValueError(f"genre must be one of {', '.join(ALLOWED_GENRES)}")
    closed, opened = INSTRUMENTS[instrument]
    hits = drum_hits[drum_hits["label"].isin([closed, opened])]
    if hits.empty:
        raise ValueError(f"the local drum_hits hold no {closed} or {opened} hits to export")
    rows = [
        {**{name: round(float(row[name]), 1) for name in FEATURES}, LABEL: int(row["label"] == opened)}
        for _, row in hits.iterrows()
    ]
    opens = sum(r[LABEL] for r in rows)
    tempo = int(round(float(hits["tempo_bpm"].median())))
    submission = {
        "version": FORMAT_VERSION,
        "instrument": instrument,
        "features": rows,
        "metadata": {"tempo": tempo, "genre": genre, "sample_count": len(rows), "open_count": opens},
    }
    ranges = "\n".join(f"  {name:<10} {hits[name].min():10.1f} .. {hits[name].max():10.1f}" for name in FEATURES)
    summary = (
        f"submission {submission_id(submission)}: {len(rows)} {instrument} hits, {opens} open and {len(rows) - opens} closed\n"
        f"metadata: tempo {tempo}, genre {genre}\nfeature ranges:\n{ranges}\n"
        "only these four features and the open/closed label leave this machine: no audio, names, paths or times"
    )
    return submission, summary


def review_inbox(inbox: ContributionsInbox, local_hits: pd.DataFrame | None, max_bytes: int, log) -> list[dict]:
    """Validate every waiting submission: accepted ones are kept in canonical form, the rest move to
    `rejected/` as they came, and each gets a report with its id and reasons. A file that cannot even be
    reviewed is rejected like any other, so one bad file never holds the queue or the training downstream.
    Returns the reports, in the order the files were reviewed."""
    accepted = inbox.accepted_submissions()
    reference = reference_from(local_hits, list(accepted.values()))
    reports = []
    for path in inbox.waiting():
        try:
            verdict, submission = validate_submission(path, reference, max_bytes)
        except Exception as exc:  # noqa: BLE001 - a file that breaks the review must not break the queue
            log.exception(f"contribution {path.name}: the review itself failed")
            verdict, submission = (
                Verdict("", False, [f"could not be reviewed ({type(exc).__name__}); kept in rejected/"]),
                None,
            )
        report = verdict.report(path.name)
        inbox.write_report(path.name, report)
        if submission is not None:
            inbox.accept(verdict.submission_id, submission, path)
            accepted[verdict.submission_id] = submission
            reference = reference_from(local_hits, list(accepted.values()))
            log.info(
                f"contribution {path.name}: accepted as {verdict.submission_id} (quality {verdict.quality.get('score')})"
            )
        else:
            inbox.reject(path)
            log.warning(f"contribution {path.name}: rejected: {'; '.join(verdict.reasons)}")
        reports.append(report)
    return reports
