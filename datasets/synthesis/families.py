"""Reflection families for whole tables: derived from the stored structures, cached on disk.

The shipped default set stores each simulated crystal (cell + atoms, ~0.2 KB) rather than its
reflection families (~2 KB even when thresholded), which keeps it a few MB; the families are
derived once per machine (about 20 ms per structure and core) and cached beside the data in
``ROOT/.cache/families_{split}_{key}.npz`` (or in the user cache folder when ROOT is read-only).
The key hashes the structures and every setting of the derivation, so a stale cache is never used.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
from loguru import logger

from datasets.crystals import FamilyTable, StructureTable, from_arrays, to_arrays
from datasets.synthesis.reflections import G_MARGIN, families_of_arrays, form_factor_table

FAMILY_VERSION = 1
# Families weaker than this fraction of the strongest reflection are not kept: strain changes
# relative intensities by tens of per cent at most, and the stored sticks stop at 0.5 %.
FAMILY_MIN_REL = 0.0025


def _one(args: tuple) -> dict[str, np.ndarray]:
    cell, frac, z, wavelength, tt_max = args
    fam = families_of_arrays(cell, frac, z, None, wavelength, tt_max, G_MARGIN, min_rel=FAMILY_MIN_REL)
    fam["sf"] = fam["sf"].astype(np.float32)
    return fam


def derive_families(st: StructureTable, wavelength: float, two_theta_max: float, workers: int = 1,
                    desc: str = "reflection families") -> FamilyTable:
    """Families of every structure of ``st`` (a progress bar on stderr; ``workers`` processes)."""
    from tqdm import tqdm

    jobs = [(*st.structure(i), float(wavelength), float(two_theta_max)) for i in range(len(st))]
    it = map(_one, jobs)
    pool = None
    if workers > 1 and len(jobs) > 64:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(workers)
        it = pool.imap(_one, jobs, chunksize=32)
    t0 = time.perf_counter()
    try:
        # a live bar on a terminal; redirected output (log files, NNI trials) gets one line at the end
        fams = list(tqdm(it, total=len(jobs), desc=desc, unit="st", file=sys.stderr,
                         disable=len(jobs) < 200 or not sys.stderr.isatty(), mininterval=2.0))
        logger.info(f"{desc}: {len(jobs)} structures in {time.perf_counter() - t0:.0f} s")
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return FamilyTable.from_lists(fams, form_factor_table())


def _key(st: StructureTable, wavelength: float, two_theta_max: float) -> str:
    h = hashlib.sha256()
    for a in (st.offsets, st.z, st.frac, st.cell):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(f"{FAMILY_VERSION}|{FAMILY_MIN_REL}|{G_MARGIN}|{wavelength:.6f}|{two_theta_max:.4f}".encode())
    return h.hexdigest()[:16]


def cached_families(st: StructureTable, root: str | os.PathLike, split: str, wavelength: float,
                    two_theta_max: float, workers: int = 1) -> FamilyTable:
    """Families of ``st``, read from the cache when present, else derived and cached."""
    name = f"families_{split}_{_key(st, wavelength, two_theta_max)}.npz"
    user_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xrd_longtail"
    places = [Path(root) / ".cache", user_cache]
    for d in places:
        p = d / name
        if p.is_file():
            try:
                with np.load(p, allow_pickle=False) as z:
                    fam = from_arrays(FamilyTable, {k: z[k] for k in z.files}, p)
                if fam is not None and len(fam) == len(st):
                    return fam
            except Exception as exc:  # a truncated cache is rebuilt, never trusted
                logger.warning(f"{p}: unreadable family cache ({type(exc).__name__}); rebuilding")
    logger.info(f"deriving reflection families of {len(st)} {split} structures (once; cached)")
    fam = derive_families(st, wavelength, two_theta_max, workers)
    for d in places:
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".{name}.{os.getpid()}.tmp.npz"
            np.savez(tmp, **to_arrays(fam))
            os.replace(tmp, d / name)
            break
        except OSError as exc:
            logger.debug(f"cannot cache families in {d}: {exc}")
    return fam
