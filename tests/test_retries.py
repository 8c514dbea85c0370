"""Transient failures are retried with backoff, bad input is not: the rollback job waits out an MLflow server
that is down and finishes once it is back; a quarantined song fails once and stays failed."""

from __future__ import annotations

import errno
import sqlite3
import threading
import time

import dagster as dg
from servers import free_port, mlflow_server
from test_registry import MODEL, register, synthetic_hits

from pipeline_project.errors import BadAudioError
from pipeline_project.retries import backoff_seconds, is_transient
from pipeline_project.training.drum_classifier import train


def test_only_passing_storage_and_server_failures_count_as_transient():
    def raised_from(cause: BaseException) -> Exception:
        try:
            try:
                raise cause
            except BaseException as inner:
                raise RuntimeError("API request to the tracking server failed") from inner
        except RuntimeError as outer:
            return outer

    assert is_transient(raised_from(ConnectionRefusedError(errno.ECONNREFUSED, "refused")))
    assert is_transient(OSError(errno.EIO, "input/output error")) and is_transient(TimeoutError())
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert not is_transient(BadAudioError("song.mp3", "truncated MP3 stream"))
    assert not is_transient(raised_from(BadAudioError("song.mp3", "no audio")))
    assert not is_transient(FileNotFoundError(errno.ENOENT, "missing")) and not is_transient(ValueError("bug"))
    assert [backoff_seconds(n) for n in range(4)] == [2, 4, 8, 16]


def test_rollback_waits_out_an_mlflow_server_outage(tmp_path, dagster_home, monkeypatch):
    from pipeline_project.definitions import default_resources
    from pipeline_project.jobs import rollback_job

    port = free_port()
    test = synthetic_hits(200, 3.0, seed=31)
    with mlflow_server(tmp_path / "server", port) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        registry = default_resources(str(tmp_path / "data"))["mlflow"].registry()
        first = register(registry, train(synthetic_hits(200, 0.8, seed=32), seed=0, n_estimators=10), test, "snap-a")
        second = register(registry, train(synthetic_hits(200, 3.0, seed=33), seed=0, n_estimators=20), test, "snap-b")
        assert second.promoted
    # The server is down now. MLflow's own HTTP retries are turned off so that the step's retries are what waits.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    instance = dg.DagsterInstance.get()
    outcome = {}
    resources = default_resources(str(tmp_path / "data"))

    def launch():
        outcome["result"] = rollback_job.execute_in_process(
            run_config={"ops": {"rollback_champion": {"config": {"model_name": MODEL}}}},
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )

    worker = threading.Thread(target=launch)
    worker.start()
    deadline = time.time() + 60
    while not instance.get_records_for_run(
        run_id=_only_run(instance), of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
    ).records:
        assert time.time() < deadline and worker.is_alive(), "the step never asked for a retry"
        time.sleep(0.1)
    with mlflow_server(tmp_path / "server", port):
        worker.join(timeout=120)
        assert outcome["result"].success
        assert str(registry.champion_version(MODEL).version) == first.version
    retries = [e for e in outcome["result"].all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries


def _only_run(instance) -> str:
    deadline = time.time() + 60
    while not instance.get_runs():
        assert time.time() < deadline
        time.sleep(0.05)
    return instance.get_runs()[0].run_id


def test_bad_input_fails_once_and_is_not_retried(data_root, dagster_home):
    from pipeline_project.assets.ingestion import song_audio
    from pipeline_project.assets.partitions import songs_partitions
    from pipeline_project.audio.ingest import scan_incoming
    from pipeline_project.definitions import default_resources

    (data_root / "incoming" / "notes.mp3").write_text("liner notes, not audio\n" * 20)
    (key,) = scan_incoming(data_root / "incoming")
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(songs_partitions.name, [key])
    result = dg.materialize(
        [song_audio],
        partition_key=key,
        resources=default_resources(str(data_root)),
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    kinds = [event.event_type for event in result.all_events]
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds and kinds.count(dg.DagsterEventType.STEP_FAILURE) == 1
