"""The set of rendered training examples: corpus excerpts with a rhythm section, and drums-and-bass grooves.

Every example is described by an ExampleSpec whose fields (seed included) fully determine its audio and
labels, so a recorded spec reproduces the example exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline_project.synthesis.arrangement import Arrangement, Performance, from_corpus, perform
from pipeline_project.synthesis.grooves import GROOVE_STYLES, groove_only, with_rhythm_section
from pipeline_project.synthesis.render import RenderedAudio, render

# Chorales not used by the demo songs, so examples never share a source with the songs they help measure.
CORPUS_EXCERPTS = ("bach/bwv66.6", "bach/bwv153.1", "bach/bwv86.6", "bach/bwv267", "bach/bwv10.7", "bach/bwv281")
GROOVE_KEYS = ("C:major", "G:major", "D:major", "A:major", "F:major", "Bb:major")


@dataclass(frozen=True)
class ExampleSpec:
    example_key: str
    source: str
    source_kind: str  # "corpus" | "groove"
    groove: str
    tempo_bpm: float
    seed: int
    soundfont: str
    length_ql: float
    key: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def example_specs(seed: int, soundfonts: list[Path], grooves_per_style: int = 4, excerpt_ql: float = 16.0,
                  groove_bars: int = 6) -> list[ExampleSpec]:
    rng = np.random.default_rng(seed)
    specs = []
    for index, name in enumerate(CORPUS_EXCERPTS):
        style = ("rock", "funk", "offbeat", "ride")[index % 4]
        specs.append(ExampleSpec(
            f"corpus-{name.split('/')[-1]}", name, "corpus", style, float(rng.integers(84, 128)),
            int(rng.integers(0, 2**31)), str(soundfonts[index % len(soundfonts)]), excerpt_ql))
    for style, definition in GROOVE_STYLES.items():
        for variant in range(grooves_per_style):
            key = GROOVE_KEYS[int(rng.integers(0, len(GROOVE_KEYS)))]
            specs.append(ExampleSpec(
                f"groove-{style}-{variant}", f"groove/{style}", "groove", style, float(rng.integers(80, 140)),
                int(rng.integers(0, 2**31)), str(soundfonts[(len(specs)) % len(soundfonts)]),
                float(groove_bars * definition["meter"]), key))
    return specs


def arrangement_for(spec: ExampleSpec) -> Arrangement:
    if spec.source_kind == "corpus":
        return with_rhythm_section(from_corpus(spec.source, max_ql=spec.length_ql), spec.groove, spec.seed)
    meter = GROOVE_STYLES[spec.groove]["meter"]
    return groove_only(spec.groove, int(spec.length_ql // meter), spec.seed, key=spec.key)


def render_example(spec: ExampleSpec) -> tuple[Arrangement, Performance, RenderedAudio]:
    arrangement = arrangement_for(spec)
    performance = perform(arrangement, spec.tempo_bpm, seed=spec.seed)
    return arrangement, performance, render(performance, spec.soundfont)
