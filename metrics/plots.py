"""PNG plots for a run directory (matplotlib, Agg).

Figures are built with ``matplotlib.figure.Figure`` directly (never ``pyplot``), which renders
with the Agg canvas: no display, no global backend switch, no figure leaked between calls, safe in
DataLoader workers and on headless machines. Every function takes plain arrays or tensors, writes
one PNG (parents created) and returns its path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metrics._common import as_labels, to_numpy
from metrics.crystal import gate_usage_by_cs
from metrics.longtail import GROUPS, shot_groups
from utils.crystal import CRYSTAL_SYSTEMS, N_CS, N_SG, SG_TO_CS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_DPI = 150
_SPLITS = ("train", "val", "test")
_STYLE = {"train": "--", "val": "-", "test": ":", "": "-"}
# Headline metrics drawn in the accuracy panel (matched as "<split>_<name>" or "<name>").
HEADLINE_METRICS = ("sg_top1", "sg_top5", "cs_acc", "cs_head_acc", "macro_f1", "many_acc",
                    "medium_acc", "few_acc", "acc", "acc1", "top1")
_BAND = {"few": "#fde0dd", "medium": "#fff7bc", "many": "#e0f3db"}
_CS_ABBR = ("tric", "mono", "orth", "tetr", "trig", "hex", "cub")


def _new_figure(**kw: Any) -> Figure:
    """A pyplot-free Agg figure; matplotlib is imported here, on the first plot, so that every
    command that imports ``metrics`` (train.py, test.py, the readers) starts ~1 s sooner."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def _log_norm(**kw: Any) -> Any:
    from matplotlib.colors import LogNorm

    return LogNorm(**kw)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _split_key(key: str) -> tuple[str, str]:
    for s in _SPLITS:
        if key.startswith(s + "_"):
            return s, key[len(s) + 1:]
    return "", key


def _draw_series(ax: Any, records: Sequence[dict], keys: list[str], xs: np.ndarray) -> None:
    metrics = sorted({_split_key(k)[1] for k in keys})
    colour = {m: f"C{i % 10}" for i, m in enumerate(metrics)}
    for k in keys:
        split, m = _split_key(k)
        pts = [(x, _number(r.get(k))) for x, r in zip(xs, records)]
        pts = [(x, v) for x, v in pts if v is not None]
        if pts:
            px, py = zip(*pts)
            ax.plot(px, py, _STYLE[split], color=colour[m], lw=1.4, marker="." if len(pts) < 40 else None,
                    label=k)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2 if len(keys) > 6 else 1)


def plot_training_curves(log_jsonl_records: Sequence[dict[str, Any]], path: str | os.PathLike,
                         acc_keys: Sequence[str] | None = None) -> Path:
    """Losses, accuracies and learning rate against epoch, from ``log.jsonl`` records.

    Keys are read by name: ``epoch`` gives x (else the record index); every numeric key containing
    "loss" goes to the loss panel; ``lr`` (or keys starting with "lr") to the lr panel; the
    accuracy panel shows ``acc_keys`` or, by default, the keys ending in one of
    ``HEADLINE_METRICS``. A "train_"/"val_"/"test_" prefix sets the line style (dashed / solid /
    dotted) and the metric name sets the colour, so train and val of one metric pair visually.
    Non-finite values (written as strings by JsonlWriter) are skipped.
    """
    recs = list(log_jsonl_records)
    xs = np.array([_number(r.get("epoch")) if _number(r.get("epoch")) is not None else i
                   for i, r in enumerate(recs)], dtype=float)
    keys: list[str] = []
    for r in recs:
        keys += [k for k in r if k not in keys and k != "epoch" and _number(r[k]) is not None]
    # the total and every loss component (losses log their components as l_<name>)
    loss_keys = [k for k in keys if "loss" in k or _split_key(k)[1].startswith("l_")]
    lr_keys = [k for k in keys if k == "lr" or k.startswith("lr_") or k.endswith("_lr")]
    if acc_keys is None:
        acc_keys = [k for k in keys if k not in loss_keys and k not in lr_keys
                    and _split_key(k)[1] in HEADLINE_METRICS]
    fig = _new_figure(figsize=(17, 4.8))
    axes = fig.subplots(1, 3)
    for ax, ks, title, ylabel in ((axes[0], loss_keys, "Losses", "loss"),
                                  (axes[1], list(acc_keys), "Accuracy", "fraction correct"),
                                  (axes[2], lr_keys, "Learning rate", "lr")):
        if ks:
            _draw_series(ax, recs, ks, xs)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
    if acc_keys:
        axes[1].set_ylim(-0.02, 1.02)
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    fig.suptitle("Training curves (train dashed, val solid, test dotted)", fontsize=11)
    return _save(fig, path)


