"""Index patterns on a 2θ grid (rendered or measured), each result cached on disk by content.

    rows = index_patterns(X, two_theta, wavelength, options={"n_lines": 20}, workers=2,
                          cache_dir="Log/index_cache/patterns")

Each row of ``X`` (N, L) is peak-picked (:func:`indexing.picking.pick_peaks`) and indexed
(:func:`indexing.parallel.summarise`: cell search, extinction groups) into an
:class:`indexing.parallel.IndexRow`. The result of one pattern is cached as
``cache_dir/<key[:2]>/<key>.npz``, where ``key`` is the sha1 of the float32 pattern bytes, the
grid, the wavelength, the settings, :data:`indexing.cache.INDEX_CACHE_VERSION` and
:func:`indexing.cache.code_digest` (a changed pattern, setting or indexing code never reads a stale
result); files are written atomically (temporary
file, then ``os.replace``), and a cache file that cannot be read is recomputed. Read-only evidence
bundles shipped beside a dataset (:mod:`indexing.bundle`) are looked up after it. Misses are indexed
in parallel (:func:`indexing.parallel.parallel_map`: local processes or Ray, the same rows).

This module stays torch-free: the spawned workers import it (and numpy/scipy) only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from indexing.api import EVIDENCE_DIM
from indexing.bundle import bundle_key, load_bundle
from indexing.cache import INDEX_CACHE_VERSION, code_digest, save_npz_atomic
from indexing.parallel import IndexRow, parallel_map, summarise
from indexing.peaks import IndexingInputError
from indexing.picking import pick_peaks

# pick_peaks() options; every other option goes to indexing.api.analyse()
PICK_KEYS = ("min_snr", "ka2_ratio", "background")
_ARRAYS = ("vector", "cell", "ext_top")


def pattern_key(pattern: np.ndarray, two_theta: np.ndarray, wavelength: float, options: dict) -> str:
    """sha1 of the float32 pattern, its 2θ axis, the wavelength, the settings and the code version."""
    h = hashlib.sha1(np.ascontiguousarray(pattern, np.float32).tobytes())
    axis = np.asarray(two_theta, np.float64)
    meta = {"axis": [len(axis), float(axis[0]), float(axis[-1])], "wavelength": float(wavelength),
            "options": {k: options[k] for k in sorted(options)}, "version": INDEX_CACHE_VERSION,
            "code": code_digest()}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()


def index_pattern(pattern: np.ndarray, two_theta: np.ndarray, wavelength: float,
                  options: dict | None = None, source: str = "pattern") -> IndexRow:
    """Pick the peaks of one pattern and index them; a pattern whose peaks cannot be picked (flat,
    too short) is an unsolved row that says why, never an exception."""
    options = dict(options or {})
    pick = {k: options.pop(k) for k in PICK_KEYS if k in options}
    try:
        peaks = pick_peaks(two_theta, pattern, wavelength, source=source, **pick)
    except IndexingInputError as exc:
        return IndexRow(np.zeros(EVIDENCE_DIM, np.float32), message=str(exc))
    return summarise(peaks, options)


def _index_one(item: tuple[np.ndarray, str], two_theta: np.ndarray, wavelength: float,
               options: dict) -> IndexRow:
    return index_pattern(item[0], two_theta, wavelength, options, item[1])


def _path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.npz"


def load_row(path: Path) -> IndexRow | None:
    """The cached row at ``path`` (None when absent or unreadable: it is recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            kw = {f.name: z[f.name] for f in dataclasses.fields(IndexRow) if f.name in z.files}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if len(kw) != len(dataclasses.fields(IndexRow)):
        return None
    out = {k: (v if k in _ARRAYS else v.item()) for k, v in kw.items()}
    out["ext_top"] = tuple(int(g) for g in out["ext_top"])
    out["vector"] = np.asarray(out["vector"], np.float32)
    return IndexRow(**out)


def save_row(path: Path, row: IndexRow) -> None:
    """Write ``row`` atomically (a reader never sees half a file)."""
    save_npz_atomic(path, {f.name: np.asarray(getattr(row, f.name)) for f in dataclasses.fields(IndexRow)})


def index_patterns(patterns: np.ndarray, two_theta: np.ndarray, wavelength: float,
                   options: dict | None = None, workers: int = 1, engine: str = "local",
                   cache_dir: str | os.PathLike | None = None, sources: list[str] | None = None,
                   progress: bool = True,
                   bundles: Sequence[str | os.PathLike] = ()) -> tuple[list[IndexRow], int]:
    """Index every row of ``patterns`` (N, L) on the axis ``two_theta`` (L,) [deg].

    Args:
        wavelength: Kα1 wavelength [Å] of the axis.
        options: ``pick_peaks`` options (:data:`PICK_KEYS`) and ``analyse`` options (``n_lines``).
        workers, engine: see :func:`indexing.parallel.parallel_map` (misses only; 1 miss runs here).
        cache_dir: per-pattern cache folder (None: no cache).
        bundles: read-only evidence bundles (:mod:`indexing.bundle`) looked up after the cache.
        sources: names of the patterns for messages (default ``pattern <i>``).

    Returns:
        ``(rows, hits)``: one :class:`IndexRow` per pattern, in order, and how many came from the
        cache.
    """
    x = np.asarray(patterns, np.float32)
    axis = np.asarray(two_theta, np.float64)
    options = dict(options or {})
    names = sources or [f"pattern {i}" for i in range(len(x))]
    rows: list[IndexRow | None] = [None] * len(x)
    paths: list[Path | None] = [None] * len(x)
    shipped = [load_bundle(b) for b in bundles]
    if cache_dir is not None or shipped:
        for i, p in enumerate(x):
            key = pattern_key(p, axis, wavelength, options)
            if cache_dir is not None:
                paths[i] = _path(Path(cache_dir), key)
                rows[i] = load_row(paths[i]) if paths[i].is_file() else None
            if rows[i] is None and shipped:
                bkey = bundle_key(p, axis, wavelength, options)
                rows[i] = next((t[bkey] for t in shipped if bkey in t), None)
    todo = [i for i, r in enumerate(rows) if r is None]
    if todo:
        fn = partial(_index_one, two_theta=axis, wavelength=float(wavelength), options=options)
        done = parallel_map(fn, [(x[i], names[i]) for i in todo], max(1, min(workers, len(todo))), engine,
                            progress=progress)
        for i, row in zip(todo, done, strict=True):
            rows[i] = row
            if paths[i] is not None:
                save_row(paths[i], row)
    return rows, len(x) - len(todo)  # type: ignore[return-value]
