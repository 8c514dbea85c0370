"""`python -m pipeline_project run`: what `make run` does; `... contributions export|delete`: share hi-hat
features with others, or take a submission back out of the pool.

Adds a partition for every new song in the drop folder (writing the demo songs first when it holds none),
materializes the per-song assets of songs not processed yet, one run per song so a bad file fails only its
own run, then the datasets with their checks, and training. On a first run the synthesis assets, and the
datasets and models made from them alone, are built meanwhile in a process of their own. It ends with a
summary. With nothing new it does no per-song work and leaves the datasets and models as they are.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _say(message: str) -> None:
    print(f"[pipeline] {message}", flush=True)


def _never_materialized(instance, asset_keys) -> bool:
    return any(instance.get_latest_materialization_event(key) is None for key in asset_keys)


def _failure_reason(result) -> str:
    """Why an in-process run failed, in one line: the failed blocking checks by dataset, check and first findings
    (Dagster's own message only counts them), else the first step failure's message."""
    failed_checks = []
    for event in result.all_events:
        evaluation = event.event_specific_data if event.event_type_value == "ASSET_CHECK_EVALUATION" else None
        if evaluation is not None and not evaluation.passed and evaluation.severity.value == "ERROR":
            details = evaluation.metadata.get("details")
            first = str(details.value).replace("\n", " ")[:200] if details is not None else ""
            failed_checks.append(
                f"{evaluation.asset_key.to_user_string()} {evaluation.check_name} failed"
                + (f" ({first})" if first else "")
            )
    if failed_checks:
        return "; ".join(failed_checks)
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None and "Failure" not in error.cls_name:
                error = error.cause
            message = (error.message or "failed").strip().splitlines()[0]
            prefix = f"{error.cls_name}: "
            return message.split(prefix, 1)[1] if prefix in message else message
    return "failed"


def _quarantined(result) -> bool:
    """Whether the run failed because its song's file was bad and was put in quarantine: the expected way for a
    song to fail, which does not make `run` fail."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.user_failure_data:
            if "quarantined_as" in (event.step_failure_data.user_failure_data.metadata or {}):
                return True
    return False


QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
PID_TAG = "pipeline_project/pid"
# What an interrupted `run` must clean up after: its background process and the storage it works on.
_background_children: list = []
_current_storage: list = []
_current_instance: list = []


def _pool_waited_for(record: logging.LogRecord) -> str | None:
    """The pool a step waits for, when the record is Dagster's 'step blocked by limit for pool' event."""
    event = (getattr(record, "dagster_meta", None) or {}).get("dagster_event")
    metadata = getattr(getattr(event, "event_specific_data", None), "metadata", None) or {}
    return str(metadata["pool"].value) if event is not None and "pool" in metadata else None


class _FirstLine(logging.Formatter):
    """A record as one line: no stack trace, no continuation lines (those go to the run's log file). A step
    waiting for a pool slot says since when and which run holds the slot."""

    def __init__(self):
        super().__init__()
        self.waiting_since: dict[tuple[str, str], float] = {}

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        pool = _pool_waited_for(record)
        if pool is not None:
            since = self.waiting_since.setdefault((meta.get("run_id", ""), meta.get("step_key", "")), record.created)
            return (
                f"[pipeline]     waiting: {meta.get('step_key')} waits for a free slot of pool '{pool}' "
                f"since {time.strftime('%H:%M:%S', time.localtime(since))}{_slot_holders(pool)}"
            )
        message = str(meta.get("orig_message") or record.getMessage()).strip().splitlines()
        step = f"{meta['step_key']}: " if meta.get("step_key") else ""
        return f"[pipeline]     {record.levelname.lower()}: {step}{message[0] if message else ''}"


class _WithErrors(logging.Formatter):
    """A record with everything: Dagster's failure events with their error's whole chain of stack traces."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        event = (getattr(record, "dagster_meta", None) or {}).get("dagster_event")
        error = getattr(getattr(event, "event_specific_data", None), "error", None) if event is not None else None
        return f"{text}\n{error.to_string()}" if error is not None else text


class _WarningsOnly(logging.Filter):
    """Warnings from the pipeline's code and libraries, each once per `run` (every song is a run of its own, and
    one missing model warns in each), and a step waiting for a pool slot. Errors are left to `run`'s own lines
    (one per failed song, with the file and the reason, and the summary), Dagster's other events and libraries'
    deprecation notices to the log file and the UI: on the terminal they would repeat those lines with stack
    traces, or speak to developers."""

    def __init__(self):
        super().__init__()
        self.shown: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if _pool_waited_for(record) is not None:
            return True
        event = (getattr(record, "dagster_meta", None) or {}).get("dagster_event")
        if event is not None or not logging.WARNING <= record.levelno < logging.ERROR:
            return False
        message = str((getattr(record, "dagster_meta", None) or {}).get("orig_message") or record.getMessage())
        if record.name == "py.warnings" and ("DeprecationWarning" in message or "FutureWarning" in message):
            return False
        if message in self.shown:
            return False
        self.shown.add(message)
        return True


def _slot_holders(pool: str) -> str:
    """', held by run <id> (job)' for the runs holding the pool's slots, as far as the instance tells."""
    try:
        import dagster as dg

        instance = dg.DagsterInstance.get()
        holders = {slot.run_id for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots}
        runs = [instance.get_run_by_id(run_id) for run_id in sorted(holders)]
        return "".join(
            f", held by run {run.run_id[:8]} ({run.job_name}, {run.status.value.lower()})" for run in runs if run
        )
    except Exception:  # noqa: BLE001 - the line is a courtesy; it must never break the run
        return ""


