"""Clean and lab renderings of a peak-list split, cached for the indexing benchmarks.

Usage (from the repository root, venv active):
    python -m benchmarks.index_renderings                                  # data/xrd_mp_default, test
    python -m benchmarks.index_renderings --data data/external_pyxtal --n 50

Writes ``Log/index_cache/renderings_<split>_<hash>.npz`` (the hash covers the peak file, the grid,
the render settings and :data:`builders.LAB_SEED`, so a changed input makes a new file) with:

* ``clean`` (N, L) float32: the nominal rendering, ``render_table`` of the split (what the
  ``test`` metrics see; note the nominal instrument has Cu Kα2 at ratio 0.5);
* ``lab`` (N, L) float32: exactly what ``builders.lab_collate`` renders for the ``lab_*`` test
  metrics (train-time instrument and sample drawn per sample from ``LAB_SEED``, epoch 0, key = the
  sample's index in the split); the file asserts that its replay of the renderer's steps equals
  the collate's output;
* ``lab_bg`` (N, L) float32: the true background of each lab pattern on the same scale;
* ``lab_counts`` (N,): counts per unit of ``lab`` (``lab · lab_counts`` are Poisson-like counts
  with variance equal to the value, as a detector would give);
* ``p_<name>`` (N,): every per-sample setting drawn (``max_counts``, ``has_ka2``, ``ka2_ratio``,
  ``zero_shift_deg``, ``displacement_mm``, ``has_hump``, widths, …);
* the sticks (``offsets``, ``two_theta``, ``intensity``, ``wavelength``) and, per stick, the lab
  texture factor ``stick_factor`` and weak-peak survival ``stick_keep``;
* ``grid`` = (2θ_min, 2θ_max, n_points, λ) and ``ka2_wavelength`` (NaN: none).

:func:`load_renderings` returns the cache (building it first when missing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builders import LAB_SEED, lab_collate  # noqa: E402
from datasets.peaks import PeakTable  # noqa: E402
from datasets.readers.peak_lists import build_peaks_bundle, render_table  # noqa: E402
from datasets.rendering.instrument import add_noise, background, peak_factors, sample_seeds  # noqa: E402
from datasets.rendering.renderer import pad_peaks  # noqa: E402

CACHE_DIR = Path("Log/index_cache")
DEFAULT_DATA = Path("data/xrd_mp_default")
VERSION = 1  # bump when the contents of the cache change


def _key(peaks_path: Path, spec: dict) -> str:
    h = hashlib.sha256()
    with open(peaks_path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps([spec, LAB_SEED, VERSION], sort_keys=True).encode())
    return h.hexdigest()[:12]


def _lab_batch(collate, items: list[dict]) -> dict[str, np.ndarray]:
    """The lab collate's patterns of ``items`` and, by replaying its steps, what it drew."""
    x = collate(items)["x"][:, 0]
    r = collate.renderer
    idx = torch.tensor([int(d["idx"]) for d in items], dtype=torch.int64)
    seeds = sample_seeds(collate.seed, collate.epoch, idx)
    tt, inten, mask = pad_peaks([d["two_theta"] for d in items], [d["intensity"] for d in items])
    st = r.sticks(tt, inten, mask, True, seeds, collate.wavelength)
    # the steps of PeakRenderer.render with augment=True, keeping the scales it divides out
    y = r._sum_fast(st) if r.method == "fast" else r._sum_dense(st)
    y = y / y.amax(dim=1, keepdim=True).clamp_min(1e-30)
    grid_tt = torch.as_tensor(r.grid.two_theta())
    bg = background(r.cfg, seeds, st["params"], grid_tt, r.grid.wavelength)
    y = add_noise(y + bg, seeds, st["params"])
    scale = y.amax(dim=1, keepdim=True).clamp_min(1e-30)
    replay = (y / scale).clamp_min(0.0)
    err = float((replay - x).abs().max())
    if err > 1e-5:
        raise RuntimeError(f"replay of the lab rendering differs from lab_collate by {err:.2e}: "
                           "the renderer changed; update benchmarks/index_renderings.py")
    valid = mask & (inten > 0)
    top = inten.amax(dim=1, keepdim=True).clamp_min(1e-30)
    rel = torch.where(valid, inten / top, torch.zeros_like(inten))
    factor, keep = peak_factors(r.cfg, seeds, rel.double(), st["params"])
    params = {k: v.numpy() for k, v in st["params"].items()}
    n = [len(d["two_theta"]) for d in items]
    return {"lab": x.numpy(), "lab_bg": (bg / scale).float().numpy(),
            "lab_counts": (scale[:, 0].double() * st["params"]["max_counts"]).numpy(),
            "params": params,
            "factor": np.concatenate([factor[i, :k].numpy() for i, k in enumerate(n)]),
            "keep": np.concatenate([keep[i, :k].numpy() for i, k in enumerate(n)])}


