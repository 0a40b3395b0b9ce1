"""Two-phase mixtures through the lab rendering: is the main phase still indexed, the second flagged?

    python -m benchmarks.second_phase                       # 50 mixtures + 50 single-phase patterns
    python -m benchmarks.second_phase --n 80 --json Log/second_phase.json

Mixtures: two crystals of the built-in test split (``data/xrd_mp_default``, peaks_test.npz), the
second drawn at random, with weight fraction w ~ U(0.10, 0.30) of the second phase. Each phase's
sticks are scaled so that its strongest line is its weight fraction (equal reference intensity
ratios, RIR: I_max,2 / I_max,1 = w / (1 − w)), the sticks are joined and rendered once by the lab
collate (``builders.lab_collate``: counts, background, zero shift, widths, Kα2 drawn per sample from
the main crystal's index), as ``benchmarks.index_renderings`` does for the single-phase
``lab`` rendering. Single phase: the same main crystals rendered alone (the false alarms).

Per pattern: peaks picked from the counts (``indexing.picking.pick_peaks``), indexed
(``indexing.api.analyse``), the main phase counted as indexed when the best cell is the true one
(``benchmarks.index_eval.same_cell``), then ``indexing.phases.second_phase`` with the best cell.
The explained/unexplained lines are kept, so the flag is also evaluated on a grid of thresholds
(``min_rel`` × ``min_count`` × ``min_share``): the table of detection vs false-alarm rates from
which the defaults of ``indexing.phases`` were chosen.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.index_eval import same_cell  # noqa: E402
from benchmarks.index_renderings import DEFAULT_DATA, _lab_batch  # noqa: E402
from builders import lab_collate  # noqa: E402
from datasets.readers.peak_lists import build_peaks_bundle  # noqa: E402
from indexing import phases  # noqa: E402
from indexing.api import analyse  # noqa: E402
from indexing.peaks import IndexingInputError  # noqa: E402
from indexing.picking import pick_peaks  # noqa: E402

GRID_MIN_REL = (0.03, 0.05, 0.10)
GRID_MIN_COUNT = (1, 2, 3)
GRID_MIN_SHARE = (0.02, 0.05, 0.10)


def mixture_item(main: dict, second: dict, w: float) -> dict:
    """The main crystal's item with the second phase's sticks added at weight fraction ``w``."""
    a, b = np.asarray(main["intensity"], np.float64), np.asarray(second["intensity"], np.float64)
    item = dict(main)
    item["two_theta"] = np.concatenate([main["two_theta"], second["two_theta"]]).astype(np.float32)
    item["intensity"] = np.concatenate([a / a.max() * (1 - w), b / b.max() * w]).astype(np.float32)
    order = np.argsort(item["two_theta"], kind="stable")
    item["two_theta"], item["intensity"] = item["two_theta"][order], item["intensity"][order]
    return item


def evaluate(y_counts: np.ndarray, axis: np.ndarray, wavelength: float, cell: np.ndarray, sg: int,
             second: tuple[np.ndarray, int] | None, source: str) -> dict:
    """Pick, index, check; the per-pattern record (plain data)."""
    t0 = time.process_time()
    rec = {"source": source, "solved": False, "main_indexed": False, "flagged": False,
           "second_indexed": False, "rel": [], "explained": []}
    try:
        peaks = pick_peaks(axis, y_counts, wavelength, source=source)
        ev = analyse(peaks)
    except IndexingInputError as exc:
        rec["message"] = str(exc)
        return rec
    rec["solved"] = ev.solved
    if ev.solved:
        best = ev.index.best
        rec["main_indexed"] = bool(same_cell(best, cell, sg))
        ok = phases.explained(peaks, best.lattice.conventional, best.lattice.bravais, best.fit.zero)
        rec["rel"] = (peaks.intensity / peaks.intensity.max()).tolist()
        rec["explained"] = ok.tolist()
        sp = phases.second_phase(peaks, best.lattice.conventional, best.lattice.bravais, best.fit.zero)
        rec["flagged"] = sp.flagged
        rec["n_unexplained_strong"] = int(len(sp.strong))
        rec["share"] = sp.share
        if second is not None and sp.evidence is not None and sp.evidence.solved:
            rec["second_indexed"] = bool(same_cell(sp.evidence.index.best, second[0], second[1]))
    rec["cpu_s"] = time.process_time() - t0
    return rec


def flag_rate(records: list[dict], min_rel: float, min_count: int, min_share: float) -> float:
    """Fraction of the solved records flagged under these thresholds (unsolved: not flagged)."""
    hits = 0
    for r in records:
        if not r["solved"]:
            continue
        rel, ok = np.asarray(r["rel"]), np.asarray(r["explained"], bool)
        strong = rel >= min_rel
        bad = strong & ~ok
        share = rel[bad].sum() / max(rel[strong].sum(), 1e-300)
        hits += int(bad.sum() >= min_count and share >= min_share)
    return hits / max(len(records), 1)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--n", type=int, default=50, help="mixtures (and as many single-phase patterns)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    bundle = build_peaks_bundle(a.data, augment=False, lattice_aug=False)
    ds = bundle.test
    lab = lab_collate(bundle.eval_collate)
    raw = np.load(a.data / "peaks_test.npz")
    cells, sgs, wl = raw["st_cell"], raw["sg"], float(raw["wavelength"])
    rng = np.random.default_rng(a.seed)
    mains = rng.choice(len(ds), a.n, replace=False)
    seconds = np.array([rng.choice([j for j in range(len(ds)) if j != i]) for i in mains])
    weights = rng.uniform(0.10, 0.30, a.n)
    axis = lab.renderer.grid.two_theta()
    mixes, singles = [], []
    for k, (i, j, w) in enumerate(zip(mains, seconds, weights)):
        items = [mixture_item(ds[int(i)], ds[int(j)], float(w)), ds[int(i)]]
        out = _lab_batch(lab, items)
        ys = out["lab"] * out["lab_counts"][:, None]
        mixes.append(evaluate(ys[0], axis, wl, cells[i], int(sgs[i]), (cells[j], int(sgs[j])),
                              f"mix {i}+{j}"))
        mixes[-1]["w"] = float(w)
        singles.append(evaluate(ys[1], axis, wl, cells[i], int(sgs[i]), None, f"single {i}"))
        print(f"{k + 1}/{a.n}: mix main {'ok' if mixes[-1]['main_indexed'] else '--'} "
              f"flag {int(mixes[-1]['flagged'])} 2nd {int(mixes[-1]['second_indexed'])} | single "
              f"{'ok' if singles[-1]['main_indexed'] else '--'} flag {int(singles[-1]['flagged'])}",
              flush=True)

    def pct(rs, key):
        return round(100.0 * sum(bool(r[key]) for r in rs) / max(len(rs), 1), 1)

    sweep = [{"min_rel": mr, "min_count": mc, "min_share": ms,
              "detect": round(100 * flag_rate(mixes, mr, mc, ms), 1),
              "false_alarm": round(100 * flag_rate(singles, mr, mc, ms), 1)}
             for mr, mc, ms in itertools.product(GRID_MIN_REL, GRID_MIN_COUNT, GRID_MIN_SHARE)]
    both = [r for r in mixes if r["main_indexed"]]
    res = {"n_mixtures": a.n, "n_single": a.n, "weight_fraction": [0.10, 0.30], "seed": a.seed,
           "thresholds": phases.thresholds(),
           "mixture": {"main_indexed": pct(mixes, "main_indexed"), "flagged": pct(mixes, "flagged"),
                       "second_indexed": pct(mixes, "second_indexed"),
                       "flagged_when_main_indexed": pct(both, "flagged"), "n_main_indexed": len(both)},
           "single": {"main_indexed": pct(singles, "main_indexed"), "false_alarm": pct(singles, "flagged")},
           "cpu_s_median": float(np.median([r.get("cpu_s", 0.0) for r in mixes + singles])),
           "wall_s": round(time.perf_counter() - t_start, 1), "sweep": sweep}
    print(json.dumps({k: v for k, v in res.items() if k != "sweep"}, indent=1))
    print("min_rel min_count min_share  detect%  false_alarm%")
    for s in sweep:
        print(f"{s['min_rel']:>7} {s['min_count']:>9} {s['min_share']:>9}  {s['detect']:>7}  "
              f"{s['false_alarm']:>12}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.json.with_name(f".{a.json.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**res, "records": {"mixtures": mixes, "single": singles}}))
        os.replace(tmp, a.json)
    return res


if __name__ == "__main__":
    main()
