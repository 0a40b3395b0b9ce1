"""Build the physically simulated long-tailed benchmark (DATA.md, "The built-in benchmark").

    python -m datasets.simulate --out data/xrd_mp --scale 0.05 --workers 2

Phases: (1) plan the jobs from pyxtal's Materials Project table (``datasets.synthesis.plan``);
(2) run them (``datasets.synthesis.jobs``: a pyxtal structure, spglib's check of its label, its
kinematic sticks from ``datasets.synthesis.reflections``) in parallel processes, appending finished
jobs to resumable shards (``datasets.synthesis.shards``); (3) assemble, sorted by (split, index),
into ``peaks_{split}.npz`` (sticks, metadata and the structures, from which lattice augmentation
derives reflection families), the LMDB folders, ``sg_count.csv``, ``rule_matrix.csv`` and
``dataset.json`` (with a failure report).
An interrupted run continues where it stopped and yields the same files (same checksums).

Everything is built in ``OUT.partial/`` beside the target (the shards of an interrupted run wait
there) and renamed to ``OUT`` at the end, so ``OUT`` is either absent or complete; an ``OUT`` that
already holds files is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from loguru import logger

from datasets.crystals import StructureTable
from datasets.peaks import PeakTable
from datasets.synthesis.jobs import JobRunner
from datasets.synthesis.plan import SPLIT_ID, SPLITS, Job, load_mp_table, make_plan
from datasets.synthesis.shards import ShardStore, take_jobs
from datasets.synthesis.structures import GENERATOR_VERSION, mp_table_path
from utils.cli import Bounded, Parser, command_line, int_list
from utils.crystal import CRYSTAL_SYSTEMS, SG_TO_CS
from utils.grid import GridSpec
from utils.runlock import LOCK_NAME, lock_run_dir, release_all


def generate(jobs: list[Job], store: ShardStore, runner: JobRunner, engine, shard_size: int) -> int:
    """Run ``jobs`` on ``engine`` (``datasets.synthesis.engines``), flushing a shard every
    ``shard_size`` results. A job whose worker hung is recorded as failed (never lost); crashed
    workers are replaced by the engine. Returns the number of jobs run."""
    from tqdm import tqdm

    from datasets.synthesis.jobs import empty_result

    buf: list[dict] = []
    done = 0
    bar = tqdm(total=len(jobs), desc="structures", unit="st", dynamic_ncols=True, file=sys.stderr)
    def failed(job: Job, why: str) -> dict:
        return empty_result(job, errors=f"engine: {why}")

    try:
        for _, r in engine.imap_unordered(runner, jobs, on_fail=failed):
            buf.append(r)
            done += 1
            bar.update(1)
            if len(buf) >= shard_size:
                store.write(buf)
                buf = []
    finally:
        store.write(buf)  # keep finished work even on Ctrl-C
        bar.close()
    return done


def make_engine(name: str, workers: int, ray_address: str | None, job_timeout_s: float):
    """The generation engine of the command line: local processes or Ray (``--engine``)."""
    from datasets.synthesis.engines import build_engine

    if name == "ray":
        return build_engine("ray", address=ray_address, num_cpus=None if ray_address else workers,
                            job_timeout_s=job_timeout_s)
    return build_engine(name, workers=workers, job_timeout_s=job_timeout_s)


def failure_report(res: dict[str, np.ndarray]) -> dict:
    """Per space group and per crystal system: jobs, attempts, failed attempts, lost jobs."""
    by_sg: dict[str, dict] = {}
    for g in np.unique(res["sg"]):
        m = res["sg"] == g
        by_sg[str(int(g))] = _fail_stats(res, m)
    cs = SG_TO_CS[res["sg"].astype(np.int64) - 1] if len(res["sg"]) else np.zeros(0, np.int64)
    by_cs = {name: _fail_stats(res, cs == c) for c, name in enumerate(CRYSTAL_SYSTEMS)}
    return {"total": _fail_stats(res, np.ones(len(res["sg"]), bool)), "by_crystal_system": by_cs,
            "by_space_group": by_sg}


def _fail_stats(res: dict[str, np.ndarray], m: np.ndarray) -> dict:
    att = int(res["attempts"][m].sum())
    ok = res["ok"][m]
    return {"jobs": int(m.sum()), "attempts": att, "failed_attempts": att - int(ok.sum()),
            "attempt_failure_rate": round((att - int(ok.sum())) / att, 4) if att else 0.0,
            "lost_jobs": int((~ok).sum()), "relaxed_tolerance": int((res["relaxed"][m][ok] == 1).sum()),
            "free_wyckoff": int((res["relaxed"][m][ok] == 2).sum())}


def table_checksum(t: PeakTable) -> str:
    """sha256 over a table's arrays (sorted keys), independent of zip timestamps."""
    h = hashlib.sha256()
    arrays = {"offsets": t.offsets, "two_theta": t.two_theta, "intensity": t.intensity, "sg": t.sg,
              **{f"meta_{k}": v for k, v in t.meta.items()}}
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def to_peak_table(res: dict[str, np.ndarray], split: str, wavelength: float, seed: int) -> PeakTable:
    """Successful jobs of one split, sorted by job index."""
    sel = np.flatnonzero((res["split"] == SPLIT_ID[split]) & res["ok"])
    sel = sel[np.argsort(res["index"][sel], kind="stable")]
    d = take_jobs(res, sel)
    n = len(sel)
    meta = {"formula": np.array(d["formula"].tolist(), dtype=str), "lattice": d["lattice"].astype(np.float32),
            "source": np.array([f"sim:{split}:{i}" for i in d["index"]], dtype=str),
            "mp_n_atoms": d["n_atoms"].astype(np.int16), "mp_wps": np.array(d["wps"].tolist(), dtype=str),
            "seed": np.stack([np.full(n, seed), np.full(n, SPLIT_ID[split]), d["index"]], 1).astype(np.int64)}
    structures = StructureTable(d["st_offsets"], d["st_z"].astype(np.uint8), d["st_frac"].astype(np.float32),
                                d["lattice"].astype(np.float64))
    return PeakTable(d["offsets"], d["two_theta"].astype(np.float32), d["intensity"].astype(np.float32),
                     d["sg"].astype(np.int16), wavelength, meta, structures).validate(f"simulated {split}")