def plot_per_class_vs_count(per_class_acc: Any, counts: Any, path: str | os.PathLike,
                            preset: str = "standard", n_bins: int = 10,
                            title: str = "Per-class accuracy vs training count") -> Path:
    """Scatter of per-class accuracy against training count (log x), shot groups shaded.

    Args:
        per_class_acc: (230,) accuracy per class, NaN for classes absent from the evaluation set
            (those are not drawn).
        counts: (230,) training counts; classes with 0 are drawn at x = 0.5.
        path: output PNG.
        preset: shot-group preset for the bands (``metrics.longtail``).
        n_bins: log-spaced bins of the binned-mean line.
    """
    acc = np.asarray(to_numpy(per_class_acc), dtype=float)
    n = np.asarray(to_numpy(counts), dtype=float)
    groups = shot_groups(n, preset)
    ok = np.isfinite(acc)
    x = np.where(n > 0, n, 0.5)
    lo = min(float(x[ok].min()) if ok.any() else 1.0, groups.low) / 1.8
    hi = max(float(x.max(initial=1.0)) * 2.0, groups.high * 3)
    fig = _new_figure(figsize=(10, 5.5))
    ax = fig.subplots()
    ax.set_xscale("log")
    edges = {"few": (lo, groups.low), "medium": (groups.low, groups.high), "many": (groups.high, hi)}
    for g in reversed(GROUPS):  # left to right: few, medium, many
        sel = getattr(groups, g) & ok
        mean = f"{acc[sel].mean():.2f}" if sel.any() else "n/a"
        ax.axvspan(*edges[g], color=_BAND[g], zorder=0,
                   label=f"{g} ({groups.rules[g]}): {int(sel.sum())} classes, mean {mean}")
    if groups.extreme is not None:
        sel = groups.extreme & ok
        mean = f"{acc[sel].mean():.2f}" if sel.any() else "n/a"
        # icl-xrd: extreme tail below 20·N/120588 = low / 5
        ax.axvline(groups.low / 5, color="firebrick", ls="--", lw=1, zorder=1,
                   label=f"extreme tail ({groups.rules['extreme']}): {int(sel.sum())} classes, mean {mean}")
    cs = SG_TO_CS[: len(acc)] if len(acc) == N_SG else np.zeros(len(acc), dtype=int)
    for c in np.unique(cs):
        sel = ok & (cs == c)
        if sel.any():
            ax.scatter(x[sel], acc[sel], s=16, color=f"C{c}", alpha=0.8, edgecolors="none",
                       label=CRYSTAL_SYSTEMS[c] if len(acc) == N_SG else "class", zorder=2)
    if ok.any():
        b = np.logspace(np.log10(x[ok].min()), np.log10(x[ok].max() * 1.0001), n_bins + 1)
        idx = np.clip(np.digitize(x[ok], b) - 1, 0, n_bins - 1)
        cnt = np.bincount(idx, minlength=n_bins)
        m = np.bincount(idx, weights=acc[ok], minlength=n_bins) / np.maximum(cnt, 1)
        centre = np.sqrt(b[:-1] * b[1:])
        ax.plot(centre[cnt > 0], m[cnt > 0], "k-o", lw=2, ms=5, label="binned mean", zorder=3)
    _finish_count_axes(ax, lo, hi, "per-class top-1 accuracy",
                       f"{title} ({int(ok.sum())} classes in the evaluation set, preset '{preset}')")
    return _save(fig, path)


