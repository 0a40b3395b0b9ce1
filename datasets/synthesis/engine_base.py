"""What the generation engines share: the failure contract, the stats keys, thread pinning.

Every engine has ``imap_unordered(fn, jobs, on_fail=None) -> Iterator[(job, result)]``: each job
taken from ``jobs`` comes back exactly once, in completion order, either with ``fn(job)`` or, when
it could not be run, with ``on_fail(job, reason)``. ``reason`` starts with one of

* ``"error: "``   ``fn`` raised (the message ends with the worker's traceback);
* ``"timeout: "`` the job ran longer than ``job_timeout_s`` and its worker was killed;
* ``"lost: "``    the worker died while running it, more often than the engine retries.

Without ``on_fail`` a failure raises :class:`JobFailed` from the iterator (after the engine has
cleaned up), so nothing is silently dropped. A job's result must depend on the job alone (its own
seeded RNG): crashed jobs are run again, possibly on another worker or machine.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any

OnFail = Callable[[Any, str], Any]

# OpenMP / BLAS pools: one thread per worker, the parallelism is across workers.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS")


class JobFailed(RuntimeError):
    """A job could not be run and the caller gave no ``on_fail``."""

    def __init__(self, job: Any, reason: str) -> None:
        super().__init__(f"job {job!r} failed: {reason}")
        self.job = job
        self.reason = reason


def new_stats(*extra: str) -> dict[str, int]:
    """Counters every engine keeps: results from ``fn`` (``done``), results from ``on_fail``
    (``failed`` = ``errors`` + ``hung_jobs`` + ``lost_jobs``), plus engine-specific ``extra``."""
    return dict.fromkeys(("done", "failed", "errors", "hung_jobs", "lost_jobs", *extra), 0)


def resolve_failure(job: Any, reason: str, on_fail: OnFail | None, stats: dict[str, int]) -> Any:
    """The value yielded for a failed job: ``on_fail(job, reason)``, or raise :class:`JobFailed`."""
    stats["failed"] += 1
    if on_fail is None:
        raise JobFailed(job, reason)
    return on_fail(job, reason)


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` plus a short traceback, for an ``"error: "`` reason."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-4))
    return f"{type(exc).__name__}: {exc}\n{tb}"


def pin_threads() -> None:
    """One compute thread in this (worker) process, also for libraries already loaded."""
    for key in THREAD_ENV:
        os.environ[key] = "1"
    try:  # BLAS pools of numpy/scipy loaded before the fork ignore the variables above
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except Exception:  # optional: without threadpoolctl the variables still cover later imports
        pass
    # Not torch.set_num_threads(1): in a worker forked from a training process whose OpenMP pool
    # is running it can deadlock (seen 2026-12-07: `python train.py --method ce` hung at stream
    # epoch 1 with the forked worker inside set_num_threads); the workers compute nothing with
    # torch, and threadpoolctl above already limits the OpenMP runtime torch loaded.