def write_side_files(out: Path, train: PeakTable) -> dict:
    """``sg_count.csv`` (rows ``sg,count``, no header) and ``rule_matrix.csv`` when available."""
    counts = np.bincount(train.sg.astype(np.int64), minlength=231)[1:231]
    with open(out / "sg_count.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([(g, int(c)) for g, c in zip(range(1, 231), counts)])
    try:
        from utils.rule_matrix import build_rule_matrix, save_rule_matrix
    except ImportError:
        logger.warning("utils.rule_matrix is not available: rule_matrix.csv NOT written")
        return {"rule_matrix": None}
    save_rule_matrix(build_rule_matrix(), out / "rule_matrix.csv")
    return {"rule_matrix": "rule_matrix.csv"}


def write_npy_layout(out: Path, tables: dict[str, PeakTable], grid: GridSpec, name: str = "xrd_mp",
                     batch: int = 256) -> dict[str, str]:
    """The seed's NPY layout (SEED_CLI.md, ``--npy``): patterns rendered without augmentation.

    ``OUT/xrd_mp_sg_train/train_xrd_mp_sg.npy``, ``.../test_val_xrd_mp_sg.npy`` (val) and
    ``OUT/xrd_mp_sg_test/test_xrd_mp_sg.npy`` in the safe format of ``datasets.readers.npy_format``;
    ``OUT/dataset.json`` (grid, ``intensity_scale`` 1) and ``OUT/sg_count.csv`` describe them.
    Rendering goes through a temporary memory map, so memory stays bounded for large sets.
    """
    import torch

    from datasets.readers.npy_format import split_path, write_npy
    from datasets.rendering.renderer import PeakRenderer, pad_peaks

    renderer = PeakRenderer(grid)
    written = {}
    for split, key in (("train", "train"), ("val", "test_val"), ("test", "test")):
        t = tables[split]
        tmp = out / f".render_{split}.npy"
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(t), grid.n_points))
        with torch.no_grad():
            for a in range(0, len(t), batch):
                rows = range(a, min(len(t), a + batch))
                tt, it, m = pad_peaks([t.peaks(i)[0] for i in rows], [t.peaks(i)[1] for i in rows])
                mm[a:a + len(rows)] = renderer.render(tt, it, m, augment=False,
                                                      wavelength=t.wavelength)[:, 0].numpy()
        mm.flush()
        path = write_npy(split_path(out, name, key), mm, t.sg)
        del mm
        tmp.unlink()
        written[split] = str(path.relative_to(out))
    return written


