"""Ray generation engine: the same ``imap_unordered`` as :class:`LocalEngine`, on a Ray cluster.

``RayEngine(address="HEAD:6379").imap_unordered(fn, jobs, on_fail)`` runs ``fn(job)`` as Ray
tasks (one CPU each) and yields ``(job, result)`` pairs in completion order (contract in
:mod:`datasets.synthesis.engine_base`). Fault tolerance is Ray's own: a task whose worker process
or node dies is retried ``max_retries`` times (then ``on_fail(job, "lost: ...")``); a task running
longer than ``job_timeout_s`` is cancelled with ``ray.cancel(force=True)``, which kills its worker,
and comes back as ``on_fail(job, "timeout: ...")``. ``jobs`` is consumed lazily, at most
``max_in_flight`` tasks outstanding (default: twice the cluster's CPUs).

Ray does not say when a queued task starts, so a task's clock starts when it is among the oldest
``CPUs`` outstanding tasks (Ray runs them in about submission order); a retried task keeps its
clock. Every machine needs the same checkout at the same path and the same environment: Ray puts
the driver's working directory on the workers' ``sys.path``, and ``fn`` and the jobs are pickled
by reference to their modules.

``ray`` is an optional dependency, imported only when an engine connects.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from loguru import logger

from datasets.synthesis.engine_base import OnFail, describe_exception, new_stats, pin_threads, resolve_failure

_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode, on 127.0.0.1
_pinned = False  # per Ray worker process


def import_ray() -> Any:
    """``import ray`` with the fix in the message when it is missing."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("the 'ray' engine needs Ray, an optional dependency: pip install ray "
                          "(or pip install \"ray[default]\" for the dashboard and `ray status`)") from exc
    return ray


def run_task(fn: Callable[[Any], Any], job: Any) -> tuple[str, Any]:
    """Body of every Ray task: ``("ok", fn(job))`` or ``("error", traceback)``.

    Exceptions from ``fn`` are returned, not raised: they are the job's failure, not Ray's, so Ray
    must not retry them (only crashed workers are retried)."""
    global _pinned
    if not _pinned:
        pin_threads()
        _pinned = True
    try:
        return "ok", fn(job)
    except Exception as exc:
        return "error", describe_exception(exc)


