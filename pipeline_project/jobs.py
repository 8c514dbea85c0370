import dagster as dg

from pipeline_project.assets.partitions import songs_partitions

# Per-song work, one run per song partition.
song_pipeline_job = dg.define_asset_job(
    "song_pipeline_job",
    selection=dg.AssetSelection.groups("ingestion", "separation", "analysis"),
    partitions_def=songs_partitions,
    description="Decode, separate and analyse one song partition.",
)

synthesis_job = dg.define_asset_job(
    "synthesis_job", selection=dg.AssetSelection.groups("synthesis"),
    description="Render the synthetic examples and their augmented variants.",
)

datasets_and_training_job = dg.define_asset_job(
    "datasets_and_training_job", selection=dg.AssetSelection.groups("datasets", "training"),
    description="Rebuild the anonymized datasets (with their checks) and retrain the models.",
)

training_job = dg.define_asset_job(
    "training_job", selection=dg.AssetSelection.groups("training"),
    description="Retrain the models on the current dataset versions.",
)

contributions_job = dg.define_asset_job(
    "contributions_job", selection=dg.AssetSelection.assets("contributed_hits", "contribution_stats"),
    description="Review new community contributions and rebuild the contributed training pool.",
)
