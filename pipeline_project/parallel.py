"""Independent pieces of CPU-bound work spread over processes: rendering and augmenting examples are
single-threaded, so a machine's cores can each take one. Results come back in input order and each piece
draws only on its own seed, so the output is the same whatever the number of workers."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def start_method() -> str:
    """ "fork" while this process has a single thread: workers start at once with everything already imported.
    "spawn" otherwise: a forked child would inherit other threads' locks (Dagster's, MLflow's) in whatever
    state they were, and could hang on one."""
    return "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods() else "spawn"


def map_in_processes(
    function: Callable, items: Iterable, workers: int = 0, initializer: Callable | None = None, initargs: tuple = ()
) -> Iterator:
    """`function(item)` for every item, in order, in `workers` processes (0: one per available core; 1: in this
    process, with no pool). `function` and `initializer` must be module-level; `initializer(*initargs)` runs
    once in every worker (for shared read-only inputs, loaded once rather than sent with every item)."""
    items = list(items)
    workers = min(workers or available_cores(), len(items))
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(function, items)
        return
    context = multiprocessing.get_context(start_method())
    with ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs) as pool:
        yield from pool.map(function, items)
