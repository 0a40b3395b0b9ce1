"""The stream job as it was before the shared-enumeration path (frozen copy, commit b0ecb8a).

Kept as the reference of ``benchmarks/bench_stream_job.py`` (old vs new, interleaved in one
process) and of ``tests/test_stream_job.py`` (the new path's sticks and families equal these).
Do not optimise this file: it is the "before".

Old path per crystal: the generator (unchanged, shared with the new path), then sticks from
families enumerated up to the 2θ range (``g_margin`` 1) with the rotations of the generator's
spglib check, then the stream's families enumerated again up to ``G_MARGIN`` with a second spglib
call; orbits canonicalised on the full (M, n_ops, 3) orbit array (``np.einsum``).
"""

from __future__ import annotations

import contextlib
import io
import os
import time

import numpy as np

from datasets.rendering.lattice_aug import family_sticks
from datasets.rendering.physics import family_intensities, inv_d2, lattice_matrix
from datasets.synthesis.families import FAMILY_MIN_REL
from datasets.synthesis.jobs import _table, compact_peaks, empty_result
from datasets.synthesis.reflections import G_MARGIN, SYMPREC, form_factor_table, merge_coincident
from datasets.synthesis.structures import generate_structure


def _laue_of(rotations: np.ndarray) -> np.ndarray:
    rots = np.unique(np.asarray(rotations, np.int64).reshape(-1, 9), axis=0).reshape(-1, 3, 3)
    return np.unique(np.concatenate([rots, -rots]).reshape(-1, 9), axis=0).reshape(-1, 3, 3)


def _laue_rotations(lattice, frac, numbers, symprec=SYMPREC) -> np.ndarray:
    import spglib

    sym = spglib.get_symmetry((lattice, frac, numbers), symprec=symprec)
    if sym is None:
        raise ValueError("spglib found no symmetry (invalid structure)")
    return _laue_of(sym["rotations"])


def _hkl_in_sphere(cell: np.ndarray, g_max: float) -> np.ndarray:
    lim = np.floor(g_max * np.asarray(cell[:3], np.float64) + 1e-9).astype(int)
    axes = [np.arange(-n, n + 1) for n in lim]
    hkl = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    return hkl[inv_d2(hkl, cell) <= g_max * g_max * (1 + 1e-12)]


def families_of_arrays(cell, frac, z_site, occ=None, wavelength=1.5406, two_theta_max=90.0,
                       g_margin=G_MARGIN, symprec=SYMPREC, min_rel=0.0, rotations=None) -> dict:
    """``datasets.synthesis.reflections.families_of_arrays`` as of b0ecb8a."""
    cell = np.asarray(cell, np.float64)
    frac = np.asarray(frac, np.float64).reshape(-1, 3)
    z_site = np.asarray(z_site, np.int64)
    occ = np.ones(len(z_site)) if occ is None else np.asarray(occ, np.float64)
    g_max = 2.0 * np.sin(np.radians(min(float(two_theta_max), 180.0) / 2.0)) / float(wavelength)
    hkl = _hkl_in_sphere(cell, g_max * g_margin)
    rots = _laue_rotations(lattice_matrix(cell), frac, z_site, symprec) if rotations is None \
        else _laue_of(rotations)
    orbit = np.einsum("mi,nij->mnj", hkl, rots)  # (M, n_ops, 3)
    span = int(np.abs(hkl).max(initial=0)) * 3 + 1
    code = ((orbit[..., 0] + span) * (2 * span + 1) + orbit[..., 1] + span) * (2 * span + 1) \
        + orbit[..., 2] + span
    canon = code.max(axis=1)
    _, first, mult = np.unique(canon, return_index=True, return_counts=True)
    best = np.argmax(code[first], axis=1)
    rep = orbit[first, best]
    elements = np.unique(z_site)
    phase = np.exp(2j * np.pi * (rep.astype(np.float64) @ frac.T))
    onehot = (z_site[:, None] == elements[None, :]) * occ[:, None]
    s_e = phase @ onehot
    q2 = inv_d2(rep, cell)
    sf = np.stack([s_e.real, s_e.imag], -1)
    keep = np.ones(len(rep), bool)
    if min_rel > 0 and len(rep):
        tt, inten = family_intensities(sf, mult.astype(np.float64), elements,
                                       form_factor_table()[elements], q2, wavelength)
        inside = tt <= two_theta_max
        top = inten[inside].max(initial=0.0)
        keep = inten >= min_rel * top
    order = np.flatnonzero(keep)[np.argsort(q2[keep], kind="stable")]
    return {"cell": cell, "hkl": rep[order].astype(np.int16), "mult": mult[order].astype(np.int16),
            "sf": sf[order], "z": elements.astype(np.int16)}


def peaks_of_arrays(cell, frac, z_site, occ=None, wavelength=1.5406, two_theta_range=(5.0, 90.0),
                    rotations=None):
    """``datasets.synthesis.reflections.peaks_of_arrays`` as of b0ecb8a."""
    fam = families_of_arrays(cell, frac, z_site, occ, wavelength, two_theta_range[1], g_margin=1.0,
                             rotations=rotations)
    tt, it = family_sticks(fam["hkl"], fam["mult"], fam["sf"], fam["z"],
                           form_factor_table()[fam["z"].astype(np.int64)], fam["cell"], wavelength,
                           two_theta_range)
    tt, it = merge_coincident(tt.astype(np.float64), it.astype(np.float64))
    keep = it > 1e-3
    return tt[keep].astype(np.float32), it[keep].astype(np.float32)


def run_job(table_path: str, opts: dict, job) -> dict:
    """``JobRunner(table_path, opts)(job)`` as of b0ecb8a (the simulator's job)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    table = _table(str(table_path))
    wps, n_atoms = str(table["wps"][job.row]), int(table["n_atoms"][job.row])
    out = empty_result(job, n_atoms, wps)
    o = opts
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            res = generate_structure(job.sg, wps, job.rng(), tol_factor=o["tol_factor"],
                                     volume_factor=o["volume_factor"], placer=o.get("placer", "fast"))
            out.update(attempts=res.attempts, relaxed=res.relaxed, errors=" | ".join(res.errors)[:500])
            if res.ok:
                cell, frac, z = res.arrays()
                tt, it = peaks_of_arrays(cell, frac, z, None, o["wavelength"], o["two_theta_range"],
                                         rotations=res.rotations)
                tt, it = compact_peaks(tt, it, o["min_intensity"])
                if len(tt) == 0:
                    out["errors"] = (out["errors"] + " | no peak in range")[:500]
                else:
                    out.update(ok=True, formula=res.formula, lattice=tuple(map(float, cell)),
                               two_theta=tt, intensity=it, st_z=z.astype(np.uint8),
                               st_frac=frac.astype(np.float32))
        except Exception as exc:
            out["errors"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    out["seconds"] = time.perf_counter() - t0
    return out


def stream_job(table_path: str, opts: dict, wavelength: float, two_theta_max: float, job) -> dict:
    """``StreamJob(JobRunner(table_path, opts), wavelength, two_theta_max)(job)`` as of b0ecb8a."""
    out = run_job(table_path, opts, job)
    if out["ok"]:
        try:
            fam = families_of_arrays(np.asarray(out["lattice"]), out["st_frac"], out["st_z"], None,
                                     float(wavelength), float(two_theta_max), G_MARGIN,
                                     min_rel=FAMILY_MIN_REL)
            fam["sf"] = fam["sf"].astype(np.float32)
            out["families"] = fam
        except Exception as exc:
            out.update(ok=False, errors=f"families: {type(exc).__name__}: {str(exc)[:200]}")
    return out
