"""Benchmark of one on-the-fly stream job (``datasets.synthesis.stream.StreamJob``): crystals/s
of the old path and the new one, interleaved on the same jobs in one process.

Usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.bench_stream_job               # 300 jobs, seed 0
    OMP_NUM_THREADS=1 python -m benchmarks.bench_stream_job --n 100 --rounds 2

Jobs are those of a ``--data_source stream`` run: the slots of ``--slots`` crystals per epoch (MP
profile, the default recipe's settings), every k-th slot so that ``--n`` jobs keep the mix of
space groups, epoch 0's seed. Per job and round three timings, their order rotating from job to
job so that a neighbour's load hits all alike:

* ``old``: ``benchmarks.legacy_stream_job.stream_job`` (the path before this change: sticks from
  one enumeration, then the families from a second enumeration with a second spglib call);
* ``new``: today's ``StreamJob`` (one enumeration, the generator's spglib rotations, orbits from a
  (M, 3) × (3, n_ops) product);
* ``gen``: the generator alone (``generate_structure``, shared by both): what is left to save.

Every job's sticks and families are compared (old vs new, bitwise). Wall and process CPU time are
both reported; the ratio is the one to quote (both paths saw the same load). Prints markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import time

import numpy as np

OPTS = {"tol_factor": 0.9, "volume_factor": 1.2, "wavelength": 1.5406, "two_theta_range": (5.0, 90.0),
        "min_intensity": 0.5}  # builders.with_stream's defaults (the built-in set's settings)


def stream_jobs(n: int, slots: int = 1000, seed: int = 0, max_atoms: int = 60) -> list:
    """``n`` jobs of epoch 0 of a stream of ``slots`` crystals (every ``slots // n``-th slot)."""
    from datasets.synthesis.plan import draw_job, group_totals, load_mp_table, rows_by_group
    from datasets.synthesis.stream import slot_groups, stream_seed
    from datasets.synthesis.structures import mp_table_path

    table = load_mp_table(mp_table_path())
    sg = slot_groups(group_totals(table), slots, "mp", seed)
    cand = rows_by_group(table, max_atoms)
    step = max(slots // max(n, 1), 1)
    return [draw_job("train", i, int(sg[i]), cand[int(sg[i])], stream_seed(seed, 0))
            for i in range(0, slots, step)][:n]


def same(a: dict, b: dict) -> bool:
    """Whether two job results carry identical crystals, sticks and families."""
    if a["ok"] != b["ok"] or a["formula"] != b["formula"] or a["lattice"] != b["lattice"]:
        return False
    if not a["ok"]:
        return True
    keys = ("two_theta", "intensity", "st_frac", "st_z")
    fa, fb = a["families"], b["families"]
    return all(np.array_equal(a[k], b[k]) for k in keys) and \
        all(np.array_equal(fa[k], fb[k]) for k in ("cell", "hkl", "mult", "sf", "z"))


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.legacy_stream_job import stream_job as old_job
    from datasets.synthesis.jobs import JobRunner
    from datasets.synthesis.placement import site_ops
    from datasets.synthesis.plan import load_mp_table
    from datasets.synthesis.stream import StreamJob
    from datasets.synthesis.structures import generate_structure, mp_table_path

    p = argparse.ArgumentParser("bench_stream_job")
    p.add_argument("--n", type=int, default=300, help="jobs timed")
    p.add_argument("--slots", type=int, default=1000, help="crystals per epoch of the stream sampled")
    p.add_argument("--rounds", type=int, default=1, help="times every job is run by each path")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    path = mp_table_path()
    table = load_mp_table(path)
    jobs = stream_jobs(a.n, a.slots, a.seed)
    tt_max = OPTS["two_theta_range"][1]
    new_job = StreamJob(JobRunner(path, OPTS), OPTS["wavelength"], tt_max)

    def gen(job):
        with contextlib.redirect_stdout(io.StringIO()):
            return generate_structure(job.sg, str(table["wps"][job.row]), job.rng(),
                                      tol_factor=OPTS["tol_factor"], volume_factor=OPTS["volume_factor"])

    runs = {"old": lambda j: old_job(path, OPTS, OPTS["wavelength"], tt_max, j), "new": new_job, "gen": gen}
    for j in jobs:  # one-time per process (as in a worker): Wyckoff operations, group tables
        for tok in str(table["wps"][j.row]).split("-"):
            site_ops(j.sg, int(tok))
    for fn in runs.values():
        fn(jobs[0])
    wall = dict.fromkeys(runs, 0.0)
    cpu = dict.fromkeys(runs, 0.0)
    ok, equal, n_fam = 0, 0, 0
    names = list(runs)
    load0 = os.getloadavg()[0]
    for r in range(a.rounds):
        for k, j in enumerate(jobs):
            shift = (k + r) % len(names)
            out = {}
            for name in names[shift:] + names[:shift]:
                t0, c0 = time.perf_counter(), time.process_time()
                out[name] = runs[name](j)
                wall[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0
            if r == 0:
                ok += bool(out["new"]["ok"])
                equal += same(out["old"], out["new"])
                n_fam += len(out["new"]["families"]["hkl"]) if out["new"]["ok"] else 0
    load1 = os.getloadavg()[0]
    n = len(jobs) * a.rounds
    row = {"jobs": len(jobs), "rounds": a.rounds, "ok": ok, "identical": equal,
           "machine": f"{platform.machine()} x{os.cpu_count()}", "load": (load0, load1),
           "omp": os.environ.get("OMP_NUM_THREADS", "unset"), "mean_families": n_fam / max(ok, 1)}
    for name in runs:
        row[f"{name}_per_s"] = n / wall[name]
        row[f"{name}_per_cpu_s"] = n / cpu[name]
        row[f"{name}_ms"] = 1e3 * wall[name] / n
    row["ratio"] = wall["old"] / wall["new"]
    row["ratio_cpu"] = cpu["old"] / cpu["new"]
    row["post_ratio"] = (wall["old"] - wall["gen"]) / max(wall["new"] - wall["gen"], 1e-9)
    shared = max(load0, load1) >= 0.5
    print(f"machine {row['machine']}, OMP_NUM_THREADS={row['omp']}, load average {load0:.2f} -> {load1:.2f}: "
          + ("SHARED with other processes during the run (absolute rates are low; the ratio is from "
             "interleaved runs on the same jobs)" if shared else "idle apart from this benchmark"))
    print(f"{len(jobs)} stream jobs x {a.rounds} round(s), {ok} crystals, mean {row['mean_families']:.0f} "
          f"families; old and new identical (sticks, families bitwise) on {equal} / {len(jobs)} jobs\n")
    print("| path | crystals/s (wall) | crystals/CPU-s | ms/crystal |")
    print("|---|---|---|---|")
    labels = {"old": "old StreamJob (two enumerations, two spglib calls)",
              "new": "new StreamJob (one enumeration, generator's rotations)",
              "gen": "generator alone (placement + spglib check; shared)"}
    for name in runs:
        print(f"| {labels[name]} | {row[name + '_per_s']:.1f} | {row[name + '_per_cpu_s']:.1f} | "
              f"{row[name + '_ms']:.2f} |")
    print(f"\nnew / old: {row['ratio']:.2f}x crystals/s (wall), {row['ratio_cpu']:.2f}x (CPU); "
          f"the part after the generator (sticks + families): {row['post_ratio']:.2f}x")
    return row


if __name__ == "__main__":
    main()
