"""Local generation engine: worker processes that survive crashed and hung workers.

``LocalEngine(workers=4).imap_unordered(fn, jobs, on_fail)`` yields ``(job, result)`` pairs in
completion order (contract in :mod:`datasets.synthesis.engine_base`). Design:

* one ``mp.Process`` per worker, each with its own duplex pipe: jobs go down, ``ready`` /
  ``start`` / result messages come back. The engine knows which jobs each worker holds (at most
  ``max_outstanding_per_worker``, sent in order) and which one it is running (the last ``start``);
* per-worker pipes instead of one shared result queue: a worker killed while writing would corrupt
  a shared queue (or die holding its lock and block every other worker), and writes through a pipe
  are synchronous, so everything a worker sent before it died is read before its death is handled
  (the parent waits on the pipes and the process sentinels together);
* a worker that dies (segfault, ``os._exit``, OOM killer) is counted, logged, replaced; the job it
  was running is run again (up to ``max_job_crashes`` deaths, then ``on_fail(job, "lost: ...")``),
  the jobs queued behind it are re-submitted;
* a job running longer than ``job_timeout_s`` (measured from its ``start``) gets its worker
  killed and replaced and comes back through ``on_fail(job, "timeout: ...")``; the jobs queued
  behind it are re-submitted;
* ``jobs`` is consumed lazily: at most ``workers * max_outstanding_per_worker`` are in flight.

Workers live for one ``imap_unordered`` call; the iterator's ``finally`` (also on
``KeyboardInterrupt`` or an abandoned loop) and :meth:`LocalEngine.close` kill and reap them.
Jobs and results travel pickled through pipes: keep jobs small (a few fields; a pipe holds about
64 KiB) and put shared data in ``fn``, which a ``fork`` worker inherits and a ``spawn`` worker
unpickles once. ``workers <= 1`` runs ``fn`` inline in the calling process (no timeout, no crash
recovery), with the same interface; ``inline=False`` keeps one worker process instead. Drive a
loop from one thread: on Linux, workers are killed when the thread that started them ends.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from loguru import logger

from datasets.synthesis.engine_base import OnFail, describe_exception, new_stats, pin_threads, resolve_failure

_STARTUP_DEATHS_LIMIT = 3  # consecutive workers dying before "ready": fn cannot be loaded


def _die_with_parent(parent_pid: int | None) -> None:
    """Linux: SIGKILL this worker when the engine's process dies, even mid-job (no orphans).

    ``parent_pid`` is None under ``forkserver``, whose workers are children of the fork server."""
    if parent_pid is None:
        return
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:  # best effort; the closed pipe still ends an idle orphan
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def _worker_main(fn: Callable[[Any], Any], conn: Any, parent_pid: int | None) -> None:
    """Worker loop: receive ``(jid, job)``, report ``start``, run, send the result; ``None`` stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's to handle
    _die_with_parent(parent_pid)
    pin_threads()
    try:
        conn.send(("ready", None, os.getpid()))
        while True:
            msg = conn.recv()
            if msg is None:
                return
            jid, job = msg
            conn.send(("start", jid, time.monotonic()))  # CLOCK_MONOTONIC is system-wide
            try:
                kind, payload = "ok", fn(job)
            except Exception as exc:
                kind, payload = "error", describe_exception(exc)
            try:
                conn.send((kind, jid, payload))
            except Exception as exc:  # unpicklable result: pickling fails before any byte is sent
                conn.send(("error", jid, f"result could not be sent: {describe_exception(exc)}"))
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the engine is gone
        return


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class _Worker:
    proc: Any
    conn: Any
    held: deque = field(default_factory=deque)  # job ids sent to it, oldest first
    running: int | None = None  # job id of the last "start" without a result
    started_at: float = 0.0
    ready: bool = False


