"""Index many peak lists in parallel, with the results of a single process, in input order.

    rows = index_many(peak_lists, workers=4)                 # local processes
    rows = index_many(peak_lists, workers=8, engine="ray")   # Ray tasks (one CPU each)

Engines:
- ``"local"``: a ``concurrent.futures.ProcessPoolExecutor`` with the *spawn* start method (no
  forked copies of a parent's threads or open files), over chunks of the input; ``workers=1`` runs
  in this process, with no pool.
- ``"ray"``: ``import ray`` only here; when Ray is not initialised, a private local instance is
  started (``ray.init(address="local", num_cpus=workers, include_dashboard=False)``) and shut
  down afterwards; an instance the caller started (``ray.init(address="HEAD:6379")`` for a
  cluster, whose machines need this checkout at the same path) is used and left running. One
  task per chunk.

Indexing is deterministic (no random numbers), so every engine and worker count gives the same
rows; only :attr:`IndexRow.cpu_s` (measured time) differs. Workers run with one BLAS/OpenMP
thread each (the linear algebra is small; more threads only compete for the cores).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from indexing.api import EVIDENCE_DIM, analyse
from indexing.peaks import IndexingInputError, PeakList

ENGINES = ("local", "ray")
N_EXT_TOP = 3
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS")
_ROOT = str(Path(__file__).resolve().parents[1])


@dataclass
class IndexRow:
    """The compact result of one pattern (picklable; what the cache stores).

    Attributes:
        vector: (EVIDENCE_DIM,) float32 evidence (``PatternEvidence.vector``; flat when unsolved).
        cell: (6,) conventional a, b, c [Å], α, β, γ [deg] of the best cell (NaN when unsolved).
        volume: conventional cell volume [Å³] (NaN when unsolved).
        bravais: Bravais lattice of the best cell ('' when unsolved), e.g. ``cF``.
        crystal_system: most likely crystal system ('' when unsolved).
        ext_top: the ``N_EXT_TOP`` most likely extinction groups (1..99), 0-padded.
        m20: de Wolff M₂₀ of the best cell (0 when unsolved).
        f_n: Smith–Snyder F_N of the best cell (0 when unsolved).
        zero: refined zero shift [deg 2θ] (0 when unsolved).
        solved: a cell was found.
        n_peaks: lines in the peak list.
        message: why the pattern is unsolved ('' when solved).
        cpu_s: CPU time of the analysis in the worker [s] (the only field that varies run to run).
    """

    vector: np.ndarray
    cell: np.ndarray = field(default_factory=lambda: np.full(6, np.nan))
    volume: float = math.nan
    bravais: str = ""
    crystal_system: str = ""
    ext_top: tuple[int, ...] = (0,) * N_EXT_TOP
    m20: float = 0.0
    f_n: float = 0.0
    zero: float = 0.0
    solved: bool = False
    n_peaks: int = 0
    message: str = ""
    cpu_s: float = 0.0


def cell_volume(cell: np.ndarray) -> float:
    """Volume [Å³] of the cell (a, b, c, α, β, γ)."""
    a, b, c = cell[:3]
    ca, cb, cg = np.cos(np.radians(cell[3:]))
    return float(a * b * c * math.sqrt(max(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg, 0.0)))


def summarise(peaks: PeakList, options: dict | None = None) -> IndexRow:
    """Index ``peaks`` (``indexing.api.analyse(peaks, **options)``) and keep the compact row.

    Too few peaks is not an error here: the row is unsolved, with the reason in ``message``.
    """
    t0 = time.process_time()
    try:
        ev = analyse(peaks, **(options or {}))
    except IndexingInputError as exc:
        return IndexRow(np.zeros(EVIDENCE_DIM, np.float32), n_peaks=len(peaks), message=str(exc),
                        cpu_s=time.process_time() - t0)
    row = IndexRow(ev.vector(), n_peaks=len(peaks),
                   message="" if ev.solved else (ev.message or "no cell found"))
    best = ev.index.best
    if best is not None:
        cell = np.asarray(best.lattice.conventional, np.float64)
        ext = ev.extinction_ranked(N_EXT_TOP)
        row.cell, row.volume, row.bravais = cell, cell_volume(cell), str(best.lattice.bravais)
        row.crystal_system = ev.crystal_system() or ""
        row.ext_top = tuple(ext) + (0,) * (N_EXT_TOP - len(ext))
        row.m20, row.f_n, row.zero = float(best.m20), float(best.f_n[0]), float(best.fit.zero)
        row.solved = True
    row.cpu_s = time.process_time() - t0
    return row


def _run_chunk(fn: Callable[[Any], Any], chunk: Sequence[Any]) -> list[Any]:
    return [fn(x) for x in chunk]


@contextlib.contextmanager
def _one_thread_env() -> Iterator[None]:
    """Children started inside inherit one BLAS/OpenMP thread (unless the user set a count)."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    for k in _THREAD_VARS:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _chunks(items: Sequence[Any], workers: int, chunk_size: int | None) -> list[Sequence[Any]]:
    size = chunk_size or max(1, min(32, math.ceil(len(items) / (4 * workers))))
    return [items[i:i + size] for i in range(0, len(items), size)]


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    # a live bar on a terminal only (disable=None); logs and CI get the summary line instead
    return tqdm(total=total, desc=desc, unit="pat", file=sys.stderr, disable=None if progress else True,
                mininterval=1.0)


