"""The renderer resource: which SoundFonts FluidSynth may use."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipeline_project.synthesis.render import available_soundfonts, soundfont_presets


class RendererResource(dg.ConfigurableResource):
    """FluidSynth settings.

    soundfont_dir: folder of extra .sf2/.sf3 files used beside pretty_midi's bundled TimGM6mb and the
    system's FluidR3_GM / MuseScore General (default: `<data root>/soundfonts`, env PIPELINE_SOUNDFONT_DIR).
    """

    soundfont_dir: str | None = None

    def soundfonts(self) -> dict[str, Path]:
        return available_soundfonts(self.soundfont_dir)

    def presets(self) -> dict[str, set[tuple[int, int]]]:
        """(bank, program) pairs held by each SoundFont, so instruments are only drawn from what exists."""
        return soundfont_presets(self.soundfonts())
