"""The privacy audit: does a table hold anything that could identify a song, a person or a file?

A finding is raised for any string (or binary) value that contains a catalog term (title, artist, album,
file name, folder name) as whole words, that looks like a path or URL, and for any column whose name says it holds
event times. Whole words: a song titled "City" is found in "City lights" and "city_01", never in "velocity".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

import pandas as pd

PATH_LIKE = re.compile(
    r"[/\\]|^[A-Za-z]:[/\\]|://|\.(mp3|wav|flac|ogg|mid|midi|xml|mxl|krn|abc|sf2|sf3)\b", re.IGNORECASE
)
TIMING_COLUMN = re.compile(r"(^|_)(onset|offset|time|times|timestamp|start|end|position)s?($|_)", re.IGNORECASE)
# In musical free text (label JSON, **kern) a slash is ordinary ("4/4"); there only absolute paths and URLs count.
ABSOLUTE_PATH_OR_URL = re.compile(r"://|(^|[\s\"'=(\[])(/|~/|[A-Za-z]:\\)[\w.-]", re.IGNORECASE)
MIN_TERM_LENGTH = 4  # shorter catalog terms ("Go", "AC") would match ordinary words
# Keyed-hash ids (hex digests, optionally with a hex rank). They are scanned as a whole: a hex digest can
# spell a short catalog term ("Dead", "Face") by chance, which is no leak.
HASHED_ID = r"^[0-9a-f]{8,64}(-[0-9a-f]{1,16})?$"


@dataclass(frozen=True)
class Finding:
    column: str
    kind: str  # "catalog" | "path" | "timing"
    detail: str

    def __str__(self) -> str:
        return f"{self.column}: {self.kind} ({self.detail})"


def catalog_terms(songs: list[dict]) -> set[str]:
    """Terms that must never appear in a dataset: tags, and file names with and without extension together with
    the folders they sit in (a drop folder laid out as artist/album/track names the artist and the album)."""
    terms: set[str] = set()
    for song in songs:
        for field in ("title", "artist", "album"):
            if song.get(field):
                terms.add(str(song[field]))
        for name in song.get("file_names", []):
            path = PurePath(name)
            terms.update({path.name, path.stem, *path.parent.parts} - {".", "/"})
    return {t.strip().casefold() for t in terms if len(t.strip()) >= MIN_TERM_LENGTH}


def term_matcher(terms: set[str]) -> re.Pattern | None:
    """One pattern finding any of `terms` (casefolded) as whole words: not preceded or followed by a letter or
    digit. Longest first, so the finding names the longest term that matched."""
    if not terms:
        return None
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=lambda t: (-len(t), t)))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])")


def _text_values(series: pd.Series) -> list[str]:
    values = []
    for value in series.dropna().unique():
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="ignore")
        values.append(str(value))
    return values


def _all_hashed_ids(series: pd.Series) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    values = series.dropna()
    if values.empty or not all(isinstance(v, str) for v in values.iloc[:100]):
        return False
    try:
        array = pa.array(values.unique(), type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return bool(pc.all(pc.match_substring_regex(array, HASHED_ID)).as_py())


def audit_table(
    table: pd.DataFrame,
    terms: set[str],
    references: dict[str, re.Pattern] | None = None,
    free_text: set[str] | frozenset[str] = frozenset(),
    arrays: dict[str, int] | None = None,
) -> list[Finding]:
    """Findings for one table. `references` are columns of relative file references inside the synthetic
    lake: every value must fully match the column's pattern. `free_text` columns hold musical text (labels,
    **kern) whose own timings are allowed: they must hold no absolute path, URL or catalog term. `arrays`
    are binary columns of packed numbers (column -> bytes per number): they are not text, so they must be
    bytes of a whole number of values, and nothing else."""
    references, arrays = references or {}, arrays or {}
    matcher = term_matcher(terms)
    findings: list[Finding] = []
    for column in table.columns:
        if TIMING_COLUMN.search(column) and column not in free_text:
            findings.append(Finding(column, "timing", "column name says it holds event times"))
        series = table[column]
        if column in arrays:
            if not all(isinstance(v, bytes) and len(v) % arrays[column] == 0 for v in series):
                findings.append(Finding(column, "path", "a value that is not a packed numeric array"))
            continue
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = pd.Series(series.cat.categories[series.cat.codes[series.cat.codes >= 0].unique()])
        if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            continue
        if column not in references and column not in free_text and _all_hashed_ids(series):
            continue
        for value in _text_values(series):
            folded = value.casefold()
            if column in references:
                path_problem = not references[column].fullmatch(value)
            elif column in free_text:
                path_problem = bool(ABSOLUTE_PATH_OR_URL.search(value))
            else:
                path_problem = bool(PATH_LIKE.search(value))
            if path_problem:
                findings.append(Finding(column, "path", f"path- or URL-like value {value[:60]!r}"))
                continue
            if matcher is not None and matcher.search(folded):
                findings.append(Finding(column, "catalog", f"value {value[:60]!r} contains a private catalog term"))
    return findings
