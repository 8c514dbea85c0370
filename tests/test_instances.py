"""Two runs at once against the same Dagster instance, on SQLite (the default) and on PostgreSQL (the
documented `deploy/postgres/dagster.yaml`, against a real server on loopback): both finish, neither sees
"database is locked", and every event of both is stored."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from conftest import PER_SONG_ASSETS, render_groove_song
from servers import create_database, postgres_server

from pipeline_project.assets.partitions import songs_partitions
from pipeline_project.audio.ingest import scan_incoming

PROJECT = Path(__file__).resolve().parents[1]
CHILD = """
import sys
import dagster as dg
from pipeline_project.assets.analysis import song_analysis, song_theory
from pipeline_project.assets.ingestion import song_audio, song_quality
from pipeline_project.assets.separation import song_stems
from pipeline_project.definitions import default_resources

result = dg.materialize([song_audio, song_quality, song_stems, song_analysis, song_theory], partition_key=sys.argv[2],
                        resources=default_resources(sys.argv[1]), instance=dg.DagsterInstance.get())
print("RUN_ID", result.run_id)
"""


def two_runs_at_once(data_root: Path, env: dict) -> list[str]:
    """One song partition per process, both started together; returns their run ids."""
    keys = sorted(scan_incoming(data_root / "incoming"))
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(songs_partitions.name, keys)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data_root), key],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for key in keys
    ]
    outputs = [child.communicate(timeout=600) for child in children]
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, out + err
        assert "database is locked" not in (out + err).lower()
    return [next(line.split()[1] for line in out.splitlines() if line.startswith("RUN_ID")) for out, _ in outputs]


def assert_every_event_stored(run_ids: list[str], data_root: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        for run_id in run_ids:
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
            events = [
                record.event_log_entry.dagster_event
                for record in instance.get_records_for_run(run_id, limit=10_000).records
                if record.event_log_entry.is_dagster_event
            ]
            kinds = [event.event_type for event in events]
            assert dg.DagsterEventType.RUN_START in kinds and kinds[-1] == dg.DagsterEventType.RUN_SUCCESS
            assert kinds.count(dg.DagsterEventType.STEP_SUCCESS) == len(PER_SONG_ASSETS)
            materialized = [
                e.asset_key.to_user_string()
                for e in events
                if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
            ]
            assert sorted(materialized) == sorted(PER_SONG_ASSETS)
        keys = sorted(scan_incoming(data_root / "incoming"))
        for stage in PER_SONG_ASSETS:
            assert sorted(instance.get_materialized_partitions(dg.AssetKey(stage))) == keys


@pytest.fixture
def two_songs(data_root) -> Path:
    render_groove_song(data_root / "incoming" / "one.mp3", "rock", bars=4, tempo=120, seed=11)
    render_groove_song(data_root / "incoming" / "two.mp3", "funk", bars=4, tempo=100, seed=12)
    return data_root


def test_two_runs_at_once_on_the_default_sqlite_instance(two_songs, dagster_home):
    assert_every_event_stored(two_runs_at_once(two_songs, dict(os.environ)), two_songs)


def test_two_runs_at_once_on_postgres_with_the_documented_instance_file(two_songs, dagster_home, monkeypatch):
    shutil.copy(PROJECT / "deploy" / "postgres" / "dagster.yaml", dagster_home / "dagster.yaml")
    with postgres_server() as (port, user, password):
        create_database(port, user, password, "dagster")
        settings = {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(port),
            "DAGSTER_PG_DB": "dagster",
            "DAGSTER_PG_USER": user,
            "DAGSTER_PG_PASSWORD": password,
        }
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        # The documented setup step: create the tables and the separation pool before the first runs, which
        # would otherwise race to insert the same pool row.
        for command in (["instance", "migrate"], ["instance", "concurrency", "set", "separation", "1"]):
            subprocess.run([str(Path(sys.executable).parent / "dagster"), *command], check=True, capture_output=True)
        run_ids = two_runs_at_once(two_songs, dict(os.environ))
        assert_every_event_stored(run_ids, two_songs)
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