@contextmanager
def run_log(folder: Path):
    """For the block, send this process's log records (Python's and, through `run_logger`, Dagster's) to a new
    log file in `folder` with every detail and stack trace, and only warnings to the terminal, one line each;
    yields the file's path. The loggers are put back as they were afterwards."""
    from datetime import datetime

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(_WithErrors("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setLevel(logging.DEBUG)  # the pool-wait events are DEBUG; _WarningsOnly lets nothing else under WARNING
    to_terminal.setFormatter(_FirstLine())
    to_terminal.addFilter(_WarningsOnly())
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # MLflow's records then come here too
    # Harmless in a uv-made environment (it has no pip), and said once per model logged.
    # The ONNX exporter's notes that torchvision's operators are not registered (the project has none).
    quieter = {"mlflow.utils.environment": logging.ERROR, "torch.onnx._internal.exporter._registration": logging.ERROR}
    chosen = {"": logging.INFO, "pipeline_project.run": logging.DEBUG}
    saved = {
        name: (logging.getLogger(name).handlers, logging.getLogger(name).level, logging.getLogger(name).propagate)
        for name in (*chosen, *quieter)
    }
    for name, level in chosen.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.level = [to_file, to_terminal], level
    logging.getLogger("pipeline_project.run").propagate = False
    for name, level in quieter.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)
    import warnings

    from dagster import BetaWarning, PreviewWarning

    # Dagster's notes that a parameter the project uses is in beta are for its developers, not for a person running songs.
    warnings.filterwarnings("ignore", category=BetaWarning)
    warnings.filterwarnings("ignore", category=PreviewWarning)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.level, logger.propagate = handlers, level, propagate
        to_file.close()


def run_logger():
    """A Dagster logger (as `console`) writing to the handlers of `run_log`."""
    import dagster as dg

    @dg.logger(
        {"log_level": dg.Field(str, is_required=False, default_value="INFO")},
        description="The run's log file, and one line per warning or error on the terminal",
    )
    def console(init_context):
        logger = logging.getLogger("pipeline_project.run")
        return logger

    return console


def run_tags() -> dict[str, str]:
    """Tags of a run this process starts: its host (see `recovery`) and pid, so an interrupted `run` finds its own."""
    from pipeline_project.recovery import run_tags as host_tags

    return {**host_tags(), PID_TAG: str(os.getpid())}


def _execute_in_child(defs, jobs: list[tuple[str, list | None]]) -> None:
    """Runs `jobs` ((job name, asset keys or None for all) in turn) on this process's own instance, then exits:
    0 when every run succeeded."""
    import dagster as dg

    signal.set_wakeup_fd(-1)  # the parent's signal watcher reads that pipe; the parent stops this process itself
    instance = dg.DagsterInstance.get()
    for job_name, selection in jobs:
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, raise_on_error=False, tags=run_tags(), asset_selection=selection, run_config=QUIET_LOGS
        )
        if not result.success:
            _say(f"{job_name} failed: {_failure_reason(result)}")
            break
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if result.success else 1)  # no atexit handlers: they belong to the parent


def _start_in_background(defs, jobs: list[tuple[str, list | None]]):
    """`jobs` run in a forked child process (runs of their own on the same instance), or None where forking is
    not safe (another thread is alive) or not available: the caller then runs them itself."""
    import multiprocessing

    from pipeline_project.parallel import start_method

    if start_method() != "fork":
        return None
    child = multiprocessing.get_context("fork").Process(target=_execute_in_child, args=(defs, jobs), name="background")
    child.start()
    _background_children.append(child)
    return child


def run(data_root: str | None = None, songs_only: bool = False) -> int:
    """Process every song not yet done, then (unless `songs_only`) render, rebuild the datasets and retrain.
    A song that an earlier run left half-done (killed, or failed at one stage) resumes at the first stage it
    lacks: finished stages are never redone. The terminal gets one line per song and a summary; everything
    else, with every stack trace, goes to a log file under `$DAGSTER_HOME/logs/` that the summary names."""
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    with run_log(Path(os.environ["DAGSTER_HOME"]) / "logs") as log_file, stop_on_signals(log_file):
        try:
            return _run(data_root, songs_only, log_file)
        except KeyboardInterrupt:
            return _stopped(_stop.get("signal") or signal.SIGINT, log_file)


# Set when SIGTERM or SIGINT arrived: `run` stops after the run in progress (see `stop_on_signals`).
_stop: dict = {}
_cleanup = threading.Lock()
_handled = threading.Event()
STOP_GRACE_S = 1.0  # for the main thread to stop by itself before the watcher interrupts it
STOP_LIMIT_S = 8.0  # after which the watcher cleans up and ends the process itself


def _check_stop() -> None:
    """Between runs: stop if a signal arrived while Dagster held it back."""
    if _stop.get("signal"):
        raise KeyboardInterrupt


