import base64
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from pipeline_project.analysis import learned
from pipeline_project.assets.datasets import concert_pairs, contributed_hits, drum_hits, snapshot, song_features
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.automation import retrain_when_grown
from pipeline_project.datasets.snapshots import latest_manifest, read_snapshot
from pipeline_project.resources import DatasetsResource, MlflowResource, StorageResource
from pipeline_project.training import (
    analysis_registry,
    drum_classifier,
    genre_classifier,
    separator_corpus,
    separator_registry,
)
from pipeline_project.training.embedding import WINDOW_FRAMES, EmbeddingSettings, embed, train_embedding
from pipeline_project.training.hihat_rules import CLOSED, OPEN, derive_rules, scores
from pipeline_project.training.registry import RegistrationResult, Registry, reload_checks, snapshot_input
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
MODEL_CHECKS = "model_checks"
REVIEW_BAND = (0.4, 0.6)


class TrainingConfig(dg.Config):
    seed: int = 7
    # A new version takes `champion` only when its test score beats the champion's, re-scored on the same test
    # split, by at least this much (macro F1 for the classifiers, top-1 for the embedding).
    minimum_gain: float = 0.01
    # Train even when the latest version was trained on this very snapshot with this code.
    force: bool = False


class DrumTrainingConfig(TrainingConfig):
    n_estimators: int = 200


class EmbeddingTrainingConfig(TrainingConfig):
    steps: int = 400
    batch_size: int = 64
    dim: int = 64
    # Small datasets get fewer steps: at most this many passes over the training pairs.
    max_passes: int = 30


def _model_checks_spec(name: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            MODEL_CHECKS,
            asset=name,
            blocking=True,
            description="The logged model reloads and predicts exactly as trained, its metrics are "
            "finite and its test split is large enough; a version that fails is never champion.",
        )
    ]


def _latest(storage: StorageResource, dataset: str) -> tuple[dict, pd.DataFrame]:
    manifest = latest_manifest(storage.fetch(storage.dataset_dir(dataset)))
    if manifest is None:
        raise dg.Failure(description=f"{dataset} has no snapshot yet: materialize it first")
    return manifest, read_snapshot(storage.dataset_dir(dataset), manifest["snapshot_id"])


def _code_version(context: dg.AssetExecutionContext) -> str:
    return context.assets_def.code_versions_by_key[context.asset_key] or ""


def _tags(context: dg.AssetExecutionContext, dataset: str, manifest: dict) -> dict:
    return {
        "dataset": dataset,
        "dataset_snapshot": manifest["snapshot_id"],
        "dataset_rows": str(manifest["rows"]),
        "dagster_run_id": context.run.run_id,
        "dagster_asset": context.asset_key.to_user_string(),
        "code_version": _code_version(context),
    }


def _champion_rows(registry: Registry, model_name: str) -> int | str:
    champion = registry.champion_version(model_name)
    return int(champion.tags.get("dataset_rows", 0)) if champion is not None else "none"


def _already_trained(
    context,
    config: TrainingConfig,
    registry: Registry,
    model_name: str,
    manifest: dict,
    other_inputs: dict[str, str] | None = None,
) -> str | None:
    """Why training would learn nothing new (the latest version saw this snapshot, and these other inputs,
    with this code), else None."""
    if config.force:
        return None
    versions = registry.versions(model_name)
    if not versions:
        return None
    latest = versions[-1]
    same_inputs = all(latest.tags.get(tag) == value for tag, value in (other_inputs or {}).items())
    if (
        latest.tags.get("dataset_snapshot") == manifest["snapshot_id"]
        and same_inputs
        and latest.tags.get("code_version") == _code_version(context)
    ):
        champion = registry.champion_version(model_name)
        alias = "champion" if champion is not None and champion.version == latest.version else "challenger"
        return (
            f"version {latest.version} ({alias}, {latest.tags.get('semver', '?')}) was already trained on "
            f"{manifest['name']} snapshot {manifest['snapshot_id']} with code version {_code_version(context)}: "
            "no new data, so no new version and no new champion (set force to retrain anyway)"
        )
    return None