def assemble(out: Path, res: dict[str, np.ndarray], args: argparse.Namespace, elapsed: float) -> dict:
    """Write every output file from the collected results; return the dataset.json content."""
    grid = GridSpec(two_theta_min=args.two_theta_min, two_theta_max=args.two_theta_max,
                    wavelength=args.wavelength)
    tables = {s: to_peak_table(res, s, args.wavelength, args.seed) for s in SPLITS}
    checks = {}
    for s, t in tables.items():
        t.save(out / f"peaks_{s}.npz")
        checks[s] = table_checksum(t)
    side = write_side_files(out, tables["train"])
    if args.lmdb:
        from datasets.readers.lmdb_store import write_lmdb

        for s, t in tables.items():
            write_lmdb(out / "lmdb" / s, t, meta={"split": s, "grid": grid.to_dict(), "seed": args.seed},
                       source="simulate")
    npy = write_npy_layout(out, tables, grid) if args.npy else None
    report = failure_report(res)
    counts = np.bincount(tables["train"].sg.astype(np.int64), minlength=231)[1:]
    info = {
        "name": "xrd_mp", "grid": grid.to_dict(), "wavelength": args.wavelength,
        "counts": {s: len(t) for s, t in tables.items()},
        "n_present_groups": int((counts > 0).sum()),
        "train_profile": {"max": int(counts.max()), "min_present": int(counts[counts > 0].min()),
                          "many_gt100": int((counts > 100).sum()),
                          "medium_20_100": int(((counts >= 20) & (counts <= 100)).sum()),
                          "few_lt20": int(((counts > 0) & (counts < 20)).sum())},
        "command": command_line("python -m datasets.simulate", args.argv),
        "seed": args.seed, "settings": fingerprint(args), "checksums_sha256": checks, **side,
        "intensity_scale": 1.0, "npy": npy,
        "versions": _versions(), "failure_report": report, "elapsed_seconds": round(elapsed, 1),
        "job_cpu_seconds": round(float(res["seconds"].sum()), 1),
    }
    tmp = out / ".dataset.json.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, out / "dataset.json")
    return info


def _versions() -> dict:
    import importlib.metadata as md

    v = {"python": platform.python_version()}
    for p in ("numpy", "pyxtal", "pymatgen", "lmdb", "torch"):
        try:
            v[p] = md.version(p)
        except md.PackageNotFoundError:
            v[p] = None
    return v


def fingerprint(args: argparse.Namespace) -> dict:
    """Settings that change the jobs or their results (a restart must match them)."""
    keys = ("scale", "val_per_class", "test_per_class", "max_atoms", "seed", "groups", "tol_factor",
            "volume_factor", "min_intensity", "wavelength", "two_theta_min", "two_theta_max")
    return {"generator_version": GENERATOR_VERSION, **{k: getattr(args, k) for k in keys}}


def print_report(info: dict) -> None:
    logger.info("counts {} | present groups {} | train profile {}", info["counts"],
                info["n_present_groups"], info["train_profile"])
    logger.info("failures per crystal system (attempt failure rate, lost jobs):")
    for name, s in info["failure_report"]["by_crystal_system"].items():
        logger.info("  {:<13} jobs {:>5}  attempts {:>5}  failed {:>4} ({:.1%})  lost {}  relaxed {}/{}",
                    name, s["jobs"], s["attempts"], s["failed_attempts"], s["attempt_failure_rate"],
                    s["lost_jobs"], s["relaxed_tolerance"], s["free_wyckoff"])
    worst = sorted(info["failure_report"]["by_space_group"].items(),
                   key=lambda kv: -kv[1]["attempt_failure_rate"])[:5]
    logger.info("worst groups: {}", ", ".join(f"{g} ({s['attempt_failure_rate']:.0%})" for g, s in worst))


