"""On-disk cache of the structure stream's epochs (``train.py --data_source stream --stream_cache DIR``).

Several runs with the same seed (the methods of a comparison, the ablations of one method) see the
same crystals; with a cache the first run generates each epoch and the later runs load it.

Layout: ``DIR/<key>/epoch_<e>.npz`` (a :class:`datasets.peaks.PeakTable` with its structures and
families, written by ``PeakTable.save``: atomic, compressed, exact round trip) and
``DIR/<key>/key.json`` (the key's inputs, for humans). The key hashes everything that determines an
epoch's crystals: run seed, slots, profile, generator options, max atoms, restricted groups, tries
per slot, the job function's class, the Materials Project table's content, the family settings,
the versions of the libraries that generate, and :data:`STREAM_CACHE_VERSION` (bump it whenever
generation changes). ``--stream_reuse`` (how often a crystal is shown) is not part of it.

Only *canonical* tables are written: epoch e generated from epoch e−1's canonical table (slots that
fail keep their previous crystal), or with no fallback slot at all. A resumed run that generates
epoch e directly from epoch 0 (``StructureStream.set_epoch``) writes it only when no slot fell
back, so a cached epoch is always what an uninterrupted run generates. A file that cannot be read
or does not match the stream is reported (WARNING) and regenerated, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from datasets.peaks import PeakTable
from utils.hashing import file_sha256

STREAM_CACHE_VERSION = 1
KEY_LIBRARIES = ("numpy", "pyxtal", "spglib")  # their versions may change the generated crystals


def _version(lib: str) -> str | None:
    try:
        return metadata.version(lib)
    except metadata.PackageNotFoundError:
        return None


def key_inputs(table_path: str, seed: int, n_structures: int, profile: str, opts: dict, max_atoms: int,
               groups: list[int] | None, max_tries: int, job_fn: object, **extra: Any) -> dict[str, Any]:
    """The JSON-able inputs that determine a stream's epochs (``extra``: further constants)."""
    return {"version": STREAM_CACHE_VERSION, "seed": int(seed), "n_structures": int(n_structures),
            "profile": str(profile), "opts": {k: opts[k] for k in sorted(opts)}, "max_atoms": int(max_atoms),
            "groups": None if groups is None else sorted(int(g) for g in groups), "max_tries": int(max_tries),
            "job_fn": f"{type(job_fn).__module__}.{type(job_fn).__qualname__}",
            "mp_table": {"name": Path(table_path).name, "sha256": file_sha256(table_path)},
            "libraries": {lib: _version(lib) for lib in KEY_LIBRARIES}, **extra}


def cache_key(inputs: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the inputs' canonical JSON (sorted keys, tuples as lists)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class EpochCache:
    """One stream's cached epochs: ``root/<cache_key(inputs)>/epoch_<e>.npz``."""

    def __init__(self, root: str | os.PathLike, inputs: dict[str, Any]) -> None:
        self.inputs = inputs
        self.dir = Path(root) / cache_key(inputs)

    def path(self, epoch: int) -> Path:
        return self.dir / f"epoch_{int(epoch)}.npz"

    def load(self, epoch: int, slot_sg: np.ndarray) -> PeakTable | None:
        """Epoch ``epoch``'s table, or None when absent or unusable (a WARNING names the file)."""
        p = self.path(epoch)
        if not p.is_file():
            return None
        try:
            table = PeakTable.load(p)
        except Exception as exc:  # truncated, corrupt, foreign: regenerate (and overwrite)
            logger.warning(f"stream epoch {epoch}: unreadable cache file {p} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); regenerating it")
            return None
        if table.families is None or table.structures is None or not np.array_equal(table.sg, slot_sg):
            logger.warning(f"stream epoch {epoch}: cache file {p} does not match this stream (labels or "
                           "families); regenerating it")
            return None
        logger.info(f"stream epoch {epoch}: loaded from cache {p}")
        return table

    def save(self, epoch: int, table: PeakTable) -> None:
        """Write atomically; a failure (disk full, read-only) is a WARNING, the run goes on."""
        try:
            if not (self.dir / "key.json").is_file():
                self.dir.mkdir(parents=True, exist_ok=True)
                tmp = self.dir / f".key.json.{os.getpid()}.{threading.get_ident()}.tmp"
                tmp.write_text(json.dumps(self.inputs, indent=1, sort_keys=True, default=str) + "\n")
                os.replace(tmp, self.dir / "key.json")
            table.save(self.path(epoch))
        except OSError as exc:
            logger.warning(f"stream epoch {epoch}: cannot write the cache file {self.path(epoch)} ({exc})")
