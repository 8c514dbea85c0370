"""The training assets: each reads its dataset snapshot (or renders) through the resources, calls its family's
training run in `training.families` and reports the outcome: the version registered and whether it took
`champion`, or why nothing was trained."""

from dataclasses import replace
from pathlib import Path

import dagster as dg

from pipeline_project.analysis import learned
from pipeline_project.assets.datasets import (
    concert_pairs,
    contributed_hits,
    drum_hits,
    read_latest,
    song_features,
    with_peoples_labels,
)
from pipeline_project.assets.labeling import human_labels
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.automation import retrain_when_grown
from pipeline_project.labeling.queues import DRUM_HITS, GENRE
from pipeline_project.layout import meter_cache
from pipeline_project.resources import MlflowResource, RendererResource, StorageResource
from pipeline_project.training import analysis_registry, families, separator_registry
from pipeline_project.training.families import DRUM_MODEL_NAME, EMBEDDING_MODEL_NAME, GENRE_MODEL_NAME
from pipeline_project.training.policy import (
    NotTrainable,
    Outcome,
    TrainingRequest,
    champion_human_labels,
    champion_rows,
)
from pipeline_project.training.registry import RegistrationResult, Registry
from pipeline_project.training.train_separator import SeparatorSettings

MODEL_CHECKS = "model_checks"


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


def _code_version(context: dg.AssetExecutionContext, key: dg.AssetKey | None = None) -> str:
    return context.assets_def.code_versions_by_key[key or context.asset_key] or ""


def _request(context, config: "TrainingConfig", storage: StorageResource, mlflow: MlflowResource, dataset: str):
    manifest, table = read_latest(storage, dataset)
    return TrainingRequest(
        registry=mlflow.registry(),
        experiment=mlflow.experiment,
        manifest=manifest,
        table=table,
        code_version=_code_version(context),
        run_tags={"dagster_run_id": context.run.run_id, "dagster_asset": context.asset_key.to_user_string()},
        seed=config.seed,
        minimum_gain=config.minimum_gain,
        force=config.force,
        log=context.log.info,
    )


def _run_link(registry: Registry, result: RegistrationResult) -> str:
    uri = registry.tracking_uri.rstrip("/")
    if uri.startswith(("http://", "https://")):
        return f"{uri}/#/experiments/{result.experiment_id}/runs/{result.run_id}"
    return f"runs:/{result.run_id} in {uri}"


def _checks_result(
    result: RegistrationResult | None, asset_key=None, skipped: str | None = None
) -> dg.AssetCheckResult:
    if result is None:
        return dg.AssetCheckResult(
            check_name=MODEL_CHECKS, asset_key=asset_key, passed=True, metadata={"skipped": skipped}
        )
    checks = result.card.get("checks", {})
    return dg.AssetCheckResult(
        check_name=MODEL_CHECKS,
        asset_key=asset_key,
        passed=all(checks.values()),
        metadata={name: ("passed" if ok else "FAILED") for name, ok in checks.items()},
    )


def _reported(context, request: TrainingRequest, outcome: Outcome) -> dg.MaterializeResult:
    """A training outcome as the asset's materialization: the version and its verdict, or why nothing was trained."""
    registry, result = request.registry, outcome.result
    common = {
        "model_name": outcome.model_name,
        "champion_dataset_rows": champion_rows(registry, outcome.model_name),
        "champion_human_labels": champion_human_labels(registry, outcome.model_name),
        "dataset_snapshot": request.snapshot_id,
        "mlflow_tracking_uri": registry.tracking_uri,
    }
    if result is None:
        context.log.info(f"{outcome.model_name}: not trained: {outcome.skipped}")
        champion = registry.champion_version(outcome.model_name)
        return dg.MaterializeResult(
            metadata={
                "trained": False,
                "reason": outcome.skipped,
                "champion_version": str(champion.version) if champion else "none",
                **common,
            },
            check_results=[_checks_result(None, skipped=outcome.skipped)],
        )
    verdict = "promoted to champion" if result.promoted else "kept as challenger"
    context.log.info(
        f"{result.model_name} version {result.version} ({result.semver}): test {outcome.score_name} {result.score}, "
        f"{verdict}: {result.reason}"
    )
    before = result.champion_score_before
    return dg.MaterializeResult(
        metadata={
            "trained": True,
            "model_version": result.version,
            "semver": result.semver,
            "alias": result.alias,
            "promotion": result.reason,
            f"test_{outcome.score_name}": result.score,
            f"champion_{outcome.score_name}_before": before if before is not None else "none",
            "mlflow_run_id": result.run_id,
            "mlflow_run": _run_link(registry, result),
            "model_card": dg.MetadataValue.json(result.card),
            **common,
            **outcome.details,
            **{name: dg.MetadataValue.json(value) for name, value in outcome.tables.items()},
            **{name: dg.MetadataValue.md(text) for name, text in outcome.markdown.items()},
        },
        check_results=[_checks_result(result)],
    )


