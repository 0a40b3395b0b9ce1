"""Tables over many runs for RESULTS.md (layer 4, beside ``reports.py``): the multi-seed comparison
of methods (mean ± sd) with one per-class figure, and the ICL ablation table.

Every run was evaluated by ``scripts/default/evaluate_run.sh``: ``RUN/EVAL/test_metrics.json`` and
``per_class.csv`` (built-in test split, clean and ``lab_`` rendering) and
``RUN/EVAL/external_pyxtal/test_metrics.json`` (real crystals), with the many/medium/few groups of
one count file (``--eval_counts_path``), so that every row splits the classes the same way.

    python reports_multi.py seeds --root Log/compare --methods icl ce --seeds 0 1 2 \\
        --out RESULTS.md --section compare_seeds --plot docs/figures/per_class_methods.png
    python reports_multi.py ablation --row "base=Log/compare/seed0/icl:eval" ... --out RESULTS.md
    python reports_multi.py seeds ... --variant model     # runs with --evidence index: the model alone
    python reports_multi.py ablation --row "fusion only=RUN:eval" --row "model alone=RUN:eval@model"
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from metrics import plot_per_class_vs_count_methods
from metrics.baselines import prior_baselines
from reports import write_section

EXTERNAL = "external_pyxtal"
# (header, metric key, source): source "" = built-in test split, "ext" = real crystals
COLUMNS = (("SG top-1", "sg_top1", ""), ("SG top-5", "sg_top5", ""), ("CS", "cs_acc", ""),
           ("ext. group", "sg_top1_extinction", ""), ("macro-F1", "macro_f1", ""),
           ("many", "many_acc", ""), ("medium", "medium_acc", ""), ("few", "few_acc", ""),
           ("lab SG top-1", "lab_sg_top1", ""), ("lab CS", "lab_cs_acc", ""),
           ("real SG top-1", "sg_top1", "ext"), ("real CS", "cs_acc", "ext"))
TARGET_KEYS = (("few_acc", "few-shot accuracy"), ("macro_f1", "macro-F1"))


VARIANTS = ("", "model", "index")   # "": what the run predicts (the fusion with --evidence index)


def variant_view(metrics: dict[str, float], variant: str = "") -> dict[str, float] | None:
    """The metrics of one prediction variant of a run evaluated with ``--evidence index``
    (``Trainer.evidence``: unprefixed = the fusion, ``model_*``/``lab_model_*`` the model alone,
    ``index_*`` the index alone) under the unprefixed names; a run without evidence is the model
    alone (its unprefixed keys), and has no index variant (None)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: use one of {VARIANTS}")
    if not variant:
        return dict(metrics)
    pre = f"{variant}_"
    if f"{pre}sg_top1" not in metrics:
        return dict(metrics) if variant == "model" else None
    out = {}
    for k, v in metrics.items():
        if k.startswith(pre):
            out[k[len(pre):]] = v
        elif k.startswith(f"lab_{pre}"):
            out["lab_" + k[len(pre) + 4:]] = v
    return out


def run_metrics(run: str | Path, sub: str = "eval", variant: str = "") -> dict[str, float] | None:
    """``{(source, key): value}`` of one evaluated run (``variant``: see :func:`variant_view`), or
    None when its evaluation (or the variant) is missing."""
    clean = Path(run) / sub / "test_metrics.json"
    if not clean.is_file():
        return None
    m = variant_view(_numbers(clean), variant)
    if m is None:
        return None
    out = {("", k): v for k, v in m.items()}
    ext = Path(run) / sub / EXTERNAL / "test_metrics.json"
    if ext.is_file():
        out.update({("ext", k): v for k, v in (variant_view(_numbers(ext), variant) or {}).items()})
    return out


def _numbers(path: Path) -> dict[str, float]:
    return {k: v for k, v in json.loads(path.read_text()).items() if isinstance(v, (int, float))}


