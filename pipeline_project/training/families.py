"""Each model family's training run, start to finish: train on its snapshot (or renders), score on the held-out
split, log and register in MLflow, and move `champion` only to a better version (`registry`). The Dagster
assets in `assets/training.py` read the inputs, call one of these and report the `Outcome`.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline_project.analysis import learned
from pipeline_project.training import (
    analysis_registry,
    drum_classifier,
    genre_classifier,
    separator_corpus,
    separator_registry,
)
from pipeline_project.training.embedding import WINDOW_FRAMES, EmbeddingSettings, embed, train_embedding
from pipeline_project.training.hihat_rules import CLOSED, OPEN, derive_rules, scores
from pipeline_project.training.policy import (
    NotTrainable,
    Outcome,
    TrainingRequest,
    already_trained,
    human_label_counts,
)
from pipeline_project.training.registry import RegistrationResult, Registry, reload_checks
from pipeline_project.training.retrieval import (
    OnnxEmbedder,
    export_onnx,
    pair_retrieval,
    quantize_int8,
    windows_from_table,
)
from pipeline_project.training.train_analysis import train_model_set
from pipeline_project.training.train_separator import SeparatorSettings, mean_sdr, train_separator, validation_sdr

DRUM_MODEL_NAME = "drum_hit_classifier"
GENRE_MODEL_NAME = "genre_classifier"
EMBEDDING_MODEL_NAME = "song_embedding"
REVIEW_BAND = (0.4, 0.6)  # champion confidence of the hits a person should label


def hihat_rule_presets(train_rows: pd.DataFrame, test_rows: pd.DataFrame) -> dict:
    """The simple, balanced and robust open/closed hi-hat rules from the train rows, scored on the test split
    when it holds both kinds of hit."""
    if not set(train_rows["label"]) >= {OPEN, CLOSED}:
        return {}
    rules = derive_rules(train_rows, group_column="group_id")
    testable = set(test_rows["label"]) >= {OPEN, CLOSED}
    is_open = (test_rows["label"] == OPEN).to_numpy()
    return {
        name: {**rule.to_dict(), "test": scores(rule.predict_open(test_rows), is_open) if testable else None}
        for name, rule in rules.items()
    }


def contributed_hihat_rows(contributed_hits: pd.DataFrame) -> pd.DataFrame:
    """Accepted community hi-hat hits of the train split, labelled like local hits (for the threshold rules)."""
    if contributed_hits.empty:
        return contributed_hits
    table = contributed_hits[
        (contributed_hits["split"] == "train") & (contributed_hits["instrument"].astype(str) == "hihat")
    ]
    return table.assign(label=np.where(table["OpenHH"].astype(int) == 1, OPEN, CLOSED))


def _rules_markdown(rules: dict) -> str:
    return (
        "\n".join(
            f"- **{name}**: {r['rule']} "
            + (
                f"(test balanced accuracy {r['test']['balanced_accuracy']}, open F1 {r['test']['f1_open']})"
                if r["test"]
                else "(no open and closed hits in the test split)"
            )
            for name, r in rules.items()
        )
        or "none"
    )


def train_drum_classifier(
    request: TrainingRequest,
    contributed_hits: pd.DataFrame,
    contributions_snapshot: str,
    n_estimators: int,
    labels_snapshot: str = "none",
) -> Outcome:
    """A random forest on the `drum_hits` train split, scored per class on its test split, with open/closed
    hi-hat threshold rules in three presets learnt from the local hits and the accepted contributions. People's
    labels (`label_source` human in the table, from the `labels_snapshot` release) take the place of the
    score's."""
    contributions_tag = {"contributions_snapshot": contributions_snapshot, "human_labels_snapshot": labels_snapshot}
    # New contributions teach the hi-hat rules even when the local hits have not changed.
    skipped = already_trained(request, DRUM_MODEL_NAME, contributions_tag)
    if skipped:
        return Outcome(DRUM_MODEL_NAME, "macro_f1", skipped=skipped)
    train_rows, test_rows = request.split("train"), request.split("test")
    if train_rows.empty or test_rows.empty:
        raise NotTrainable(
            f"drum_hits snapshot {request.snapshot_id} has {len(train_rows)} train and {len(test_rows)} test "
            "rows; both splits need rows to train and compare models"
        )
    contributions = contributed_hihat_rows(contributed_hits)
    people = human_label_counts(request.table)
    model = drum_classifier.train(train_rows, request.seed, n_estimators)
    evaluation = drum_classifier.evaluate(model, test_rows)
    rules = hihat_rule_presets(pd.concat([train_rows, contributions]) if len(contributions) else train_rows, test_rows)
    if not rules:
        request.log("the train split has no open and closed hi-hat hits: no hi-hat threshold rules this time")
    example = drum_classifier.feature_matrix(test_rows.head(5))
    metrics = evaluation.metrics()
    result = request.registry.log_and_register(
        model=model,
        flavor="sklearn",
        model_name=DRUM_MODEL_NAME,
        experiment=request.experiment,
        params={
            "seed": request.seed,
            "n_estimators": n_estimators,
            "train_rows": len(train_rows),
            "classes": ",".join(sorted(train_rows["label"].astype(str).unique())),
        },
        metrics=metrics,
        tags=request.tags(**contributions_tag, **{k: str(v) for k, v in people.items()}),
        inputs=request.inputs(),
        input_example=example,
        predict=lambda m, x: m.predict(x),
        score=evaluation.macro_f1,
        score_champion=lambda champion: drum_classifier.evaluate(champion, test_rows).macro_f1,
        minimum_gain=request.minimum_gain,
        json_artifacts={"hihat_rules.json": rules} if rules else None,
        checks=reload_checks(
            "sklearn", lambda m, x: m.predict(x), example, model.predict(example), metrics, len(test_rows), 10
        ),
        training_stats={
            "samples": len(train_rows),
            "songs": int(train_rows["group_id"].nunique()),
            "contributors": int(contributions["group_id"].nunique()) if len(contributions) else 0,
            "contributed_samples": len(contributions),
            **people,
        },
        performance={
            "test_macro_f1": evaluation.macro_f1,
            "test_accuracy": evaluation.accuracy,
            "per_class": evaluation.per_class,
        },
        major=request.major,
        new_data=True,
    )
    return Outcome(
        DRUM_MODEL_NAME,
        "macro_f1",
        result,
        details={"test_accuracy": evaluation.accuracy},
        tables={"per_class": evaluation.per_class},
        markdown={"hihat_rules": _rules_markdown(rules)},
    )


