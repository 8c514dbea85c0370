"""The collection settings file (`collection.toml` in the data root; optional: every value has a default).

    [quality]                      # thresholds of the training-quality grade (audio.quality.QualitySettings)
    min_lossy_kbps = 192
    max_clipped_share = 0.0005
    min_seconds = 60

    [targets.genre]                # the share range each value should hold (collection.report); a table
    jazz = [0.10, 0.15]            # replaces that dimension's default targets whole
    rock = [0.10, 0.30]

A wrong name or value fails with the file and the key named, when an asset that needs the settings runs.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_project.audio.quality import QualitySettings
from pipeline_project.collection.report import DEFAULT_TARGETS, DIMENSIONS


class CollectionSettingsError(ValueError):
    """A collection settings file that cannot be used: names the file and the reason."""


@dataclass(frozen=True)
class CollectionSettings:
    quality: QualitySettings = field(default_factory=QualitySettings)
    # {dimension: {value: (lowest share, highest share)}} the collection report measures the balance against
    targets: dict = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    source: str = "defaults"  # the file they came from, or "defaults"


def load_collection_settings(path: str | Path) -> CollectionSettings:
    """The settings in `path`, the defaults where it is missing or silent."""
    path = Path(path)
    if not path.exists():
        return CollectionSettings()
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise CollectionSettingsError(f"{path}: not a readable TOML file ({error})") from error
    unknown = sorted(set(values) - {"quality", "targets"})
    if unknown:
        raise CollectionSettingsError(f"{path}: unknown table [{unknown[0]}] (known: [quality], [targets.<dimension>])")
    try:
        quality = QualitySettings.from_mapping(values.get("quality", {}), source=f"{path} [quality]")
    except ValueError as error:
        raise CollectionSettingsError(str(error)) from error
    targets = dict(DEFAULT_TARGETS)
    for dimension, ranges in values.get("targets", {}).items():
        if dimension not in DIMENSIONS or not isinstance(ranges, dict):
            raise CollectionSettingsError(
                f"{path}: [targets.{dimension}] is not a dimension (known: {', '.join(DIMENSIONS)})"
            )
        targets[dimension] = {str(value): _share_range(path, dimension, value, r) for value, r in ranges.items()}
    return CollectionSettings(quality=quality, targets=targets, source=str(path))


def _share_range(path: Path, dimension: str, value: str, given) -> tuple[float, float]:
    numbers = isinstance(given, list) and len(given) == 2 and all(isinstance(x, int | float) for x in given)
    if not numbers or not 0 <= given[0] <= given[1] <= 1:
        raise CollectionSettingsError(
            f"{path}: [targets.{dimension}] {value} = {given!r} is not [lowest share, highest share] between 0 and 1"
        )
    return float(given[0]), float(given[1])
