"""Run reports shared by ``train.py`` and ``test.py`` (layer 4): data profile, test metrics,
per-class table and plots in the run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from datasets import DataBundle
from metrics import (
    per_class_accuracy,
    per_class_table,
    plot_cs_confusion,
    plot_gate_heatmap,
    plot_lr_schedule,
    plot_per_class_vs_count,
    plot_per_class_vs_count_methods,
    plot_sg_confusion_by_cs,
    plot_training_curves,
    shot_groups,
    write_per_class_csv,
)
from metrics.baselines import flat_baselines, prior_baselines
from utils.crystal import SG_TO_CS
from utils.logging import JsonlWriter


def data_profile(counts: np.ndarray) -> dict[str, Any]:
    counts = np.asarray(counts)
    g = shot_groups(counts)
    present = counts > 0
    return {"n_train": int(counts.sum()), "groups_present": int(present.sum()),
            "max_count": int(counts.max()),
            "min_count_present": int(counts[present].min()) if present.any() else 0,
            "many": int((g.many & present).sum()), "medium": int((g.medium & present).sum()),
            "few": int((g.few & present).sum())}


def log_data_profile(bundle: DataBundle) -> dict[str, Any]:
    prof = data_profile(bundle.class_counts)
    sizes = {k: (len(v) if v is not None else 0) for k, v in
             (("train", bundle.train), ("val", bundle.val), ("test", bundle.test))}
    logger.info(f"dataset {bundle.name}: {sizes} samples | {prof['groups_present']} space groups in "
                f"train (max {prof['max_count']}, min {prof['min_count_present']}) | many(>100) "
                f"{prof['many']} / medium(20-100) {prof['medium']} / few(<20) {prof['few']} groups")
    return prof


def write_test_reports(out_dir: str | Path, pred: dict[str, np.ndarray], counts: np.ndarray,
                       metrics: dict[str, float], sg_confusion: bool = False) -> dict[str, float]:
    """``test_metrics.json``, ``per_class.csv`` and the evaluation plots.

    ``metrics`` gains the prior baselines of this evaluation set (``baseline_majority_*``,
    ``baseline_prior_*``: ``metrics.baselines``, from the training ``counts`` and the labels of
    ``pred``), in place, so the printed table shows them too; returns ``metrics``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics.update(flat_baselines(counts, np.bincount(pred["y_sg"], minlength=len(counts))))
    with open(out / "test_metrics.json", "w") as fh:
        json.dump({k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                   for k, v in metrics.items()}, fh, indent=2)
    write_per_class_csv(per_class_table(pred["logits"], pred["y_sg"], counts), out / "per_class.csv")
    y_pred = pred["logits"].argmax(1)
    acc, _ = per_class_accuracy(pred["y_sg"], y_pred, len(counts))
    plot_per_class_vs_count(acc, counts, out / "per_class_vs_count.png")
    if len(counts) != len(SG_TO_CS):  # not space groups (CIFAR-LT): no crystal-system plots
        return metrics
    cs_pred = pred["cs_logits"].argmax(1) if "cs_logits" in pred else SG_TO_CS[y_pred]
    plot_cs_confusion(SG_TO_CS[pred["y_sg"]], cs_pred, out / "cs_confusion.png")
    if "gate" in pred:
        plot_gate_heatmap(pred["gate"], SG_TO_CS[pred["y_sg"]], out / "gate_heatmap.png")
    if sg_confusion:
        plot_sg_confusion_by_cs(pred["y_sg"], y_pred, out / "sg_confusion.png")
    return metrics


VARIANT_DIRS = {"model": "model_only", "index": "index_only"}
VARIANT_LABELS = {"fused": "fused (model × index)", "model": "model alone", "index": "index alone"}