def _family_reported(
    registry: Registry,
    name: str,
    result: RegistrationResult | None,
    score: str,
    without_champion: str,
    multi: bool = False,
) -> dg.MaterializeResult:
    """A family trained from renders (the analysers, the separator): its new version, or its champion as it is."""
    key = name if multi else None
    if result is None:
        reason = "already registered; nothing trained (set train to train a new version)"
        champion = registry.champion_version(name)
        return dg.MaterializeResult(
            asset_key=key,
            metadata={
                "registered": False,
                "reason": reason,
                "mlflow_tracking_uri": registry.tracking_uri,
                "champion_version": str(champion.version) if champion else without_champion,
            },
            check_results=[_checks_result(None, key, reason)],
        )
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            "registered": True,
            "model_version": result.version,
            "alias": result.alias,
            "promotion": result.reason,
            f"validation_{score}": result.score,
            "mlflow_run": _run_link(registry, result),
            "mlflow_tracking_uri": registry.tracking_uri,
            "model_card": dg.MetadataValue.json(result.card),
        },
        check_results=[_checks_result(result, key)],
    )


def _family_tags(context, dataset: str, seed: int, asset: str, code_key: str) -> dict[str, str]:
    """The tags of a version trained from renders: the corpus, the run and asset that trained it, code and seed."""
    return {
        "dataset": dataset,
        "dagster_run_id": context.run.run_id,
        "dagster_asset": asset,
        "code_version": _code_version(context, dg.AssetKey(code_key)),
        "seed": str(seed),
    }