def _interrupt_main_thread() -> None:
    """Raise KeyboardInterrupt in the main thread at its next Python instruction, whatever signal handler Dagster
    has installed there (a step waiting for a pool slot loops without ever looking at the signals it held back)."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(threading.main_thread().ident), ctypes.py_object(KeyboardInterrupt)
    )


@contextmanager
def stop_on_signals(log_file: Path):
    """SIGTERM stops `run` the way Ctrl-C (SIGINT) does, at any point, within seconds. Outside a Dagster run either
    raises a KeyboardInterrupt at once. Inside one, Dagster holds signals back until its next checkpoint, and a
    step waiting for a pool slot has none: so every signal is also seen by a watcher thread (through the
    interpreter's wakeup file descriptor, whichever handler is installed). If the main thread has not begun to
    stop within STOP_GRACE_S, the watcher raises KeyboardInterrupt in it; if it still has not within
    STOP_LIMIT_S (stuck in native code), the watcher cleans up (`_stopped`) and ends the process itself."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set signal handlers
        yield
        return

    def interrupt(signum, frame):
        _stop["signal"] = signum
        raise KeyboardInterrupt

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def watch() -> None:
        while True:
            try:
                data = os.read(read_end, 1)
            except OSError:
                return
            if not data:
                return
            if data[0] not in (signal.SIGTERM, signal.SIGINT):
                continue
            _stop.setdefault("signal", data[0])
            if not _handled.wait(STOP_GRACE_S):
                _interrupt_main_thread()
            if not _handled.wait(STOP_LIMIT_S - STOP_GRACE_S) and _cleanup.acquire(blocking=False):
                code = _stopped(_stop["signal"], log_file, locked=True)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            return

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGINT)}
    previous_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="signal-watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        _handled.set()  # `run` is over: a watcher woken by a late signal must not interrupt what follows
        signal.set_wakeup_fd(previous_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(write_end)
        watcher.join(1)
        os.close(read_end)
        _stop.clear()
        _handled.clear()


def _stopped(signum: int, log_file: Path, locked: bool = False) -> int:
    """After SIGINT or SIGTERM: the background process stopped, this process's runs marked canceled and their
    pool slots freed, the half-written files of the songs they covered deleted (finished stages stay; the next
    `run` resumes after them). Runs once, in the main thread or the signal watcher, whichever comes first."""
    _handled.set()
    if not locked and not _cleanup.acquire(blocking=False):
        time.sleep(3600)  # the watcher is cleaning up and ends the process
    import dagster as dg

    from pipeline_project.recovery import partition_keys, remove_half_written

    for child in _background_children:
        child.terminate()
        child.join(3)
        if child.is_alive():  # inside a Dagster run SIGTERM only sets a flag
            child.kill()
            child.join()
    instance = _current_instance[0] if _current_instance else dg.DagsterInstance.get()
    ours = {str(os.getpid()), *(str(child.pid) for child in _background_children)}
    active = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.CANCELING]
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=active)):
        if run.tags.get(PID_TAG) not in ours:
            continue
        instance.report_run_canceled(run, message=f"stopped by {signal.Signals(signum).name}")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        if _current_storage:
            remove_half_written([_current_storage[0].song_dir(key) for key in partition_keys(instance, run)])
    _say(
        f"stopped by {signal.Signals(signum).name}: finished stages are kept, nothing half-written is left; "
        f"`run` again goes on where this one stopped (log: {log_file})"
    )
    return 128 + int(signum)


