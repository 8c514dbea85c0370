import dagster as dg

from pipeline_project.assets.partitions import songs_partitions
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.planning import PER_SONG_STAGES
from pipeline_project.resources import MlflowResource

# Per-song work: the per-song stages of one song partition, or of a batch of them.
song_pipeline_job = dg.define_asset_job(
    "song_pipeline_job",
    selection=dg.AssetSelection.assets(*PER_SONG_STAGES),
    partitions_def=songs_partitions,
    description="Decode, separate and analyse one song partition.",
)

synthesis_job = dg.define_asset_job(
    "synthesis_job",
    selection=dg.AssetSelection.groups("synthesis"),
    description="Render the synthetic examples and their augmented variants.",
)

datasets_and_training_job = dg.define_asset_job(
    "datasets_and_training_job",
    selection=dg.AssetSelection.groups("datasets", "training", "identification", "collection"),
    description="Rebuild the anonymized datasets (with their checks), retrain the models, rebuild the song index and "
    "decide the collection's quality grades.",
)

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.groups("training")
    | dg.AssetSelection.assets("human_labels", "review_queue", "genre_queue", "song_index"),
    description="Release people's latest labels, retrain the models on the current dataset versions with them (a "
    "model whose latest version already saw the current snapshot and labels is left alone, and says so), then "
    "rebuild the review queues and the song index.",
)

contributions_job = dg.define_asset_job(
    "contributions_job",
    selection=dg.AssetSelection.assets("contributed_hits", "contribution_stats"),
    description="Review new community contributions and rebuild the contributed training pool.",
)


class RollbackConfig(dg.Config):
    # Registered model whose `champion` alias moves back: drum_hit_classifier, genre_classifier, song_embedding,
    # beat_tracker, chord_recognizer or key_tracker.
    model_name: str


@dg.op(description="Move a registered model's `champion` alias back to the version that held it before.")
@retry_transient_failures
def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig, mlflow: MlflowResource) -> None:
    try:
        rolled_back, restored = mlflow.registry().rollback(config.model_name)
    except ValueError as error:
        raise dg.Failure(description=str(error)) from error
    context.log.info(f"{config.model_name}: champion moved back from version {rolled_back} to version {restored}")
    # Registered models are named after their assets: the rollback shows on the asset's page.
    context.log_event(
        dg.AssetObservation(
            asset_key=config.model_name,
            metadata={
                "rollback": f"champion moved back from version {rolled_back} to version {restored}",
                "champion_version": restored,
                "rolled_back_version": rolled_back,
            },
        )
    )


@dg.job(description="Roll a model's champion back to the previous champion (launch with the model name in the config).")
def rollback_job():
    rollback_champion()
