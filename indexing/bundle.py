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

import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from loguru import logger

from indexing.cache import INDEX_CACHE_VERSION, IndexTable, code_digest, save_npz_atomic
from indexing.parallel import IndexRow
from utils.errors import DataError

BUNDLE_NAME = "index_evidence.npz"
_FIX = "delete it or write it again with python bundle_evidence.py"


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
    full = {**meta, "version": INDEX_CACHE_VERSION, "code": code_digest(), "n": len(rows)}
    arrays = {"keys": np.asarray(list(keys), dtype="<U40"),
              "meta": np.asarray(json.dumps(full, sort_keys=True))}
    save_npz_atomic(path, {**arrays, **IndexTable.from_rows(list(rows)).arrays()}, compressed=True)


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
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        keys, meta = arrays.pop("keys").tolist(), json.loads(str(arrays.pop("meta")))
        table = IndexTable.from_arrays(arrays)
        if len(keys) != len(table):
            raise ValueError(f"{len(keys)} keys for {len(table)} rows")
    except (OSError, ValueError, KeyError, EOFError, TypeError) as exc:
        raise DataError(f"{path}: not a readable evidence bundle ({exc}). Fix: {_FIX}") from None
    if meta.get("code") != code_digest() or meta.get("version") != INDEX_CACHE_VERSION:
        logger.warning(f"{path}: evidence bundle from other indexing code (digest "
                       f"{meta.get('code', '?')[:12]}, this code {code_digest()[:12]}): its {len(keys)} rows "
                       "will not match, the patterns are indexed again. Fix: python bundle_evidence.py "
                       "to write it for this code")
    return {key: table.row(i) for i, key in enumerate(keys)}
