"""The model families and their automation: the embedding and its ONNX exports, the genre classifier through a
real Dagster run and MLflow store, and the retrain-on-growth condition evaluated by Dagster itself."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pipeline_project.datasets.snapshots import write_snapshot
from pipeline_project.datasets.tables import SONG_FEATURE_COLUMNS
from pipeline_project.definitions import build_definitions, default_resources
from pipeline_project.training.embedding import (
    WINDOW_FRAMES,
    EmbeddingSettings,
    embed,
    spectral_contrast,
    train_embedding,
)
from pipeline_project.training.retrieval import (
    OnnxEmbedder,
    build_index,
    export_onnx,
    quantize_int8,
    rank_of_truth,
    retrieval_scores,
    sliding_windows,
)

N_MELS = 64


def fake_tracks(count: int, frames: int, seed: int) -> dict[str, np.ndarray]:
    """Log-mel-like dB images: a few held 'notes' per track that move over time, distinct per track."""
    rng = np.random.default_rng(seed)
    tracks = {}
    for index in range(count):
        image = np.full((N_MELS, frames), -60.0, np.float32)
        for start in range(0, frames, 12):
            for band in rng.choice(N_MELS - 3, size=4, replace=False):
                image[band : band + 3, start : start + rng.integers(6, 14)] = rng.uniform(-20, 0)
        tracks[f"track-{index}"] = image
    return tracks


def degrade(image: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smeared = image.copy()
    smeared[:, 2:] = np.maximum(smeared[:, 2:], smeared[:, :-2] - 12)  # a tail, like reverb
    return (smeared + rng.normal(0, 6, image.shape) - 10).astype(np.float32)  # noise and a quieter level


@pytest.fixture(scope="module")
def trained():
    tracks = fake_tracks(8, 200, seed=0)
    clean, degraded, owners = [], [], []
    for index, image in enumerate(tracks.values()):
        noisy = degrade(image, seed=index)
        for start in range(0, 200 - 86, 8):
            clean.append(image[:, start : start + 86])
            degraded.append(noisy[:, start : start + 86])
            owners.append(index)
    model, losses = train_embedding(
        np.stack(clean), np.stack(degraded), EmbeddingSettings(steps=60, batch_size=32, seed=1), tracks=np.array(owners)
    )
    return tracks, model, losses


def queries_of(tracks: dict[str, np.ndarray], seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    windows, truth = [], []
    for index, (name, image) in enumerate(tracks.items()):
        noisy = degrade(image, seed=100 + index)
        for start in rng.integers(0, image.shape[1] - WINDOW_FRAMES, 4):
            windows.append(noisy[:, start : start + WINDOW_FRAMES])
            truth.append(name)
    return np.stack(windows), truth


def test_embedding_training_is_seeded_and_identifies_tracks_through_degradation(trained):
    tracks, model, losses = trained
    assert losses[-1] < losses[0]
    queries, truth = queries_of(tracks, seed=3)
    scores = retrieval_scores(rank_of_truth(build_index(model, tracks), embed(model, queries), truth))
    assert scores["top1"] >= 0.8 and scores["mrr"] >= scores["top1"]
    vectors = embed(model, queries[:3])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # The network normalizes each window: a louder or quieter query embeds the same.
    assert np.allclose(embed(model, queries[:3] + 15.0), vectors, atol=1e-4)


def test_the_contrast_view_drops_a_smooth_spectral_envelope_and_keeps_a_peak():
    import torch

    bands = np.arange(N_MELS, dtype=np.float32)
    window = np.tile((-0.5 * bands)[:, None], (1, WINDOW_FRAMES))  # a steady tilt, as an EQ or a crowd adds
    window[30] += 20.0  # one partial standing out of its neighbourhood
    contrast = spectral_contrast(torch.from_numpy(window[None]))[0].numpy()
    assert np.abs(contrast[5:25]).max() < 1e-4 and np.abs(contrast[36 : N_MELS - 5]).max() < 1e-4
    assert contrast[30].min() > 15.0


def test_onnx_exports_embed_like_torch_and_int8_keeps_retrieval(trained, tmp_path):
    tracks, model, _ = trained
    float_path = export_onnx(model, tmp_path / "embedding.onnx", N_MELS)
    calibration = np.concatenate([sliding_windows(image, 16) for image in tracks.values()])
    int8_path = quantize_int8(float_path, tmp_path / "embedding.int8.onnx", calibration)
    assert int8_path.stat().st_size < float_path.stat().st_size
    queries, truth = queries_of(tracks, seed=4)
    assert np.allclose(OnnxEmbedder(float_path).embed(queries), embed(model, queries), atol=1e-4)
    index_float, index_int8 = build_index(model, tracks), build_index(OnnxEmbedder(int8_path), tracks)
    top1_float = retrieval_scores(rank_of_truth(index_float, embed(model, queries), truth))["top1"]
    top1_int8 = retrieval_scores(rank_of_truth(index_int8, OnnxEmbedder(int8_path).embed(queries), truth))["top1"]
    assert top1_int8 >= top1_float - 0.1


def planted_song_features(rows: int, seed: int) -> pd.DataFrame:
    """A song_features table whose genres differ in tempo and syncopation, as real ones tend to."""
    rng = np.random.default_rng(seed)
    genres = np.array(["rock", "funk", "jazz"])[np.arange(rows) % 3]
    centre = {"rock": (120, 0.2), "funk": (100, 0.6), "jazz": (160, 0.4)}
    table = pd.DataFrame({column: rng.uniform(0, 1, rows) for column in SONG_FEATURE_COLUMNS})
    table["song_id"] = [f"{i:016x}" for i in range(rows)]
    table["split"] = np.array(["train"] * 7 + ["validation"] * 1 + ["test"] * 2)[np.arange(rows) % 10]
    table["genre"] = genres
    table["tempo_bpm"] = [round(centre[g][0] + rng.normal(0, 5)) for g in genres]
    table["syncopation_index"] = [centre[g][1] + rng.normal(0, 0.05) for g in genres]
    table["key_tonic"], table["key_mode"], table["duration_bucket"], table["separator"] = "C", "major", "2-4m", "demucs"
    return table


def test_genre_classifier_trains_in_dagster_and_registers_with_a_confusion_matrix(tmp_path):
    from pipeline_project.assets.training import genre_classifier_model
    from pipeline_project.training.registry import CHAMPION

    resources = default_resources(str(tmp_path / "data"))
    write_snapshot(
        planted_song_features(90, seed=0), resources["storage"].dataset_dir("song_features"), "song_features"
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize([genre_classifier_model], resources=resources, instance=instance)
        metadata = result.asset_materializations_for_node("genre_classifier")[0].metadata
        assert result.get_asset_check_evaluations()[0].passed
    assert metadata["trained"].value is True and metadata["alias"].value == CHAMPION
    assert metadata["test_macro_f1"].value >= 0.8
    assert metadata["confusion_matrix"].value.startswith("![confusion matrix](data:image/png;base64,")
    registry = resources["mlflow"].registry()
    card = registry.model_card("genre_classifier", metadata["model_version"].value)
    assert card["training"]["samples"] == 63 and card["performance"]["test_macro_f1"] == metadata["test_macro_f1"].value
    artifacts = {f.path for f in registry.client.list_artifacts(metadata["mlflow_run_id"].value, "plots")}
    assert artifacts == {"plots/confusion_matrix.png"}


def test_genre_classifier_says_why_it_does_not_train_on_one_genre(tmp_path):
    from pipeline_project.assets.training import genre_classifier_model

    resources = default_resources(str(tmp_path / "data"))
    write_snapshot(
        planted_song_features(30, seed=1).assign(genre="rock"),
        resources["storage"].dataset_dir("song_features"),
        "song_features",
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize([genre_classifier_model], resources=resources, instance=instance)
        metadata = result.asset_materializations_for_node("genre_classifier")[0].metadata
    assert metadata["trained"].value is False and "a classifier needs two" in metadata["reason"].value


def test_models_retrain_when_their_dataset_grew_ten_percent_since_the_champion(tmp_path):
    defs = build_definitions(default_resources(str(tmp_path / "data")))
    selection = dg.AssetSelection.assets("drum_hit_classifier")

    def requested(instance, cursor):
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection, cursor=cursor
        )
        return result.total_requested, result.cursor

    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("drum_hits", metadata={"rows": 1000}))
        instance.report_runless_asset_event(
            dg.AssetMaterialization("drum_hit_classifier", metadata={"champion_dataset_rows": 1000})
        )
        count, cursor = requested(instance, None)
        assert count == 0
        instance.report_runless_asset_event(dg.AssetMaterialization("drum_hits", metadata={"rows": 1060}))
        count, cursor = requested(instance, cursor)
        assert count == 0  # 6 % is not enough
        instance.report_runless_asset_event(dg.AssetMaterialization("drum_hits", metadata={"rows": 1120}))
        count, cursor = requested(instance, cursor)
        assert count == 1  # 12 % since the champion
        count, cursor = requested(instance, cursor)
        assert count == 0  # asked once per dataset update, not on every tick


def test_the_genre_classifier_is_scored_on_the_validation_split_too_when_the_test_split_is_one_song():
    from pipeline_project.training.genre_classifier import evaluation_rows

    table = pd.DataFrame(
        {"split": ["train"] * 6 + ["validation", "validation", "test"], "genre": ["rock", "funk"] * 4 + ["rock"]}
    )
    assert sorted(evaluation_rows(table)["split"]) == ["test", "validation", "validation"]
    bigger = pd.concat([table, pd.DataFrame({"split": ["test"], "genre": ["funk"]})], ignore_index=True)
    assert list(evaluation_rows(bigger)["split"]) == ["test", "test"]