def per_class(run: str | Path, sub: str = "eval") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accuracy, train_count, n_eval) per class from ``RUN/SUB/per_class.csv`` (NaN accuracy for
    classes absent from the evaluation set)."""
    with open(Path(run) / sub / "per_class.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    acc = np.array([float(r["accuracy"]) if r["accuracy"] != "" else np.nan for r in rows])
    return acc, np.array([float(r["train_count"]) for r in rows]), np.array([int(r["n_eval"]) for r in rows])


def _fmt(vals: list[float]) -> str:
    vals = [v for v in vals if v is not None and np.isfinite(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{100 * vals[0]:.1f}"
    return f"{100 * np.mean(vals):.1f} ± {100 * np.std(vals, ddof=1):.1f}"


def baseline_rows(run: str | Path, sub: str, n_lead: int) -> list[str]:
    """The two prior baselines (``metrics.baselines``) in the layout of :data:`COLUMNS`; lab columns
    equal the clean ones (the predictors ignore the pattern)."""
    _, train, n_eval = per_class(run, sub)
    base = prior_baselines(train, n_eval)
    ext_csv = Path(run) / sub / EXTERNAL / "per_class.csv"
    ext = prior_baselines(*per_class(run, f"{sub}/{EXTERNAL}")[1:]) if ext_csv.is_file() else None
    out = []
    for name, label in (("majority", "always the most common training class"),
                        ("prior", "guess by the training prior (expected)")):
        vals = []
        for _, key, src in COLUMNS:
            table = base if src == "" else ext
            v = table[name].get(key.removeprefix("lab_"), np.nan) if table is not None else np.nan
            vals.append(f"{100 * v:.1f}" if np.isfinite(v) else "–")
        out.append(f"| *{label}* |" + " – |" * (n_lead - 1) + " " + " | ".join(vals) + " |")
    return out


def seed_table(root: str | Path, methods: list[str], seeds: list[int], sub: str = "eval",
               title: str = "", plot: str | Path | None = None, variant: str = "") -> str:
    """Mean ± sd over the seeds whose run is evaluated (``ROOT/seed<S>/<method>``), the runs done
    per method, prior baselines, and whether ICL beats the best baseline on few-shot accuracy and
    macro-F1 by more than one standard deviation. With ``plot``: per-class accuracy against the
    training count of every method in one figure."""
    head = "| method | runs (seeds) | " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    lines = [f"### {title}" if title else "", "", head, "|" + "---|" * (len(COLUMNS) + 2)]
    by_method: dict[str, list[dict]] = {}
    curves: dict[str, list[np.ndarray]] = {}
    counts, first = None, None
    for m in methods:
        done = [(s, r) for s in seeds
                if (r := run_metrics(Path(root) / f"seed{s}" / m, sub, variant)) is not None]
        by_method[m] = [r for _, r in done]
        if done:
            first = first or Path(root) / f"seed{done[0][0]}" / m
            for s, _ in done:
                acc, counts, _ = per_class(Path(root) / f"seed{s}" / m, sub)
                curves.setdefault(m, []).append(acc)
        vals = [_fmt([r.get((src, k)) for r in by_method[m]]) for _, k, src in COLUMNS]
        lines.append(f"| {m} | {len(done)}/{len(seeds)} ({', '.join(str(s) for s, _ in done) or '–'}) | "
                     + " | ".join(vals) + " |")
    if first is not None:
        lines += baseline_rows(first, sub, 2)
    lines += ["", verdict(by_method)]
    if plot and curves and counts is not None:
        plot_per_class_vs_count_methods({m: np.stack(a) for m, a in curves.items()}, counts, plot,
                                        title="Per-class accuracy vs training count, built-in test split")
        lines += ["", f"![per-class accuracy vs training count]({Path(plot).as_posix()})"]
    return "\n".join(lines).lstrip("\n") + "\n"


def verdict(by_method: dict[str, list[dict]], main: str = "icl") -> str:
    """One sentence per target metric: ICL's mean minus the best baseline's, against the larger
    of the two standard deviations (needs ≥ 2 seeds of each to call it)."""
    if not by_method.get(main):
        return f"No evaluated {main} run yet."
    out = []
    for key, name in TARGET_KEYS:
        means = {m: np.mean([r[("", key)] for r in rs]) for m, rs in by_method.items()
                 if rs and m != main and all(("", key) in r for r in rs)}
        if not means:
            return "No evaluated baseline run yet."
        best = max(means, key=means.get)
        a = [r[("", key)] for r in by_method[main]]
        b = [r[("", key)] for r in by_method[best]]
        diff = 100 * (np.mean(a) - means[best])
        if min(len(a), len(b)) < 2:
            out.append(f"{name}: {main} {100 * np.mean(a):.1f} vs best baseline {best} "
                       f"{100 * means[best]:.1f} ({diff:+.1f} points; fewer than 2 seeds, no call)")
            continue
        sd = 100 * max(np.std(a, ddof=1), np.std(b, ddof=1))
        call = "beats it by more than one sd" if diff > sd else "does NOT beat it by more than one sd"
        out.append(f"{name}: {main} {100 * np.mean(a):.1f} vs best baseline {best} {100 * means[best]:.1f} "
                   f"({diff:+.1f} points, larger sd {sd:.1f}): {main} {call}")
    return "Target check — " + "; ".join(out) + "."


def ablation_table(rows: list[tuple[str, ...]], title: str = "") -> str:
    """One row per ``(label, run_dir, eval_subdir[, variant])`` (variant: :func:`variant_view`);
    rows whose evaluation is missing say so."""
    head = "| variant | " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    lines = [f"### {title}" if title else "", "", head, "|" + "---|" * (len(COLUMNS) + 1)]
    first = None
    for label, run, sub, *variant in rows:
        r = run_metrics(run, sub, variant[0] if variant else "")
        if r is None:
            lines.append(f"| {label} | " + " | ".join("not run yet" if i == 0 else "" for i in
                                                       range(len(COLUMNS))) + " |")
            continue
        first = first or (run, sub)
        lines.append(f"| {label} | " + " | ".join(_fmt([r.get((src, k))]) for _, k, src in COLUMNS) + " |")
    if first is not None:
        lines += baseline_rows(first[0], first[1], 1)
    return "\n".join(lines).lstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser("reports_multi.py", description=__doc__.split("\n\n")[0])
    sp = ap.add_subparsers(dest="kind", required=True)
    s = sp.add_parser("seeds", help="mean ± sd over seeds of ROOT/seed<S>/<method>")
    s.add_argument("--root", required=True)
    s.add_argument("--methods", nargs="+", required=True)
    s.add_argument("--seeds", nargs="+", type=int, required=True)
    s.add_argument("--plot", default=None, help="PNG: per-class accuracy vs training count, all methods")
    s.add_argument("--variant", default="", choices=VARIANTS,
                   help="runs evaluated with --evidence index: the fusion (default), the model alone "
                        "(model) or the index alone (index)")
    a = sp.add_parser("ablation", help="one row per LABEL=RUN_DIR:EVAL_SUBDIR[@VARIANT]")
    a.add_argument("--row", action="append", required=True, metavar="LABEL=RUN:SUB[@VARIANT]",
                   help="@model / @index: that variant of a run evaluated with --evidence index")
    for p in (s, a):
        p.add_argument("--sub", default="eval", help="evaluation subdirectory of each run")
        p.add_argument("--title", default="")
        p.add_argument("--out", default=None)
        p.add_argument("--section", default=None)
    args = ap.parse_args(argv)
    if args.kind == "seeds":
        table = seed_table(args.root, args.methods, args.seeds, args.sub, args.title, args.plot, args.variant)
    else:
        rows = []
        for spec in args.row:
            label, _, rest = spec.rpartition("=")  # labels may hold "=", paths do not
            rest, _, variant = rest.partition("@")
            run, _, sub = rest.rpartition(":") if ":" in rest else (rest, "", args.sub)
            rows.append((label, run, sub or args.sub, variant))
        table = ablation_table(rows, args.title)
    if args.out:
        write_section(args.out, args.section, table)
    print(table)
    return table


if __name__ == "__main__":
    main()
