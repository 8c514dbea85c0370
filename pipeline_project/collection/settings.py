"""The collection settings file (`collection.toml` in the data root; optional: every value has a default).

    [quality]                      # thresholds of the training-quality grade (audio.quality.QualitySettings)
    min_lossy_kbps = 192
    max_clipped_share = 0.0005
    min_seconds = 60

    [export]                       # the private training export (collection.export.ExportSettings)
    grades = ["good", "fair"]
    songs_per_shard = 64

    [targets.genre]                # the share range each value should hold (collection.report); a table
    jazz = [0.10, 0.15]            # replaces that dimension's default targets whole
    rock = [0.10, 0.30]

A wrong name or value fails with the file and the key named, when an asset that needs the settings runs.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_project.audio.quality import GRADES, QualitySettings
from pipeline_project.collection.export import ExportSettings
from pipeline_project.collection.report import DEFAULT_TARGETS, DIMENSIONS


class CollectionSettingsError(ValueError):
    """A collection settings file that cannot be used: names the file and the reason."""


@dataclass(frozen=True)
class CollectionSettings:
    quality: QualitySettings = field(default_factory=QualitySettings)
    # {dimension: {value: (lowest share, highest share)}} the collection report measures the balance against
    targets: dict = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    export: ExportSettings = field(default_factory=ExportSettings)
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
    unknown = sorted(set(values) - {"quality", "targets", "export"})
    if unknown:
        raise CollectionSettingsError(
            f"{path}: unknown table [{unknown[0]}] (known: [quality], [targets.<dimension>], [export])"
        )
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
    return CollectionSettings(
        quality=quality, targets=targets, export=_export_settings(path, values.get("export", {})), source=str(path)
    )


def _export_settings(path: Path, given: dict) -> ExportSettings:
    defaults = ExportSettings()
    known = set(ExportSettings.__dataclass_fields__)
    for name, value in given.items():
        if name not in known:
            raise CollectionSettingsError(
                f"{path}: unknown export setting {name!r} (known: {', '.join(sorted(known))})"
            )
        expected = type(getattr(defaults, name))
        if expected is tuple:
            if not isinstance(value, list) or not set(value) <= set(GRADES) or not value:
                raise CollectionSettingsError(
                    f"{path}: [export] {name} = {value!r} is not a list of {', '.join(GRADES)}"
                )
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise CollectionSettingsError(f"{path}: [export] {name} = {value!r} is not a non-negative number")
    settings = ExportSettings(**{n: tuple(v) if isinstance(v, list) else v for n, v in given.items()})
    if settings.validation_share + settings.test_share >= 1 or settings.songs_per_shard < 1:
        raise CollectionSettingsError(
            f"{path}: [export] needs validation_share + test_share under 1 and songs_per_shard of at least 1"
        )
    return settings


def _share_range(path: Path, dimension: str, value: str, given) -> tuple[float, float]:
    numbers = isinstance(given, list) and len(given) == 2 and all(isinstance(x, int | float) for x in given)
    if not numbers or not 0 <= given[0] <= given[1] <= 1:
        raise CollectionSettingsError(
            f"{path}: [targets.{dimension}] {value} = {given!r} is not [lowest share, highest share] between 0 and 1"
        )
    return float(given[0]), float(given[1])
