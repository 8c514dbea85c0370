"""Shared fixtures: small real audio made on the spot, a private data root and Dagster home per test."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline_project.audio.io import write_mp3
from pipeline_project.planning import PER_SONG_STAGES
from pipeline_project.synthesis.grooves import groove_only
from pipeline_project.synthesis.performance import STEADY_TEMPO, perform
from pipeline_project.synthesis.render import render

# Tests never reach the network: runs built from the environment (and the processes they start) use Demucs
# weights only where they already are. The download path has its own tests against a loopback server.
os.environ["PIPELINE_DEMUCS_WEIGHTS"] = "never"

# The per-song stages, in pipeline order: one song partition each.
PER_SONG_ASSETS = PER_SONG_STAGES


def render_groove_song(
    path: Path,
    style: str = "rock",
    bars: int = 5,
    tempo: float = 120.0,
    seed: int = 1,
    tags: dict | None = None,
    key: str = "C:major",
) -> Path:
    """A short drums-and-bass song rendered by FluidSynth and encoded as a tagged MP3."""
    performance = perform(groove_only(style, bars, seed, key=key), tempo, seed=seed, humanization=STEADY_TEMPO)
    audio = render(performance)
    write_mp3(path, audio.mix, audio.sample_rate, tags or {})
    return path


def pytest_configure(config):
    """Anonymization keys live in the user's config folder: tests (and the processes they start) keep theirs in a
    folder of their own, never in the home folder of whoever runs them."""
    import tempfile

    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="pipeline-test-config-")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "incoming").mkdir(parents=True)
    return root


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def sine_stereo() -> tuple[np.ndarray, int]:
    rate = 44_100
    t = np.arange(rate * 3) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([tone, tone]).astype(np.float32), rate


def with_privacy_checks(*assets):
    """`assets` and the blocking privacy checks of those that are datasets: a dataset's snapshot is published
    (becomes what consumers read) only by its check, as in every run the UI, sensors and CLI start."""
    from pipeline_project.checks import privacy_checks

    keys = {key for asset in assets for key in asset.keys}
    return [*assets, *(c for c in privacy_checks if {k.asset_key for k in c.check_keys} <= keys)]


def rendered_hits(seed: int, styles=("rock", "disco", "funk")):
    """drum_hits rows of grooves rendered with the bundled SoundFont's standard kit."""
    import pandas as pd

    from pipeline_project.datasets.tables import drum_hits_table
    from pipeline_project.synthesis.examples import ExampleSpec, groove_sources, render_example
    from pipeline_project.synthesis.instruments import DRUM_BANK, Voice
    from pipeline_project.synthesis.render import available_soundfonts

    catalog = {"TimGM6mb.sf2": available_soundfonts()["TimGM6mb.sf2"]}
    sources = {s.locator: s for s in groove_sources()}
    rng = np.random.default_rng(seed)
    tables = []
    for style in styles:
        spec = ExampleSpec(
            f"ex-c{seed}{style}",
            sources[style],
            style,
            "I-IV-V-I",
            "A:minor",
            16.0,
            float(rng.integers(90, 130)),
            int(rng.integers(0, 2**31)),
        )
        voices = {
            "drums": Voice("TimGM6mb.sf2", DRUM_BANK, 0, "drum_kit"),
            "bass": Voice("TimGM6mb.sf2", 0, 33, "bass"),
        }
        example = render_example(spec, catalog, voices=voices)
        drums = example.audio.stems["drums"].mean(axis=0)
        tables.append(drum_hits_table([(example.labels(), drums, example.audio.sample_rate)], b"c" * 32))
    return pd.concat(tables, ignore_index=True)
