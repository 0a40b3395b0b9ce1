"""The job plan of the built-in benchmark, and its resumable shard store.

Sampling (DATA.md, "The built-in benchmark"):

* train follows the Materials Project profile: group ``g`` gets ``max(1, round(scale * N_g))``
  jobs, where ``N_g`` is the number of MP structures of ``g`` in pyxtal's table;
* val and test are balanced: ``per_class`` jobs for every present group (as CIFAR-LT/ImageNet-LT);
* within a group, a job's (n_atoms, Wyckoff combination) row is drawn with probability ∝ its MP
  count among rows with ``n_atoms <= max_atoms`` (the smallest row when the group has none).

Every job owns a generator ``np.random.default_rng([seed, split_id, index])`` that draws its row
and then drives composition and pyxtal, so a job's result does not depend on the number of
workers, the order of completion, or an interruption.

Shards: finished jobs (successes and failures) are appended to ``OUT/shards/shard_XXXXX.npz``
(written atomically, no pickle) every few dozen jobs; a restart reads them and skips those jobs.
"""

from __future__ import annotations

import json
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


def _rows_by_group(table: dict[str, np.ndarray], max_atoms: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
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
    cand = _rows_by_group(table, max_atoms)
    jobs: list[Job] = []
    for split in ("val", "test", "train"):
        idx = 0
        for g in present:
            n = {"train": int(per_train[g]), "val": val_per_class, "test": test_per_class}[split]
            rows, p = cand[g]
            for _ in range(n):
                rng = np.random.default_rng([seed, SPLIT_ID[split], idx])
                # inverse-CDF draw with the job's first uniform (Job.rng skips it)
                k = min(int(np.searchsorted(np.cumsum(p), rng.random(), side="right")), len(rows) - 1)
                jobs.append(Job(split, idx, g, int(rows[k]), seed))
                idx += 1
    return jobs


# ---------------------------------------------------------------- shards
_SHARD_ARRAYS = ("split", "index", "sg", "ok", "offsets", "two_theta", "intensity", "formula",
                 "lattice", "n_atoms", "wps", "attempts", "relaxed", "errors", "seconds")


def results_to_arrays(results: list[dict]) -> dict[str, np.ndarray]:
    """Pack job results (see ``simulate.run_job``) into flat arrays (no objects, no pickle)."""
    lens = [len(r["two_theta"]) for r in results]
    cat = (lambda k: np.concatenate([r[k] for r in results]).astype(np.float32)) if results else \
        (lambda k: np.zeros(0, np.float32))
    return {
        "split": np.array([SPLIT_ID[r["split"]] for r in results], np.int8),
        "index": np.array([r["index"] for r in results], np.int64),
        "sg": np.array([r["sg"] for r in results], np.int16),
        "ok": np.array([r["ok"] for r in results], bool),
        "offsets": np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        "two_theta": cat("two_theta"), "intensity": cat("intensity"),
        "formula": np.array([r["formula"] for r in results], dtype="U64"),
        "lattice": np.array([r["lattice"] for r in results], np.float64).reshape(-1, 6),
        "n_atoms": np.array([r["n_atoms"] for r in results], np.int64),
        "wps": np.array([r["wps"] for r in results], dtype="U256"),
        "attempts": np.array([r["attempts"] for r in results], np.int64),
        "relaxed": np.array([r["relaxed"] for r in results], np.int64),
        "errors": np.array([r["errors"] for r in results], dtype="U512"),
        "seconds": np.array([r["seconds"] for r in results], np.float64),
    }


class ShardStore:
    """``OUT/shards``: append-only, atomically written result shards plus the plan fingerprint."""

    def __init__(self, root: str | os.PathLike, fingerprint: dict) -> None:
        self.dir = Path(root) / "shards"
        self.dir.mkdir(parents=True, exist_ok=True)
        fp_file = self.dir / "plan.json"
        if fp_file.exists():
            old = json.loads(fp_file.read_text())
            if old != fingerprint:
                diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
                raise fail(DataError, self.dir, f"shards were made with other settings ({diff})",
                           "use another --out, or delete the shards folder to start over")
        else:
            tmp = fp_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(fingerprint, indent=1, sort_keys=True))
            os.replace(tmp, fp_file)
        self._next = 1 + max((int(p.stem.split("_")[1]) for p in self.shards()), default=-1)

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard_*.npz"))

    def write(self, results: list[dict]) -> Path | None:
        if not results:
            return None
        path = self.dir / f"shard_{self._next:05d}.npz"
        tmp = self.dir / f".shard_{self._next:05d}.tmp.npz"
        np.savez(tmp, **results_to_arrays(results))
        os.replace(tmp, path)
        self._next += 1
        return path

    def load_all(self) -> dict[str, np.ndarray]:
        """Concatenate every shard (later duplicates of a job are dropped)."""
        parts = []
        for p in self.shards():
            try:
                with np.load(p, allow_pickle=False) as z:
                    parts.append({k: z[k] for k in _SHARD_ARRAYS})
            except Exception as exc:
                raise fail(DataError, p, f"unreadable shard ({type(exc).__name__})",
                           "delete this shard file; its jobs are regenerated on the next run") from exc
        return concat_shards(parts)


def concat_shards(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return results_to_arrays([])
    out: dict[str, list] = {k: [] for k in _SHARD_ARRAYS}
    base = 0
    for d in parts:
        for k in _SHARD_ARRAYS:
            if k == "offsets":
                out[k].append(d[k][:-1] + base)
            else:
                out[k].append(d[k])
        base += int(d["offsets"][-1])
    cat = {k: np.concatenate(v) for k, v in out.items()}
    cat["offsets"] = np.concatenate([cat["offsets"], [base]]).astype(np.int64)
    # Keep the first occurrence of each (split, index).
    key = cat["split"].astype(np.int64) * 10**9 + cat["index"]
    _, first = np.unique(key, return_index=True)
    if len(first) != len(key):
        return take_jobs(cat, np.sort(first))
    return cat


def take_jobs(d: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``idx`` of packed results (ragged peaks re-packed)."""
    lens = np.diff(d["offsets"])[idx]
    take = np.concatenate([np.arange(d["offsets"][i], d["offsets"][i + 1]) for i in idx]) \
        if len(idx) else np.zeros(0, np.int64)
    out = {k: d[k][idx] for k in _SHARD_ARRAYS if k not in ("offsets", "two_theta", "intensity")}
    out["offsets"] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    out["two_theta"], out["intensity"] = d["two_theta"][take], d["intensity"][take]
    return out
