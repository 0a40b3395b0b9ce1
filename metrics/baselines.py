"""Prior baselines: what a classifier that never looks at the pattern scores on an evaluation set.

Two label-blind predictors, both fixed by the *training* counts n_c (p_train(c) = n_c / Σ n):

* ``majority`` — always answer the most common training class c* (ties: the lowest index);
  ranked answers (top-5) are the classes by decreasing training count.
* ``prior`` — answer class c with probability p_train(c), independently of the input. Its
  expected top-1 accuracy is Σ_c p_train(c)·p_eval(c), with p_eval the class frequencies of the
  evaluation set.

Every number is a function of the two per-class count vectors only, so a results table can show
"chance" next to each model (issue 10: models sat at the level of always answering one system).
The columns follow ``metrics.summary.summarize``:

* ``sg_top1``: majority p_eval(c*); prior Σ_c p_train(c)·p_eval(c).
* ``sg_top5``: majority p_eval(the 5 most common training classes); prior NaN (a random guess
  has no canonical top-5).
* ``sg_top1_enantio``: majority p_eval({c*, partner(c*)}); prior Σ_c p_train(c)·p_eval({c, partner(c)}).
* ``sg_top1_extinction``: majority p_eval(extinction group of c*); prior Σ_g P_train(g)·P_eval(g)
  over the extinction groups g.
* ``cs_acc`` and ``cs_head_acc``: majority P_eval(s*), s* the most common training crystal system
  (counts summed per system); prior Σ_s P_train(s)·P_eval(s).
* ``macro_f1``: majority F1(c*)/|classes present|, F1(c*) = 2·p_eval(c*)/(1 + p_eval(c*)) (every
  other class scores 0); prior NaN (an expectation of a ratio).
* ``many_acc`` / ``medium_acc`` / ``few_acc``: the mean over the group's classes present in the
  evaluation set of the per-class accuracy, [c = c*] (majority) or p_train(c) (prior: a class's
  expected recall).

Decision: the crystal-system baselines are those of the crystal-system task itself (the most
common training *system*, or a guess by the system prior), not the system of the most common
space group: the CS column of a table is read as a 7-way accuracy. For label sets other than the
230 space groups (CIFAR-LT) the crystallographic keys are NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metrics._common import as_counts
from metrics.longtail import shot_groups
from utils.crystal import N_CS, N_SG, SG_TO_CS, enantiomorph_partner, extinction_groups
from utils.errors import DataError, fail

BASELINES = ("majority", "prior")
KEYS = ("sg_top1", "sg_top5", "sg_top1_enantio", "sg_top1_extinction", "cs_acc", "cs_head_acc",
        "macro_f1", "many_acc", "medium_acc", "few_acc")


def _group_sum(p: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(groups, weights=p, minlength=n_groups)


def prior_baselines(train_counts: Any, eval_counts: Any,
                    preset: str = "standard") -> dict[str, dict[str, float]]:
    """Scores of the ``majority`` and ``prior`` predictors (fractions in [0, 1], NaN where undefined).

    Args:
        train_counts: (C,) training samples per class (define the predictors and the shot groups).
        eval_counts: (C,) evaluation samples per class (e.g. ``np.bincount(y_test, minlength=C)``).
        preset: shot-group preset (``metrics.longtail.SHOT_PRESETS``).

    Returns:
        ``{"majority": {key: value}, "prior": {key: value}}`` with the keys of :data:`KEYS`.
    """
    n_tr = as_counts(train_counts).astype(np.float64)
    n_ev = as_counts(eval_counts, len(n_tr), "eval_counts").astype(np.float64)
    if n_tr.sum() <= 0 or n_ev.sum() <= 0:
        raise fail(DataError, "metrics.prior_baselines", "training or evaluation counts sum to 0",
                   "pass the per-class counts of a non-empty training and evaluation set")
    p_tr, p_ev = n_tr / n_tr.sum(), n_ev / n_ev.sum()
    n_cls = len(n_tr)
    top = np.argsort(-n_tr, kind="stable")
    c_star = int(top[0])
    present = n_ev > 0
    groups = shot_groups(n_tr, preset)

    def shot(per_class: np.ndarray) -> dict[str, float]:
        out = {}
        for g in ("many", "medium", "few"):
            sel = getattr(groups, g) & present
            out[f"{g}_acc"] = float(per_class[sel].mean()) if sel.any() else float("nan")
        return out

    nan = float("nan")
    maj = {"sg_top1": float(p_ev[c_star]), "sg_top5": float(p_ev[top[:5]].sum())}
    pri = {"sg_top1": float(p_tr @ p_ev), "sg_top5": nan}
    f1 = 2 * p_ev[c_star] / (1 + p_ev[c_star]) if present[c_star] else 0.0
    maj["macro_f1"], pri["macro_f1"] = float(f1 / present.sum()), nan
    maj.update(shot((np.arange(n_cls) == c_star).astype(np.float64)))
    pri.update(shot(p_tr))
    if n_cls == N_SG:
        partner = enantiomorph_partner()
        pair_ev = p_ev + np.where(partner != np.arange(N_SG), p_ev[partner], 0.0)
        maj["sg_top1_enantio"], pri["sg_top1_enantio"] = float(pair_ev[c_star]), float(p_tr @ pair_ev)
        eg = extinction_groups()
        g_tr, g_ev = _group_sum(p_tr, eg, eg.max() + 1), _group_sum(p_ev, eg, eg.max() + 1)
        maj["sg_top1_extinction"], pri["sg_top1_extinction"] = float(g_ev[eg[c_star]]), float(g_tr @ g_ev)
        s_tr, s_ev = _group_sum(p_tr, SG_TO_CS, N_CS), _group_sum(p_ev, SG_TO_CS, N_CS)
        maj["cs_acc"] = maj["cs_head_acc"] = float(s_ev[int(np.argmax(s_tr))])
        pri["cs_acc"] = pri["cs_head_acc"] = float(s_tr @ s_ev)
    else:
        for d in (maj, pri):
            d.update(dict.fromkeys(("sg_top1_enantio", "sg_top1_extinction", "cs_acc", "cs_head_acc"), nan))
    return {"majority": {k: maj[k] for k in KEYS}, "prior": {k: pri[k] for k in KEYS}}


def flat_baselines(train_counts: Any, eval_counts: Any, preset: str = "standard") -> dict[str, float]:
    """:func:`prior_baselines` as flat ``baseline_<predictor>_<key>`` entries (for
    ``test_metrics.json``, whose values stay scalars)."""
    return {f"baseline_{b}_{k}": v for b, d in prior_baselines(train_counts, eval_counts, preset).items()
            for k, v in d.items()}