def train_genre_classifier(request: TrainingRequest, labels_snapshot: str = "none") -> Outcome:
    """A genre classifier on the analysis and theory statistics of `song_features`, with the songs' genre tags
    as weak labels, or people's genres where they gave one (`label_source` human, from the `labels_snapshot`
    release); scored by macro F1 with a confusion matrix on the test split (with the validation split when the
    test split holds fewer than two tagged songs). A collection with fewer than two tagged genres is not
    trained, and the outcome says why."""
    train_rows, test_rows = request.split("train"), genre_classifier.evaluation_rows(request.table)
    labels_tag = {"human_labels_snapshot": labels_snapshot}
    skipped = already_trained(request, GENRE_MODEL_NAME, labels_tag) or genre_classifier.why_not_trainable(
        train_rows, test_rows
    )
    if skipped:
        return Outcome(GENRE_MODEL_NAME, "macro_f1", skipped=skipped)
    model = genre_classifier.train(train_rows, request.seed)
    evaluation = genre_classifier.evaluate(model, test_rows)
    png = genre_classifier.confusion_png(evaluation)
    example = genre_classifier.feature_matrix(genre_classifier.labelled(test_rows).head(5))
    metrics = evaluation.metrics()
    songs = len(genre_classifier.labelled(train_rows))
    people = human_label_counts(request.table)
    with tempfile.TemporaryDirectory() as tmp:
        plot = Path(tmp) / "confusion_matrix.png"
        plot.write_bytes(png)
        result = request.registry.log_and_register(
            model=model,
            flavor="sklearn",
            model_name=GENRE_MODEL_NAME,
            experiment=request.experiment,
            params={"seed": request.seed, "train_songs": songs, "genres": ",".join(evaluation.labels)},
            metrics=metrics,
            tags=request.tags(**labels_tag, **{k: str(v) for k, v in people.items()}),
            inputs=request.inputs(),
            input_example=example,
            predict=lambda m, x: m.predict(x),
            score=evaluation.macro_f1,
            score_champion=lambda champion: genre_classifier.evaluate(champion, test_rows).macro_f1,
            minimum_gain=request.minimum_gain,
            files={"plots": plot},
            json_artifacts={"confusion_matrix.json": {"labels": evaluation.labels, "matrix": evaluation.confusion}},
            checks=reload_checks(
                "sklearn",
                lambda m, x: m.predict(x),
                example,
                model.predict(example),
                metrics,
                evaluation.test_rows,
                genre_classifier.MIN_TEST_SONGS,
            ),
            training_stats={"samples": songs, "songs": songs, "contributors": 0, **people},
            performance={
                "test_macro_f1": evaluation.macro_f1,
                "test_accuracy": evaluation.accuracy,
                "per_class": evaluation.per_class,
            },
            major=request.major,
        )
    return Outcome(
        GENRE_MODEL_NAME,
        "macro_f1",
        result,
        details={"test_accuracy": evaluation.accuracy},
        tables={"per_class": evaluation.per_class},
        markdown={"confusion_matrix": f"![confusion matrix](data:image/png;base64,{base64.b64encode(png).decode()})"},
    )


