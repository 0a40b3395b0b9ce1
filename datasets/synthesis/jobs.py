"""One generation job → one result: a random structure, its symmetry check, its sticks.

:class:`JobRunner` is a picklable callable, so any engine (``datasets.synthesis.engines``: local
processes, Ray tasks, or inline) can run it; it loads the Materials Project table once per
process. A job never raises: failures are results too (``ok`` False, with the reasons), so nothing
is lost silently and every accepted structure passed spglib's check of its label.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from functools import cache

import numpy as np

from datasets.rendering.physics import lattice_matrix
from datasets.synthesis.plan import Job, load_mp_table
from datasets.synthesis.reflections import (
    families_of_arrays,
    laue_rotations,
    peaks_of_arrays,
    sticks_and_families,
)
from datasets.synthesis.structures import generate_structure


@cache
def _table(path: str) -> dict[str, np.ndarray]:
    return load_mp_table(path)


def compact_peaks(tt: np.ndarray, it: np.ndarray, min_intensity: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop sticks weaker than ``min_intensity`` (% of the strongest) and round the rest.

    2θ is rounded to multiples of 2^-12 deg (0.00024°, far below the 0.01° grid step) and
    intensities to float16 precision (relative 5e-4): invisible after rendering, but the stored
    peak lists compress about twice as well. Weak sticks below a lab detection limit (~0.1–0.5 %
    of the strongest reflection) cannot be seen in a measured pattern either.
    """
    keep = it >= min_intensity
    tt = (np.round(tt[keep].astype(np.float64) * 4096.0) / 4096.0).astype(np.float32)
    it = it[keep].astype(np.float16).astype(np.float32)
    return tt, it


def empty_result(job: Job, n_atoms: int = 0, wps: str = "", errors: str = "") -> dict:
    """The result record of a job that produced nothing (also used for hung or lost jobs)."""
    return {"split": job.split, "index": job.index, "sg": job.sg, "ok": False, "formula": "",
            "lattice": (0.0,) * 6, "n_atoms": n_atoms, "wps": wps, "attempts": 0, "relaxed": 0,
            "errors": errors[:500], "two_theta": np.zeros(0, np.float32),
            "intensity": np.zeros(0, np.float32), "st_z": np.zeros(0, np.uint8),
            "st_frac": np.zeros((0, 3), np.float32), "seconds": 0.0}


class JobRunner:
    """Run jobs of one plan: ``JobRunner(table_path, opts)(job) -> result dict``.

    Args:
        table_path: pyxtal's Materials Project table (``structures.mp_table_path()``).
        opts: ``tol_factor``, ``volume_factor``, ``wavelength``, ``two_theta_range``,
            ``min_intensity`` (see ``python -m datasets.simulate --help``); optional ``placer``
            (``structures.generate_structure``; default "fast").
    """

    def __init__(self, table_path: str, opts: dict) -> None:
        self.table_path = str(table_path)
        self.opts = dict(opts)

    def __call__(self, job: Job) -> dict:
        return self.run(job)

    def run(self, job: Job, families: dict | None = None) -> dict:
        """The result of ``job``; with ``families`` also its reflection families (``"families"``).

        Args:
            families: None, or keyword arguments of the families: ``wavelength``,
                ``two_theta_max``, ``g_margin``, ``min_rel``. They are derived from the stored
                structure (float32 coordinates) with the rotations of the generator's spglib check
                and, at the sticks' wavelength, from the sticks' enumeration of reflections
                (``reflections.sticks_and_families``): no second spglib call, no second
                enumeration, and the same sticks and families as separate calls.
        """
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        t0 = time.perf_counter()
        table = _table(self.table_path)
        wps, n_atoms = str(table["wps"][job.row]), int(table["n_atoms"][job.row])
        out = empty_result(job, n_atoms, wps)
        o = self.opts
        # pyxtal prints "Error: ..." lines on stdout for rejected compositions; keep the bar clean.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                res = generate_structure(job.sg, wps, job.rng(), tol_factor=o["tol_factor"],
                                         volume_factor=o["volume_factor"], placer=o.get("placer", "fast"))
                out.update(attempts=res.attempts, relaxed=res.relaxed, errors=" | ".join(res.errors)[:500])
                if res.ok:
                    cell, frac, z = res.arrays()
                    tt, it, fam = self._derive(cell, frac, z, res.rotations, families)
                    tt, it = compact_peaks(tt, it, o["min_intensity"])
                    if len(tt) == 0:
                        out["errors"] = (out["errors"] + " | no peak in range")[:500]
                    else:
                        out.update(ok=True, formula=res.formula, lattice=tuple(map(float, cell)),
                                   two_theta=tt, intensity=it, st_z=z.astype(np.uint8),
                                   st_frac=frac.astype(np.float32))
                        if fam is not None:
                            out["families"] = fam
            except Exception as exc:  # a bug or a library failure must not kill the whole run
                out["errors"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        out["seconds"] = time.perf_counter() - t0
        return out

    def _derive(self, cell: np.ndarray, frac: np.ndarray, z: np.ndarray, rotations: np.ndarray | None,
                families: dict | None) -> tuple[np.ndarray, np.ndarray, dict | None]:
        """Sticks (2θ, intensity) of a structure, and its families when asked (see :meth:`run`)."""
        o = self.opts
        if families is None:
            tt, it = peaks_of_arrays(cell, frac, z, None, o["wavelength"], o["two_theta_range"],
                                     rotations=rotations)
            return tt, it, None
        kw = dict(families)
        stored = frac.astype(np.float32)  # the result's st_frac: families describe the stored structure
        if float(kw.pop("wavelength", o["wavelength"])) == float(o["wavelength"]):
            (tt, it), fam = sticks_and_families(cell, frac, z, None, o["wavelength"], o["two_theta_range"],
                                                family_two_theta_max=kw.pop("two_theta_max", None),
                                                rotations=rotations, family_frac=stored, **kw)
        else:  # another wavelength: another enumeration, still without a second spglib call
            if rotations is None:
                rotations = laue_rotations(lattice_matrix(cell), frac, z)
            tt, it = peaks_of_arrays(cell, frac, z, None, o["wavelength"], o["two_theta_range"],
                                     rotations=rotations)
            fam = families_of_arrays(cell, stored, z, None, families["wavelength"], rotations=rotations, **kw)
        return tt, it, fam
