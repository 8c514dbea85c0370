"""Runs whose process died (killed by the out-of-memory killer, a power cut, `kill -9`): find them, mark them failed,
free the pool slots they held and delete what they left half-written.

A run killed that way stays STARTED in the instance for ever, and keeps its slot of the `separation` pool, so the
next run's `song_stems` would wait for it for ever. `run` calls `recover_dead_runs` before it launches anything;
under `make ui` the `dead_runs_sensor` does the same every minute (Dagster's own run monitoring cannot tell,
for runs that the default run launcher started, whether their process is alive).

A run's process is the pid on its RUN_START event. It is dead when no process has that pid, or when the process
that has it started after the run did (the pid was reused). Only runs on this machine can be checked: a run the
`run` command started carries the host in its tags; any other run counts as local only on an instance whose run
storage is a local SQLite file (where runs cannot be anywhere else).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from pipeline_project.files import HALF_WRITTEN

HOST_TAG = "pipeline_project/host"


def run_tags() -> dict[str, str]:
    """Tags for a run this process starts, so another process can tell whether it is still alive."""
    return {HOST_TAG: socket.gethostname()}


def process_started_at(pid: int) -> float | None:
    """When the process `pid` started (seconds since the epoch), or None when there is no such process.
    Linux reads /proc; elsewhere a live process gives 0.0 (started at an unknown time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # another user's process: alive
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0


def _run_pid_and_start(instance, run_id: str) -> tuple[int | None, float | None]:
    from dagster import DagsterEventType

    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    if not records:
        return None, None
    entry = records[0].event_log_entry
    return (entry.dagster_event.pid if entry.dagster_event else None), entry.timestamp


def _local(instance, run) -> bool:
    if HOST_TAG in run.tags:
        return run.tags[HOST_TAG] == socket.gethostname()
    return "sqlite" in type(instance.run_storage).__name__.lower()


def dead_runs(instance) -> list[tuple[object, int]]:
    """(run, pid) of every started run on this machine whose process is gone."""
    from dagster import DagsterRunStatus, RunsFilter

    found = []
    for run in instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING])):
        if not _local(instance, run):
            continue
        pid, started = _run_pid_and_start(instance, run.run_id)
        if pid is None:
            continue
        process_start = process_started_at(pid)
        # A second's slack: /proc's start time is in clock ticks, the event's time in floating seconds.
        if process_start is None or (started is not None and process_start > started + 1.0):
            found.append((run, pid))
    return found


def recover_dead_runs(instance, song_dir, say=print) -> list[str]:
    """Mark every dead run failed, free its pool slots and delete the half-written files in the song folders of
    its partitions (`song_dir(partition key)`); returns their run ids."""
    recovered = []
    for run, pid in dead_runs(instance):
        message = (
            f"its process ({pid}) is gone: killed or crashed while the run was {run.status.value.lower()}; "
            "marked failed, its pool slots freed"
        )
        instance.report_run_failed(run, message=message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        removed = remove_half_written([song_dir(key) for key in partition_keys(instance, run)])
        say(
            f"run {run.run_id[:8]} ({run.job_name}) was left running by a process that is gone (pid {pid}): marked "
            f"failed, its pool slots freed" + (f", {removed} half-written files deleted" if removed else "")
        )
        recovered.append(run.run_id)
    return recovered


def partition_keys(instance, run) -> list[str]:
    """The song partitions a run covered: its partition, or the keys of its partition range."""
    if run.tags.get("dagster/partition"):
        return [run.tags["dagster/partition"]]
    first, last = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    if not (first and last):
        return []
    from pipeline_project.assets.partitions import songs_partitions
    from pipeline_project.planning import keys_in_range

    keys = keys_in_range(instance.get_dynamic_partitions(songs_partitions.name), first, last)
    return [first, last] if keys is None else keys


def remove_half_written(folders: list[Path], older_than_s: float = 0.0) -> int:
    """Delete half-written files (`HALF_WRITTEN`) under `folders` not touched for `older_than_s`; how many."""
    removed, now = 0, time.time()
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for pattern in HALF_WRITTEN:
            for path in Path(folder).rglob(pattern):
                try:
                    if path.is_file() and now - path.stat().st_mtime >= older_than_s:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
    return removed
