"""The renderer resource: which SoundFonts FluidSynth may use."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import dagster as dg

from pipeline_project.synthesis.render import available_soundfonts


class RendererResource(dg.ConfigurableResource):
    """FluidSynth settings.

    soundfont_dir: folder of extra .sf2/.sf3 files used beside the bundled and system SoundFonts
    (default: `<data root>/soundfonts`).
    """

    soundfont_dir: Optional[str] = None

    def soundfonts(self) -> list[Path]:
        return available_soundfonts(self.soundfont_dir)