@dg.asset(
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    code_version="2",
    deps=[drum_hits, contributed_hits, human_labels],
    check_specs=_model_checks_spec(DRUM_MODEL_NAME),
    automation_condition=retrain_when_grown(drum_hits, people=(human_labels, DRUM_HITS)),
)
@retry_transient_failures
def drum_hit_classifier(
    context: dg.AssetExecutionContext, config: DrumTrainingConfig, storage: StorageResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """A random-forest drum-hit classifier trained on the `drum_hits` train split and scored (per-class
    precision, recall, F1) on its test split, with open/closed hi-hat threshold rules in three presets learnt
    from the local hits and the accepted community contributions. Logged to MLflow and registered; `champion`
    moves to it only when it beats the champion on the same test split and passes its checks."""
    request = _request(context, config, storage, mlflow, "drum_hits")
    contributed, hits = read_latest(storage, "contributed_hits", required=False)
    snapshot_id = contributed["snapshot_id"] if contributed else "none"
    labels_snapshot, table, left_out = with_peoples_labels(storage, "drum_hits", request.table, request.snapshot_id)
    if left_out:
        context.log.warning(left_out)
    request = replace(request, table=table)
    try:
        outcome = families.train_drum_classifier(request, hits, snapshot_id, config.n_estimators, labels_snapshot)
    except NotTrainable as error:
        raise dg.Failure(description=str(error)) from error
    return _reported(context, request, outcome)


@dg.asset(
    name=GENRE_MODEL_NAME,
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    code_version="1",
    deps=[song_features, human_labels],
    check_specs=_model_checks_spec(GENRE_MODEL_NAME),
    automation_condition=retrain_when_grown(song_features, people=(human_labels, GENRE)),
)
@retry_transient_failures
def genre_classifier_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, storage: StorageResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """A genre classifier on the analysis and theory statistics of `song_features`, with the songs' genre tags
    as weak labels; scored by macro F1 with a confusion matrix on the test split (with the validation split
    when the test split holds fewer than two tagged songs). A collection with fewer than two tagged genres is
    not trained, and the metadata says why."""
    request = _request(context, config, storage, mlflow, "song_features")
    labels_snapshot, table, _ = with_peoples_labels(storage, "song_features", request.table, request.snapshot_id)
    request = replace(request, table=table)
    return _reported(context, request, families.train_genre_classifier(request, labels_snapshot))


@dg.asset(
    group_name="training",
    kinds={"pytorch", "onnx", "mlflow"},
    code_version="1",
    deps=[concert_pairs],
    check_specs=_model_checks_spec(EMBEDDING_MODEL_NAME),
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
    request = _request(context, config, storage, mlflow, "concert_pairs")
    outcome = families.train_song_embedding(request, config.steps, config.batch_size, config.dim, config.max_passes)
    return _reported(context, request, outcome)


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
    context: dg.AssetExecutionContext,
    config: AnalysisTrainingConfig,
    storage: StorageResource,
    mlflow: MlflowResource,
    renderer: RendererResource,
):
    """The learned analysers as model families in MLflow, each scored on its own metric (beat F-measure,
    chord majmin, key) on the validation renders: held-out pieces through a held-out SoundFont in every
    listening condition. A first version must beat the DSP path there, a later one the champion re-scored on
    the same renders (`training.analysis_registry`). With `train` off, the shipped set is registered where a
    family has none; with it on, a new set is trained from the project's renders."""
    registry, cache = mlflow.registry(), mlflow.model_cache()
    shipped = analysis_registry.register_shipped(registry, mlflow.experiment, cache, context.log.info)
    results = {result.model_name: result for result in shipped}
    if config.train:
        corpus = Path(config.corpus_dir) if config.corpus_dir else storage.analysis_corpus
        tags = _family_tags(context, "analysis_corpus", config.seed, "analysis_models", "beat_tracker")
        results |= families.train_analysis_models(
            registry,
            mlflow.experiment,
            cache,
            corpus,
            tags,
            seed=config.seed,
            renders_per_piece=config.renders_per_piece,
            max_pieces=config.max_pieces,
            steps=config.steps,
            minimum_gain=config.minimum_gain,
            log=context.log.info,
            catalog=renderer.soundfonts(),
        )
    # Returned, not yielded, so that retry_transient_failures sees every failure.
    return tuple(
        _family_reported(
            registry, name, results.get(name), analysis_registry.FAMILY_METRIC[name], "none (DSP path)", multi=True
        )
        for name in learned.MODEL_NAMES
    )


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
    context: dg.AssetExecutionContext,
    config: SeparatorTrainingConfig,
    storage: StorageResource,
    mlflow: MlflowResource,
    renderer: RendererResource,
) -> dg.MaterializeResult:
    """The learned separator (drums, bass, other, vocals masks; ONNX) as a model family in MLflow, scored by SDR
    per stem on the validation renders (held-out pieces through held-out SoundFonts, every listening condition).
    Its champion separates songs wherever no Demucs weights are available. With `train` off, the shipped one is
    registered where the family has none; with it on, a new one is trained from the project's renders."""
    registry, cache = mlflow.registry(), mlflow.model_cache()
    result = separator_registry.register_shipped(registry, mlflow.experiment, cache, context.log.info)
    if config.train:
        corpus = Path(config.corpus_dir) if config.corpus_dir else storage.separator_corpus
        result = families.train_stem_separator(
            registry,
            mlflow.experiment,
            cache,
            corpus,
            meter_cache(storage.analysis_corpus),  # shared with analysis
            _family_tags(
                context, "separator_corpus", config.seed, separator_registry.FAMILY, separator_registry.FAMILY
            ),
            seed=config.seed,
            max_pieces=config.max_pieces,
            steps=config.steps,
            width=config.width,
            minimum_gain_db=config.minimum_gain_db,
            log=context.log.info,
            catalog=renderer.soundfonts(),
        )
    return _family_reported(registry, separator_registry.FAMILY, result, "mean_sdr_db", "none (DSP fallback)")
