"""One call from (logits, labels, training counts) to every number a run reports.

``summarize`` gives the flat dict that goes into ``log.jsonl`` / ``test_metrics.json``;
``per_class_table`` gives the rows of ``per_class.csv``. Both follow the conventions of
``metrics.classification``: fractions in [0, 1]; classes absent from the evaluation set are left
out of every per-class mean (macro recall, macro F1, many/medium/few) and of the group sizes.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import utils.crystal as crystal
from metrics._common import as_counts, as_labels, as_scores
from metrics.classification import macro_f1, macro_recall, per_class_mean, true_class_rank
from metrics.crystal import cs_head_accuracy, enantiomorph_correct, extinction_correct
from metrics.longtail import shot_accuracy, shot_groups
from utils.crystal import CRYSTAL_SYSTEMS, N_SG, SG_TO_CS
from utils.errors import DataError, fail

PER_CLASS_COLUMNS = ("sg", "symbol", "crystal_system", "train_count", "shot_group", "n_eval",
                     "accuracy", "top5", "most_confused", "most_confused_frac")


def _check(logits: Any, y_sg: Any, where: str, n_classes: int = N_SG) -> tuple[np.ndarray, np.ndarray]:
    z = as_scores(logits)
    if z.shape[1] != n_classes:
        raise fail(DataError, where, f"logits have {z.shape[1]} columns, expected {n_classes} (one per "
                   "class_counts entry)", "pass the space-group logits (outputs['logits'])")
    y = as_labels(y_sg, n_classes, "y_sg")
    if len(y) != z.shape[0]:
        raise fail(DataError, where, f"logits has {z.shape[0]} rows but there are {len(y)} labels",
                   "pass logits and labels of the same samples")
    return z, y


def hierarchy_diagnostics(ensemble_logits: Any, cs_logits: Any, y_sg: Any, class_counts: Any,
                          preset: str = "standard", expert_logits: Any = None) -> dict[str, float]:
    """Where a crystal-system-masked prediction loses accuracy (ICL's hard mask caps SG top-1 at
    the system head's accuracy): the space-group ranking as if the true system were known, and
    the system head's accuracy, each overall and per shot group (mean over present classes).

    Args:
        ensemble_logits: (N, 230) unmasked space-group scores. cs_logits: (N, 7) or None.
        y_sg: (N,) 0-based labels. class_counts: (230,) training counts (shot groups).

        expert_logits: optional (N, K, 230) scores of each expert of a mixture.

    Returns:
        ``sg_top1_cs_oracle`` and ``{many,medium,few}_acc_cs_oracle`` (argmax of the scores within
        the TRUE system); with ``cs_logits``: ``cs_head_{many,medium,few}_acc``; with
        ``expert_logits``: ``expert{k}_{many,few}_acc_cs_oracle``, each expert alone (do the
        tail experts rank the rare groups better than the head experts?).
    """
    counts = as_counts(class_counts)
    z, y = _check(ensemble_logits, y_sg, "metrics.hierarchy_diagnostics", len(counts))
    allowed = SG_TO_CS[None, :] == SG_TO_CS[y][:, None]                  # (N, 230)

    def oracle_hits(scores: np.ndarray) -> np.ndarray:
        return np.where(allowed, scores, -np.inf).argmax(1) == y

    def by_shot(hit: np.ndarray) -> dict[str, float]:
        acc, n_eval = per_class_mean(hit, y, len(counts))
        shot = shot_accuracy(acc, counts, preset, n_eval=n_eval)
        return {g: v for g, v in shot.items() if g.endswith("_acc")}

    oracle = oracle_hits(z)
    out = {"sg_top1_cs_oracle": float(oracle.mean()) if len(y) else float("nan")}
    out.update({f"{g}_cs_oracle": v for g, v in by_shot(oracle).items()})
    if expert_logits is not None:
        e = np.asarray(expert_logits, dtype=np.float64)
        if e.ndim != 3 or e.shape[0] != len(y) or e.shape[2] != len(counts):
            raise fail(DataError, "metrics.hierarchy_diagnostics", f"expert_logits has shape {e.shape}, "
                       f"expected ({len(y)}, K, {len(counts)})", "pass outputs['expert_logits']")
        for k in range(e.shape[1]):
            shot = by_shot(oracle_hits(e[:, k]))
            out.update({f"expert{k}_{g}_acc_cs_oracle": shot[f"{g}_acc"] for g in ("many", "few")})
    if cs_logits is not None:
        hit = as_scores(cs_logits, name="cs_logits").argmax(1) == SG_TO_CS[y]
        out.update({f"cs_head_{g}": v for g, v in by_shot(hit).items()})
    return out


def summarize(logits: Any, y_sg: Any, class_counts: Any, cs_logits: Any = None,
              topk: Iterable[int] = (1, 2, 5), preset: str = "standard",
              ensemble_logits: Any = None, expert_logits: Any = None) -> dict[str, float]:
    """Every headline metric of one evaluation.

    Args:
        logits: (N, 230) space-group scores (the model's ``logits``, masked ensemble for ICL).
        y_sg: (N,) true space groups, 0-based.
        class_counts: (230,) training counts (define many/medium/few). Other label sets (CIFAR-LT)
            pass (C,) counts with (N, C) logits; the crystallographic metrics are then NaN.
        cs_logits: optional (N, 7) crystal-system head scores.
        topk: k values for ``sg_top{k}``.
        preset: shot-group preset (``metrics.longtail.SHOT_PRESETS``).

    Returns:
        Flat dict: ``sg_top{k}``, ``sg_top1_enantio`` (credit for the enantiomorphic partner),
        ``sg_top1_extinction`` (credit for the same extinction group), ``cs_acc`` (crystal system
        of the SG argmax), ``cs_head_acc`` (only when ``cs_logits`` is given), ``macro_recall``
        and ``macro_f1`` (over classes present in ``y_sg``), ``many_acc`` / ``medium_acc`` /
        ``few_acc`` (mean per-class accuracy; NaN for an empty group) with ``n_many`` /
        ``n_medium`` / ``n_few`` (classes present in the evaluation set), plus ``extreme_acc`` /
        ``n_extreme`` for preset "icl-xrd", ``n_samples`` and ``n_classes_eval``; with
        ``ensemble_logits`` (a crystal-system-masked model's unmasked scores) also
        :func:`hierarchy_diagnostics` (per expert with ``expert_logits``).
    """
    where = "metrics.summarize"
    counts = as_counts(class_counts)
    n_cls = len(counts)   # 230 space groups; other label sets (CIFAR-LT) get no crystal metrics (NaN)
    z, y = _check(logits, y_sg, where, n_cls)
    rank = true_class_rank(z, y)
    pred = z.argmax(1)
    n = len(y)

    def mean(a: np.ndarray) -> float:
        return float(a.mean()) if n else float("nan")

    out: dict[str, float] = {f"sg_top{k}": mean(rank < k) for k in topk}
    sg = n_cls == N_SG
    out["sg_top1_enantio"] = mean(enantiomorph_correct(y, pred)) if sg else float("nan")
    out["sg_top1_extinction"] = mean(extinction_correct(y, pred)) if sg else float("nan")
    out["cs_acc"] = mean(SG_TO_CS[y] == SG_TO_CS[pred]) if sg else float("nan")
    if cs_logits is not None and sg:
        out["cs_head_acc"] = cs_head_accuracy(cs_logits, SG_TO_CS[y])
    out["macro_recall"] = macro_recall(y, pred, n_cls)
    out["macro_f1"] = macro_f1(y, pred, n_cls)
    acc, n_eval = per_class_mean(rank == 0, y, n_cls)
    out.update(shot_accuracy(acc, counts, preset, n_eval=n_eval))
    out["n_samples"] = n
    out["n_classes_eval"] = int((n_eval > 0).sum())
    if ensemble_logits is not None and sg:
        out.update(hierarchy_diagnostics(ensemble_logits, cs_logits, y, counts, preset, expert_logits))
    return out


def _symbol(sg_number: int) -> str:
    # utils.crystal.sg_symbol(number 1..230) may be added by another module; the table works without.
    fn = getattr(crystal, "sg_symbol", None)
    if fn is None:
        return ""
    try:
        return str(fn(sg_number))
    except Exception:  # a missing symbol must never break a report
        return ""


def per_class_table(logits: Any, y_sg: Any, class_counts: Any, preset: str = "standard",
                    k: int = 5) -> list[dict[str, Any]]:
    """One row per space group (all 230) for ``per_class.csv``.

    Args:
        logits: (N, 230) scores; y_sg: (N,) 0-based labels; class_counts: (230,) train counts.
        preset: shot-group preset.
        k: the top-k column (named ``top5`` whatever k is, so the CSV layout stays fixed).

    Returns:
        Rows with the keys of ``PER_CLASS_COLUMNS``: ``sg`` (1-based number), ``symbol`` (Hermann–
        Mauguin, "" when unavailable), ``crystal_system``, ``train_count``, ``shot_group``,
        ``n_eval``, ``accuracy`` and ``top5`` (NaN when ``n_eval`` = 0), ``most_confused`` (1-based
        space group most often predicted instead, or None) and its fraction of the class.
    """
    counts = as_counts(class_counts)
    n_cls = len(counts)   # 230 space groups, or C classes (CIFAR-LT: no symbol / crystal system)
    z, y = _check(logits, y_sg, "metrics.per_class_table", n_cls)
    rank = true_class_rank(z, y)
    pred = z.argmax(1)
    acc, n_eval = per_class_mean(rank == 0, y, n_cls)
    topk, _ = per_class_mean(rank < k, y, n_cls)
    wrong = pred != y
    confusion = np.bincount(y[wrong] * n_cls + pred[wrong], minlength=n_cls * n_cls).reshape(n_cls, n_cls)
    names = shot_groups(counts, preset).names()
    sg = n_cls == N_SG
    rows = []
    for c in range(n_cls):
        j = int(confusion[c].argmax())
        hit = confusion[c, j] > 0
        rows.append({
            "sg": c + 1, "symbol": _symbol(c + 1) if sg else "",
            "crystal_system": CRYSTAL_SYSTEMS[SG_TO_CS[c]] if sg else "",
            "train_count": counts[c].item(), "shot_group": names[c], "n_eval": int(n_eval[c]),
            "accuracy": float(acc[c]), "top5": float(topk[c]),
            "most_confused": j + 1 if hit else None,
            "most_confused_frac": float(confusion[c, j] / n_eval[c]) if hit else float("nan"),
        })
    return rows


def write_per_class_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write ``per_class_table`` rows as CSV (NaN and None become empty cells); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def cell(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return f"{v:.6g}" if isinstance(v, float) else v

    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(PER_CLASS_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: cell(r.get(k)) for k in PER_CLASS_COLUMNS})
    return path
