"""Evidence bundles: the indexing results of a dataset's fixed evaluation patterns, in one read-only
file shipped beside the data (``DATA_DIR/index_evidence.npz``), so that a new machine does not
index them again.

    save_bundle(path, keys, rows, meta)          # keys: bundle_key() of each pattern
    rows = load_bundle(path)                     # {key: IndexRow}

A bundle maps :func:`bundle_key` of each pattern to its :class:`indexing.parallel.IndexRow`. The key
hashes the pattern **rounded to 4 significant digits of its maximum** (a pattern rendered on another
CPU, whose vectorised exp/sum may differ in the last bits, still finds its row), its axis, the
wavelength, the settings, :data:`indexing.cache.INDEX_CACHE_VERSION` and
:func:`indexing.cache.code_digest`, so a bundle written by other indexing code (or for other
renderings) is never read stale: its keys simply miss, those patterns are indexed, and
:func:`load_bundle` says so once. Written by
``python bundle_evidence.py`` (the patterns are rendered by the same code as a run's evaluation).
The file is written atomically; one that cannot be read fails with its name and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from loguru import logger

from indexing.api import EVIDENCE_DIM
from indexing.cache import INDEX_CACHE_VERSION, code_digest
from indexing.parallel import N_EXT_TOP, IndexRow
from utils.errors import DataError

BUNDLE_NAME = "index_evidence.npz"
_FIX = "delete it or write it again with python bundle_evidence.py"
_STR = ("bravais", "crystal_system", "message")


def bundle_key(pattern: np.ndarray, two_theta: np.ndarray, wavelength: float, options: dict) -> str:
    """sha1 of the pattern quantised to 1e-4 of its maximum, its axis, the wavelength, the settings
    and the indexing code (``indexing.patterns.pattern_key`` of the quantised pattern)."""
    from indexing.patterns import pattern_key  # (patterns imports this module)

    x = np.asarray(pattern, np.float64)
    top = float(np.max(np.abs(x))) if x.size else 0.0
    q = np.round(x / top * 1e4) if top > 0 else np.zeros_like(x)
    return pattern_key(q.astype(np.float32), two_theta, wavelength, options)


def save_bundle(path: str | os.PathLike, keys: Sequence[str], rows: Sequence[IndexRow], meta: dict) -> None:
    """Write ``rows`` under their ``keys`` (one per row, distinct) atomically, with ``meta`` (provenance:
    command, data, counts) and the code digest and cache version they were computed with."""
    if len(keys) != len(rows) or len(set(keys)) != len(keys):
        raise ValueError(f"save_bundle: {len(keys)} keys ({len(set(keys))} distinct) for {len(rows)} rows")
    arrays: dict[str, np.ndarray] = {"keys": np.asarray(list(keys), dtype="<U40")}
    for f in dataclasses.fields(IndexRow):
        values = [getattr(r, f.name) for r in rows]
        arrays[f.name] = np.asarray(values, dtype=str) if f.name in _STR else np.asarray(values)
    full = {**meta, "version": INDEX_CACHE_VERSION, "code": code_digest(), "n": len(rows)}
    arrays["meta"] = np.asarray(json.dumps(full, sort_keys=True))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def bundle_meta(path: str | os.PathLike) -> dict:
    """The provenance stored in the bundle at ``path``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"{path}: not a readable evidence bundle ({exc}). Fix: {_FIX}") from None


def load_bundle(path: str | os.PathLike) -> dict[str, IndexRow]:
    """``{key: IndexRow}`` of the bundle at ``path`` (read once per file version)."""
    p = Path(path)
    st = p.stat()
    return _load(str(p.resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> dict[str, IndexRow]:
    names = [f.name for f in dataclasses.fields(IndexRow)]
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ["keys", "meta", *names]}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"{path}: not a readable evidence bundle ({exc}). Fix: {_FIX}") from None
    n = len(data["keys"])
    if data["vector"].shape != (n, EVIDENCE_DIM) or data["ext_top"].shape != (n, N_EXT_TOP) or \
            any(len(data[k]) != n for k in names):
        raise DataError(f"{path}: evidence bundle with inconsistent arrays ({n} keys, vectors "
                        f"{data['vector'].shape}). Fix: {_FIX}")
    meta = json.loads(str(data["meta"]))
    if meta.get("code") != code_digest() or meta.get("version") != INDEX_CACHE_VERSION:
        logger.warning(f"{path}: evidence bundle from other indexing code (digest "
                       f"{meta.get('code', '?')[:12]}, this code {code_digest()[:12]}): its {n} rows will "
                       "not match, the patterns are indexed again. Fix: python bundle_evidence.py "
                       "to write it for this code")
    out = {}
    for i, key in enumerate(data["keys"].tolist()):
        kw = {k: data[k][i] for k in names}
        kw = {k: (v if k in ("vector", "cell", "ext_top") else v.item()) for k, v in kw.items()}
        kw["vector"] = np.asarray(kw["vector"], np.float32)
        kw["ext_top"] = tuple(int(g) for g in kw["ext_top"])
        out[key] = IndexRow(**kw)
    return out
