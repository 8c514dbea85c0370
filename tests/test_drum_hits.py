"""Drum-hit features on rendered grooves: open and closed hi-hat must be told apart on grooves held out."""

import numpy as np
import pandas as pd
import pytest

from pipeline_project.datasets.tables import drum_hits_table
from pipeline_project.synthesis.examples import ExampleSpec, groove_sources, render_example
from pipeline_project.synthesis.instruments import DRUM_BANK, DRUM_KITS, Voice
from pipeline_project.synthesis.render import available_soundfonts, soundfont_presets
from pipeline_project.training.drum_classifier import feature_matrix, train
from pipeline_project.training.hihat_rules import CLOSED, OPEN, derive_rules, scores

HIHAT_STYLES = ("rock", "disco", "ballad_6_8", "funk")
SECRET = b"k" * 32


def rendered_hihats(seed: int) -> pd.DataFrame:
    """Open and closed hi-hat hits of grooves rendered with every drum kit of every SoundFont."""
    catalog = available_soundfonts()
    presets = soundfont_presets(catalog)
    sources = {s.locator: s for s in groove_sources()}
    rng = np.random.default_rng(seed)
    tables = []
    for soundfont, held in presets.items():
        for kit in [k for k in DRUM_KITS if (DRUM_BANK, k) in held]:
            for style in HIHAT_STYLES:
                spec = ExampleSpec(
                    f"ex-{seed}{kit}{style}",
                    sources[style],
                    style,
                    "I-V-vi-IV",
                    "D:major",
                    16.0 if style != "ballad_6_8" else 12.0,
                    float(rng.integers(80, 140)),
                    int(rng.integers(0, 2**31)),
                )
                voices = {
                    "drums": Voice(soundfont, DRUM_BANK, kit, "drum_kit"),
                    "bass": Voice(soundfont, 0, 33, "bass"),
                }
                example = render_example(spec, catalog, voices=voices)
                labels = example.labels()
                tables.append(
                    drum_hits_table(
                        [(labels, example.audio.stems["drums"].mean(axis=0), example.audio.sample_rate)], SECRET
                    ).assign(kit=f"{soundfont}:{kit}")
                )
    table = pd.concat(tables, ignore_index=True)
    return table[table["label"].isin([OPEN, CLOSED])].reset_index(drop=True)


@pytest.fixture(scope="module")
def hihats():
    return rendered_hihats(seed=1), rendered_hihats(seed=2)


def test_open_and_closed_hihat_separate_on_held_out_grooves(hihats):
    train_hits, held_out = hihats
    assert set(train_hits["label"]) == {OPEN, CLOSED} and len(held_out) >= 100
    model = train(train_hits, seed=0, n_estimators=100)
    predicted = model.predict(feature_matrix(held_out)) == OPEN
    result = scores(predicted, (held_out["label"] == OPEN).to_numpy())
    assert result["f1_open"] >= 0.95, result


def test_threshold_presets_are_readable_and_hold_up_on_held_out_grooves(hihats):
    train_hits, held_out = hihats
    rules = derive_rules(train_hits, group_column="kit")
    assert set(rules) == {"simple", "balanced", "robust"}
    assert len(rules["simple"].conditions) == 1 and all(1 <= len(r.conditions) <= 2 for r in rules.values())
    assert rules["balanced"].training["balanced_accuracy"] >= rules["simple"].training["balanced_accuracy"] - 1e-9
    is_open = (held_out["label"] == OPEN).to_numpy()
    robust = scores(rules["robust"].predict_open(held_out), is_open)
    assert robust["balanced_accuracy"] >= 0.85, (rules["robust"].describe(), robust)
    assert rules["robust"].to_dict()["rule"].startswith("open when ")
