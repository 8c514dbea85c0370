"""The same code location on the Celery executor: a real Redis broker on loopback, two worker processes, and
several song partitions materialized with their steps spread over both workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from conftest import PER_SONG_ASSETS, render_groove_song
from servers import redis_server

from pipeline_project.assets.partitions import songs_partitions
from pipeline_project.audio.ingest import scan_incoming
from pipeline_project.definitions import build_definitions, executor_for
from pipeline_project.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
WORKERS = ("worker-a", "worker-b")
CHILD = """
import sys
import dagster as dg
from pipeline_project.definitions import song_pipeline_job_definition

with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(dg.reconstructable(song_pipeline_job_definition), instance,
                            tags={"dagster/partition": sys.argv[1]})
    print("RUN_ID", result.run_id, result.success)
"""


def start_worker(name: str, env: dict) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).parent / "dagster-celery"),
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(PROJECT / "deploy" / "celery" / "celery.yaml"),
        "-n",
        name,
        "--",
        "--concurrency=1",
    ]
    return subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_for_workers(broker: str, names: tuple[str, ...], timeout: float = 120.0) -> None:
    from celery import Celery

    app = Celery(broker=broker, backend=broker)
    deadline = time.time() + timeout
    while time.time() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        awake = {host.split("@")[0] for reply in replies for host in reply}
        if set(names) <= awake:
            return
    raise RuntimeError(f"Celery workers {names} did not answer a ping within {timeout} s")


def test_song_partitions_run_on_two_celery_workers_through_redis(data_root, dagster_home):
    for index, style in enumerate(("rock", "funk", "rock")):
        render_groove_song(
            data_root / "incoming" / f"song-{index}.mp3", style, bars=3, tempo=110 + 5 * index, seed=20 + index
        )
    keys = sorted(scan_incoming(data_root / "incoming"))
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(songs_partitions.name, keys)

    with redis_server() as broker:
        # dagster-celery starts the `celery` program from PATH, as it would in an activated environment.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        env = {
            **os.environ,
            "PATH": path,
            "PIPELINE_EXECUTOR": "celery",
            "PIPELINE_CELERY_BROKER": broker,
            "PIPELINE_DATA_ROOT": str(data_root),
        }
        workers = [start_worker(name, env) for name in WORKERS]
        try:
            wait_for_workers(broker, WORKERS)
            runs = [
                subprocess.Popen(
                    [sys.executable, "-c", CHILD, key],
                    env=env,
                    text=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                for key in keys
            ]
            outputs = [run.communicate(timeout=900) for run in runs]
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=60)

    run_ids = []
    for out, err in outputs:
        line = next((line for line in out.splitlines() if line.startswith("RUN_ID")), None)
        assert line and line.endswith("True"), out + err
        run_ids.append(line.split()[1])
    used_workers = set()
    with dg.DagsterInstance.get() as instance:
        for run_id in run_ids:
            for record in instance.get_records_for_run(run_id, limit=10_000).records:
                event = record.event_log_entry.dagster_event
                if event is not None and event.event_type == dg.DagsterEventType.ENGINE_EVENT:
                    worker = (event.engine_event_data.metadata or {}).get("Celery worker")
                    if worker is not None:
                        used_workers.add(str(worker.value).split("@")[0])
        for stage in PER_SONG_ASSETS:
            assert sorted(instance.get_materialized_partitions(dg.AssetKey(stage))) == keys
    assert used_workers == set(WORKERS), f"steps ran on {used_workers}"
    for key in keys:
        assert (data_root / "lake" / "songs" / key / "theory.json").exists()


def test_the_executor_follows_pipeline_executor_and_separation_asks_kubernetes_for_a_gpu(monkeypatch):
    for name, expected in (("multiprocess", "multi_or_in_process_executor"), ("celery", "celery"), ("k8s", "k8s")):
        monkeypatch.setenv("PIPELINE_EXECUTOR", name)
        assert executor_for(Settings.from_environment()).name in {expected, name}
    monkeypatch.setenv("PIPELINE_EXECUTOR", "k8s")
    job = build_definitions().resolve_job_def("song_pipeline_job")
    (stems,) = [node for node in job.graph.node_defs if node.name == "song_stems"]
    resources = json.loads(stems.tags["dagster-k8s/config"])["container_config"]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    monkeypatch.setenv("PIPELINE_EXECUTOR", "spark")
    with pytest.raises(ValueError, match="not one of multiprocess, celery, k8s"):
        Settings.from_environment()