class RayEngine:
    """Ray tasks behind the engines' ``imap_unordered`` interface.

    Args:
        address: ``None`` starts a private local Ray instance on 127.0.0.1 (no dashboard); an
            address (``"HEAD:6379"``, ``"auto"``) connects to a running cluster. When Ray is already
            initialised in this process, that instance is used and left running.
        num_cpus: CPUs of the local instance (``None``: all); ignored with ``address``.
        job_timeout_s: a task running longer is cancelled (``None``: no limit).
        max_in_flight: outstanding tasks (``None``: twice the cluster's CPUs).
        max_retries: Ray's retries of a task whose worker died.
        runtime_env: passed to ``ray.init`` (e.g. ``{"working_dir": "."}`` without a shared checkout).
        log_to_driver: show the workers' stdout/stderr here.
        poll_s: longest wait between checks for hung tasks.

    ``stats``: ``done``, ``failed``, ``errors``, ``hung_jobs``, ``lost_jobs`` (retries exhausted);
    crashes that a retry absorbed are Ray's business and not counted.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 job_timeout_s: float | None = 120.0, max_in_flight: int | None = None, max_retries: int = 3,
                 runtime_env: dict | None = None, log_to_driver: bool = False, poll_s: float = 1.0) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.job_timeout_s = job_timeout_s if job_timeout_s and job_timeout_s > 0 else None
        self.max_in_flight = max_in_flight
        self.max_retries = int(max_retries)
        self.runtime_env = runtime_env
        self.log_to_driver = log_to_driver
        self.poll_s = float(poll_s)
        self.stats = new_stats()
        self._owns_ray = False  # True when this engine called ray.init (and so calls ray.shutdown)
        self._in_flight: dict[Any, list] = {}

    # ---- connection -----------------------------------------------------------------------
    def connect(self) -> Any:
        """Initialise Ray if needed (``imap_unordered`` calls it); returns the ``ray`` module."""
        ray = import_ray()
        if ray.is_initialized():
            return ray
        common = dict(logging_level=logging.WARNING, log_to_driver=self.log_to_driver,
                      runtime_env=self.runtime_env)
        if self.address is None:
            self._start_local(ray, common)
        else:
            ray.init(address=self.address, **common)
            logger.info("connected to the Ray cluster at {} ({:g} CPUs)", self.address,
                        ray.cluster_resources().get("CPU", 0))
        self._owns_ray = True
        return ray

    def _start_local(self, ray: Any, common: dict) -> None:
        # Ray's single-machine mode (its default on macOS/Windows) binds every server to 127.0.0.1;
        # on Linux Ray would pick the machine's address and listen on all interfaces. Read from the
        # environment by Ray's subprocesses and from a constant by this one; both restored after.
        saved_env = os.environ.get(_LOOPBACK_ENV)
        try:
            consts = importlib.import_module("ray._private.ray_constants")
        except ImportError:
            consts = None
        saved_const = getattr(consts, "ENABLE_RAY_CLUSTER", None)
        os.environ[_LOOPBACK_ENV] = "0"
        if saved_const is not None:
            consts.ENABLE_RAY_CLUSTER = False
        try:
            ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, **common)
        finally:
            if saved_env is None:
                os.environ.pop(_LOOPBACK_ENV, None)
            else:
                os.environ[_LOOPBACK_ENV] = saved_env
            if saved_const is not None:
                consts.ENABLE_RAY_CLUSTER = saved_const
        ip = ray.util.get_node_ip_address()
        if ip != "127.0.0.1":
            logger.warning("the local Ray instance listens on {}, not only on 127.0.0.1", ip)
        logger.info("started a local Ray instance ({:g} CPUs, {})", ray.cluster_resources().get("CPU", 0), ip)

    def close(self) -> None:
        """Cancel outstanding tasks; shut Ray down only if this engine initialised it."""
        if self._in_flight:
            self._cancel_all(import_ray())
        if self._owns_ray:
            import_ray().shutdown()
            self._owns_ray = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- work -----------------------------------------------------------------------------
    def imap_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any],
                       on_fail: OnFail | None = None) -> Iterator[tuple[Any, Any]]:
        """Yield ``(job, fn(job))`` or ``(job, on_fail(job, reason))`` for every job, as they finish."""
        if self._in_flight:
            raise RuntimeError("RayEngine runs one imap_unordered loop at a time")
        ray = self.connect()
        task = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)(run_task)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        limit = self.max_in_flight or 2 * cpus
        fn_ref = ray.put(fn)  # shipped once, not with every task
        source, exhausted = iter(jobs), False
        flight = self._in_flight  # ref -> [job, clock start or None], in submission order
        try:
            while True:
                while not exhausted and len(flight) < limit:
                    try:
                        job = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    flight[task.remote(fn_ref, job)] = [job, None]
                if not flight:
                    return
                out = self._step(ray, flight, cpus)
                for job, kind, payload in out:
                    yield job, payload if kind == "ok" else resolve_failure(job, payload, on_fail, self.stats)
        finally:  # an abandoned loop or an error: nothing keeps running; Ray stays up until close()
            self._cancel_all(ray)

    def _cancel_all(self, ray: Any) -> None:
        for ref in list(self._in_flight):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished, or Ray already gone
                pass
        self._in_flight.clear()

    def _step(self, ray: Any, flight: dict, cpus: int) -> list[tuple[Any, str, Any]]:
        now = time.monotonic()
        timeout = self.poll_s
        for i, entry in enumerate(flight.values()):
            if i >= cpus:
                break
            if entry[1] is None:
                entry[1] = now
            if self.job_timeout_s is not None:
                timeout = min(timeout, entry[1] + self.job_timeout_s - now + 0.01)
        refs = list(flight)
        ready, _ = ray.wait(refs, num_returns=1, timeout=max(0.0, timeout))
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        out = [self._collect(ray, ref, flight.pop(ref)[0]) for ref in ready]
        if self.job_timeout_s is not None:
            now = time.monotonic()
            for ref, (job, t0) in list(flight.items()):
                if t0 is None or now - t0 <= self.job_timeout_s:
                    continue
                if ray.wait([ref], timeout=0)[0]:  # finished a moment ago
                    out.append(self._collect(ray, ref, flight.pop(ref)[0]))
                    continue
                ray.cancel(ref, force=True)
                flight.pop(ref)
                self.stats["hung_jobs"] += 1
                logger.warning("generation task for job {!r} hung for {:.1f} s; cancelled (its worker is "
                               "killed)", job, now - t0)
                out.append((job, "fail", f"timeout: still running after {now - t0:.1f} s (job_timeout_s="
                                         f"{self.job_timeout_s:g}); its Ray task was cancelled"))
        return out

    def _collect(self, ray: Any, ref: Any, job: Any) -> tuple[Any, str, Any]:
        try:
            kind, payload = ray.get(ref)
        except ray.exceptions.RayError as exc:  # worker/node died more often than max_retries, ...
            self.stats["lost_jobs"] += 1
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            logger.warning("generation task for job {!r} lost: {}: {}", job, type(exc).__name__, first)
            return job, "fail", f"lost: {type(exc).__name__}: {first}"
        if kind == "ok":
            self.stats["done"] += 1
            return job, "ok", payload
        self.stats["errors"] += 1
        return job, "fail", f"error: {payload}"
