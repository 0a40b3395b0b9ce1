"""Many / medium / few ("shot") groups from training counts, in one function with named presets.

Every long-tail codebase draws the lines differently (docs/methods/conventions.md §1.2); a class with
exactly 20 or 100 training samples moves between groups. The presets, with n_c = training count:

=========  ===================  =========================  ===================
preset     many                 medium                     few
=========  ===================  =========================  ===================
standard   n > 100              20 <= n <= 100             n < 20
glmc       n > 100              20 < n <= 100              n <= 20
ncl        n >= 100             20 < n < 100               n <= 20
icl-xrd    n > 1000·N/120588    100·N/120588 <= n <=       n < 100·N/120588
                                1000·N/120588
=========  ===================  =========================  ===================

"standard" is OLTR's (Liu et al., CVPR 2019) and RIDE's (Wang et al., ICLR 2021) split; "glmc"
follows GLMC's ``Trainer.validate`` (Du et al., CVPR 2023), "ncl" NCL's ``valid_average_acc.py``
(Li et al., CVPR 2022). "icl-xrd" is the XRD ICL code's rule, whose thresholds scale with the
total training size N (CCDC: N = 120,588); it also reports an "extreme tail" n < 20·N/120588,
a subset of "few". Comparisons use exact integer arithmetic, so a class sitting on a scaled
threshold is never split by rounding.

Classes with zero training samples satisfy the few-rule and are "few" under every preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics._common import as_counts, to_numpy
from utils.errors import ConfigError, fail

ICL_XRD_REFERENCE_N = 120588  # CCDC training size the ICL-XRD thresholds were written for
SHOT_PRESETS = ("standard", "glmc", "ncl", "icl-xrd")
GROUPS = ("many", "medium", "few")


@dataclass(frozen=True)
class ShotGroups:
    """Boolean (C,) masks of the three groups (they partition the classes).

    Attributes:
        preset: the preset name.
        many, medium, few: (C,) bool masks.
        extreme: (C,) bool "extreme tail" mask (a subset of ``few``) for "icl-xrd", else None.
        low: the few/medium boundary count (for plots; which side it belongs to is in ``rules``).
        high: the medium/many boundary count.
        rules: human-readable rule of each group, e.g. ``{"few": "n < 20", ...}``.
    """

    preset: str
    many: np.ndarray
    medium: np.ndarray
    few: np.ndarray
    extreme: np.ndarray | None
    low: float
    high: float
    rules: dict[str, str]

    @property
    def sizes(self) -> dict[str, int]:
        """Number of classes in each group (plus "extreme" for icl-xrd)."""
        out = {g: int(getattr(self, g).sum()) for g in GROUPS}
        if self.extreme is not None:
            out["extreme"] = int(self.extreme.sum())
        return out

    def names(self) -> np.ndarray:
        """(C,) array of "many" / "medium" / "few", one per class."""
        out = np.full(self.many.shape, "few", dtype=object)
        out[self.medium] = "medium"
        out[self.many] = "many"
        return out


def _gt(n: np.ndarray, num: int, den: int) -> np.ndarray:
    return n * den > num  # n > num/den without floating-point rounding


def _ge(n: np.ndarray, num: int, den: int) -> np.ndarray:
    return n * den >= num


def shot_groups(class_counts: Any, preset: str = "standard") -> ShotGroups:
    """Split classes into many / medium / few by their training counts.

    Args:
        class_counts: (C,) training samples per class (tensor or array).
        preset: one of ``SHOT_PRESETS`` (see the module docstring for the thresholds).

    Returns:
        ShotGroups with (C,) boolean masks and group sizes.

    Raises:
        ConfigError: unknown preset.
        DataError: counts not 1-D or negative.
    """
    n = as_counts(class_counts)
    if preset == "standard":
        many, few = n > 100, n < 20
        low, high = 20.0, 100.0
        rules = {"many": "n > 100", "medium": "20 ≤ n ≤ 100", "few": "n < 20"}
        extreme = None
    elif preset == "glmc":
        many, few = n > 100, n <= 20
        low, high = 20.0, 100.0
        rules = {"many": "n > 100", "medium": "20 < n ≤ 100", "few": "n ≤ 20"}
        extreme = None
    elif preset == "ncl":
        many, few = n >= 100, n <= 20
        low, high = 20.0, 100.0
        rules = {"many": "n ≥ 100", "medium": "20 < n < 100", "few": "n ≤ 20"}
        extreme = None
    elif preset == "icl-xrd":
        total, ref = int(round(float(n.sum()))), ICL_XRD_REFERENCE_N
        many = _gt(n, 1000 * total, ref)
        few = ~_ge(n, 100 * total, ref)
        extreme = ~_ge(n, 20 * total, ref)
        low, high = 100 * total / ref, 1000 * total / ref
        rules = {"many": f"n > {high:.4g}", "medium": f"{low:.4g} ≤ n ≤ {high:.4g}",
                 "few": f"n < {low:.4g}", "extreme": f"n < {20 * total / ref:.4g}"}
    else:
        raise fail(ConfigError, "metrics.shot_groups", f"unknown shot-group preset {preset!r}",
                   f"use one of {', '.join(SHOT_PRESETS)}")
    medium = ~many & ~few
    return ShotGroups(preset, many, medium, few, extreme, low, high, rules)


def shot_accuracy(per_class_acc: Any, counts: Any, preset: str = "standard",
                  n_eval: Any = None) -> dict[str, float]:
    """Mean per-class accuracy within each shot group, over classes present in the evaluation set.

    A class counts as present when ``n_eval[c] > 0`` (if given), else when its accuracy is not
    NaN (``per_class_accuracy`` returns NaN for absent classes). Absent classes are left out of
    both the mean and the group size, so the sizes say how many classes each number averages.

    Args:
        per_class_acc: (C,) accuracy per class (NaN where absent).
        counts: (C,) training counts (define the groups).
        preset: shot-group preset (see ``shot_groups``).
        n_eval: optional (C,) evaluation samples per class.

    Returns:
        ``{"many_acc", "medium_acc", "few_acc", "n_many", "n_medium", "n_few"}`` (plus
        ``"extreme_acc"``, ``"n_extreme"`` for "icl-xrd"); an empty group has accuracy NaN.
    """
    acc = np.asarray(to_numpy(per_class_acc), dtype=np.float64)
    groups = shot_groups(as_counts(counts, acc.shape[0] if acc.ndim == 1 else None), preset)
    present = np.isfinite(acc) if n_eval is None else np.asarray(to_numpy(n_eval)) > 0
    masks = {g: getattr(groups, g) for g in GROUPS}
    if groups.extreme is not None:
        masks["extreme"] = groups.extreme
    out: dict[str, float] = {}
    for g, m in masks.items():
        sel = m & present
        out[f"{g}_acc"] = float(acc[sel].mean()) if sel.any() else float("nan")
        out[f"n_{g}"] = int(sel.sum())
    return out
