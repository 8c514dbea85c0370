"""Dagster resources: where data lives, which separator and SoundFonts are used, which MLflow store, how songs are batched into runs."""

from pipeline_project.resources.datasets import DatasetsResource
from pipeline_project.resources.mlflow import MlflowResource
from pipeline_project.resources.renderer import RendererResource
from pipeline_project.resources.separator import SeparatorResource
from pipeline_project.resources.song_runs import SongRunsResource
from pipeline_project.resources.storage import StorageResource

__all__ = [
    "DatasetsResource",
    "MlflowResource",
    "RendererResource",
    "SeparatorResource",
    "SongRunsResource",
    "StorageResource",
]