def _run(data_root: str | None, songs_only: bool, log_file: Path) -> int:
    import dagster as dg

    from pipeline_project.assets.partitions import (
        materialized_stages,
        plan_tags,
        songs_in_flight,
        songs_partitions,
        stage_keys,
    )
    from pipeline_project.audio.ingest import scan_incoming
    from pipeline_project.datasets.snapshots import latest_manifest
    from pipeline_project.definitions import build_definitions, default_resources
    from pipeline_project.planning import PER_SONG_STAGES, plan_new_songs, plan_pending, plan_split, stages_lacking
    from pipeline_project.recovery import recover_dead_runs
    from pipeline_project.settings import Settings
    from pipeline_project.synthesis.demo import write_demo_contribution, write_demo_songs

    started = time.perf_counter()
    settings = Settings.from_environment(data_root=data_root)
    resources = default_resources(settings=settings)
    storage = resources["storage"]
    _current_storage[:] = [storage]
    defs = build_definitions(resources, loggers={"console": run_logger()}, settings=settings)
    instance = dg.DagsterInstance.get()
    _current_instance[:] = [instance]
    # Before anything is launched: a run killed earlier must not hold a pool slot (or look alive) for ever.
    recover_dead_runs(instance, storage.song_dir, say=_say)

    found = scan_incoming(storage.fetch(storage.incoming))
    if not found:
        _say(
            f"{storage.location(storage.incoming)} holds no songs: writing the demo song set "
            f"(ground truth in {storage.location(storage.ground_truth)})"
        )
        write_demo_songs(storage.incoming, storage.ground_truth / "demo", log=_say)
        write_demo_contribution(storage.ground_truth / "demo", storage.inbox().incoming, log=_say)
        storage.publish(storage.incoming, storage.ground_truth, storage.contributions)
        found = scan_incoming(storage.incoming)
    files = {key: str(paths[0].relative_to(storage.incoming)) for key, paths in found.items()}

    new_keys, _ = plan_new_songs(files, instance.get_dynamic_partitions(songs_partitions.name), settings.songs_per_run)
    if new_keys:
        instance.add_dynamic_partitions(songs_partitions.name, new_keys)
        _say(f"added {len(new_keys)} song partitions")
    song_job = defs.resolve_job_def("song_pipeline_job")
    stages = stage_keys()
    lacking = stages_lacking(found, materialized_stages(instance))
    runs, elsewhere = plan_pending(
        instance.get_dynamic_partitions(songs_partitions.name),
        files,
        lacking,
        settings.songs_per_run,
        songs_in_flight(instance),
    )
    pending = [key for run in runs for key in run.keys]
    _say(
        f"{len(found)} songs in {storage.location(storage.incoming)}: {len(pending)} to process, "
        f"{len(found) - len(pending) - len(elsewhere)} already done"
        + (f", {len(elsewhere)} being processed by runs the daemon started" if elsewhere else "")
    )
    for key, run_id in elsewhere.items():
        _say(f"    {found[key][0].name} (partition {key}): left to run {run_id[:8]}, which is working on it")

    # The synthetic examples do not depend on the songs: on a first run they, and the datasets and models made
    # from them alone, are built in a process of their own while this one works through the songs.
    synthesis_keys = [dg.AssetKey("rendered_examples"), dg.AssetKey("augmented_examples")]
    synthesis, song_dependent = None, None
    if not songs_only and _never_materialized(instance, synthesis_keys):
        from pipeline_project.audio.kernels import compile_kernels

        compile_kernels()  # before a second process could compile the same kernels (see audio/kernels.py)
        # Then the datasets made from the synthetic examples alone, and the models trained on them only.
        graph, downstream = (
            defs.resolve_asset_graph(),
            dg.AssetSelection.groups("datasets", "training", "identification", "collection"),
        )
        from_songs = dg.AssetSelection.assets(*stages).downstream()
        synthetic_only = sorted((downstream - from_songs).resolve(graph))
        synthesis = _start_in_background(defs, [("synthesis_job", None), ("datasets_and_training_job", synthetic_only)])
        if synthesis is not None:
            song_dependent = sorted((downstream & from_songs).resolve(graph))
            _say(
                "rendering synthetic examples, then building their datasets and training their models, beside the songs"
            )

    processed, failed, position = [], [], 0

    def run_one(plan) -> None:
        """One song's run: a new song's, or a begun one's (resumed at the first stage it lacks)."""
        nonlocal position
        position += 1
        key = plan.keys[0]
        name = found[key][0].name
        resumed = plan.stages is not None and len(plan.stages) < len(PER_SONG_STAGES)
        _say(
            f"[{position}/{len(pending)}] {name} (partition {key})"
            + (f": resuming at {', '.join(plan.stages)}" if resumed else "")
        )
        result = song_job.execute_in_process(
            instance=instance,
            partition_key=key,
            raise_on_error=False,
            run_config=QUIET_LOGS,
            asset_selection=stage_keys(plan.stages) if plan.stages else None,
            tags=plan_tags(plan) | run_tags(),
        )
        _check_stop()
        if result.success:
            processed.append(name)
        else:
            failed.append((name, _failure_reason(result), _quarantined(result)))
            _say(f"    {'quarantined' if failed[-1][2] else 'failed'}: {failed[-1][1]}")

    for plan in runs:
        if not plan.is_batch:
            run_one(plan)
            continue
        _say(
            f"[{position + 1}-{position + len(plan.keys)}/{len(pending)}] {len(plan.keys)} new songs in one run "
            f"({found[plan.keys[0]][0].name} ... {found[plan.keys[-1]][0].name})"
        )
        result = song_job.execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET_LOGS, tags=plan_tags(plan) | run_tags()
        )
        _check_stop()
        if result.success:
            processed += [found[key][0].name for key in plan.keys]
            position += len(plan.keys)
            continue
        _say(f"    the batch stopped ({_failure_reason(result)}): its songs go on one to a run")
        lacking = stages_lacking(plan.keys, materialized_stages(instance))
        split = {run.keys[0]: run for run in plan_split(result.run_id, list(plan.keys), lacking, files)}
        for key in plan.keys:
            if key in split:
                run_one(split[key])
            else:  # the song finished every stage before the batch stopped
                position += 1
                processed.append(found[key][0].name)
    # A bad file put in quarantine is the pipeline doing its job; any other failure is the pipeline's and fails the run.
    songs_ok = all(quarantined for _, _, quarantined in failed)

    def summary(**more) -> None:
        _summary(
            storage,
            resources["mlflow"],
            processed,
            failed,
            time.perf_counter() - started,
            latest_manifest,
            log_file=log_file,
            **more,
        )

    if songs_only:
        summary(trained=False)
        return _exit_code(songs_ok, True, failed)

    downstream_ok = True
    if synthesis is not None:
        synthesis.join()
        downstream_ok &= synthesis.exitcode == 0
        if synthesis.exitcode != 0:
            _say(
                f"the synthetic examples or their datasets failed (exit code {synthesis.exitcode}): see the runs in the UI"
            )
    elif _never_materialized(instance, synthesis_keys):
        _say("rendering synthetic examples with FluidSynth and augmenting them")
        result = defs.resolve_job_def("synthesis_job").execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET_LOGS, tags=run_tags()
        )
        _check_stop()
        downstream_ok &= result.success

    final_keys = [dg.AssetKey(k) for k in ("song_features", "synthetic_examples", "drum_hits", "drum_hit_classifier")]
    if downstream_ok and (processed or _never_materialized(instance, final_keys)):
        _say("building datasets (with privacy checks) and training")
        # After the background runs, only what depends on the songs is left to build.
        result = defs.resolve_job_def("datasets_and_training_job").execute_in_process(
            tags=run_tags(),
            instance=instance,
            raise_on_error=False,
            run_config=QUIET_LOGS,
            asset_selection=song_dependent,
        )
        _check_stop()
        downstream_ok &= result.success
        if not result.success:
            _say(f"datasets/training failed: {_failure_reason(result)}")
    elif downstream_ok:
        _say("no new songs: datasets and models are up to date")

    summary(checks=checks_summary(instance, defs))
    return _exit_code(songs_ok, downstream_ok, failed)


