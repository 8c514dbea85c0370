"""The collection settings file (`collection.toml` in the data root; optional: every value has a default).

    [quality]                      # thresholds of the training-quality grade (audio.quality.QualitySettings)
    min_lossy_kbps = 192
    max_clipped_share = 0.0005
    min_seconds = 60

A wrong name or value fails with the file and the key named, when an asset that needs the settings runs.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_project.audio.quality import QualitySettings


class CollectionSettingsError(ValueError):
    """A collection settings file that cannot be used: names the file and the reason."""


@dataclass(frozen=True)
class CollectionSettings:
    quality: QualitySettings = field(default_factory=QualitySettings)
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
    unknown = sorted(set(values) - {"quality"})
    if unknown:
        raise CollectionSettingsError(f"{path}: unknown table [{unknown[0]}] (known: [quality])")
    try:
        quality = QualitySettings.from_mapping(values.get("quality", {}), source=f"{path} [quality]")
    except ValueError as error:
        raise CollectionSettingsError(str(error)) from error
    return CollectionSettings(quality=quality, source=str(path))
