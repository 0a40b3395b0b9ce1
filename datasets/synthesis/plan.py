"""The job plan of the built-in benchmark (results are stored by ``datasets.synthesis.shards``).

Sampling (DATA.md, "The built-in benchmark"):

* train follows the Materials Project profile: group ``g`` gets ``max(1, round(scale * N_g))``
  jobs, where ``N_g`` is the number of MP structures of ``g`` in pyxtal's table;
* val and test are balanced: ``per_class`` jobs for every present group (as CIFAR-LT/ImageNet-LT);
* within a group, a job's (n_atoms, Wyckoff combination) row is drawn with probability ∝ its MP
  count among rows with ``n_atoms <= max_atoms`` (the smallest row when the group has none).

Every job owns a generator ``np.random.default_rng([seed, split_id, index])`` that draws its row
and then drives composition and pyxtal, so a job's result does not depend on the number of
workers, the order of completion, or an interruption.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import DataError, fail

SPLITS = ("train", "val", "test")
SPLIT_ID = {s: i for i, s in enumerate(SPLITS)}


@dataclass(frozen=True)
class Job:
    """One structure to generate: ``row`` indexes the (filtered) MP table."""

    split: str
    index: int
    sg: int
    row: int
    seed: int

    def rng(self) -> np.random.Generator:
        """The job's generator; the row was drawn from it first, so it is advanced past that."""
        g = np.random.default_rng([self.seed, SPLIT_ID[self.split], self.index])
        g.random()
        return g


def load_mp_table(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``spg_num_wps_mp.csv`` (columns spg, n_atoms, wps, count) into numpy arrays."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise fail(DataError, path, "Materials Project table not found", "reinstall pyxtal")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"spg", "n_atoms", "wps", "count"} <= set(rows[0]):
        raise fail(DataError, path, "expected columns spg,n_atoms,wps,count", "reinstall pyxtal")
    return {"spg": np.array([int(r["spg"]) for r in rows], np.int64),
            "n_atoms": np.array([int(r["n_atoms"]) for r in rows], np.int64),
            "wps": np.array([r["wps"] for r in rows]),
            "count": np.array([int(r["count"]) for r in rows], np.int64)}


def group_totals(table: dict[str, np.ndarray]) -> np.ndarray:
    """(231,) MP structure count per space group (index = 1-based number; [0] unused)."""
    return np.bincount(table["spg"], weights=table["count"], minlength=231).astype(np.int64)


def train_counts(totals: np.ndarray, scale: float) -> np.ndarray:
    """(231,) jobs per group for train: ``max(1, round(scale * N_g))`` where ``N_g > 0``."""
    out = np.where(totals > 0, np.maximum(1, np.rint(scale * totals)), 0).astype(np.int64)
    out[0] = 0
    return out


def rows_by_group(table: dict[str, np.ndarray], max_atoms: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """sg -> (candidate row indices, probabilities ∝ MP count)."""
    out = {}
    for sg in np.unique(table["spg"]):
        rows = np.flatnonzero(table["spg"] == sg)
        ok = rows[table["n_atoms"][rows] <= max_atoms]
        if len(ok) == 0:  # no small enough cell: use the group's smallest row(s)
            n = table["n_atoms"][rows]
            ok = rows[n == n.min()]
        w = table["count"][ok].astype(np.float64)
        out[int(sg)] = (ok, w / w.sum())
    return out


def make_plan(table: dict[str, np.ndarray], scale: float, val_per_class: int, test_per_class: int,
              max_atoms: int, seed: int, groups: list[int] | None = None) -> list[Job]:
    """All jobs, ordered val, test, train (evaluation splits first: they are small and must be
    complete), by space group within a split.

    Args:
        table: :func:`load_mp_table` output.
        scale: train fraction of the MP counts.
        val_per_class / test_per_class: balanced per-group counts.
        max_atoms: largest conventional cell to sample.
        seed: global seed.
        groups: restrict to these space groups (tests, quick runs); None = all present.
    """
    totals = group_totals(table)
    present = [g for g in range(1, 231) if totals[g] > 0 and (groups is None or g in groups)]
    per_train = train_counts(totals, scale)
    cand = rows_by_group(table, max_atoms)
    jobs: list[Job] = []
    for split in ("val", "test", "train"):
        idx = 0
        for g in present:
            n = {"train": int(per_train[g]), "val": val_per_class, "test": test_per_class}[split]
            for _ in range(n):
                jobs.append(draw_job(split, idx, g, cand[g], seed))
                idx += 1
    return jobs


def draw_job(split: str, index: int, sg: int, candidates: tuple[np.ndarray, np.ndarray], seed: int) -> Job:
    """The job ``(split, index)`` of group ``sg``: its MP row drawn from the job's own generator.

    Args:
        candidates: ``rows_by_group(...)[sg]`` (row indices, probabilities).
    """
    rows, p = candidates
    rng = np.random.default_rng([seed, SPLIT_ID[split], index])
    # inverse-CDF draw with the job's first uniform (Job.rng skips it)
    k = min(int(np.searchsorted(np.cumsum(p), rng.random(), side="right")), len(rows) - 1)
    return Job(split, index, sg, int(rows[k]), seed)