def build_renderings(data: Path = DEFAULT_DATA, split: str = "test", out: Path | None = None,
                     batch_size: int = 128) -> Path:
    """Render the split clean and lab-like and write the cache; returns its path."""
    torch.set_num_threads(1)
    bundle = build_peaks_bundle(data, augment=False, lattice_aug=False)
    ds = {"test": bundle.test, "val": bundle.val, "train": bundle.train}[split]
    peaks_path = Path(data) / f"peaks_{split}.npz"
    table: PeakTable = ds.table
    lab = lab_collate(bundle.eval_collate)
    r = lab.renderer
    spec = {"grid": r.grid.to_dict(), "render": r.cfg.to_dict(), "method": r.method,
            "wavelength": lab.wavelength}
    path = out or CACHE_DIR / f"renderings_{Path(data).name}_{split}_{_key(peaks_path, spec)}.npz"
    t0 = time.perf_counter()
    clean = render_table(table, r.grid, r.cfg)
    parts: list[dict] = []
    for s in range(0, len(ds), batch_size):
        parts.append(_lab_batch(lab, [ds[i] for i in range(s, min(s + batch_size, len(ds)))]))
    arrays = {
        "clean": clean, "lab": np.concatenate([p["lab"] for p in parts]),
        "lab_bg": np.concatenate([p["lab_bg"] for p in parts]),
        "lab_counts": np.concatenate([p["lab_counts"] for p in parts]),
        "offsets": table.offsets, "two_theta": table.two_theta, "intensity": table.intensity,
        "sg": table.sg, "wavelength": np.float64(table.wavelength),
        "stick_factor": np.concatenate([p["factor"] for p in parts]),
        "stick_keep": np.concatenate([p["keep"] for p in parts]),
        "grid": np.array([r.grid.two_theta_min, r.grid.two_theta_max, r.grid.n_points, r.grid.wavelength]),
        "ka2_wavelength": np.float64(np.nan if r.ka2 is None else r.ka2),
        "goniometer_radius_mm": np.float64(r.cfg.goniometer_radius_mm),
        "spec": np.array(json.dumps(spec)),
    }
    for k in parts[0]["params"]:
        arrays[f"p_{k}"] = np.concatenate([p["params"][k] for p in parts])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    print(f"{path}: {len(ds)} patterns rendered clean + lab in {time.perf_counter() - t0:.1f} s")
    return path


def load_renderings(data: Path = DEFAULT_DATA, split: str = "test") -> dict[str, np.ndarray]:
    """The cached renderings of ``data``'s split (built on first use) as a dict of arrays."""
    data = Path(data)
    matches = sorted(CACHE_DIR.glob(f"renderings_{data.name}_{split}_*.npz"), key=os.path.getmtime)
    path = None
    if matches:  # the hash needs the render spec: trust the newest file whose stored spec matches
        bundle = build_peaks_bundle(data, augment=False, lattice_aug=False)
        lab = lab_collate(bundle.eval_collate)
        r = lab.renderer
        spec = {"grid": r.grid.to_dict(), "render": r.cfg.to_dict(), "method": r.method,
                "wavelength": lab.wavelength}
        want = CACHE_DIR / f"renderings_{data.name}_{split}_{_key(data / f'peaks_{split}.npz', spec)}.npz"
        path = want if want.is_file() else None
    if path is None:
        path = build_renderings(data, split)
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="peak-list folder")
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    p.add_argument("--out", type=Path, default=None, help="cache file (default: Log/index_cache/...)")
    a = p.parse_args(argv)
    build_renderings(a.data, a.split, a.out)


if __name__ == "__main__":
    main()