class LocalEngine:
    """Fault-tolerant process pool for independent, deterministic jobs.

    Args:
        workers: worker processes; ``<= 1`` runs inline in the calling process.
        job_timeout_s: a job running longer is failed as hung and its worker replaced (``None``:
            no limit).
        max_outstanding_per_worker: jobs queued per worker (the running one included).
        mp_context: ``"fork"`` (fast start, ``fn`` inherited) or ``"spawn"``/``"forkserver"``
            (``fn`` and the jobs must be picklable and importable).
        max_job_crashes: deaths of a worker while running the same job before that job is failed
            as ``"lost: ..."``.
        poll_s: longest wait between checks for hung jobs.
        inline: run ``fn`` in the calling process; default ``workers <= 1``. ``workers=1,
            inline=False`` is one protected worker process.

    ``stats``: ``done``, ``failed``, ``errors``, ``hung_jobs``, ``lost_jobs``, ``crashed_workers``
    (deaths the engine did not cause), ``resubmitted`` (jobs sent again to another worker),
    ``replaced_workers`` (processes started to replace dead or killed ones); over the engine's life.
    """

    def __init__(self, workers: int, job_timeout_s: float | None = 120.0, max_outstanding_per_worker: int = 2,
                 mp_context: str = "fork", max_job_crashes: int = 3, poll_s: float = 1.0,
                 inline: bool | None = None) -> None:
        if max_outstanding_per_worker < 1 or max_job_crashes < 1:
            raise ValueError("max_outstanding_per_worker and max_job_crashes must be >= 1")
        self.workers = int(workers)
        self.inline = self.workers <= 1 if inline is None else bool(inline)
        self.job_timeout_s = job_timeout_s if job_timeout_s and job_timeout_s > 0 else None
        self.max_outstanding = int(max_outstanding_per_worker)
        self.max_job_crashes = int(max_job_crashes)
        self.poll_s = float(poll_s)
        self._ctx = mp.get_context(mp_context)
        self.stats = new_stats("crashed_workers", "resubmitted", "replaced_workers")
        self._pool: list[_Worker] = []
        self._busy = False

    # ---- public ---------------------------------------------------------------------------
    def imap_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any],
                       on_fail: OnFail | None = None) -> Iterator[tuple[Any, Any]]:
        """Yield ``(job, fn(job))`` or ``(job, on_fail(job, reason))`` for every job, as they finish."""
        if self.inline:
            return self._inline(fn, jobs, on_fail)
        return self._run(fn, jobs, on_fail)

    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (empty outside an ``imap_unordered`` loop)."""
        return [w.proc.pid for w in self._pool]

    def close(self) -> None:
        """Kill and reap every worker (idempotent)."""
        pool, self._pool = self._pool, []
        idle = all(not w.held for w in pool)
        for w in pool:
            if idle:  # polite stop; busy workers are killed at once (jobs are pure, nothing to save)
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + (2.0 if idle else 0.0)
        for w in pool:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.exitcode is None:
                w.proc.kill()
                w.proc.join()
            w.conn.close()
            w.proc.close()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- inline ---------------------------------------------------------------------------
    def _inline(self, fn, jobs, on_fail) -> Iterator[tuple[Any, Any]]:
        for job in jobs:
            try:
                result = fn(job)
            except Exception as exc:
                self.stats["errors"] += 1
                yield job, resolve_failure(job, f"error: {describe_exception(exc)}", on_fail, self.stats)
                continue
            self.stats["done"] += 1
            yield job, result

    # ---- processes ------------------------------------------------------------------------
    def _run(self, fn, jobs, on_fail) -> Iterator[tuple[Any, Any]]:
        if self._busy:
            raise RuntimeError("LocalEngine runs one imap_unordered loop at a time")
        self._busy = True
        self._fn, self._jobs, self._pending = fn, {}, deque()
        self._crashes: dict[int, int] = {}
        self._startup_deaths = 0
        source, ids, exhausted = iter(jobs), itertools.count(), False
        try:
            self._pool = [self._start_worker() for _ in range(max(1, self.workers))]
            while True:
                if not self._pool:
                    raise RuntimeError("LocalEngine was closed during imap_unordered")
                exhausted = self._fill(source, ids, exhausted)
                if exhausted and not self._jobs:
                    return
                out: list[tuple[Any, str, Any]] = []
                self._step(out)
                for job, kind, payload in out:
                    if kind == "ok":
                        yield job, payload
                    else:
                        yield job, resolve_failure(job, payload, on_fail, self.stats)
        finally:
            self.close()
            self._jobs, self._pending, self._busy = {}, deque(), False

    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        parent = os.getpid() if self._ctx.get_start_method() in ("fork", "spawn") else None
        proc = self._ctx.Process(target=_worker_main, args=(self._fn, child_conn, parent),
                                 name="xrd-engine-worker", daemon=True)
        proc.start()
        child_conn.close()
        return _Worker(proc, parent_conn)

    def _fill(self, source: Iterator[Any], ids: Iterator[int], exhausted: bool) -> bool:
        """Top every worker up to ``max_outstanding`` jobs, re-submissions first."""
        while True:
            w = min(self._pool, key=lambda w: len(w.held))
            if len(w.held) >= self.max_outstanding:
                return exhausted
            if self._pending:
                jid = self._pending.popleft()
            elif exhausted:
                return True
            else:
                try:
                    job = next(source)
                except StopIteration:
                    return True
                jid = next(ids)
                self._jobs[jid] = job
            try:
                w.conn.send((jid, self._jobs[jid]))
            except OSError:  # the worker just died; its sentinel is handled in _step
                self._pending.appendleft(jid)
                return exhausted
            w.held.append(jid)

    def _step(self, out: list) -> None:
        """Wait for messages or deaths (up to the next deadline), then handle them and hangs."""
        now = time.monotonic()
        timeout = self.poll_s
        if self.job_timeout_s is not None:
            for w in self._pool:
                if w.running is not None:
                    timeout = min(timeout, w.started_at + self.job_timeout_s - now + 0.01)
        handles = [w.conn for w in self._pool] + [w.proc.sentinel for w in self._pool]
        ready = set(wait(handles, max(0.0, timeout)))
        for w in list(self._pool):
            if w.conn in ready or w.proc.sentinel in ready:
                self._drain(w, out)
            if w.proc.sentinel in ready or not w.proc.is_alive():
                self._drain(w, out)  # everything sent before the death is in the pipe now
                self._on_death(w, out)
        if self.job_timeout_s is not None:
            for w in list(self._pool):
                if w.running is not None and time.monotonic() - w.started_at > self.job_timeout_s:
                    self._drain(w, out)  # it may have finished a moment ago
                    if w.running is not None and time.monotonic() - w.started_at > self.job_timeout_s:
                        self._on_hang(w, out)

    def _drain(self, w: _Worker, out: list) -> None:
        try:
            while w.conn.poll():
                kind, jid, payload = w.conn.recv()
                if kind == "ready":
                    w.ready, self._startup_deaths = True, 0
                elif kind == "start":
                    w.running, w.started_at = jid, payload
                elif jid in w.held:  # "ok" / "error"; anything else is from a job already given up
                    w.held.remove(jid)
                    w.running = None
                    job = self._jobs.pop(jid)
                    self._crashes.pop(jid, None)
                    if kind == "ok":
                        self.stats["done"] += 1
                        out.append((job, "ok", payload))
                    else:
                        self.stats["errors"] += 1
                        out.append((job, "fail", f"error: {payload}"))
        except (EOFError, OSError):  # the worker died, possibly mid-message
            pass

    def _replace(self, w: _Worker) -> None:
        """Reap ``w`` and put a fresh worker in its slot; re-submit the jobs queued behind it."""
        w.proc.join()
        w.conn.close()
        w.proc.close()
        self._pending.extend(jid for jid in w.held if jid in self._jobs)
        self.stats["resubmitted"] += sum(1 for jid in w.held if jid in self._jobs)
        self._pool[self._pool.index(w)] = self._start_worker()
        self.stats["replaced_workers"] += 1

    def _on_death(self, w: _Worker, out: list) -> None:
        w.proc.join()
        code = w.proc.exitcode
        self.stats["crashed_workers"] += 1
        if not w.ready:
            self._startup_deaths += 1
            if self._startup_deaths >= _STARTUP_DEATHS_LIMIT:
                raise RuntimeError(f"{self._startup_deaths} worker processes in a row died before they "
                                   f"could start ({_exit_text(code)}); with mp_context='spawn' fn must be "
                                   "picklable and importable")
        what = "while idle"
        if w.running is not None and w.running in self._jobs:
            jid = w.running
            w.held.remove(jid)
            self._crashes[jid] = n = self._crashes.get(jid, 0) + 1
            what = f"while running job {self._jobs[jid]!r} (death {n} of {self.max_job_crashes} allowed)"
            if n >= self.max_job_crashes:
                self.stats["lost_jobs"] += 1
                out.append((self._jobs.pop(jid), "fail",
                            f"lost: its worker died {n} times while running it (last: {_exit_text(code)})"))
            else:
                w.held.appendleft(jid)  # run it again, first
        logger.warning("generation worker pid {} died ({}) {}; replacing it and re-submitting {} job(s)",
                       w.proc.pid, _exit_text(code), what, sum(1 for j in w.held if j in self._jobs))
        self._replace(w)

    def _on_hang(self, w: _Worker, out: list) -> None:
        jid = w.running
        elapsed = time.monotonic() - w.started_at
        w.proc.kill()
        w.held.remove(jid)
        job = self._jobs.pop(jid)
        self.stats["hung_jobs"] += 1
        out.append((job, "fail", f"timeout: still running after {elapsed:.1f} s (job_timeout_s="
                                 f"{self.job_timeout_s:g}); its worker was killed"))
        logger.warning("generation job {!r} hung for {:.1f} s; killed worker pid {}, re-submitting {} job(s)",
                       job, elapsed, w.proc.pid, len(w.held))
        self._replace(w)
