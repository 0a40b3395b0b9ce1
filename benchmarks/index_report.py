"""Markdown tables of the indexing evaluation (``benchmarks.index_eval --json`` files) for RESULTS.md.

    python -m benchmarks.index_eval --source sticks --workers 2 --json Log/index_eval_sticks.json
    python -m benchmarks.index_eval --source clean  --workers 2 --json Log/index_eval_clean.json
    python -m benchmarks.index_eval --source lab    --workers 2 --json Log/index_eval_lab.json
    python -m benchmarks.index_eval --peaks data/external_pyxtal/peaks_test.npz --workers 2 \\
        --json Log/index_eval_external.json
    python -m benchmarks.index_report --out RESULTS.md --section indexing
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reports import write_section

RUNS = (("sticks", "test split, stick lists (merged at 0.02°, lines ≥ 1 %)"),
        ("clean", "test split, clean rendering, peaks picked"),
        ("lab", "test split, lab rendering, peaks picked"),
        ("external", "data/external_pyxtal (89 real crystals), stick lists"))
TARGETS = {"sticks": {"cell": 95, "cs_hex_metric": 97, "ext_top1": 80, "ext_top3": 95},
           "clean": {"cell": 95, "cs_hex_metric": 97, "ext_top1": 80, "ext_top3": 95},
           "lab": {"cs_hex_metric": 85, "ext_top1": 60},
           "external": {"cs_hex_metric": 90}}
SYSTEM_ORDER = ("cubic", "hexagonal", "trigonal", "tetragonal", "orthorhombic", "monoclinic", "triclinic")


def _cell(v: float | None, target: float | None) -> str:
    if v is None:
        return "–"
    if target is None:
        return f"{v:.1f}"
    return f"**{v:.1f}** (≥ {target}: {'met' if v >= target else 'missed'})"


def tables(log: Path) -> str:
    runs = {k: json.loads((log / f"index_eval_{k}.json").read_text())
            for k, _ in RUNS if (log / f"index_eval_{k}.json").is_file()}
    out = ["| evaluated on | n | CS, P-trigonal as hexagonal metric % | CS, 7 systems % | "
           "cell recovered % | ext. group top-1 % | top-3 % | CPU s / pattern (median, p90) |",
           "|---|---|---|---|---|---|---|---|"]
    for key, label in RUNS:
        if key not in runs:
            out.append(f"| {label} | not run | | | | | | |")
            continue
        r, t = runs[key], TARGETS[key]
        cell = r["cell"] if key != "external" else None   # the external set stores no cells
        out.append(f"| {label} | {r['n']} | {_cell(r['cs_hex_metric'], t.get('cs_hex_metric'))} | "
                   f"{r['cs_own_system']:.1f} | {_cell(cell, t.get('cell'))} | "
                   f"{_cell(r['ext_top1'], t.get('ext_top1'))} | {_cell(r['ext_top3'], t.get('ext_top3'))} | "
                   f"{r['cpu_median_s']:.2f}, {r['cpu_p90_s']:.2f} |")
    out += ["", "Per crystal system (metric system: P-trigonal counted as hexagonal; CS % / cell % / "
            "extinction group top-1 %):", "",
            "| system | " + " | ".join(k for k, _ in RUNS if k in runs and k != "external") + " |",
            "|---|" + "---|" * sum(1 for k, _ in RUNS if k in runs and k != "external")]
    for s in SYSTEM_ORDER:
        cells = []
        for k, _ in RUNS:
            if k not in runs or k == "external":
                continue
            v = runs[k]["per_system"].get(s)
            cells.append("–" if v is None else
                         f"{v['cs']:.0f} / {v['cell']:.0f} / {v['ext_top1']:.0f} (n={v['n']})")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    if "lab" in runs and runs["lab"].get("per_condition"):
        out += ["", "Lab rendering by condition (CS % / extinction group top-1 %):", "",
                "| condition | n | CS % | ext. group top-1 % |", "|---|---|---|---|"]
        for c, v in runs["lab"]["per_condition"].items():
            out.append(f"| {c} | {v['n']} | {v['cs']:.1f} | {v['ext_top1']:.1f} |")
    out += ["", "Failure modes (patterns whose crystal system or cell is wrong; volume relative to the "
            "true primitive cell):", "", "| failure | " + " | ".join(k for k, _ in RUNS if k in runs) + " |",
            "|---|" + "---|" * len(runs)]
    modes = sorted({m for r in runs.values() for m in r["failures"]})
    for m in modes:
        out.append(f"| {m} | " + " | ".join(str(runs[k]["failures"].get(m, 0)) for k, _ in RUNS if k in runs)
                   + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--log", type=Path, default=Path("Log"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--section", default="indexing")
    args = ap.parse_args(argv)
    text = tables(args.log)
    if args.out:
        write_section(args.out, args.section, text)
    print(text)


if __name__ == "__main__":
    main()