def _finish_count_axes(ax: Any, lo: float, hi: float, ylabel: str, title: str) -> None:
    """Limits, labels, grid and legend shared by the accuracy-vs-training-count plots."""
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("training samples per class (log scale; 0 drawn at 0.5)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5))


def plot_per_class_vs_count_methods(per_class_acc: dict[str, Any], counts: Any, path: str | os.PathLike,
                                    preset: str = "standard", n_bins: int = 8,
                                    title: str = "Per-class accuracy vs training count") -> Path:
    """Several methods in one figure: per method the binned mean of per-class accuracy against
    training count (log-spaced bins over the classes present in the evaluation set), averaged
    over seeds, with ± one standard deviation across seeds as error bars; shot groups shaded.

    Args:
        per_class_acc: ``{label: (S, C) or (C,) accuracy}`` (S seeds; NaN = class absent from
            the evaluation set).
        counts: (C,) training counts (the same for every method); 0 is drawn at 0.5.
        path: output PNG.
    """
    n = np.asarray(to_numpy(counts), dtype=float)
    x = np.where(n > 0, n, 0.5)
    groups = shot_groups(n, preset)
    accs = {k: np.atleast_2d(np.asarray(to_numpy(v), dtype=float)) for k, v in per_class_acc.items()}
    ok = np.zeros(len(n), dtype=bool)
    for a in accs.values():
        ok |= np.isfinite(a).any(0)
    if not ok.any():
        raise ValueError("plot_per_class_vs_count_methods: no class with an accuracy to draw")
    b = np.logspace(np.log10(x[ok].min()), np.log10(x[ok].max() * 1.0001), n_bins + 1)
    idx = np.clip(np.digitize(x, b) - 1, 0, n_bins - 1)
    centre = np.sqrt(b[:-1] * b[1:])
    fig = _new_figure(figsize=(10, 5.5))
    ax = fig.subplots()
    ax.set_xscale("log")
    lo, hi = b[0] / 1.5, b[-1] * 1.5
    edges = {"few": (lo, groups.low), "medium": (groups.low, groups.high), "many": (groups.high, hi)}
    for g in reversed(GROUPS):
        ax.axvspan(*edges[g], color=_BAND[g], zorder=0, label=f"{g} ({groups.rules[g]})")
    for i, (label, a) in enumerate(accs.items()):
        per_seed = np.full((len(a), n_bins), np.nan)
        for s, row in enumerate(a):
            for j in range(n_bins):
                sel = (idx == j) & np.isfinite(row)
                if sel.any():
                    per_seed[s, j] = row[sel].mean()
        have = np.isfinite(per_seed).any(0)
        mean = np.nanmean(per_seed[:, have], axis=0)
        sd = np.nanstd(per_seed[:, have], axis=0, ddof=1) if len(a) > 1 else None
        ax.errorbar(centre[have] * (1 + 0.03 * (i - len(accs) / 2)), mean, yerr=sd, fmt="-o", ms=4,
                    lw=1.5, capsize=2, color=f"C{i}", label=f"{label} ({len(a)} seed{'s' * (len(a) > 1)})",
                    zorder=3)
    _finish_count_axes(ax, lo, hi, "per-class top-1 accuracy (binned mean)",
                       f"{title} ({int(ok.sum())} classes, {n_bins} log bins)")
    return _save(fig, path)


def plot_cs_confusion(y_true_cs: Any, y_pred_cs: Any, path: str | os.PathLike) -> Path:
    """7×7 crystal-system confusion, row-normalised (rows: true), annotated with fractions."""
    t, p = as_labels(y_true_cs, N_CS, "y_true_cs"), as_labels(y_pred_cs, N_CS, "y_pred_cs")
    cm = np.bincount(t * N_CS + p, minlength=N_CS * N_CS).reshape(N_CS, N_CS)
    rows = cm.sum(1, keepdims=True)
    frac = np.where(rows > 0, cm / np.maximum(rows, 1), np.nan)
    fig = _new_figure(figsize=(7.5, 6.5))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(frac), cmap="Blues", vmin=0, vmax=1)
    ax.set_facecolor("#dddddd")  # absent true classes stay grey
    for i in range(N_CS):
        for j in range(N_CS):
            if np.isfinite(frac[i, j]):
                ax.text(j, i, f"{frac[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.55 else "black")
    ax.set_xticks(range(N_CS), CRYSTAL_SYSTEMS, rotation=40, ha="right")
    ax.set_yticks(range(N_CS), [f"{c} (n={r})" for c, r in zip(CRYSTAL_SYSTEMS, rows[:, 0])])
    ax.set_xlabel("predicted crystal system")
    ax.set_ylabel("true crystal system")
    acc = float(np.trace(cm) / max(cm.sum(), 1))
    ax.set_title(f"Crystal-system confusion (row-normalised), accuracy {acc:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return _save(fig, path)


def plot_sg_confusion_by_cs(y_true: Any, y_pred: Any, path: str | os.PathLike) -> Path:
    """230×230 space-group confusion (counts, log colour scale) with crystal-system blocks.

    Rows are true, columns predicted space groups (0-based labels in, 1-based numbers on the top
    and right axes); the lines separate crystal systems, so within-block errors (right system,
    wrong group) and cross-block errors are told apart at a glance.
    """
    t, p = as_labels(y_true, N_SG, "y_true"), as_labels(y_pred, N_SG, "y_pred")
    cm = np.bincount(t * N_SG + p, minlength=N_SG * N_SG).reshape(N_SG, N_SG)
    fig = _new_figure(figsize=(10, 9))
    ax = fig.subplots()
    vmax = max(int(cm.max(initial=1)), 2)
    im = ax.imshow(np.ma.masked_equal(cm, 0), cmap="viridis", norm=_log_norm(vmin=1, vmax=vmax),
                   interpolation="nearest")
    ax.set_facecolor("white")
    starts = np.flatnonzero(np.diff(SG_TO_CS)) + 1  # first index of each new crystal system
    for s in starts:
        ax.axhline(s - 0.5, color="crimson", lw=0.7)
        ax.axvline(s - 0.5, color="crimson", lw=0.7)
    bounds = np.concatenate([[0], starts, [N_SG]])
    centres = (bounds[:-1] + bounds[1:]) / 2 - 0.5
    ax.set_xticks(centres, _CS_ABBR, rotation=90, fontsize=8)
    ax.set_yticks(centres, _CS_ABBR, fontsize=8)
    ax.tick_params(length=0)
    nums = [1, 50, 100, 150, 200, 230]
    top = ax.secondary_xaxis("top")
    top.set_xticks([v - 1 for v in nums], [str(v) for v in nums], fontsize=7)
    right = ax.secondary_yaxis("right")
    right.set_yticks([v - 1 for v in nums], [str(v) for v in nums], fontsize=7)
    ax.set_xlabel("predicted space group (by crystal system; numbers on top)")
    ax.set_ylabel("true space group (by crystal system; numbers on the right)")
    in_block = float((SG_TO_CS[t] == SG_TO_CS[p]).mean()) if len(t) else float("nan")
    acc = float((t == p).mean()) if len(t) else float("nan")
    ax.set_title(f"Space-group confusion (counts, log scale): accuracy {acc:.3f}, "
                 f"right crystal system {in_block:.3f}", pad=22)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.08, label="samples (log scale; 0 = white)")
    return _save(fig, path)


def plot_gate_heatmap(gate: Any, y_cs: Any, path: str | os.PathLike) -> Path:
    """Mean gate weight of each expert (columns) for the samples of each crystal system (rows).

    Args:
        gate: (N, K) gate weights (rows sum to 1).
        y_cs: (N,) crystal system of each sample (0..6), true or predicted.
    """
    mean, n = gate_usage_by_cs(gate, y_cs)
    k = mean.shape[1]
    fig = _new_figure(figsize=(1.0 * k + 3.5, 5.5))
    ax = fig.subplots()
    vmax = float(np.nanmax(mean)) if np.isfinite(mean).any() else 1.0
    im = ax.imshow(np.ma.masked_invalid(mean), cmap="magma", vmin=0, vmax=vmax, aspect="auto")
    ax.set_facecolor("#dddddd")
    for i in range(N_CS):
        for e in range(k):
            if np.isfinite(mean[i, e]):
                ax.text(e, i, f"{mean[i, e]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if mean[i, e] > 0.6 * vmax else "white")
    ax.set_xticks(range(k), [f"E{e}" for e in range(k)])
    ax.set_yticks(range(N_CS), [f"{c} (n={m})" for c, m in zip(CRYSTAL_SYSTEMS, n)])
    ax.set_xlabel("expert")
    ax.set_ylabel("crystal system")
    ax.set_title(f"Mean gate weight per crystal system (uniform = {1 / k:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="mean gate weight")
    return _save(fig, path)


def plot_lr_schedule(lrs: Any, path: str | os.PathLike, steps_per_epoch: int | None = None) -> Path:
    """Learning rate against step (or epoch when ``steps_per_epoch`` is given).

    Args:
        lrs: (T,) learning rates, or (T, G) for G parameter groups.
    """
    a = np.asarray(to_numpy(lrs), dtype=float)
    a = a[:, None] if a.ndim == 1 else a
    x = np.arange(len(a), dtype=float)
    xlabel = "step"
    if steps_per_epoch:
        x, xlabel = x / steps_per_epoch, "epoch"
    fig = _new_figure(figsize=(8, 4))
    ax = fig.subplots()
    for gi in range(a.shape[1]):
        ax.plot(x, a[:, gi], lw=1.5, label=f"group {gi}" if a.shape[1] > 1 else None)
    if a.shape[1] > 1:
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    peak = float(np.nanmax(a)) if a.size else float("nan")
    ax.set_title(f"Learning-rate schedule (peak {peak:.3g}, final {a[-1].max() if a.size else 0:.3g})")
    ax.grid(alpha=0.3)
    return _save(fig, path)
