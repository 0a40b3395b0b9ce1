"""Benchmark of the built-in benchmark's simulator: structures/s and peak lists/s on one core.

Usage (from the repository root):
    python -m benchmarks.bench_simulator              # 60 MP-weighted training jobs, seed 0
    python -m benchmarks.bench_simulator --n 200 --tol_factor 1.0 --volume_factor 1.1

Jobs come from the same plan as ``datasets.simulate`` (train split, MP-weighted rows), so the mix
of space groups and cell sizes is the real one. Stages are timed separately, in this process, on
the same structures: structure generation (pyxtal + spglib check), peak lists by pymatgen's
XRDCalculator (the simulator's previous path) and by the framework's vectorised reflection
families (``datasets.synthesis.reflections.structure_peaks``, today's path), and the families a
lattice-augmented training set needs. The parallel simulator scales them by ``--workers``.
Prints a markdown header and one table row.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    from datasets.synthesis.families import FAMILY_MIN_REL
    from datasets.synthesis.plan import load_mp_table, make_plan
    from datasets.synthesis.reflections import pymatgen_peaks, reflection_families, structure_peaks
    from datasets.synthesis.structures import generate_structure, mp_table_path

    p = argparse.ArgumentParser("bench_simulator")
    p.add_argument("--n", type=int, default=60, help="number of jobs timed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol_factor", type=float, default=0.9)
    p.add_argument("--volume_factor", type=float, default=1.2)
    a = p.parse_args(argv)
    table = load_mp_table(mp_table_path())
    jobs = [j for j in make_plan(table, 0.05, 0, 0, 60, a.seed) if j.split == "train"]
    pick = np.random.default_rng(a.seed).choice(len(jobs), size=min(a.n, len(jobs)), replace=False)
    generate_structure(225, "11", np.random.default_rng(0))  # warm imports and caches
    structure_peaks(generate_structure(225, "11", np.random.default_rng(0)).structure)
    t_gen, t_pk, t_pmg, t_fam, n_ok, n_att, n_peaks = 0.0, 0.0, 0.0, 0.0, 0, 0, 0
    for k in pick:
        j = jobs[int(k)]
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            res = generate_structure(j.sg, str(table["wps"][j.row]), j.rng(), tol_factor=a.tol_factor,
                                     volume_factor=a.volume_factor)
        t_gen += time.perf_counter() - t0
        n_att += res.attempts
        if res.structure is None:
            continue
        n_ok += 1
        t0 = time.perf_counter()
        tt, _ = structure_peaks(res.structure)
        t1 = time.perf_counter()
        pymatgen_peaks(res.structure)
        t2 = time.perf_counter()
        reflection_families(res.structure, min_rel=FAMILY_MIN_REL)
        t3 = time.perf_counter()
        t_pk, t_pmg, t_fam = t_pk + t1 - t0, t_pmg + t2 - t1, t_fam + t3 - t2
        n_peaks += len(tt)
    row = {"machine": f"{platform.machine()} x{os.cpu_count()}", "jobs": len(pick),
           "tol/vol": f"{a.tol_factor}/{a.volume_factor}",
           "structures_per_s": n_ok / t_gen, "peak_lists_per_s": n_ok / max(t_pk, 1e-9),
           "pymatgen_peak_lists_per_s": n_ok / max(t_pmg, 1e-9), "families_per_s": n_ok / max(t_fam, 1e-9),
           "job_structures_per_s_old": n_ok / (t_gen + t_pmg),
           "job_structures_per_s_new": n_ok / (t_gen + t_pk),
           "s_per_structure": t_gen / len(pick), "mean_peaks": n_peaks / max(n_ok, 1),
           "attempt_failure_rate": (n_att - n_ok) / max(n_att, 1)}
    print("| jobs | pyxtal structures/s | peak lists/s pymatgen | peak lists/s own | families/s | "
          "job st/s old (pyxtal+pymatgen) | job st/s new (pyxtal+own) | peaks/pattern | failed attempts |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {row['jobs']} | {row['structures_per_s']:.2f} | {row['pymatgen_peak_lists_per_s']:.1f} | "
          f"{row['peak_lists_per_s']:.1f} | {row['families_per_s']:.1f} | "
          f"{row['job_structures_per_s_old']:.2f} | {row['job_structures_per_s_new']:.2f} | "
          f"{row['mean_peaks']:.0f} | {row['attempt_failure_rate']:.1%} |")
    return row


if __name__ == "__main__":
    main()
