"""The code location tests/test_daemon.py serves to a real daemon for the per-song runs: the project's assets
and song job with the new-songs sensor alone, so the daemon starts nothing but song runs."""

import dagster as dg

from pipeline_project.definitions import ALL_ASSETS, default_resources
from pipeline_project.jobs import song_pipeline_job
from pipeline_project.sensors import new_songs_sensor

defs = dg.Definitions(
    assets=ALL_ASSETS, jobs=[song_pipeline_job], sensors=[new_songs_sensor], resources=default_resources()
)
