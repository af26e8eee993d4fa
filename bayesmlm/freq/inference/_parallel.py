"""Run independent tasks over processes (fork where available), in order, reproducibly.

Examples
--------
>>> run_tasks(pow, [(2, 3), (3, 2)], n_jobs=1)
[8, 9]
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

__all__ = ["run_tasks", "resolve_jobs"]


def resolve_jobs(n_jobs: int | None, n_tasks: int) -> int:
    """Number of worker processes: ``None`` or -1 means one per core; never more than the tasks."""
    cores = os.cpu_count() or 1
    if n_jobs is None or n_jobs < 0:
        n_jobs = cores
    return max(1, min(int(n_jobs), n_tasks))


def _context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods and sys.platform != "darwin" else "spawn")


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    n_jobs: int | None = 1,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[Any]:
    """``[fn(*task) for task in tasks]``, over ``n_jobs`` processes when more than one.

    ``initializer(*initargs)`` runs once in each worker (and once here when
    serial) to install shared, read-only state.
    """
    jobs = resolve_jobs(n_jobs, len(tasks))
    results: list[Any] = [None] * len(tasks)
    if jobs == 1:
        if initializer is not None:
            initializer(*initargs)
        for k, task in enumerate(tasks):
            results[k] = fn(*task)
            if progress is not None:
                progress(k + 1, len(tasks))
        return results
    with warnings.catch_warnings():
        # Python 3.12 warns that forking a process with threads (BLAS's idle pool) may deadlock; the
        # workers only run NumPy/SciPy and NLopt, and forking spares each one the package imports
        # (seconds) that a spawned worker would repeat.
        warnings.filterwarnings("ignore", message=".*use of fork\\(\\) may lead to deadlocks", category=DeprecationWarning)
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_context(), initializer=initializer, initargs=initargs)
        futures = {pool.submit(fn, *task): k for k, task in enumerate(tasks)}
    with pool:
        done = 0
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done += 1
            if progress is not None:
                progress(done, len(tasks))
    return results