def embedding_evaluation_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The test split, joined by the validation split when the test split alone holds fewer than two tracks."""
    test = table[table["split"] == "test"]
    return test if test["track_id"].nunique() >= 2 else table[table["split"].isin(["test", "validation"])]


def train_song_embedding(request: TrainingRequest, steps: int, batch_size: int, dim: int, max_passes: int) -> Outcome:
    """A concert-robust song embedding: a small CNN on one-second log-mel windows trained with NT-Xent on the
    clean and concert-degraded windows of `concert_pairs` (train split), scored by song identification (top-1,
    top-5, MRR, per SNR) on tracks it never saw; exported to ONNX, float and int8, each scored the same way."""
    train_rows, evaluation_rows = request.split("train"), embedding_evaluation_rows(request.table)
    skipped = already_trained(request, EMBEDDING_MODEL_NAME)
    if not skipped and (len(train_rows) < 2 or evaluation_rows["track_id"].nunique() < 2):
        skipped = (
            f"concert_pairs has {len(train_rows)} training pairs and {evaluation_rows['track_id'].nunique()} held-out "
            "tracks; training needs 2 pairs and scoring 2 tracks (render more examples with the concert preset)"
        )
    if skipped:
        return Outcome(EMBEDDING_MODEL_NAME, "top1", skipped=skipped)
    clean, degraded = windows_from_table(train_rows)
    steps = min(steps, max(20, max_passes * len(train_rows) // batch_size))
    settings = EmbeddingSettings(dim=dim, steps=steps, batch_size=batch_size, seed=request.seed)
    model, losses = train_embedding(
        clean, degraded, settings, tracks=train_rows["track_id"].to_numpy(), log=request.log
    )
    retrieval = {"torch": pair_retrieval(model, evaluation_rows, request.seed)}
    example = np.ascontiguousarray(clean[:2, :, :WINDOW_FRAMES])
    with tempfile.TemporaryDirectory() as tmp:
        float_path = export_onnx(model, Path(tmp) / "song_embedding.onnx", clean.shape[1])
        calibration = np.concatenate([clean[:, :, :WINDOW_FRAMES], degraded[:, :, :WINDOW_FRAMES]])[:512]
        int8_path = quantize_int8(float_path, Path(tmp) / "song_embedding.int8.onnx", calibration)
        retrieval["onnx_float"] = pair_retrieval(OnnxEmbedder(float_path), evaluation_rows, request.seed)
        retrieval["onnx_int8"] = pair_retrieval(OnnxEmbedder(int8_path), evaluation_rows, request.seed)
        metrics = {
            f"{system}_{name}": value
            for system, results in retrieval.items()
            for name, value in results.items()
            if name in ("top1", "top5", "mrr")
        }
        metrics["final_loss"] = losses[-1]
        result = request.registry.log_and_register(
            model=model,
            flavor="pytorch",
            model_name=EMBEDDING_MODEL_NAME,
            experiment=request.experiment,
            params={
                **settings.to_dict(),
                "train_pairs": len(train_rows),
                "train_tracks": int(train_rows["track_id"].nunique()),
            },
            metrics=metrics,
            tags=request.tags(),
            inputs=request.inputs(),
            input_example=example,
            predict=lambda m, x: embed(m, x),
            score=retrieval["torch"]["top1"],
            score_champion=lambda champion: pair_retrieval(champion, evaluation_rows, request.seed)["top1"],
            minimum_gain=request.minimum_gain,
            onnx_exports={"onnx": float_path, "onnx_int8": int8_path},
            json_artifacts={"retrieval.json": retrieval, "losses.json": {"every_50_steps": losses}},
            checks=reload_checks(
                "pytorch",
                lambda m, x: embed(m, x),
                example,
                embed(model, example),
                metrics,
                retrieval["torch"]["queries"],
                4,
            ),
            training_stats={
                "samples": len(train_rows),
                "songs": int(train_rows["track_id"].nunique()),
                "contributors": 0,
            },
            performance={"retrieval": retrieval},
            major=request.major,
        )
    comparison = pd.DataFrame(
        [{"model": system, **{k: results[k] for k in ("top1", "top5", "mrr")}} for system, results in retrieval.items()]
    )
    return Outcome(
        EMBEDDING_MODEL_NAME,
        "top1",
        result,
        details={"steps": steps, "final_loss": losses[-1]},
        tables={"per_snr": retrieval["torch"]["per_snr"]},
        markdown={"retrieval": comparison.to_markdown(index=False)},
    )


def train_analysis_models(
    registry: Registry,
    experiment: str,
    cache: Path,
    corpus: Path,
    tags: dict[str, str],
    *,
    seed: int,
    renders_per_piece: int,
    max_pieces: int | None,
    steps: int,
    minimum_gain: float,
    log,
    catalog: dict[str, Path] | None = None,
) -> dict[str, RegistrationResult]:
    """A new set of learned analysers trained from the renders in `corpus`, each family put through the
    champion gate on the validation renders, re-scoring the champion with the other champions, as the pipeline
    runs it. {family: its new version}. `catalog`: the SoundFonts to render with (default: this machine's)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "models"
        validation = train_model_set(
            out,
            corpus,
            seed=seed,
            renders_per_piece=renders_per_piece,
            max_pieces=max_pieces,
            steps=steps,
            log=log,
            catalog=catalog,
        )

        def rescore(name: str):
            def score(_champion) -> float:
                champions = analysis_registry.champion_model_set(registry, cache)
                return analysis_registry.score_on_renders(champions, validation)[analysis_registry.FAMILY_METRIC[name]]

            return score

        results = analysis_registry.register_model_set(
            registry, experiment, out, learned.MODEL_NAMES, tags, minimum_gain, rescore, log
        )
    return {result.model_name: result for result in results}


def train_stem_separator(
    registry: Registry,
    experiment: str,
    cache: Path,
    corpus: Path,
    meters: Path,
    tags: dict[str, str],
    *,
    seed: int,
    max_pieces: int | None,
    steps: int = SeparatorSettings.steps,
    width: int = SeparatorSettings.width,
    minimum_gain_db: float,
    log,
    catalog: dict[str, Path] | None = None,
) -> RegistrationResult:
    """A new learned separator trained from the renders in `corpus` and put through the champion gate on the
    validation renders, where the champion is re-scored separating as the pipeline runs it. `catalog`: the
    SoundFonts to render with (default: this machine's)."""
    with tempfile.TemporaryDirectory() as tmp:
        path, validation, conditions = train_separator(
            Path(tmp) / "models", corpus, seed, max_pieces, steps, width, meter_cache=meters, log=log, catalog=catalog
        )
        examples = [separator_corpus.load(p) for p in validation]

        def rescore(_champion) -> float:
            champion = separator_registry.champion_separator(registry, cache)
            return mean_sdr(validation_sdr(champion, examples, conditions))

        return separator_registry.register_separator(registry, experiment, path, tags, minimum_gain_db, rescore, log)


def review_queue_table(
    model, model_version: str, hits: pd.DataFrame, band: tuple[float, float] = REVIEW_BAND, seed: int = 7
):
    """The drum hits the champion is unsure about (top class probability within `band`), with its guess and
    confidence: the examples that would teach the next model most. The champion trained on the train split and
    is sure of those hits whatever they are, so there the guess and confidence are out-of-fold (forests that
    never saw the hit's song); elsewhere they are the champion's."""
    features = drum_classifier.feature_matrix(hits)
    probabilities = model.predict_proba(features)
    train = (hits["split"] == "train").to_numpy()
    if train.any():
        rows = hits[train]
        unseen = drum_classifier.out_of_fold_probabilities(
            features[train], rows["label"].astype(str), rows["group_id"].astype(str), model.classes_, seed
        )
        if unseen is not None:
            probabilities[train] = unseen
    confidence = probabilities.max(axis=1)
    unsure = (confidence >= band[0]) & (confidence <= band[1])
    queue = hits.loc[unsure, ["hit_id", "group_id", "split", "label", *drum_classifier.FEATURE_NAMES]].copy()
    queue.insert(4, "predicted", model.classes_[probabilities[unsure].argmax(axis=1)])
    queue.insert(5, "confidence", np.round(confidence[unsure], 4))
    queue.insert(6, "model_version", str(model_version))
    return queue