def _one_blas_thread() -> Any:
    """``threadpoolctl.threadpool_limits(1)`` (a no-op context when threadpoolctl is missing)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a scikit-learn dependency, listed in requirements.txt
        return contextlib.nullcontext()
    return threadpool_limits(1)


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 1, engine: str = "local",
                 chunk_size: int | None = None, desc: str = "indexing", progress: bool = True) -> list[Any]:
    """``[fn(x) for x in items]`` over ``workers`` processes (see the module docstring).

    Args:
        fn: a picklable function (module level, or a ``functools.partial`` of one).
        items: picklable inputs.
        workers: processes (local) or CPUs of a Ray instance this call starts; 1 = this process
            (local engine).
        engine: ``"local"`` or ``"ray"``.
        chunk_size: items per task (default: about 4 tasks per worker, at most 32 items).
        desc: progress-bar label.
        progress: draw a progress bar on a terminal.

    Returns:
        The results, in the order of ``items``.

    Raises:
        ValueError: unknown engine or workers < 1.
        ImportError: ``engine="ray"`` without Ray installed (the message says how to install it).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if workers < 1:
        raise ValueError(f"workers={workers}: expected at least 1")
    items = list(items)
    t0 = time.perf_counter()
    if not items:
        return []
    if engine == "local" and workers == 1:
        # in this process: BLAS limited to one thread, as in the worker processes (numpy's small
        # least-squares and determinants only lose time to thread hand-offs)
        with _one_blas_thread(), _bar(len(items), desc, progress) as bar:
            out = []
            for x in items:
                out.append(fn(x))
                bar.update(1)
    else:
        chunks = _chunks(items, workers, chunk_size)
        run = _run_local if engine == "local" else _run_ray
        parts = run(fn, chunks, workers, _bar(len(items), desc, progress))
        out = [r for part in parts for r in part]
    logger.info(f"{desc}: {len(items)} patterns in {time.perf_counter() - t0:.1f} s "
                f"({engine}, {workers} worker{'s' if workers > 1 else ''})")
    return out


def _run_local(fn, chunks, workers, bar) -> list[list[Any]]:
    parts: list[list[Any] | None] = [None] * len(chunks)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=get_context("spawn"))
    with bar, pool as ex:
        with _one_thread_env():  # spawn-context workers start on submit, so they see this environment
            futures = {ex.submit(_run_chunk, fn, c): i for i, c in enumerate(chunks)}
        for fut in as_completed(futures):
            i = futures[fut]
            parts[i] = fut.result()
            bar.update(len(chunks[i]))
    return parts  # type: ignore[return-value]


def import_ray() -> Any:
    """``import ray``, with the fix in the message when it is missing."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("engine='ray' needs Ray, an optional dependency: pip install ray") from exc
    return ray


def _run_ray(fn, chunks, workers, bar) -> list[list[Any]]:
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        env = {k: os.environ.get(k, "1") for k in _THREAD_VARS}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(address="local", num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False, runtime_env={"env_vars": env})
        started = True
    try:
        task = ray.remote(num_cpus=1)(_run_chunk)
        fn_ref = ray.put(fn)
        refs = [task.remote(fn_ref, c) for c in chunks]
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        with bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(chunks[index[done[0]]]))
        return ray.get(refs)
    finally:
        if started:
            ray.shutdown()


def index_many(peaks: Sequence[PeakList], workers: int = 1, engine: str = "local",
               chunk_size: int | None = None, options: dict | None = None, progress: bool = True
               ) -> list[IndexRow]:
    """:func:`summarise` every peak list (see :func:`parallel_map` for the arguments).

    Args:
        peaks: the peak lists.
        options: keyword arguments of ``indexing.api.analyse`` (e.g. ``n_lines``).

    Returns:
        One :class:`IndexRow` per peak list, in order.
    """
    fn = partial(summarise, options=dict(options or {}))
    return parallel_map(fn, peaks, workers, engine, chunk_size, "indexing", progress)