def _exit_code(songs_ok: bool, downstream_ok: bool, failed: list[tuple[str, str, bool]]) -> int:
    """0 when nothing failed but quarantined files; else 1, saying what failed."""
    if songs_ok and downstream_ok:
        return 0
    what = (
        [f"songs that were not bad files ({', '.join(name for name, _, q in failed if not q)})"] if not songs_ok else []
    )
    what += [] if downstream_ok else ["the datasets, synthesis or training (see above)"]
    _say(f"exit status 1: {' and '.join(what)} failed")
    return 1


def checks_summary(instance, defs) -> list[str]:
    """One line for the asset checks' latest results: how many passed, and each one that failed with why."""
    passed, failures, never = 0, [], 0
    for key in sorted(defs.resolve_asset_graph().asset_check_keys, key=lambda k: k.to_user_string()):
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        evaluation = history[0].event.dagster_event.event_specific_data if history and history[0].event else None
        if evaluation is None:
            never += 1
        elif evaluation.passed:
            passed += 1
        else:
            metadata = evaluation.metadata or {}
            why = next(
                (str(metadata[name].value) for name in ("problems", "details", "reason") if name in metadata), ""
            )
            failures.append(
                f"{key.to_user_string()} ({evaluation.severity.value.lower()}{': ' + why[:120] if why else ''})"
            )
    line = f"{passed} passed, {len(failures)} failed" + (f", {never} not run yet" if never else "")
    return [line, *failures]


def _summary(
    storage,
    mlflow_resource,
    processed,
    failed,
    seconds,
    latest_manifest,
    checks: list[str] | None = None,
    trained: bool = True,
    log_file: Path | None = None,
) -> None:
    print("\n=== pipeline_project summary ===")
    print(f"songs processed this run: {len(processed)}" + (f" ({', '.join(processed)})" if processed else ""))
    for name, reason, quarantined in failed:
        print(f"{'songs quarantined:' if quarantined else 'songs failed:':<26}{name}: {reason}")
    from pipeline_project.layout import SONG_DONE

    storage.fetch(storage.songs, pattern=SONG_DONE)
    print(f"analysis:                 {_analysers(mlflow_resource)}")
    print(f"songs in the lake:        {len(storage.finished_song_keys())}")
    print("datasets:")
    for name in (
        "song_features",
        "synthetic_examples",
        "drum_hits",
        "concert_pairs",
        "contributed_hits",
        "review_queue",
        "human_labels",
    ):
        manifest = latest_manifest(storage.fetch(storage.dataset_dir(name), pattern="*.json"))
        print(
            f"  {name:<20} {manifest['rows'] if manifest else 0:>6} rows"
            + (f"  snapshot {manifest['snapshot_id']}" if manifest else "  (not built)")
        )
    if trained:  # a songs-only run does not touch the models
        _models_summary(mlflow_resource)
        print(f"song index:               {_song_index_summary(storage)}")
        print(f"labeling:                 {_labeling_summary(storage)}")
    if checks:
        print(f"asset checks:             {checks[0]}")
        for failure in checks[1:]:
            print(f"  failed: {failure}")
    print(
        f"outputs under {storage.location(storage.root)} (datasets/, mlflow/, lake/, quarantine/); took {seconds:.0f} s"
    )
    if log_file is not None:
        print(f"full log, with every stack trace: {log_file}")


def _labeling_summary(storage) -> str:
    """What waits for a person on the labeling page."""
    try:
        session = labeling(storage)
    except (OSError, ValueError, KeyError) as problem:
        return f"unknown ({problem})"
    from pipeline_project.labeling.queues import QUEUE_ITEMS

    waiting = [f"{session.progress(name)['left']} {QUEUE_ITEMS.get(name, name)}" for name in session.names()]
    return f"{' and '.join(waiting)} to label: `make label`" if waiting else "no queues yet"


def _analysers(mlflow_resource) -> str:
    """What song_analysis runs: each learned family's champion in MLflow, or the DSP path where it has none."""
    from pipeline_project.analysis import learned

    try:
        registry = mlflow_resource.registry()
        parts = []
        for name in learned.MODEL_NAMES:
            champion, versions = registry.champion_version(name), registry.versions(name)
            if champion is not None:
                parts.append(
                    f"{name} version {champion.version} ({champion.tags.get('analysis_version', '?')}, learned)"
                )
            elif versions:
                parts.append(f"{name} DSP path (no champion: {versions[-1].tags.get('promotion', '?')})")
            else:
                parts.append(f"{name} DSP path (no version registered yet)")
        return "; ".join(parts)
    except Exception as exc:  # a summary must not hide the run's own result
        return f"unknown ({exc})"


