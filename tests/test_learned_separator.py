"""The learned separator (`stem_separator`): trained by the pipeline on its own renders, reproducible from its seed,
registered in MLflow through the champion gate, and used offline in place of the DSP fallback once it is champion."""

import json
import logging
import shutil

import dagster as dg
import numpy as np
import pytest

from pipeline_project.resources import MlflowResource, RendererResource, SeparatorResource, StorageResource
from pipeline_project.separation import learned
from pipeline_project.separation.separator import FALLBACK_NAME, STEM_NAMES, separate_with_fallback
from pipeline_project.synthesis.render import available_soundfonts, bundled_soundfont
from pipeline_project.training import analysis_corpus, separator_corpus, separator_registry
from pipeline_project.training.train_separator import train_separator, validation_sdr

QUICK = dict(max_pieces=1, steps=3, width=32, workers=1, log=lambda line: None)


@pytest.fixture(autouse=True)
def fresh_offline_warning(monkeypatch):
    monkeypatch.setattr("pipeline_project.separation.demucs_download._WARNED_IN_PROCESS", [])


@pytest.fixture(scope="module")
def user_soundfonts(tmp_path_factory):
    """A user's SoundFont folder holding a copy of the bundled one under another name, so training has a
    SoundFont to hold out for validation on any machine, however few the system has."""
    folder = tmp_path_factory.mktemp("soundfonts")
    shutil.copy(bundled_soundfont(), folder / "UserKit.sf2")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, user_soundfonts):
    """A separator trained for three steps on one training render, validated on one held-out render:
    (folder, ONNX path, validation renders, their conditions, the training settings)."""
    folder = tmp_path_factory.mktemp("separator")
    quick = dict(QUICK, catalog=available_soundfonts(user_soundfonts))
    path, validation, conditions = train_separator(
        folder / "a", folder / "corpus", meter_cache=folder / "meters.json", **quick
    )
    return folder, path, validation, conditions, quick


@pytest.fixture(scope="module")
def held_out_render(tmp_path_factory):
    """One test-split render with drums, heard in a room: (stereo mix, rate)."""
    catalog = available_soundfonts()
    folder = tmp_path_factory.mktemp("render")
    plans = analysis_corpus.plan_renders(
        "test", list(catalog), 1, 3, max_pieces=4, conditions=("room",), meter_cache=folder / "meters.json"
    )
    plan = next(p for p in plans if p.groove)
    example = separator_corpus.load(separator_corpus.build([plan], folder, catalog, workers=1)[0])
    return example["mix"].astype(np.float32), example["meta"]["sample_rate"]


def test_training_is_reproducible_from_its_seed_and_writes_a_card(trained, held_out_render):
    folder, first, validation, conditions, quick = trained
    second = train_separator(folder / "b", folder / "corpus", meter_cache=folder / "meters.json", **quick)[0]
    assert first.read_bytes() == second.read_bytes()  # same seed, same corpus: the same weights
    card = json.loads(first.with_suffix(".json").read_text())
    assert card["name"] == "stem_separator" and card["version"].startswith("0-") and card["training"]["steps"] == 3
    assert set(card["validation_sdr"]) == set(card["dsp_validation_sdr"]) and isinstance(card["promoted"], bool)
    assert "UserKit.sf2" in card["training_soundfonts"] + card["validation_soundfonts"]  # the user's counts
    assert not set(card["training_soundfonts"]) & set(card["validation_soundfonts"])  # validated on unheard timbres
    assert card["training"]["device"] == "cpu"
    arguments = card["made_with"]["arguments"]  # how to make it again (training.reproduce): on the CPU too
    assert card["made_with"]["module"] == "pipeline_project.training.train_separator"
    assert arguments[arguments.index("--device") + 1] == "cpu" and len(card["source_commit"]) == 40
    examples = [separator_corpus.load(p) for p in validation]
    assert (
        validation_sdr(learned.load_separator(first), examples, conditions) == card["validation_sdr"]
    )  # how a champion is re-scored

    mix, rate = held_out_render
    separation = learned.separate_with_learned(mix, rate, learned.load_separator(first))
    assert set(separation.stems) == set(STEM_NAMES) and all(s.shape == mix.shape for s in separation.stems.values())
    # The network starts as the DSP fallback (its masks are the input, on the same grid), so three steps of
    # training leave it separating nearly as the fallback does; and what it hears as noise, left out of every
    # stem, is still next to nothing.
    fallback = separate_with_fallback(mix, rate).stems
    for name in STEM_NAMES:
        difference = np.sum((separation.stems[name] - fallback[name]) ** 2) / (np.sum(fallback[name] ** 2) + 1e-9)
        assert difference < 0.05, name
    assert np.sum((mix - sum(separation.stems.values())) ** 2) < 0.01 * np.sum(mix**2)
    assert (
        separation.describe()["model_name"] == "stem_separator" and len(separation.describe()["weights_sha256"]) == 64
    )


