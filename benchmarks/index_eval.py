"""Indexing accuracy and speed on a peaks file (default: the built-in balanced test split).

    python -m benchmarks.index_eval                       # sticks of all 900 test patterns
    python -m benchmarks.index_eval --limit 90 --workers 2
    python -m benchmarks.index_eval --source lab          # peaks picked from the lab rendering

Reports crystal-system accuracy (P-trigonal counted as hexagonal metric, and as its own system),
cell recovered, extinction-group top-1/top-3, per crystal system, the failure modes counted,
and CPU seconds per pattern (median, p90). ``--json`` writes every number for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import spglib

from indexing.api import analyse
from indexing.metric_symmetry import TO_PRIMITIVE
from indexing.peaks import PeakList, from_sticks
from utils.lattice import lattice_matrix
from utils.sg_tables import CRYSTAL_SYSTEMS, SG_TO_CS, centring, extinction_groups


def true_metric_system(sg: int) -> str:
    """The metric system a perfect indexing finds: P-trigonal cells are metrically hexagonal."""
    cs = CRYSTAL_SYSTEMS[SG_TO_CS[sg - 1]]
    if cs == "trigonal" and centring(sg) == "P":
        return "hexagonal"
    return cs


def reduced_signature(cell: np.ndarray, cen: str) -> tuple[float, np.ndarray]:
    """(primitive volume, sorted Niggli edge lengths) of a conventional cell with centring."""
    prim = TO_PRIMITIVE[cen] @ lattice_matrix(cell)
    red = spglib.niggli_reduce(prim)
    red = prim if red is None else red
    return float(abs(np.linalg.det(red))), np.sort(np.linalg.norm(red, axis=1))


def same_cell(found, true_cell: np.ndarray, sg: int) -> bool:
    vt, lt = reduced_signature(true_cell, centring(sg))
    vf = found.lattice.volume_primitive
    lf = np.sort(found.lattice.reduced[:3])
    return abs(vf / vt - 1) < 0.015 and bool(np.all(np.abs(lf / lt - 1) < 0.015))


def failure_mode(res, sg: int, true_cell: np.ndarray) -> str:
    if not res.index.solved:
        return "no solution"
    b = res.index.best
    vt, _ = reduced_signature(true_cell, centring(sg))
    ratio = b.lattice.volume_primitive / vt
    rank = {"triclinic": 0, "monoclinic": 1, "orthorhombic": 2, "tetragonal": 3, "trigonal": 4,
            "hexagonal": 4, "cubic": 5}
    want = true_metric_system(sg)
    if ratio < 0.985:
        kind = "subcell"
    elif ratio > 1.015:
        kind = "supercell"
    else:
        kind = "same volume"
    if b.system == want:
        return f"right system, {kind}"
    side = "too high" if rank[b.system] > rank[want] else "too low"
    return f"symmetry {side} ({kind})"


def load_peaks(path: Path, source: str, limit: int | None, step: int):
    d = np.load(path)
    off, wl = d["offsets"], float(d["wavelength"])
    n = len(d["sg"])
    rows = list(range(0, n, step))[:limit]
    cells = d["st_cell"] if "st_cell" in d.files else None
    meta = path.parent / "dataset.json"
    tt_min = json.loads(meta.read_text()).get("grid", {}).get("two_theta_min", 5.0) if meta.is_file() else 5.0
    if source == "sticks":
        peaks = [from_sticks(d["two_theta"][off[i]:off[i + 1]], d["intensity"][off[i]:off[i + 1]], wl,
                             source=f"pattern {i}", two_theta_min=tt_min) for i in rows]
    else:
        from benchmarks.index_renderings import load_renderings  # torch only for renderings
        from indexing.picking import pick_peaks
        rend = load_renderings(path.parent, path.stem.removeprefix("peaks_"))
        g = rend["grid"]
        x = g[0] + (g[1] - g[0]) / int(g[2]) * np.arange(int(g[2]))    # utils.grid.GridSpec
        conditions = {}
        if source == "lab":
            counts = rend["p_max_counts"]
            shift = np.abs(rend["p_zero_shift_deg"] - 2 * np.degrees(rend["p_displacement_mm"] / float(
                rend["goniometer_radius_mm"])) * np.cos(np.radians(15.0)))   # the shift at 2θ = 30°
            for i in rows:
                conditions[i] = [
                    "counts<2e3" if counts[i] < 2e3 else
                    "counts 2e3-2e4" if counts[i] < 2e4 else "counts>2e4",
                    "Ka2" if rend["p_has_ka2"][i] else "no Ka2",
                    "shift<0.05" if shift[i] < 0.05 else "shift 0.05-0.1" if shift[i] < 0.1 else "shift>0.1"]
        peaks = []
        for i in rows:
            # the lab rendering in counts (Poisson-like: the picker's noise model), the clean one as is
            y = rend["lab"][i] * rend["lab_counts"][i] if source == "lab" else rend["clean"][i]
            pk = pick_peaks(x, y, wl, source=f"pattern {i}")
            pk.info["two_theta_min"] = float(g[0])
            peaks.append(pk)
        return rows, [int(d["sg"][i]) for i in rows], (cells[rows] if cells is not None else None), peaks, \
            conditions
    return rows, [int(d["sg"][i]) for i in rows], (cells[rows] if cells is not None else None), peaks, {}


def _work(item):
    i, sg, pk = item
    t = time.process_time()
    res = analyse(pk)
    return i, sg, res, time.process_time() - t


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peaks", type=Path, default=Path("data/xrd_mp_default/peaks_test.npz"))
    ap.add_argument("--source", choices=("sticks", "clean", "lab"), default="sticks")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    rows, sgs, cells, peaks, conditions = load_peaks(args.peaks, args.source, args.limit, args.step)
    items = list(zip(rows, sgs, peaks))
    if args.workers > 1:
        from multiprocessing import get_context
        with get_context("spawn").Pool(args.workers) as pool:
            out = pool.map(_work, items, chunksize=4)
    else:
        out = [_work(it) for it in items]
    ext = extinction_groups()
    per = defaultdict(Counter)
    per_cond = defaultdict(Counter)
    modes: Counter = Counter()
    times = []
    for (i, sg, res, dt), cell in zip(out, cells if cells is not None else [None] * len(out)):
        want = true_metric_system(sg)
        cs_true = CRYSTAL_SYSTEMS[SG_TO_CS[sg - 1]]
        got = res.index.best.system if res.index.solved else None
        c = per[want]
        c["n"] += 1
        c["cs"] += got == want
        c["cs_own"] += res.crystal_system() == cs_true
        if cell is not None and res.index.solved:
            c["cell"] += same_cell(res.index.best, cell, sg)
        top = res.extinction_ranked(3)
        c["ext1"] += bool(top) and top[0] == ext[sg - 1]
        c["ext3"] += ext[sg - 1] in top
        times.append(dt)
        for cond in conditions.get(i, []):
            per_cond[cond]["n"] += 1
            per_cond[cond]["cs"] += got == want
            per_cond[cond]["ext1"] += bool(top) and top[0] == ext[sg - 1]
        if cell is not None and (got != want or not same_cell(res.index.best, cell, sg)):
            modes[failure_mode(res, sg, cell)] += 1
            if args.verbose:
                print(i, sg, want, got, res.index.best.describe() if res.index.solved else "-")
    tot = Counter()
    for c in per.values():
        tot.update(c)
    pct = lambda c, k: 100.0 * c[k] / max(c["n"], 1)  # noqa: E731
    report = {"n": tot["n"], "source": args.source,
              "cs_hex_metric": pct(tot, "cs"), "cs_own_system": pct(tot, "cs_own"),
              "cell": pct(tot, "cell"), "ext_top1": pct(tot, "ext1"), "ext_top3": pct(tot, "ext3"),
              "cpu_median_s": float(np.median(times)), "cpu_p90_s": float(np.percentile(times, 90)),
              "per_system": {k: {"n": v["n"], "cs": pct(v, "cs"), "cell": pct(v, "cell"),
                                 "ext_top1": pct(v, "ext1"), "ext_top3": pct(v, "ext3")}
                             for k, v in sorted(per.items())},
              "per_condition": {k: {"n": v["n"], "cs": pct(v, "cs"), "ext_top1": pct(v, "ext1")}
                                for k, v in sorted(per_cond.items())},
              "failures": dict(modes.most_common())}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()


__all__ = ["main", "PeakList"]
