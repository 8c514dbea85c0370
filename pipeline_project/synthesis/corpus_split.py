"""Which music21 corpus pieces and SoundFonts may be used for what: reserved, training, validation or test.

Reserved pieces are never used at all (no training, tuning, evaluation, example, demo song or test): an
external benchmark scores the project on them. They are kept here as digests of their names, so that no file
of the project names them and a search of the code for one finds nothing to copy by mistake.

Every other piece lands in one split by a digest of its name, so a piece keeps its split whatever else is
added, and the renders of one piece (every tempo, SoundFont and condition) are all on one side. SoundFonts
are split too: the learned analysers are evaluated through SoundFonts they never heard.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import PurePosixPath

# sha256(canonical name)[:16] of the 20 reserved chorales and the 20 Riemenschneider analyses of them.
RESERVED_DIGESTS = frozenset(
    {
        "2c69189af37b30a7",
        "aaf959b94a2321c5",
        "3dceefebbb75dd7b",
        "2f05676b9272fcf7",
        "8b58cfe7a72d6e29",
        "f9907e8179acace5",
        "2ed8db0b546a489f",
        "17a25cd6c580047f",
        "8a0af83518fc60a0",
        "853550e3e5a3df01",
        "ba286d2167c6e345",
        "90a45cbebc6ee184",
        "f8093657595edbe1",
        "419b97413d67d4b4",
        "46cc5c14be00ac95",
        "07022fe4f7e2e23c",
        "bb9a3453bac0a895",
        "c57f5e043cfc80cd",
        "6ac884cdaab549d2",
        "d67cdbb50f36c33c",
        "eb1cd8de267060bd",
        "9e1b5d7d576f8644",
        "5cb819e1eca6c88c",
        "2b0b8a8a2746f651",
        "f1c3da60054ae3c0",
        "59645290015f76b3",
        "2ad22117fd982961",
        "a5e948d1c7d1cf54",
        "a73de68d82a1ff6b",
        "f002c0c291cecc0b",
        "d4b271987bcd9c64",
        "599bb28489239522",
        "76ce70a648e4685b",
        "7ff9e60dc76e5411",
        "22685a10daac0871",
        "a02718aa55df4cc1",
        "cdb7099478609807",
        "df1137cce618777b",
        "45839db0193f08ce",
        "3aa396aabd3193b5",
    }
)
FORMAT_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".rntxt", ".abc", ".mid", ".midi")
# Percent of the non-reserved pieces in each split (by a digest of the name, so stable as the corpus grows).
SPLIT_PERCENT = {"train": 80, "validation": 10, "test": 10}
# SoundFonts only ever heard in evaluation; the learned analysers train on the others.
EVALUATION_SOUNDFONTS = ("MuseScore_General.sf3", "MuseScore_General_Full.sf3")


class ReservedPieceError(ValueError):
    """A reserved piece was asked for: it must never be used."""


def canonical_name(name: str) -> str:
    """'bach/bwv66.6', 'bach/bwv66.6.mxl', '/…/bach/bwv66.6.mxl' -> 'bwv66.6' (the format suffix dropped,
    never the movement number)."""
    base = PurePosixPath(str(name).replace("\\", "/")).name.split("#")[0].lower()
    for suffix in FORMAT_SUFFIXES:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _digest(name: str) -> str:
    return hashlib.sha256(canonical_name(name).encode()).hexdigest()[:16]


def is_reserved(name: str) -> bool:
    return _digest(name) in RESERVED_DIGESTS


def require_not_reserved(name: str) -> str:
    if is_reserved(name):
        raise ReservedPieceError(f"{name} is reserved for an external benchmark and is never used by the project")
    return name


def split_of(name: str) -> str:
    """'train', 'validation' or 'test' for a non-reserved piece."""
    require_not_reserved(name)
    bucket = int(hashlib.sha256(f"split:{canonical_name(name)}".encode()).hexdigest()[:8], 16) % 100
    bound = 0
    for split, percent in SPLIT_PERCENT.items():
        bound += percent
        if bucket < bound:
            return split
    return "test"


@lru_cache(maxsize=1)
def corpus_chorales() -> tuple[str, ...]:
    """Bach chorales of the music21 corpus as 'bach/<name>', reserved ones left out, sorted."""
    from music21 import corpus

    names = set()
    for path in corpus.getComposer("bach"):
        path = PurePosixPath(str(path).replace("\\", "/"))
        if path.suffix in (".mxl", ".xml") and path.name.startswith("bwv") and not is_reserved(path.name):
            names.add(f"bach/{canonical_name(path.name)}")
    return tuple(sorted(names))


def pieces_in(split: str, names: tuple[str, ...] | None = None) -> list[str]:
    return [n for n in (corpus_chorales() if names is None else names) if split_of(n) == split]


def soundfont_split(soundfonts: list[str]) -> dict[str, list[str]]:
    """{'train': [...], 'evaluation': [...]}: the evaluation SoundFonts present, or, where none is, the last
    SoundFont by name (with one SoundFont alone, both sides share it and a caller should say so)."""
    names = sorted(soundfonts)
    held_out = [n for n in names if n in EVALUATION_SOUNDFONTS] or names[-1:]
    train = [n for n in names if n not in held_out] or held_out
    return {"train": train, "evaluation": held_out}