def _song_index_summary(storage) -> str:
    from pipeline_project.identification.catalog import SongIndex, SongIndexError

    try:
        index = SongIndex.load(storage.fetch(storage.song_index))
    except SongIndexError:
        return "not built (it needs a song_embedding champion)"
    return (
        f"{len(index.tracks)} songs, {index.size} windows ({index.kind}), {index.info.get('model_name')} version "
        f"{index.info.get('model_version')}; identify a recording with `python -m pipeline_project identify FILE`"
    )


def _models_summary(mlflow_resource) -> None:
    try:
        from pipeline_project.analysis.learned import MODEL_NAMES
        from pipeline_project.training.families import (
            DRUM_MODEL_NAME,
            EMBEDDING_MODEL_NAME,
            GENRE_MODEL_NAME,
        )

        registry = mlflow_resource.registry()
        print("models (versions registered, champion):")
        for name in (DRUM_MODEL_NAME, GENRE_MODEL_NAME, EMBEDDING_MODEL_NAME, *MODEL_NAMES):
            versions, champion = registry.versions(name), registry.champion_version(name)
            print(
                f"  {name:<20} {len(versions):>6} versions"
                + (
                    f"  champion = version {champion.version} ({champion.tags.get('semver', '?')})"
                    if champion
                    else "  no champion"
                )
            )
    except Exception as exc:  # a summary must not hide the run's own result
        print(f"models: unknown ({exc})")


def _storage(data_root: str | None):
    return _resources(data_root)["storage"]


def export_contribution(data_root: str | None, instrument: str, genre: str, out: str, assume_yes: bool) -> int:
    """Write a submission file from the local drum_hits, after showing what it holds."""
    from pipeline_project.datasets.contributions import export_submission
    from pipeline_project.datasets.snapshots import read_snapshot
    from pipeline_project.files import write_text_atomic

    storage = _storage(data_root)
    try:
        submission, summary = export_submission(
            read_snapshot(storage.fetch(storage.dataset_dir("drum_hits"))), instrument, genre
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"cannot export: {exc}", file=sys.stderr)
        return 1
    print(summary)
    if not assume_yes and input(f"write {out}? [y/N] ").strip().lower() not in ("y", "yes"):
        print("nothing written")
        return 1
    write_text_atomic(Path(out), json.dumps(submission))
    print(f"wrote {out}")
    return 0


def delete_contribution(data_root: str | None, submission_id: str) -> int:
    """Take an accepted submission out of the pool: the next contributed_hits snapshot no longer has its rows."""
    storage = _storage(data_root)
    inbox = storage.inbox()
    storage.fetch(inbox.accepted)
    if inbox.delete(submission_id) is None:
        print(f"no accepted submission {submission_id} in {inbox.accepted}", file=sys.stderr)
        return 1
    storage.publish(inbox.deleted, inbox.accepted)
    print(
        f"submission {submission_id} removed from the pool; materialize contributed_hits (or wait for the next run) "
        "for a snapshot without it"
    )
    return 0


def _song_name(storage, key: str) -> str:
    """'Artist - Title' from the song's tags where it has them, with its partition key."""
    from pipeline_project.audio.ingest import song_name

    record = storage.song(key).record
    storage.fetch(record)
    tags = json.loads(record.read_text()) if record.exists() else {}
    name = song_name(tags)
    return f"{name} [{key}]" if name else key


