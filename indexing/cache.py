"""Indexing evidence for a whole peaks file, computed once per machine and cached on disk.

    table = evidence_for_file("data/xrd_mp_default/peaks_test.npz", workers=2)
    table.evidence        # (N, EVIDENCE_DIM) float32, the vectors the learned models are fused with
    table.crystal_system  # (N,) str ('' where no cell was found)

A peaks file (``peaks_{train,val,test}.npz`` of a simulated set) holds ``offsets`` (N+1,),
``two_theta`` and ``intensity`` (the sticks of pattern i are ``offsets[i]:offsets[i+1]``),
``wavelength`` [Å] and optionally ``sg`` (N,). Each pattern's sticks become a peak list
(``indexing.peaks.from_sticks``, merged at the instrument's resolution) and are indexed
(``indexing.parallel.index_many``, local processes or Ray, the same rows either way).

The cache file is ``CACHE_DIR/<set>_<stem>_<key>.npz`` (default ``Log/index_cache/`` of the
checkout), where ``key`` hashes the file's bytes (sha256), the settings,
:data:`INDEX_CACHE_VERSION` and :func:`code_digest` (the indexing code itself, comments and
docstrings left out): a changed file, setting or indexing code never reads a stale result, even
when nobody remembered to bump the version.
It is written atomically (a temporary file, then ``os.replace``); a cache file that cannot be read
or does not match its key is reported and recomputed.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import tempfile
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
from loguru import logger

from indexing.api import EVIDENCE_DIM
from indexing.index import index_peaks
from indexing.parallel import N_EXT_TOP, IndexRow, index_many
from indexing.peaks import from_sticks
from utils.errors import DataError, fail
from utils.hashing import file_sha256

# Bump whenever indexing's results change for a reason code_digest() cannot see (numpy, scipy or
# spglib behaviour): every cached table is then recomputed.
INDEX_CACHE_VERSION = 1
_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = _ROOT / "Log" / "index_cache"
# what computes the results: every indexing module but the plumbing, the shared physics, its tables
_NOT_RESULTS = {"__init__.py", "__main__.py", "cli.py", "cache.py", "parallel.py", "patterns.py", "bundle.py"}
_SHARED = ("utils/lattice.py", "utils/sg_tables.py", "utils/data/space_groups.csv",
           "utils/data/sg_extinction_groups.csv", "utils/data/sg_symops.json")
SOURCES = ("sticks",)
# from_sticks() settings and analyse() options; callers override any of them
DEFAULT_SETTINGS = {"resolution": 0.02, "min_rel": 0.01, "sigma": 0.003, "n_lines": 20}
_STICK_KEYS = ("resolution", "min_rel", "sigma")
_FIX = "pass a peaks_*.npz written by python -m datasets.simulate (offsets, two_theta, intensity, wavelength)"


@dataclass
class IndexTable:
    """Indexing results of every pattern of one peaks file (row i = pattern i).

    Attributes:
        evidence: (N, EVIDENCE_DIM) float32 evidence vectors (flat where unsolved).
        cell: (N, 6) float64 best conventional cell a, b, c [Å], α, β, γ [deg] (NaN where unsolved).
        volume: (N,) float64 its volume [Å³].
        bravais: (N,) str Bravais lattice ('' where unsolved).
        crystal_system: (N,) str most likely crystal system ('' where unsolved).
        ext_top: (N, 3) int16 most likely extinction groups 1..99, best first (0 = none).
        m20: (N,) float32 de Wolff M₂₀ of the best cell.
        f_n: (N,) float32 Smith–Snyder F_N of the best cell.
        zero: (N,) float32 refined zero shift [deg].
        solved: (N,) bool a cell was found.
        n_peaks: (N,) int32 lines in each peak list.
        message: (N,) str why a pattern is unsolved.
        cpu_s: (N,) float32 CPU seconds of each analysis (measured when the table was computed).
        sg: (N,) int16 space group labels of the file (0 when it has none).
    """

    evidence: np.ndarray
    cell: np.ndarray
    volume: np.ndarray
    bravais: np.ndarray
    crystal_system: np.ndarray
    ext_top: np.ndarray
    m20: np.ndarray
    f_n: np.ndarray
    zero: np.ndarray
    solved: np.ndarray
    n_peaks: np.ndarray
    message: np.ndarray
    cpu_s: np.ndarray
    sg: np.ndarray

    def __len__(self) -> int:
        return int(self.evidence.shape[0])

    @classmethod
    def from_rows(cls, rows: list[IndexRow], sg: np.ndarray | None = None) -> IndexTable:
        """Stack :class:`~indexing.parallel.IndexRow` s (and the file's labels)."""
        n = len(rows)
        col = {f.name: [getattr(r, f.name) for r in rows] for f in fields(IndexRow)}
        return cls(
            evidence=np.asarray(col["vector"], np.float32).reshape(n, EVIDENCE_DIM),
            cell=np.asarray(col["cell"], np.float64).reshape(n, 6),
            volume=np.asarray(col["volume"], np.float64),
            bravais=np.asarray(col["bravais"], dtype="U2"),
            crystal_system=np.asarray(col["crystal_system"], dtype="U12"),
            ext_top=np.asarray(col["ext_top"], np.int16).reshape(n, N_EXT_TOP),
            m20=np.asarray(col["m20"], np.float32), f_n=np.asarray(col["f_n"], np.float32),
            zero=np.asarray(col["zero"], np.float32), solved=np.asarray(col["solved"], bool),
            n_peaks=np.asarray(col["n_peaks"], np.int32), message=np.asarray(col["message"], dtype=str),
            cpu_s=np.asarray(col["cpu_s"], np.float32),
            sg=np.zeros(n, np.int16) if sg is None else np.asarray(sg, np.int16))

    def row(self, i: int) -> IndexRow:
        """Row ``i`` as an :class:`~indexing.parallel.IndexRow` (the inverse of :meth:`from_rows`)."""
        return IndexRow(np.asarray(self.evidence[i], np.float32),
                        cell=np.asarray(self.cell[i], np.float64),
                        volume=float(self.volume[i]), bravais=str(self.bravais[i]),
                        crystal_system=str(self.crystal_system[i]),
                        ext_top=tuple(int(g) for g in self.ext_top[i]), m20=float(self.m20[i]),
                        f_n=float(self.f_n[i]), zero=float(self.zero[i]), solved=bool(self.solved[i]),
                        n_peaks=int(self.n_peaks[i]), message=str(self.message[i]),
                        cpu_s=float(self.cpu_s[i]))

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns by name (what :func:`np.savez` stores)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> IndexTable:
        """The inverse of :meth:`arrays`; raises ``KeyError``/``ValueError`` on a malformed set."""
        t = cls(**{f.name: arrays[f.name] for f in fields(cls)})
        n = len(t)
        if t.evidence.shape != (n, EVIDENCE_DIM) or any(len(v) != n for v in t.arrays().values()):
            raise ValueError("columns of different lengths or a wrong evidence width")
        return t


def _code_text(path: Path) -> bytes:
    """A module's code without comments and docstrings (an edited comment keeps the cache)."""
    if path.suffix != ".py":
        return path.read_bytes()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


@lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 (16 hex digits) of the code that computes the evidence: ``indexing/*.py`` but the
    command line, cache, bundle and parallel plumbing, plus ``utils/lattice.py``,
    ``utils/sg_tables.py`` and their space-group tables. Computed once per process, when this module
    is imported (below). A new module in ``indexing/`` changes it, so every cached result is
    recomputed, unless it is listed in ``_NOT_RESULTS``."""
    h = hashlib.sha256()
    files = sorted(p for p in (_ROOT / "indexing").glob("*.py") if p.name not in _NOT_RESULTS)
    for p in files + [_ROOT / s for s in _SHARED]:
        h.update(p.name.encode() + b"\0" + (_code_text(p) if p.is_file() else b"missing") + b"\0")
    return h.hexdigest()[:16]


def cache_key(sha: str, source: str, settings: dict, limit: int | None) -> str:
    """16 hex digits identifying (file, source, settings, limit, INDEX_CACHE_VERSION, code)."""
    text = json.dumps({"file": sha, "source": source, "settings": settings, "limit": limit,
                       "version": INDEX_CACHE_VERSION, "code": code_digest()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_peaks_file(path: str | os.PathLike, limit: int | None = None, source: str = "sticks",
                    settings: dict | None = None) -> tuple[list, np.ndarray | None]:
    """Peak lists of the first ``limit`` patterns (all when None) of a peaks file, and its labels.

    Raises:
        DataError: missing file, missing arrays or inconsistent offsets (the message names the file).
    """
    s = {**DEFAULT_SETTINGS, **(settings or {})}
    path = Path(path)
    if not path.is_file():
        raise fail(DataError, path, "peaks file not found", "check the path; " + _FIX)
    try:
        with np.load(path, allow_pickle=False) as z:
            off, tt, it, wl = (z[k] for k in ("offsets", "two_theta", "intensity", "wavelength"))
            sg = z["sg"] if "sg" in z.files else None
    except KeyError as exc:
        raise fail(DataError, path, f"no array {exc}", _FIX) from None
    except Exception as exc:  # not a zip, truncated, pickled objects
        raise fail(DataError, path, f"unreadable ({type(exc).__name__}: {exc})", _FIX) from None
    off = np.asarray(off, np.int64)
    if off.ndim != 1 or off.size < 1 or off[0] != 0 or np.any(np.diff(off) < 0) or off[-1] != tt.size \
            or tt.shape != it.shape:
        raise fail(DataError, path, "offsets do not partition two_theta/intensity", _FIX)
    n = off.size - 1 if limit is None else min(int(limit), off.size - 1)
    name = path.name
    peaks = [from_sticks(tt[off[i]:off[i + 1]], it[off[i]:off[i + 1]], float(wl),
                         source=f"{name}[{i}]", **{k: s[k] for k in _STICK_KEYS}) for i in range(n)]
    return peaks, None if sg is None else np.asarray(sg[:n], np.int16)


def _load(p: Path, key: str) -> IndexTable | None:
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if str(arrays.pop("key", "")) != key:
            raise ValueError("stored key differs from the file name's")
        arrays.pop("settings", None)
        return IndexTable.from_arrays(arrays)
    except Exception as exc:  # truncated, not a zip, wrong columns: never trusted
        logger.warning(f"{p}: unreadable index cache ({type(exc).__name__}: {exc}); recomputing")
        return None


def save_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray], compressed: bool = False) -> None:
    """Write ``arrays`` to ``path`` atomically (a temporary file beside it, then ``os.replace``): a
    reader never sees half a file, and on an error the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save(table: IndexTable, p: Path, key: str, meta: dict) -> None:
    try:
        save_npz_atomic(p, {"key": np.asarray(key), "settings": np.asarray(json.dumps(meta, sort_keys=True)),
                            **table.arrays()})
        logger.info(f"cached indexing evidence in {p}")
    except OSError as exc:  # a read-only or full disk: the table is still returned, just not kept
        logger.warning(f"cannot write the index cache {p} ({exc}); the result is not cached")


def evidence_for_file(path: str | os.PathLike, source: str = "sticks", workers: int = 1,
                      engine: str = "local", cache_dir: str | os.PathLike | None = None,
                      settings: dict | None = None, limit: int | None = None,
                      progress: bool = True) -> IndexTable:
    """The indexing evidence of every pattern of a peaks file, from the cache when present.

    Args:
        path: a peaks file (see the module docstring).
        source: where peak lists come from: ``"sticks"`` (the stored sticks, merged; the only one
            so far).
        workers: processes (or Ray CPUs) that compute a missing table.
        engine: ``"local"`` or ``"ray"`` (``indexing.parallel``).
        cache_dir: folder of the cache files (default :data:`CACHE_DIR`).
        settings: overrides of :data:`DEFAULT_SETTINGS` (from_sticks' ``resolution``, ``min_rel``,
            ``sigma``; any other key is passed to ``indexing.api.analyse``, e.g. ``n_lines``).
        limit: only the first ``limit`` patterns (part of the key).
        progress: a progress bar on a terminal.

    Returns:
        An :class:`IndexTable` with one row per pattern.

    Raises:
        DataError: an unreadable peaks file.
        ValueError: an unknown source or setting.
    """
    if source not in SOURCES:
        raise ValueError(f"source {source!r}: expected one of {', '.join(SOURCES)}")
    s = {**DEFAULT_SETTINGS, **(settings or {})}
    known = set(_STICK_KEYS) | set(inspect.signature(index_peaks).parameters) - {"peaks"}
    if set(s) - known:
        raise ValueError(f"unknown indexing settings {sorted(set(s) - known)}; known: {sorted(known)}")
    path = Path(path)
    if not path.is_file():
        raise fail(DataError, path, "peaks file not found", "check the path; " + _FIX)
    key = cache_key(file_sha256(path), source, s, limit)
    folder = Path(cache_dir if cache_dir is not None else CACHE_DIR)
    p = folder / f"{path.parent.name}_{path.stem}_{key}.npz"
    if p.is_file():
        table = _load(p, key)
        if table is not None:
            logger.info(f"indexing evidence of {path} from the cache {p}")
            return table
    peaks, sg = read_peaks_file(path, limit, source, s)
    logger.info(f"indexing {len(peaks)} patterns of {path} ({engine}, {workers} worker(s); "
                "once, then cached)")
    options = {k: v for k, v in s.items() if k not in _STICK_KEYS}
    table = IndexTable.from_rows(index_many(peaks, workers, engine, options=options, progress=progress), sg)
    _save(table, p, key, {"file": str(path), "source": source, "settings": s, "limit": limit,
                          "version": INDEX_CACHE_VERSION, "code": code_digest()})
    return table


# Taken when this module is imported, i.e. with the indexing code a process has loaded: a process
# that started before an edit of indexing/ keeps the digest of the code it runs, instead of reading
# the edited files when it first indexes (2026-12-07: a training started before a new module was
# added computed the new digest at its evaluation and re-indexed 1,800 cached patterns).
code_digest()