def write_variant_reports(out_dir: str | Path, preds: dict[str, dict[str, np.ndarray]], counts: np.ndarray,
                          metrics: dict[str, float], sg_confusion: bool = False) -> dict[str, float]:
    """:func:`write_test_reports` for a run's prediction (the fusion when ``--evidence index``, else
    the model) in ``out_dir``, and with evidence the model alone and the index alone in
    ``out_dir/model_only`` and ``out_dir/index_only`` (their metrics: the ``model_*``/``index_*``
    keys, prefix dropped), plus ``per_class_vs_count_variants.png`` with the three side by side."""
    out = Path(out_dir)
    main = "fused" if "fused" in preds else "model"
    write_test_reports(out, preds[main], counts, metrics, sg_confusion)
    if main == "model":
        return metrics
    accs = {}
    for name, pred in preds.items():
        y_pred = pred["logits"].argmax(1)
        accs[VARIANT_LABELS[name]] = per_class_accuracy(pred["y_sg"], y_pred, len(counts))[0]
        if name in VARIANT_DIRS:
            prefix = f"{name}_"
            sub = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
            sub.update({f"lab_{k[len('lab_' + prefix):]}": v for k, v in metrics.items()
                        if k.startswith("lab_" + prefix)})
            write_test_reports(out / VARIANT_DIRS[name], pred, counts, sub, sg_confusion)
    plot_per_class_vs_count_methods(accs, counts, out / "per_class_vs_count_variants.png",
                                    title="Per-class accuracy vs training count: fused, model, index")
    return metrics


def plot_run(run_dir: str | Path, schedule: Any) -> None:
    """Training curves from ``log.jsonl`` and the learning-rate schedule actually used."""
    run_dir = Path(run_dir)
    records = JsonlWriter(run_dir / "log.jsonl").read()
    plot_training_curves(records, run_dir / "training_curves.png")
    plot_lr_schedule(schedule.curve(), run_dir / "lr_schedule.png", steps_per_epoch=schedule.steps_per_epoch)


# ------------------------------------------------------------------ comparison table (CLI)
COLUMNS = (("SG top-1", "sg_top1"), ("SG top-5", "sg_top5"), ("up to enantiomorph", "sg_top1_enantio"),
           ("extinction group", "sg_top1_extinction"), ("CS acc", "cs_acc"), ("macro-F1", "macro_f1"),
           ("many", "many_acc"), ("medium", "medium_acc"), ("few", "few_acc"),
           ("SG top-1 (lab)", "lab_sg_top1"), ("CS acc (lab)", "lab_cs_acc"))


def comparison_table(run_dirs: list[str | Path], title: str = "", metrics_subdir: str = "") -> str:
    """Markdown table of finished runs (``test_metrics.json`` + ``log.jsonl`` + ``args.yaml``);
    with ``metrics_subdir`` the metrics come from ``RUN/<subdir>/test_metrics.json`` (a
    ``test.py --out_dir`` evaluation on another dataset)."""
    import yaml

    head = "| method | model | " + " | ".join(c for c, _ in COLUMNS) + " | s/epoch (median) | epochs (best) |"
    lines = [f"### {title}" if title else "", "", head, "|" + "---|" * (len(COLUMNS) + 4)]
    for rd in map(Path, run_dirs):
        m = json.loads((rd / metrics_subdir / "test_metrics.json").read_text())
        log = JsonlWriter(rd / "log.jsonl").read()
        args = yaml.safe_load((rd / "args.yaml").read_text())
        vals = [f"{100 * m[k]:.1f}" if m.get(k) is not None else "–" for _, k in COLUMNS]
        ep_time = np.median([r["epoch_time_s"] for r in log]) if log else float("nan")
        best = log[-1].get("best_epoch", "?") if log else "?"
        lines.append(f"| {args['method']} | {args.get('model') or 'default'} ({args['frontend_type']}) | "
                     + " | ".join(vals) + f" | {ep_time:.1f} | {len(log)} ({best}) |")
    n = json.loads((Path(run_dirs[0]) / metrics_subdir / "test_metrics.json").read_text()) if run_dirs else {}
    if run_dirs:
        lines += baseline_rows(Path(run_dirs[0]) / metrics_subdir / "per_class.csv")
    lines.append("")
    lines.append(f"Accuracies in % on the test split (best.pt by validation SG top-1); shot groups by "
                 f"training count: many >100 ({n.get('n_many')} classes), medium 20–100 "
                 f"({n.get('n_medium')}), few <20 ({n.get('n_few')}). (lab): the same test patterns "
                 "rendered with noise, background and shifts drawn once from a fixed seed. Italic rows: "
                 "prior baselines that ignore the pattern (training counts vs this evaluation set; CS: "
                 "the most common training crystal system / a system drawn from the training "
                 "frequencies).")
    return "\n".join(lines).lstrip("\n") + "\n"