def _not_trained(context, registry: Registry, model_name: str, manifest: dict, reason: str) -> dg.MaterializeResult:
    context.log.info(f"{model_name}: not trained: {reason}")
    champion = registry.champion_version(model_name)
    return dg.MaterializeResult(
        metadata={
            "trained": False,
            "reason": reason,
            "model_name": model_name,
            "champion_version": str(champion.version) if champion else "none",
            "champion_dataset_rows": _champion_rows(registry, model_name),
            "dataset_snapshot": manifest["snapshot_id"],
            "mlflow_tracking_uri": registry.tracking_uri,
        },
        check_results=[dg.AssetCheckResult(check_name=MODEL_CHECKS, passed=True, metadata={"skipped": reason})],
    )


def _run_link(registry: Registry, result: RegistrationResult) -> str:
    uri = registry.tracking_uri.rstrip("/")
    if uri.startswith(("http://", "https://")):
        return f"{uri}/#/experiments/{result.experiment_id}/runs/{result.run_id}"
    return f"runs:/{result.run_id} in {uri}"


def _registered(
    context, registry: Registry, result: RegistrationResult, manifest: dict, score_name: str, **extra
) -> dg.MaterializeResult:
    verdict = "promoted to champion" if result.promoted else "kept as challenger"
    context.log.info(
        f"{result.model_name} version {result.version} ({result.semver}): test {score_name} {result.score}, "
        f"{verdict}: {result.reason}"
    )
    checks = result.card.get("checks", {})
    return dg.MaterializeResult(
        metadata={
            "trained": True,
            "model_name": result.model_name,
            "model_version": result.version,
            "semver": result.semver,
            "alias": result.alias,
            "promotion": result.reason,
            f"test_{score_name}": result.score,
            f"champion_{score_name}_before": result.champion_score_before
            if result.champion_score_before is not None
            else "none",
            "champion_dataset_rows": _champion_rows(registry, result.model_name),
            "mlflow_run_id": result.run_id,
            "mlflow_run": _run_link(registry, result),
            "mlflow_tracking_uri": registry.tracking_uri,
            "dataset_snapshot": manifest["snapshot_id"],
            "model_card": dg.MetadataValue.json(result.card),
            **extra,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=MODEL_CHECKS,
                passed=all(checks.values()),
                metadata={name: ("passed" if ok else "FAILED") for name, ok in checks.items()},
            )
        ],
    )