def _audio_blocks(source: str, rate: int | None, seconds: float = 0.25):
    """(rate, blocks) of a file read a quarter second at a time, or of raw 16-bit mono PCM on stdin ('-')."""
    import numpy as np
    import soundfile as sf

    if source == "-":
        rate = rate or 44_100
        size = int(rate * seconds) * 2

        def from_stdin():
            while chunk := sys.stdin.buffer.read(size):
                yield np.frombuffer(chunk[: len(chunk) // 2 * 2], dtype="<i2").astype(np.float32) / 32768

        return rate, from_stdin()
    info = sf.info(source)
    blocks = sf.blocks(source, blocksize=int(info.samplerate * seconds), dtype="float32", always_2d=True)
    return info.samplerate, (block.T for block in blocks)


def identify(data_root: str | None, source: str, rate: int | None, every_answer: bool, strict: bool = False) -> int:
    """Name the song playing in a file or on stdin, from the song index, as the streaming recognizer hears it
    (with its strict preset when `strict`: slower, but it rarely names a song for music not in the index)."""
    from pipeline_project.definitions import default_resources
    from pipeline_project.identification.catalog import SongIndex, SongIndexError
    from pipeline_project.identification.streaming import PRESETS, StreamingRecognizer

    resources = default_resources(data_root)
    storage = resources["storage"]
    try:
        index = SongIndex.load(storage.fetch(storage.song_index))
        stream_rate, blocks = _audio_blocks(source, rate)
    except (SongIndexError, RuntimeError, OSError) as error:  # soundfile raises RuntimeError on unreadable audio
        print(f"cannot identify: {error}", file=sys.stderr)
        return 1
    model, version = index.info["model_name"], index.info["model_version"]
    preset = "strict" if strict else "default"
    recognizer = StreamingRecognizer(
        index, resources["mlflow"].registry().load_version(model, version), PRESETS[preset]
    )
    print(
        f"song index: {len(index.tracks)} songs, {model} version {version}; listening to {source} ({preset} preset: "
        f"an answer needs a score of {PRESETS[preset].min_score:.2f} and a lead over the runner-up of "
        f"{recognizer.policy.min_lead_score:.2f}, {PRESETS[preset].noise_margin} times the lead noise gives a song "
        "in this index)"
    )
    shown, final, first_heard = None, None, {}
    for block in blocks:
        for answer in recognizer.feed(block, stream_rate):
            if answer.track is not None:
                final = answer
                first_heard.setdefault(answer.track, answer.seconds)
            if every_answer or answer.track != shown:
                what = (
                    f"{_song_name(storage, answer.track)} (confidence {answer.confidence:.2f}, "
                    f"{answer.offset + answer.seconds:.1f} s into the song)"
                    if answer.track
                    else "no match"
                )
                print(f"{answer.seconds:7.1f} s  {what}", flush=True)
                shown = answer.track
    if final is None:
        print(f"{source}: no match")
        return 3
    print(
        f"{source}: {_song_name(storage, final.track)} (answered from {first_heard[final.track]:.1f} s, "
        f"confidence {final.confidence:.2f})"
    )
    return 0


def labeling(storage):
    """The labeling page's queues and stores over a data root (local, or the local mirror of a remote one)."""
    from pipeline_project.labeling.app import Labeling
    from pipeline_project.labeling.queues import load_queues

    folder = storage.labels()

    def load():
        storage.fetch(storage.dataset_dir("review_queue"))
        storage.fetch(folder.path)
        return load_queues(storage.dataset_dir, folder, storage.synthetic(), lambda key: storage.song(key).audio)

    return Labeling(load, folder.store)


def label(data_root: str | None, port: int) -> int:
    """Serve the labeling page on loopback until interrupted."""
    from pipeline_project.labeling.app import serve

    storage = _storage(data_root)
    session = labeling(storage)
    queues = session.names()
    if not queues:
        print("nothing to label yet: `make run` builds the review queues (review_queue, genre_queue) first")
    for name in queues:
        progress = session.progress(name)
        note = session.queue(name).note
        print(f"{name}: {progress['left']} to label, {progress['done']} labelled" + (f" ({note})" if note else ""))

    def ready(url: str) -> None:
        print(f"labeling page: {url}  (Ctrl-C to stop; labels are saved as you give them)", flush=True)

    try:
        serve(session, port, on_ready=ready)
    except KeyboardInterrupt:
        pass
    storage.publish(storage.labels().stores)
    return 0


def _local_test(storage, family: str):
    """`family`'s local test split (people's labels merged, as its training run does), for `models pull`."""
    from pipeline_project.assets.datasets import with_peoples_labels
    from pipeline_project.datasets.snapshots import latest_manifest, read_snapshot
    from pipeline_project.training.families import DRUM_MODEL_NAME
    from pipeline_project.training.updates import local_test

    dataset = "drum_hits" if family == DRUM_MODEL_NAME else "song_features"
    root = storage.fetch(storage.dataset_dir(dataset))
    manifest = latest_manifest(root)
    if manifest is None:
        raise ValueError(f"{family}: no {dataset} snapshot here to score it on (`make run` builds one)")
    _, table, _ = with_peoples_labels(
        storage, dataset, read_snapshot(root, manifest["snapshot_id"]), manifest["snapshot_id"]
    )
    return local_test(family, table, manifest["snapshot_id"])


def _show_champion(where: str, champion) -> str:
    if champion is None:
        return f"  {where}: no champion"
    score = "score ?" if champion.score is None else f"score {champion.score}"
    return (
        f"  {where}: version {champion.version} ({champion.semver}, released {champion.released or '?'}), {score}, "
        f"trained on {champion.trained_on()}"
    )


def models_check(data_root: str | None, source: str, families: list[str] | None) -> int:
    """Each family's champion here beside the one in `source`."""
    from pipeline_project.training.registry import Registry
    from pipeline_project.training.updates import FAMILIES, compare, public_uri

    local = _resources(data_root)["mlflow"].registry()
    comparisons = compare(local, Registry(source), tuple(families or FAMILIES))
    print(f"champions here and at {public_uri(source)}:")
    for comparison in comparisons:
        print(f"{comparison.family}: {comparison.verdict}")
        print(_show_champion("here ", comparison.local))
        print(_show_champion("there", comparison.remote))
    newer = [c.family for c in comparisons if c.newer_there]
    if newer:
        print(
            f"take them with: pipeline-project models pull --from {public_uri(source)} --family {' --family '.join(newer)}"
        )
    return 0


def models_pull(data_root: str | None, source: str, families: list[str] | None, minimum_gain: float) -> int:
    """Take `source`'s champion of each family where it is newer: verified, scored here, gated here."""
    from pipeline_project.files import write_text_atomic
    from pipeline_project.settings import Settings
    from pipeline_project.training.registry import Registry
    from pipeline_project.training.updates import PULLABLE, ChecksumMismatch, compare, public_uri, pull

    resources = _resources(data_root)
    mlflow_resource, storage = resources["mlflow"], resources["storage"]
    local, remote = mlflow_resource.registry(), Registry(source)
    wanted = tuple(families or PULLABLE)
    refused = False
    for comparison in compare(local, remote, wanted):
        family = comparison.family
        if family not in PULLABLE:
            print(f"{family}: not pulled (only {', '.join(PULLABLE)} are scored on a local test split)")
            continue
        if not comparison.newer_there:
            print(f"{family}: nothing to pull ({comparison.verdict})")
            continue
        try:
            pulled = pull(
                local,
                remote,
                family,
                _local_test(storage, family),
                experiment=mlflow_resource.experiment,
                minimum_gain=minimum_gain,
                source=public_uri(source),
            )
        except (ChecksumMismatch, ValueError) as problem:
            print(f"{family}: {problem}")
            refused = True
            continue
        result = pulled.result
        print(
            f"{family}: version {pulled.remote_version} there is version {result.version} ({result.semver}) here, "
            f"{result.alias}: {result.reason}"
        )
        if result.promoted and pulled.hihat_rules:
            settings = Settings.from_environment(data_root=data_root)
            path = Path(settings.config_dir) / "hihat_presets.json"
            presets = {"model": family, "version": result.version, "pulled_from": public_uri(source)}
            write_text_atomic(path, json.dumps({**presets, "presets": pulled.hihat_rules}, indent=1))
            print(f"{family}: its hi-hat presets ({', '.join(pulled.hihat_rules)}) are in {path}")
    return 1 if refused else 0


def _resources(data_root: str | None) -> dict:
    from pipeline_project.definitions import default_resources

    return default_resources(data_root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline_project", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="process new songs, then rebuild datasets and retrain")
    run_parser.add_argument("--data-root", help="data folder (default: $PIPELINE_DATA_ROOT or ./data)")
    run_parser.add_argument(
        "--songs-only",
        action="store_true",
        help="only the per-song stages (decode, separate, analyse); leave datasets and models as they are",
    )
    contributions = sub.add_parser("contributions", help="export or delete community contributions")
    contributions.add_argument("--data-root", help="data folder (default: $PIPELINE_DATA_ROOT or ./data)")
    actions = contributions.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="write a submission from the local drum_hits, after a review summary")
    export.add_argument("--instrument", default="hihat")
    export.add_argument("--genre", required=True, help="the genre of the music the hits come from")
    export.add_argument("--out", required=True, help="submission file to write (JSON)")
    export.add_argument("--yes", action="store_true", help="write without asking")
    delete = actions.add_parser("delete", help="remove an accepted submission from the pool by its id")
    delete.add_argument("submission_id")
    identify_parser = sub.add_parser("identify", help="name the song in a recording, from the song index")
    identify_parser.add_argument("source", help="an audio file, or - for raw 16-bit mono PCM on stdin")
    identify_parser.add_argument("--rate", type=int, help="sample rate of the PCM on stdin (default 44100)")
    identify_parser.add_argument("--every-answer", action="store_true", help="print every hop's answer")
    identify_parser.add_argument(
        "--strict",
        action="store_true",
        help="answer only on more evidence: slower (about 5.5 s against 3 s at 0 dB), but it rarely names a song "
        "for music that is not in the index (3 %% of the time against half)",
    )
    identify_parser.add_argument("--data-root", help="data folder (default: $PIPELINE_DATA_ROOT or ./data)")
    label_parser = sub.add_parser("label", help="serve the labeling page for the review queues on 127.0.0.1")
    label_parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0: any free)")
    label_parser.add_argument("--data-root", help="data folder (default: $PIPELINE_DATA_ROOT or ./data)")
    models = sub.add_parser("models", help="compare the champions with another MLflow store's, and take better ones")
    model_actions = models.add_subparsers(dest="action", required=True)
    for name, text in (
        ("check", "each family's champion here beside the other store's: versions, training data, scores"),
        ("pull", "take the other store's newer champions: checksums verified, scored here, promoted only if better"),
    ):
        action = model_actions.add_parser(name, help=text)
        action.add_argument(
            "--from",
            dest="source",
            default=os.environ.get("PIPELINE_MODEL_SOURCE"),
            help="the other MLflow store: http://host:port or sqlite:///path (default: $PIPELINE_MODEL_SOURCE)",
        )
        action.add_argument("--family", action="append", help="only this model family (repeat for more)")
        action.add_argument("--data-root", help="data folder (default: $PIPELINE_DATA_ROOT or ./data)")
        if name == "pull":
            action.add_argument(
                "--minimum-gain",
                type=float,
                default=0.01,
                help="how much better (test macro F1) a pulled version must be to take champion (default 0.01)",
            )
    args = parser.parse_args(argv)
    if args.command == "models":
        logging.basicConfig(level=logging.WARNING)
        if not args.source:
            parser.error("models: name the other store with --from (or set PIPELINE_MODEL_SOURCE)")
        if args.action == "check":
            return models_check(args.data_root, args.source, args.family)
        return models_pull(args.data_root, args.source, args.family, args.minimum_gain)
    if args.command == "label":
        logging.basicConfig(level=logging.WARNING)
        return label(args.data_root, args.port)
    if args.command == "identify":
        logging.basicConfig(level=logging.WARNING)
        return identify(args.data_root, args.source, args.rate, args.every_answer, args.strict)
    if args.command == "run":
        return run(args.data_root, songs_only=args.songs_only)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "contributions" and args.action == "export":
        return export_contribution(args.data_root, args.instrument, args.genre, args.out, args.yes)
    if args.command == "contributions" and args.action == "delete":
        return delete_contribution(args.data_root, args.submission_id)
    return 2


if __name__ == "__main__":
    sys.exit(main())
