"""Benchmark of the built-in benchmark's simulator: structures/s and peak lists/s on one core.

Usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.bench_simulator   # 60 MP-weighted training jobs, seed 0
    python -m benchmarks.bench_simulator --n 200 --tol_factor 1.0 --volume_factor 1.1

Jobs come from the same plan as ``datasets.simulate`` (train split, MP-weighted rows), so the mix
of space groups and cell sizes is the real one. Both structure placers run on every job,
interleaved (their order alternates from job to job, so a neighbour's load on a shared machine
hits both alike), each with the job's own generator: the fast vectorised placer
(``datasets.synthesis.placement``, with its pyxtal fallback) and pyxtal's ``from_random``; both
include composition drawing and the spglib check. Peak lists are timed on the results: pymatgen's
XRDCalculator on the pyxtal structures (the simulator's first path) and the framework's
vectorised reflection families on the fast ones (today's path, as ``JobRunner``: from the
placer's arrays, reusing the symmetry of the generator's spglib check), plus the families a
lattice-augmented training set (or the stream) needs.
Group tables are built before timing (once per process in a real run). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import time

import numpy as np


def _timed(fn, *args, **kwargs):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def _volume(cell) -> float:
    a, b, c = cell[:3]
    ca, cb, cg = np.cos(np.radians(cell[3:]))
    return float(a * b * c * np.sqrt(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg))


def main(argv: list[str] | None = None) -> dict:
    from datasets.synthesis.families import FAMILY_MIN_REL
    from datasets.synthesis.placement import site_ops
    from datasets.synthesis.plan import load_mp_table, make_plan
    from datasets.synthesis.reflections import (
        families_of_arrays,
        peaks_of_arrays,
        pymatgen_peaks,
        structure_peaks,
    )
    from datasets.synthesis.structures import generate_structure, mp_table_path

    p = argparse.ArgumentParser("bench_simulator")
    p.add_argument("--n", type=int, default=60, help="number of jobs timed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol_factor", type=float, default=0.9)
    p.add_argument("--volume_factor", type=float, default=1.2)
    a = p.parse_args(argv)
    table = load_mp_table(mp_table_path())
    jobs = [j for j in make_plan(table, 0.05, 0, 0, 60, a.seed) if j.split == "train"]
    pick = [jobs[int(k)] for k in
            np.random.default_rng(a.seed).choice(len(jobs), size=min(a.n, len(jobs)), replace=False)]
    for placer in ("fast", "pyxtal"):  # warm imports and caches
        structure_peaks(generate_structure(225, "11", np.random.default_rng(0), placer=placer).structure)
    for j in pick:  # one-time per process: pyxtal's Group tables and the Wyckoff operations
        for tok in str(table["wps"][j.row]).split("-"):
            site_ops(j.sg, int(tok))
    t = {k: 0.0 for k in ("fast", "pyxtal", "build", "own", "pmg", "fam")}
    cpu = {"fast": 0.0, "pyxtal": 0.0}  # process CPU seconds: less sensitive to a shared machine
    vpa = {"fast": [], "pyxtal": []}  # cell volume per atom [Å³]: the placers' cells should agree
    ok = {"fast": 0, "pyxtal": 0}
    att = {"fast": 0, "pyxtal": 0}
    fallback, n_peaks = 0, 0
    kw = {"tol_factor": a.tol_factor, "volume_factor": a.volume_factor}
    load0 = os.getloadavg()[0]
    for n, j in enumerate(pick):
        wps = str(table["wps"][j.row])
        res = {}
        for placer in (("fast", "pyxtal") if n % 2 == 0 else ("pyxtal", "fast")):
            with contextlib.redirect_stdout(io.StringIO()):
                res[placer], dt, dc = _timed(generate_structure, j.sg, wps, j.rng(), placer=placer, **kw)
            t[placer] += dt
            cpu[placer] += dc
            att[placer] += res[placer].attempts
            ok[placer] += res[placer].ok
            if res[placer].ok:
                vpa[placer].append(_volume(res[placer].lattice) / len(res[placer].arrays()[2]))
        if res["fast"].ok:
            r = res["fast"]
            fallback += r.placer == "pyxtal"
            (cell, frac, z), dt, _ = _timed(r.arrays)
            t["build"] += dt
            # as JobRunner: sticks from the arrays, with the rotations of the generator's spglib check
            (tt, _), dt, _ = _timed(peaks_of_arrays, cell, frac, z, rotations=r.rotations)
            t["own"] += dt
            n_peaks += len(tt)
            t["fam"] += _timed(families_of_arrays, cell, frac, z, min_rel=FAMILY_MIN_REL)[1]
        if res["pyxtal"].ok:
            t["pmg"] += _timed(pymatgen_peaks, res["pyxtal"].structure)[1]
    nf, npx = max(ok["fast"], 1), max(ok["pyxtal"], 1)
    row = {"machine": f"{platform.machine()} x{os.cpu_count()}", "jobs": len(pick),
           "load": f"{load0:.1f}-{os.getloadavg()[0]:.1f}", "tol/vol": f"{a.tol_factor}/{a.volume_factor}",
           "fast_structures_per_s": ok["fast"] / t["fast"],
           "pyxtal_structures_per_s": ok["pyxtal"] / t["pyxtal"],
           "fast_structures_per_cpu_s": ok["fast"] / cpu["fast"],
           "pyxtal_structures_per_cpu_s": ok["pyxtal"] / cpu["pyxtal"],
           "fast_ok": ok["fast"], "pyxtal_ok": ok["pyxtal"], "fallback": fallback,
           "fast_failed_attempts": (att["fast"] - ok["fast"]) / max(att["fast"], 1),
           "pyxtal_failed_attempts": (att["pyxtal"] - ok["pyxtal"]) / max(att["pyxtal"], 1),
           "pymatgen_peak_lists_per_s": npx / max(t["pmg"], 1e-9),
           "peak_lists_per_s": nf / max(t["build"] + t["own"], 1e-9),
           "families_per_s": nf / max(t["fam"], 1e-9),
           "job_structures_per_s_old": ok["pyxtal"] / (t["pyxtal"] + t["pmg"]),
           "job_structures_per_s_new": ok["fast"] / (t["fast"] + t["build"] + t["own"]),
           "mean_peaks": n_peaks / nf,
           "fast_volume_per_atom": float(np.median(vpa["fast"])),
           "pyxtal_volume_per_atom": float(np.median(vpa["pyxtal"]))}
    row["placer_ratio"] = row["fast_structures_per_s"] / row["pyxtal_structures_per_s"]
    row["placer_ratio_cpu"] = row["fast_structures_per_cpu_s"] / row["pyxtal_structures_per_cpu_s"]
    row["job_ratio"] = row["job_structures_per_s_new"] / row["job_structures_per_s_old"]
    print(f"machine {row['machine']}, load average {row['load']}, tol/vol {row['tol/vol']}")
    print("| jobs | placer | structures/s (wall) | structures/CPU-s | ok / jobs | failed attempts | "
          "fallbacks to pyxtal | median Å³/atom |")
    print("|---|---|---|---|---|---|---|---|")
    for pl in ("pyxtal", "fast"):
        print(f"| {row['jobs']} | {pl} | {row[pl + '_structures_per_s']:.1f} | "
              f"{row[pl + '_structures_per_cpu_s']:.1f} | {ok[pl]} / {len(pick)} | "
              f"{row[pl + '_failed_attempts']:.1%} | {fallback if pl == 'fast' else '–'} | "
              f"{row[pl + '_volume_per_atom']:.1f} |")
    print(f"\nplacement speed-up fast / pyxtal: {row['placer_ratio']:.1f}x wall, "
          f"{row['placer_ratio_cpu']:.1f}x CPU\n")
    print("| peak lists/s pymatgen | peak lists/s own | families/s | "
          "job st/s old (pyxtal + pymatgen) | job st/s new (fast + own) | speed-up | peaks/pattern |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {row['pymatgen_peak_lists_per_s']:.1f} | {row['peak_lists_per_s']:.1f} | "
          f"{row['families_per_s']:.1f} | "
          f"{row['job_structures_per_s_old']:.2f} | {row['job_structures_per_s_new']:.2f} | "
          f"{row['job_ratio']:.1f}x | {row['mean_peaks']:.0f} |")
    return row


if __name__ == "__main__":
    main()