def test_other_rates_and_mono_are_separated_at_their_own_rate_and_shape(trained):
    loaded = learned.load_separator(trained[1])
    rng = np.random.default_rng(0)
    for mix, rate in (
        (0.1 * rng.standard_normal((2, 48_000)).astype(np.float32), 48_000),
        (0.1 * rng.standard_normal((1, 22_050)).astype(np.float32), 22_050),
    ):
        stems = learned.separate_with_learned(mix, rate, loaded).stems
        assert all(s.shape == mix.shape and s.dtype == np.float32 for s in stems.values())


def test_only_a_champion_separates_and_then_offline_songs_use_it(tmp_path, trained, held_out_render, caplog):
    mlflow = MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    registry = mlflow.registry()
    result = separator_registry.register_separator(
        registry, mlflow.experiment, trained[1], {"source": "test"}, log=lambda line: None
    )
    # Three steps do not beat the DSP fallback on every stem: registered, but as a challenger, so songs keep the fallback.
    assert result.version == "1" and not result.promoted and result.card["checks"]["reloads_and_predicts_as_trained"]
    assert mlflow.stem_separator(log=lambda line: None) is None

    registry.client.set_registered_model_alias(
        separator_registry.FAMILY, "champion", "1"
    )  # as a person promoting it would
    champion = mlflow.stem_separator(log=lambda line: None)
    assert champion is not None and champion.card["registry_version"] == "1"
    assert champion.sha256 == learned.load_separator(trained[1]).sha256  # the registered network, downloaded
    assert mlflow.stem_separator(log=lambda line: None).path == champion.path  # downloaded once

    mix, rate = held_out_render
    offline = SeparatorResource(weights="never", model_dir=str(tmp_path / "no-demucs"))
    with caplog.at_level(logging.INFO):
        separation = offline.separate(mix, rate, learned=champion)
    assert separation.separator == learned.NAME == "learned"
    assert (
        separation.describe()["weights_sha256"] == champion.sha256
        and separation.describe()["version"] == champion.version
    )
    assert "Using the learned separator" in caplog.text
    assert (
        SeparatorResource(weights="never", learned="never").separate(mix, rate, learned=champion).separator
        == FALLBACK_NAME
    )


def test_the_training_asset_trains_and_puts_the_new_version_through_the_gate(tmp_path, user_soundfonts):
    from pipeline_project.assets.training import stem_separator

    mlflow = MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    resources = {
        "storage": StorageResource(data_root=str(tmp_path / "data")),
        "mlflow": mlflow,
        "renderer": RendererResource(soundfont_dir=str(user_soundfonts)),
    }
    config = {"train": True, "max_pieces": 1, "steps": 2, "width": 32}
    result = dg.materialize(
        [stem_separator],
        resources=resources,
        run_config={"ops": {"stem_separator": {"config": config}}},
        raise_on_error=False,
    )
    metadata = result.asset_materializations_for_node("stem_separator")[0].metadata
    assert metadata["model_version"].value == "1" and metadata["alias"].value == "challenger"
    assert mlflow.registry().champion_version("stem_separator") is None
    # Scored on one validation render, it fails the blocking model check (too few renders) as well as the gate.
    check = result.get_asset_check_evaluations()[0]
    assert not check.passed and check.metadata["test_split_has_10_rows"].value == "FAILED"
    assert check.metadata["reloads_and_predicts_as_trained"].value == "passed"
    assert (tmp_path / "data" / "separator_corpus" / "train").is_dir()  # renders cached under the data root