@dg.asset(
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    code_version="2",
    deps=[drum_hits, contributed_hits],
    check_specs=_model_checks_spec("drum_hit_classifier"),
    automation_condition=retrain_when_grown(drum_hits),
)
@retry_transient_failures
def drum_hit_classifier(
    context: dg.AssetExecutionContext, config: DrumTrainingConfig, storage: StorageResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """A random-forest drum-hit classifier trained on the `drum_hits` train split and scored (per-class
    precision, recall, F1) on its test split, with open/closed hi-hat threshold rules in three presets learnt
    from the local hits and the accepted community contributions. Logged to MLflow and registered; `champion`
    moves to it only when it beats the champion on the same test split and passes its checks."""
    manifest, table = _latest(storage, "drum_hits")
    registry = mlflow.registry()
    contributed = latest_manifest(storage.fetch(storage.dataset_dir("contributed_hits")))
    # New contributions teach the hi-hat rules even when the local hits have not changed.
    contributions_tag = {"contributions_snapshot": contributed["snapshot_id"] if contributed else "none"}
    skip = _already_trained(context, config, registry, DRUM_MODEL_NAME, manifest, contributions_tag)
    if skip:
        return _not_trained(context, registry, DRUM_MODEL_NAME, manifest, skip)
    train_rows, test_rows = table[table["split"] == "train"], table[table["split"] == "test"]
    if train_rows.empty or test_rows.empty:
        raise dg.Failure(
            description=f"drum_hits snapshot {manifest['snapshot_id']} has {len(train_rows)} train and "
            f"{len(test_rows)} test rows; both splits need rows to train and compare models"
        )
    contributions = contributed_training_hits(storage)
    model = drum_classifier.train(train_rows, config.seed, config.n_estimators)
    evaluation = drum_classifier.evaluate(model, test_rows)
    rules = hihat_rule_presets(pd.concat([train_rows, contributions]) if len(contributions) else train_rows, test_rows)
    if not rules:
        context.log.warning("the train split has no open and closed hi-hat hits: no hi-hat threshold rules this time")
    example = drum_classifier.feature_matrix(test_rows.head(5))
    metrics = evaluation.metrics()
    result = registry.log_and_register(
        model=model,
        flavor="sklearn",
        model_name=DRUM_MODEL_NAME,
        experiment=mlflow.experiment,
        params={
            "seed": config.seed,
            "n_estimators": config.n_estimators,
            "train_rows": len(train_rows),
            "classes": ",".join(sorted(train_rows["label"].astype(str).unique())),
        },
        metrics=metrics,
        tags={**_tags(context, "drum_hits", manifest), **contributions_tag},
        inputs=[snapshot_input(manifest, table)],
        input_example=example,
        predict=lambda m, x: m.predict(x),
        score=evaluation.macro_f1,
        score_champion=lambda champion: drum_classifier.evaluate(champion, test_rows).macro_f1,
        minimum_gain=config.minimum_gain,
        json_artifacts={"hihat_rules.json": rules} if rules else None,
        checks=reload_checks(
            "sklearn", lambda m, x: m.predict(x), example, model.predict(example), metrics, len(test_rows), 10
        ),
        training_stats={
            "samples": len(train_rows),
            "songs": int(train_rows["group_id"].nunique()),
            "contributors": int(contributions["group_id"].nunique()) if len(contributions) else 0,
            "contributed_samples": len(contributions),
        },
        performance={
            "test_macro_f1": evaluation.macro_f1,
            "test_accuracy": evaluation.accuracy,
            "per_class": evaluation.per_class,
        },
        major=int(_code_version(context) or 1),
        new_data=True,
    )
    return _registered(
        context,
        registry,
        result,
        manifest,
        "macro_f1",
        test_accuracy=evaluation.accuracy,
        per_class=dg.MetadataValue.json(evaluation.per_class),
        hihat_rules=dg.MetadataValue.md(
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
        ),
    )


def contributed_training_hits(storage: StorageResource) -> pd.DataFrame:
    """Accepted community hi-hat hits of the train split, labelled like local hits (for the threshold rules)."""
    root = storage.fetch(storage.dataset_dir("contributed_hits"))
    if latest_manifest(root) is None:
        return pd.DataFrame()
    table = read_snapshot(root)
    table = table[(table["split"] == "train") & (table["instrument"].astype(str) == "hihat")]
    return table.assign(label=np.where(table["OpenHH"].astype(int) == 1, OPEN, CLOSED))


def hihat_rule_presets(train_rows, test_rows) -> dict:
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


@dg.asset(
    name="genre_classifier",
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    code_version="1",
    deps=[song_features],
    check_specs=_model_checks_spec("genre_classifier"),
    automation_condition=retrain_when_grown(song_features),
)
@retry_transient_failures
def genre_classifier_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, storage: StorageResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """A genre classifier on the analysis and theory statistics of `song_features`, with the songs' genre tags
    as weak labels; scored by macro F1 with a confusion matrix on the test split (with the validation split
    when the test split holds fewer than two tagged songs). A collection with fewer than two tagged genres is
    not trained, and the metadata says why."""
    manifest, table = _latest(storage, "song_features")
    registry = mlflow.registry()
    skip = _already_trained(context, config, registry, GENRE_MODEL_NAME, manifest)
    train_rows, test_rows = table[table["split"] == "train"], genre_classifier.evaluation_rows(table)
    skip = skip or genre_classifier.why_not_trainable(train_rows, test_rows)
    if skip:
        return _not_trained(context, registry, GENRE_MODEL_NAME, manifest, skip)
    model = genre_classifier.train(train_rows, config.seed)
    evaluation = genre_classifier.evaluate(model, test_rows)
    png = genre_classifier.confusion_png(evaluation)
    example = genre_classifier.feature_matrix(genre_classifier.labelled(test_rows).head(5))
    metrics = evaluation.metrics()
    with tempfile.TemporaryDirectory() as tmp:
        plot = Path(tmp) / "confusion_matrix.png"
        plot.write_bytes(png)
        result = registry.log_and_register(
            model=model,
            flavor="sklearn",
            model_name=GENRE_MODEL_NAME,
            experiment=mlflow.experiment,
            params={
                "seed": config.seed,
                "train_songs": len(genre_classifier.labelled(train_rows)),
                "genres": ",".join(evaluation.labels),
            },
            metrics=metrics,
            tags=_tags(context, "song_features", manifest),
            inputs=[snapshot_input(manifest, table)],
            input_example=example,
            predict=lambda m, x: m.predict(x),
            score=evaluation.macro_f1,
            score_champion=lambda champion: genre_classifier.evaluate(champion, test_rows).macro_f1,
            minimum_gain=config.minimum_gain,
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
            training_stats={
                "samples": len(genre_classifier.labelled(train_rows)),
                "songs": len(genre_classifier.labelled(train_rows)),
                "contributors": 0,
            },
            performance={
                "test_macro_f1": evaluation.macro_f1,
                "test_accuracy": evaluation.accuracy,
                "per_class": evaluation.per_class,
            },
            major=int(_code_version(context) or 1),
        )
    return _registered(
        context,
        registry,
        result,
        manifest,
        "macro_f1",
        test_accuracy=evaluation.accuracy,
        confusion_matrix=dg.MetadataValue.md(
            f"![confusion matrix](data:image/png;base64,{base64.b64encode(png).decode()})"
        ),
        per_class=dg.MetadataValue.json(evaluation.per_class),
    )


def _evaluation_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The test split, joined by the validation split when the test split alone holds fewer than two tracks."""
    test = table[table["split"] == "test"]
    return test if test["track_id"].nunique() >= 2 else table[table["split"].isin(["test", "validation"])]


@dg.asset(
    group_name="training",
    kinds={"pytorch", "onnx", "mlflow"},
    code_version="1",
    deps=[concert_pairs],
    check_specs=_model_checks_spec("song_embedding"),
    automation_condition=retrain_when_grown(concert_pairs),
)
@retry_transient_failures
def song_embedding(
    context: dg.AssetExecutionContext, config: EmbeddingTrainingConfig, storage: StorageResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """A concert-robust song embedding: a small CNN on one-second log-mel windows trained with NT-Xent on the
    clean and concert-degraded windows of `concert_pairs` (train split), scored by song identification
    (top-1, top-5, MRR, per SNR) on tracks it never saw; exported to ONNX, float and int8, each scored the same
    way beside it."""
    manifest, table = _latest(storage, "concert_pairs")
    registry = mlflow.registry()
    train_rows, evaluation_rows = table[table["split"] == "train"], _evaluation_rows(table)
    skip = _already_trained(context, config, registry, EMBEDDING_MODEL_NAME, manifest)
    if not skip and (len(train_rows) < 2 or evaluation_rows["track_id"].nunique() < 2):
        skip = (
            f"concert_pairs has {len(train_rows)} training pairs and {evaluation_rows['track_id'].nunique()} held-out "
            "tracks; training needs 2 pairs and scoring 2 tracks (render more examples with the concert preset)"
        )
    if skip:
        return _not_trained(context, registry, EMBEDDING_MODEL_NAME, manifest, skip)
    clean, degraded = windows_from_table(train_rows)
    steps = min(config.steps, max(20, config.max_passes * len(train_rows) // config.batch_size))
    settings = EmbeddingSettings(dim=config.dim, steps=steps, batch_size=config.batch_size, seed=config.seed)
    model, losses = train_embedding(
        clean, degraded, settings, tracks=train_rows["track_id"].to_numpy(), log=context.log.info
    )
    retrieval = {"torch": pair_retrieval(model, evaluation_rows, config.seed)}
    example = np.ascontiguousarray(clean[:2, :, :WINDOW_FRAMES])
    with tempfile.TemporaryDirectory() as tmp:
        float_path = export_onnx(model, Path(tmp) / "song_embedding.onnx", clean.shape[1])
        int8_path = quantize_int8(
            float_path,
            Path(tmp) / "song_embedding.int8.onnx",
            np.concatenate([clean[:, :, :WINDOW_FRAMES], degraded[:, :, :WINDOW_FRAMES]])[:512],
        )
        retrieval["onnx_float"] = pair_retrieval(OnnxEmbedder(float_path), evaluation_rows, config.seed)
        retrieval["onnx_int8"] = pair_retrieval(OnnxEmbedder(int8_path), evaluation_rows, config.seed)
        metrics = {
            f"{system}_{name}": value
            for system, scores in retrieval.items()
            for name, value in scores.items()
            if name in ("top1", "top5", "mrr")
        }
        metrics["final_loss"] = losses[-1]
        result = registry.log_and_register(
            model=model,
            flavor="pytorch",
            model_name=EMBEDDING_MODEL_NAME,
            experiment=mlflow.experiment,
            params={
                **settings.to_dict(),
                "train_pairs": len(train_rows),
                "train_tracks": int(train_rows["track_id"].nunique()),
            },
            metrics=metrics,
            tags=_tags(context, "concert_pairs", manifest),
            inputs=[snapshot_input(manifest, table)],
            input_example=example,
            predict=lambda m, x: embed(m, x),
            score=retrieval["torch"]["top1"],
            score_champion=lambda champion: pair_retrieval(champion, evaluation_rows, config.seed)["top1"],
            minimum_gain=config.minimum_gain,
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
            major=int(_code_version(context) or 1),
        )
    comparison = pd.DataFrame(
        [{"model": system, **{k: scores[k] for k in ("top1", "top5", "mrr")}} for system, scores in retrieval.items()]
    )
    return _registered(
        context,
        registry,
        result,
        manifest,
        "top1",
        steps=steps,
        final_loss=losses[-1],
        retrieval=dg.MetadataValue.md(comparison.to_markdown(index=False)),
        per_snr=dg.MetadataValue.json(retrieval["torch"]["per_snr"]),
    )


class AnalysisTrainingConfig(dg.Config):
    # False: register the shipped learned analysers where a family has no version yet (the first run does),
    # and report the champions. True: train a new set as `make train-analysis` does (renders cached in
    # corpus_dir; about 20 minutes of rendering the first time, then 28 of training at the default steps on 2
    # cores; the shipped set took 4800 steps, 50 minutes, and a shorter run does not beat it) and put each
    # family through the champion gate.
    train: bool = False
    seed: int = 0
    steps: int = 2400
    renders_per_piece: int = 2
    # Fewer training pieces, for a quick run (the validation renders shrink with them).
    max_pieces: int | None = None
    # A trained family takes `champion` when its validation metric beats the champion's, re-scored on the
    # same validation renders, by at least this much.
    minimum_gain: float = analysis_registry.MINIMUM_GAIN
    # Where the renders are cached (default: analysis_corpus/ under the data root, which is where `make
    # train-analysis` keeps them too when the data root is data/).
    corpus_dir: str | None = None


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name, description=description, group_name="training", kinds={"pytorch", "onnx", "mlflow"}, code_version="1"
        )
        for name, description in (
            (
                "beat_tracker",
                "Learned beat and downbeat tracker (ONNX) with its tempo prior; its champion gives song_analysis "
                "its beats, downbeats, metre and tempo.",
            ),
            (
                "chord_recognizer",
                "Learned chord and bass recognizer (ONNX); its champion gives song_analysis a chord and bass "
                "note per beat.",
            ),
            (
                "key_tracker",
                "Learned local-key tracker (the harmony network's key head); its champion gives song_analysis "
                "the song's key and the key of each stretch of bars, which Roman numerals are read in.",
            ),
        )
    ],
    check_specs=[spec for name in learned.MODEL_NAMES for spec in _model_checks_spec(name)],
)
@retry_transient_failures
def analysis_models(
    context: dg.AssetExecutionContext, config: AnalysisTrainingConfig, storage: StorageResource, mlflow: MlflowResource
):
    """The learned analysers as model families in MLflow, each scored on its own metric (beat F-measure,
    chord majmin, key) on the validation renders: held-out pieces through a held-out SoundFont in every
    listening condition. A first version must beat the DSP path there, a later one the champion re-scored on
    the same renders (`training.analysis_registry`). With `train` off, the shipped set is registered where a
    family has none; with it on, a new set is trained from the project's renders."""
    registry = mlflow.registry()
    cache = mlflow.model_cache()
    results = {
        r.model_name: r
        for r in analysis_registry.register_shipped(registry, mlflow.experiment, cache, context.log.info)
    }
    if config.train:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "models"
            corpus = Path(config.corpus_dir) if config.corpus_dir else storage.root / "analysis_corpus"
            validation = train_model_set(
                out,
                corpus,
                seed=config.seed,
                renders_per_piece=config.renders_per_piece,
                max_pieces=config.max_pieces,
                steps=config.steps,
                log=context.log.info,
            )

            def rescore(name: str):
                def score(_champion) -> float:  # with the other champions, as the pipeline runs it
                    champions = analysis_registry.champion_model_set(registry, cache)
                    return analysis_registry.score_on_renders(champions, validation)[
                        analysis_registry.FAMILY_METRIC[name]
                    ]

                return score

            tags = {
                "dataset": "analysis_corpus",
                "dagster_run_id": context.run.run_id,
                "dagster_asset": "analysis_models",
                "code_version": context.assets_def.code_versions_by_key[dg.AssetKey("beat_tracker")] or "",
                "seed": str(config.seed),
            }
            results |= {
                r.model_name: r
                for r in analysis_registry.register_model_set(
                    registry,
                    mlflow.experiment,
                    out,
                    learned.MODEL_NAMES,
                    tags,
                    config.minimum_gain,
                    rescore,
                    context.log.info,
                )
            }
    materializations = []  # returned, not yielded, so that retry_transient_failures sees every failure
    for name in learned.MODEL_NAMES:
        champion = registry.champion_version(name)
        if name in results:
            result = results[name]
            checks = result.card.get("checks", {})
            materializations.append(
                dg.MaterializeResult(
                    asset_key=name,
                    metadata={
                        "registered": True,
                        "model_version": result.version,
                        "alias": result.alias,
                        "promotion": result.reason,
                        f"validation_{analysis_registry.FAMILY_METRIC[name]}": result.score,
                        "mlflow_run": _run_link(registry, result),
                        "mlflow_tracking_uri": registry.tracking_uri,
                        "model_card": dg.MetadataValue.json(result.card),
                    },
                    check_results=[
                        dg.AssetCheckResult(
                            check_name=MODEL_CHECKS,
                            asset_key=name,
                            passed=all(checks.values()),
                            metadata={c: ("passed" if ok else "FAILED") for c, ok in checks.items()},
                        )
                    ],
                )
            )
        else:
            reason = "already registered; nothing trained (set train to train a new version)"
            materializations.append(
                dg.MaterializeResult(
                    asset_key=name,
                    metadata={
                        "registered": False,
                        "reason": reason,
                        "champion_version": str(champion.version) if champion else "none (DSP path)",
                        "mlflow_tracking_uri": registry.tracking_uri,
                    },
                    check_results=[
                        dg.AssetCheckResult(
                            check_name=MODEL_CHECKS, asset_key=name, passed=True, metadata={"skipped": reason}
                        )
                    ],
                )
            )
    return tuple(materializations)


class SeparatorTrainingConfig(dg.Config):
    # False: register the shipped learned separator where the family has no version yet (the first run that
    # separates a song does it too) and report the champion. True: train a new one as `make train-separator`
    # does (renders cached in corpus_dir: about 10 minutes the first time, then about 50 of training at the
    # default steps on 2 cores) and put it through the champion gate.
    train: bool = False
    seed: int = 0
    steps: int = SeparatorSettings.steps
    # Context features of the network; 512 suits a GPU.
    width: int = SeparatorSettings.width
    # Fewer training pieces, for a quick run (the validation renders shrink with them).
    max_pieces: int | None = None
    # A trained separator takes `champion` when its validation mean SDR beats the champion's, re-scored on the
    # same validation renders, by at least this many dB (and it is no worse than the DSP fallback on any stem).
    minimum_gain_db: float = separator_registry.MINIMUM_GAIN_DB
    # Where the renders are cached (default: separator_corpus/ under the data root, which is where `make
    # train-separator` keeps them too when the data root is data/).
    corpus_dir: str | None = None


@dg.asset(
    name=separator_registry.FAMILY,
    group_name="training",
    kinds={"pytorch", "onnx", "mlflow"},
    code_version="1",
    check_specs=_model_checks_spec(separator_registry.FAMILY),
)
@retry_transient_failures
def stem_separator(
    context: dg.AssetExecutionContext, config: SeparatorTrainingConfig, storage: StorageResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """The learned separator (drums, bass, other, vocals masks; ONNX) as a model family in MLflow, scored by SDR
    per stem on the validation renders (held-out pieces through held-out SoundFonts, every listening condition).
    Its champion separates songs wherever no Demucs weights are available. With `train` off, the shipped one is
    registered where the family has none; with it on, a new one is trained from the project's renders."""
    registry = mlflow.registry()
    cache = mlflow.model_cache()
    result = separator_registry.register_shipped(registry, mlflow.experiment, cache, context.log.info)
    if config.train:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(config.corpus_dir) if config.corpus_dir else storage.root / "separator_corpus"
            meters = storage.root / "analysis_corpus" / "time_signatures.json"  # shared with analysis_models' renders
            path, validation, conditions = train_separator(
                Path(tmp) / "models",
                corpus,
                config.seed,
                config.max_pieces,
                config.steps,
                config.width,
                meter_cache=meters,
                log=context.log.info,
            )
            examples = [separator_corpus.load(p) for p in validation]

            def rescore(_champion) -> float:  # the champion separated as the pipeline runs it, on the same renders
                return mean_sdr(
                    validation_sdr(separator_registry.champion_separator(registry, cache), examples, conditions)
                )

            tags = {
                "dataset": "separator_corpus",
                "dagster_run_id": context.run.run_id,
                "dagster_asset": separator_registry.FAMILY,
                "code_version": context.assets_def.code_versions_by_key[context.asset_key] or "",
                "seed": str(config.seed),
            }
            result = separator_registry.register_separator(
                registry, mlflow.experiment, path, tags, config.minimum_gain_db, rescore, context.log.info
            )
    champion = registry.champion_version(separator_registry.FAMILY)
    if result is None:
        reason = "already registered; nothing trained (set train to train a new version)"
        return dg.MaterializeResult(
            metadata={
                "registered": False,
                "reason": reason,
                "champion_version": str(champion.version) if champion else "none (DSP fallback)",
                "mlflow_tracking_uri": registry.tracking_uri,
            },
            check_results=[dg.AssetCheckResult(check_name=MODEL_CHECKS, passed=True, metadata={"skipped": reason})],
        )
    checks = result.card.get("checks", {})
    return dg.MaterializeResult(
        metadata={
            "registered": True,
            "model_version": result.version,
            "alias": result.alias,
            "promotion": result.reason,
            "validation_mean_sdr_db": result.score,
            "mlflow_run": _run_link(registry, result),
            "mlflow_tracking_uri": registry.tracking_uri,
            "model_card": dg.MetadataValue.json(result.card),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=MODEL_CHECKS,
                passed=all(checks.values()),
                metadata={c: ("passed" if ok else "FAILED") for c, ok in checks.items()},
            )
        ],
    )


@dg.asset(
    group_name="datasets",
    kinds={"parquet"},
    code_version="1",
    deps=[drum_hit_classifier],
    automation_condition=dg.AutomationCondition.eager(),
)
@retry_transient_failures
def review_queue(
    context: dg.AssetExecutionContext, storage: StorageResource, datasets: DatasetsResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Drum hits the champion drum-hit classifier is unsure about (top class probability between 0.4 and 0.6),
    with its guess, for a person to label: the examples that would teach the next model most."""
    manifest, table = _latest(storage, "drum_hits")
    registry = mlflow.registry()
    champion, model = registry.load_champion(DRUM_MODEL_NAME)
    if champion is None:
        raise dg.Failure(description=f"{DRUM_MODEL_NAME} has no champion yet: materialize it first")
    probabilities = model.predict_proba(drum_classifier.feature_matrix(table))
    confidence = probabilities.max(axis=1)
    unsure = (confidence >= REVIEW_BAND[0]) & (confidence <= REVIEW_BAND[1])
    queue = table.loc[unsure, ["hit_id", "group_id", "split", "label", *drum_classifier.FEATURE_NAMES]].copy()
    queue.insert(4, "predicted", model.classes_[probabilities[unsure].argmax(axis=1)])
    queue.insert(5, "confidence", np.round(confidence[unsure], 4))
    queue.insert(6, "model_version", str(champion.version))
    context.log.info(f"review_queue: {len(queue)} of {len(table)} hits with champion confidence in {REVIEW_BAND}")
    return snapshot(
        context,
        storage,
        datasets,
        "review_queue",
        queue.reset_index(drop=True),
        {"drum_hits": manifest["snapshot_id"], "model": f"{DRUM_MODEL_NAME}/{champion.version}"},
        band=str(REVIEW_BAND),
        pool_rows=len(table),
    )
