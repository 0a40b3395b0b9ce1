"""Resumable storage of finished generation jobs: ``OUT/shards/shard_XXXXX.npz``.

Finished jobs (successes and failures) are appended every few dozen jobs, each shard written
atomically (temp file + ``os.replace``) and without pickle; a restart reads them and skips those
jobs. A job result (``datasets.synthesis.jobs.run_job``) carries two ragged parts, the sticks
(2θ, intensity) and the structure's atoms (Z, fractional coordinates), packed CSR style.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from datasets.synthesis.plan import SPLIT_ID
from utils.errors import DataError, fail

# per-job scalars: name -> dtype
SCALARS = {"split": np.int8, "index": np.int64, "sg": np.int16, "ok": bool, "formula": "U64",
           "n_atoms": np.int64, "wps": "U256", "attempts": np.int64, "relaxed": np.int64,
           "errors": "U512", "seconds": np.float64}
# ragged parts: offsets key -> {array key: (dtype, trailing shape)}
RAGGED = {"offsets": {"two_theta": (np.float32, ()), "intensity": (np.float32, ())},
          "st_offsets": {"st_z": (np.uint8, ()), "st_frac": (np.float32, (3,))}}
FIXED = {"lattice": (np.float64, (6,))}  # per-job fixed-size rows
ARRAYS = (*SCALARS, *FIXED, *RAGGED, *(k for v in RAGGED.values() for k in v))


def results_to_arrays(results: list[dict]) -> dict[str, np.ndarray]:
    """Pack job results into flat arrays (no objects, no pickle)."""
    out: dict[str, np.ndarray] = {}
    for k, dt in SCALARS.items():
        vals = [SPLIT_ID[r[k]] if k == "split" else r[k] for r in results]
        out[k] = np.array(vals, dtype=dt)
    for k, (dt, shape) in FIXED.items():
        out[k] = np.array([r[k] for r in results], dtype=dt).reshape(-1, *shape)
    for off, parts in RAGGED.items():
        first = next(iter(parts))
        lens = [len(r[first]) for r in results]
        out[off] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        for k, (dt, shape) in parts.items():
            out[k] = (np.concatenate([np.asarray(r[k], dt).reshape(-1, *shape) for r in results])
                      if results else np.zeros((0, *shape), dt))
    return out


def take_jobs(d: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``idx`` of packed results (ragged parts re-packed)."""
    idx = np.asarray(idx, np.int64)
    out = {k: d[k][idx] for k in (*SCALARS, *FIXED)}
    for off, parts in RAGGED.items():
        lens = np.diff(d[off])[idx]
        take = np.concatenate([np.arange(d[off][i], d[off][i + 1]) for i in idx]) if len(idx) \
            else np.zeros(0, np.int64)
        out[off] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        out.update({k: d[k][take] for k in parts})
    return out


def concat_shards(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One packed result set from several; the first occurrence of each (split, index) wins."""
    if not parts:
        return results_to_arrays([])
    cat = {k: np.concatenate([p[k] for p in parts]) for k in (*SCALARS, *FIXED)}
    for off, keys in RAGGED.items():
        base, offs = 0, []
        for p in parts:
            offs.append(p[off][:-1] + base)
            base += int(p[off][-1])
        cat[off] = np.concatenate([*offs, [base]]).astype(np.int64)
        cat.update({k: np.concatenate([p[k] for p in parts]) for k in keys})
    key = cat["split"].astype(np.int64) * 10**9 + cat["index"]
    _, first = np.unique(key, return_index=True)
    return take_jobs(cat, np.sort(first)) if len(first) != len(key) else cat


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
                    parts.append({k: z[k] for k in ARRAYS})
            except Exception as exc:
                raise fail(DataError, p, f"unreadable shard ({type(exc).__name__})",
                           "delete this shard file; its jobs are regenerated on the next run") from exc
        return concat_shards(parts)