def get_args_parser() -> argparse.ArgumentParser:
    p = Parser("datasets.simulate", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (built in OUT.partial, renamed at the end)")
    p.add_argument("--overwrite", action="store_true", help="replace an OUT that already holds files")
    p.add_argument("--scale", type=Bounded(float, 0, lo_open=True), default=0.05,
                   help="train jobs per group = max(1, round(scale*MP count))")
    p.add_argument("--val_per_class", type=Bounded(int, 0), default=2)
    p.add_argument("--test_per_class", type=Bounded(int, 0), default=4)
    p.add_argument("--max_atoms", type=Bounded(int, 1), default=60, help="largest conventional cell sampled")
    p.add_argument("--seed", type=Bounded(int, 0, 2**32 - 1), default=0)
    p.add_argument("--groups", type=int_list(1, 230, "space groups"), default=None,
                   help="comma-separated space groups (quick runs)")
    p.add_argument("--workers", type=Bounded(int, 1), default=max(1, (os.cpu_count() or 2)))
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local worker processes, or Ray tasks (a local Ray instance, or a cluster "
                        "with --ray_address); same seed -> same structures with either")
    p.add_argument("--ray_address", default=None, help="Ray cluster address HEAD:PORT (--engine ray)")
    p.add_argument("--job_timeout_s", type=Bounded(float, 0, lo_open=True), default=300.0,
                   help="a job running longer is recorded as failed and its worker replaced")
    p.add_argument("--shard_size", type=Bounded(int, 1), default=48, help="jobs per resumable shard file")
    p.add_argument("--max_jobs", type=Bounded(int, 1), default=None,
                   help="stop after this many new jobs (rerun resumes)")
    p.add_argument("--tol_factor", type=Bounded(float, 0, lo_open=True), default=0.9,
                   help="pyxtal distance-tolerance scale")
    p.add_argument("--volume_factor", type=Bounded(float, 0, lo_open=True), default=1.2,
                   help="pyxtal cell-volume factor")
    p.add_argument("--min_intensity", type=Bounded(float, 0, 100, hi_open=True), default=0.5,
                   help="drop sticks below this %% of the strongest peak")
    p.add_argument("--wavelength", type=Bounded(float, 0, 10, lo_open=True), default=1.5406)
    p.add_argument("--two_theta_min", type=Bounded(float, 0, 180, hi_open=True), default=5.0)
    p.add_argument("--two_theta_max", type=Bounded(float, 0, 180, lo_open=True), default=90.0)
    p.add_argument("--lmdb", action=argparse.BooleanOptionalAction, default=True,
                   help="write OUT/lmdb/{split}")
    p.add_argument("--npy", action=argparse.BooleanOptionalAction, default=False,
                   help="write the seed's NPY layout")
    p.add_argument("--keep_shards", action=argparse.BooleanOptionalAction, default=True)
    p.add_validator(lambda a: None if a.two_theta_min < a.two_theta_max else
                    f"--two_theta_min {a.two_theta_min} must be below --two_theta_max {a.two_theta_max}")
    p.add_validator(lambda a: None if not a.ray_address or a.engine == "ray" else
                    "--ray_address is given but would be ignored: it needs --engine ray. Fix: add that")
    return p


def publish(work: Path, out: Path) -> None:
    """Rename the finished ``work`` folder to ``out`` (an old ``out`` is moved aside first and
    removed only once the new one is in place)."""
    import shutil

    (work / LOCK_NAME).unlink(missing_ok=True)
    old = out.with_name(f".{out.name}.replaced")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(work, out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = get_args_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    args.groups = sorted(set(args.groups)) if args.groups else None
    final = Path(args.out)
    if final.is_dir() and any(final.iterdir()) and not args.overwrite:
        parser.error(f"--out {final} already holds files. Fix: pass --overwrite to replace them "
                     "(the new set is built beside it first), or choose another --out")
    if final.exists() and not final.is_dir():
        parser.error(f"--out {final} is a file. Fix: choose a folder")
    out = lock_run_dir(final.with_name(final.name + ".partial"), "datasets.simulate")
    from utils.logging import setup_logging

    setup_logging(out / "simulate.log")
    t0 = time.time()
    # 1. plan
    table_path = mp_table_path()
    table = load_mp_table(table_path)
    jobs = make_plan(table, args.scale, args.val_per_class, args.test_per_class, args.max_atoms,
                     args.seed, args.groups)
    store = ShardStore(out, fingerprint(args))
    done = store.load_all()
    finished = {(int(s), int(i)) for s, i in zip(done["split"], done["index"])}
    todo = [j for j in jobs if (SPLIT_ID[j.split], j.index) not in finished]
    logger.info("{} jobs planned, {} already in shards, {} to run on {} workers",
                len(jobs), len(jobs) - len(todo), len(todo), args.workers)
    # 2. generate
    limit = todo if args.max_jobs is None else todo[:args.max_jobs]
    opts = {"min_intensity": args.min_intensity, "tol_factor": args.tol_factor,
            "volume_factor": args.volume_factor, "wavelength": args.wavelength,
            "two_theta_range": (args.two_theta_min, args.two_theta_max)}
    engine = make_engine(args.engine, args.workers, args.ray_address, args.job_timeout_s)
    try:
        generate(limit, store, JobRunner(table_path, opts), engine, args.shard_size)
    finally:
        engine.close()
    if engine.stats.get("crashed_workers") or engine.stats.get("hung_jobs"):
        logger.warning("engine: {}", engine.stats)
    if len(limit) < len(todo):
        logger.info("stopped after {} jobs (--max_jobs); the shards wait in {}: rerun the same command "
                    "to continue", len(limit), out)
        release_all()
        return None
    # 3. assemble
    res = store.load_all()
    planned = {(SPLIT_ID[j.split], j.index) for j in jobs}
    keep = np.array([(int(s), int(i)) in planned for s, i in zip(res["split"], res["index"])], bool)
    res = take_jobs(res, np.flatnonzero(keep))
    elapsed = time.time() - t0
    info = assemble(out, res, args, elapsed)
    print_report(info)
    if not args.keep_shards:
        import shutil

        shutil.rmtree(out / "shards")
    from utils.logging import setup_logging

    setup_logging(None)  # stop writing simulate.log before its folder is renamed
    release_all()
    publish(out, final)
    logger.info("dataset written to {}", final)
    return info


if __name__ == "__main__":
    from utils.errors import XRDError, exit_message

    try:
        main()
    except (XRDError, OSError) as exc:  # other settings than the shards', full disk...: one line
        if (line := exit_message(exc)) is None:
            raise
        raise SystemExit(line) from None