def baseline_rows(per_class_csv: str | Path) -> list[str]:
    """Two table rows (majority class, prior guess; ``metrics.baselines``) in the layout of
    :func:`comparison_table`, from a run's ``per_class.csv`` (its ``train_count`` and ``n_eval``
    columns, so runs written before baselines existed get them too)."""
    import csv

    with open(per_class_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    train = np.array([float(r["train_count"]) for r in rows])
    n_eval = np.array([int(r["n_eval"]) for r in rows])
    base = prior_baselines(train, n_eval)
    out = []
    for name, label in (("majority", "always the most common training class"),
                        ("prior", "guess by the training prior (expected)")):
        # a predictor that ignores the pattern scores the same on the lab rendering
        v = [base[name][k.removeprefix("lab_")] for _, k in COLUMNS]
        vals = [f"{100 * x:.1f}" if np.isfinite(x) else "–" for x in v]
        out.append(f"| *{label}* | – | " + " | ".join(vals) + " | – | – |")
    return out


CURVE_METRICS = (("CS", "cs_acc"), ("SG top-1", "sg_top1"), ("SG top-5", "sg_top5"),
                 ("ext. group", "sg_top1_extinction"))


def learning_curve_table(run_dirs: list[str | Path], title: str = "",
                         external: str = "external_pyxtal") -> str:
    """Markdown learning-curve table: one row per snapshot of each run (``RUN/curve/<snap>/``, written
    by ``scripts/default/learning_curve.sh``: ``test_metrics.json`` with the clean and ``lab_``
    metrics of the test split, ``EXTERNAL/test_metrics.json`` on real crystals), with the patterns
    seen and the wall time at that point (``log.jsonl``). The row label is ``RUN/curve/label.txt``."""
    import yaml

    groups = [("clean", ""), ("lab", "lab_"), (external, "")]
    head = ("| recipe | frontend | patterns seen | wall (min) | "
            + " | ".join(f"{g}: {c}" for g, _ in groups for c, _ in CURVE_METRICS) + " |")
    lines = [f"### {title}" if title else "", "", head, "|" + "---|" * (4 + len(groups) * len(CURVE_METRICS))]
    for rd in map(Path, run_dirs):
        curve = rd / "curve"
        label = (curve / "label.txt").read_text().strip() if (curve / "label.txt").is_file() else rd.name
        args = yaml.safe_load((rd / "args.yaml").read_text())
        wall = {int(r["patterns_seen"]): r.get("wall_s") for r in JsonlWriter(rd / "log.jsonl").read()
                if "patterns_seen" in r}
        snaps = sorted((int(p.name.removeprefix("seen_")), p) for p in curve.glob("seen_*")
                       if (p / "test_metrics.json").is_file())
        for seen, snap in snaps:
            clean = json.loads((snap / "test_metrics.json").read_text())
            ext_file = snap / external / "test_metrics.json"
            ext = json.loads(ext_file.read_text()) if ext_file.is_file() else {}
            vals = []
            for (_, prefix), src in zip(groups, (clean, clean, ext), strict=True):
                for _, k in CURVE_METRICS:
                    v = src.get(prefix + k)
                    vals.append(f"{100 * v:.1f}" if v is not None else "–")
            w = wall.get(seen)
            lines.append(f"| {label} | {args['frontend_type']} (width {args.get('width_mult')}) | {seen:,} | "
                         + (f"{w / 60:.1f}" if w is not None else "–") + " | " + " | ".join(vals) + " |")
    lines.append("")
    lines.append("Accuracies in % at snapshots of one run each (`--snapshot_patterns`; the learning-rate "
                 "schedule is that of the whole run, so an early snapshot is not a run trained to that "
                 "budget). clean / lab: the built-in balanced test split rendered clean / with noise, "
                 f"background and shifts drawn once from a fixed seed; {external}: real crystals never "
                 "seen. wall: training + validation time up to the snapshot on the 2 CPU cores "
                 "(with on-the-fly generation sharing them).")
    return "\n".join(lines).lstrip("\n") + "\n"


def write_section(path: str | Path, section: str | None, table: str) -> None:
    """Write ``table`` to ``path``; with ``section``, replace only the text between
    ``<!-- SECTION:begin -->`` and ``<!-- SECTION:end -->`` (appended when absent)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not section:
        out.write_text(table)
        return
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    text = out.read_text() if out.exists() else ""
    block = f"{begin}\n{table}{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    out.write_text(text)


TABLE_ROWS = (("SG top-1", "sg_top1"), ("SG top-5", "sg_top5"),
              ("SG top-1 up to enantiomorph", "sg_top1_enantio"),
              ("Extinction-group top-1", "sg_top1_extinction"), ("CS accuracy (from SG)", "cs_acc"),
              ("CS accuracy (CS head)", "cs_head_acc"), ("Macro-F1", "macro_f1"),
              ("Many-shot acc (>100)", "many_acc"), ("Medium-shot acc (20-100)", "medium_acc"),
              ("Few-shot acc (<20)", "few_acc"))
TABLE_NOTES = {
    "lab": "lab rendering: the same patterns with noise, background, shifts drawn once from a fixed seed",
    "fused": "fused: the model's posterior × the indexing evidence (Trainer/fusion.py, weights fitted "
             "on val); model: the network alone; index: peaks → cell → extinction group, the training "
             "prior inside it",
    "majority class": "majority class: always the most common training class (system, for CS)",
    "prior guess": "prior guess: a class drawn from the training frequencies, expected score"}


def results_table(metrics: dict[str, float], title: str = "test") -> str:
    """The printed results table: one row per metric; columns the clean rendering (with
    ``--evidence index``: fused, model alone, index alone), the lab rendering (``lab_*``) likewise,
    and the prior baselines (``baseline_*``, added by :func:`write_test_reports`)."""
    def pct(key: str) -> str | None:
        v = metrics.get(key)
        return f"{100 * v:.2f} %" if v is not None and np.isfinite(v) else None

    variants = [("fused", "{}"), ("model", "model_{}"), ("index", "index_{}")] \
        if "model_sg_top1" in metrics else [("", "{}")]
    lab = any(k.startswith("lab_") for k in metrics)
    cols = [(f"clean {v}" if v else ("clean rendering" if lab else "value"), k) for v, k in variants]
    if lab:
        cols += [(f"lab {v}" if v else "lab rendering", "lab_" + k) for v, k in variants]
    if any(k.startswith("baseline_") for k in metrics):
        cols += [("majority class", "baseline_majority_{}"), ("prior guess", "baseline_prior_{}")]
    lines = [f"| {title} metric |" + "".join(f" {h} |" for h, _ in cols), "|---|" + "---|" * len(cols)]
    for label, key in TABLE_ROWS:
        if pct(key) is not None:
            lines.append(f"| {label} |" + "".join(f" {pct(k.format(key)) or '–'} |" for _, k in cols))
    groups = [f"{k[2:]}={int(metrics[k])}" for k in ("n_many", "n_medium", "n_few") if k in metrics]
    if groups:
        lines.append(f"| classes per group | {', '.join(groups)} |" + " |" * (len(cols) - 1))
    notes = [TABLE_NOTES[n] for n in ("lab", "fused") if (n == "lab" and lab) or
             (n == "fused" and len(variants) > 1)]
    notes += [TABLE_NOTES[h] for h, _ in cols if h in ("majority class", "prior guess")]
    if notes:
        lines.append("\n" + "; ".join(notes))
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser("Markdown comparison table of finished runs")
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--title", default="")
    ap.add_argument("--metrics_subdir", default="", help="read RUN/SUBDIR/test_metrics.json")
    ap.add_argument("--out", default=None, help="write the table to this file")
    ap.add_argument("--section", default=None,
                    help="with --out: replace only the text between '<!-- SECTION:begin -->' and "
                         "'<!-- SECTION:end -->' in the file (appended when absent)")
    ap.add_argument("--results", action="store_true",
                    help="the results table of one run (clean/lab, fused/model/index, prior baselines), "
                         "as train.py prints it")
    ap.add_argument("--curve", action="store_true",
                    help="a learning-curve table of the runs' snapshots (scripts/default/learning_curve.sh)")
    a = ap.parse_args()
    if a.results:
        m = json.loads((Path(a.runs[0]) / a.metrics_subdir / "test_metrics.json").read_text())
        table = (f"### {a.title}\n\n" if a.title else "") + results_table(
            {k: (np.nan if v is None else v) for k, v in m.items()}, "test (best.pt)") + "\n"
    else:
        table = learning_curve_table(a.runs, a.title) if a.curve else \
            comparison_table(a.runs, a.title, a.metrics_subdir)
    if a.out:
        write_section(a.out, a.section, table)
    print(table)
