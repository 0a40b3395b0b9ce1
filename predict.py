"""Predict the crystal system and space group of measured (or simulated) powder patterns.

    python predict.py --ckpt Log/sg/RUN/best.pt pattern.xy more.xye folder/ [--csv out.csv]
    python -m predict --ckpt ...   # the same

Each two-column file (2θ, intensity; .xy/.xye/.csv) is interpolated onto the model's 2θ grid
(stored in the checkpoint); the output lists, per file, the crystal system with its probability
and the top-k space groups (number and Hermann–Mauguin symbol) with probabilities.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

import builders
from datasets.readers.xy_patterns import pattern_on_grid
from utils.checkpoint import load_checkpoint
from utils.crystal import CRYSTAL_SYSTEMS, SG_TO_CS, sg_symbol
from utils.errors import DataError, XRDError
from utils.grid import GridSpec

SUFFIXES = {".xy", ".xye", ".csv", ".txt", ".dat"}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("Predict space groups of powder patterns")
    p.add_argument("paths", nargs="+", help="pattern files or folders of them")
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py (best.pt)")
    p.add_argument("--wavelength", type=float, default=None,
                   help="wavelength of the measured patterns in Å (default: the model's, Cu Kα1)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--csv", default=None, help="also write the predictions to this CSV file")
    p.add_argument("--device", default="cpu")
    return p


def collect(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for s in paths:
        p = Path(s)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: not found. Fix: pass existing pattern files or folders")
    if not files:
        raise DataError(f"{paths}: no pattern files ({', '.join(sorted(SUFFIXES))}) found")
    return files


@torch.no_grad()
def predict_files(ckpt_path: str, files: list[Path], wavelength: float | None = None, topk: int = 5,
                  device: str = "cpu") -> list[dict]:
    ckpt = load_checkpoint(ckpt_path)
    grid = GridSpec.from_dict(ckpt.get("data_spec", {}).get("grid"))
    dev = builders.resolve_device(device)
    model = builders.model_from_checkpoint(ckpt, ckpt_path).to(dev).eval()
    rows = []
    for f in files:
        x = torch.as_tensor(pattern_on_grid(f, grid, wavelength=wavelength), dtype=torch.float32)
        out = model(x.view(1, 1, -1).to(dev))
        p_sg = torch.softmax(out["logits"].float(), -1)[0].cpu().numpy()
        if "cs_logits" in out:
            p_cs = torch.softmax(out["cs_logits"].float(), -1)[0].cpu().numpy()
        else:  # marginalise the space-group distribution over crystal systems
            p_cs = np.bincount(SG_TO_CS, weights=p_sg, minlength=len(CRYSTAL_SYSTEMS))
        cs = int(p_cs.argmax())
        top = np.argsort(-p_sg)[:topk]
        rows.append({"file": str(f), "crystal_system": CRYSTAL_SYSTEMS[cs], "p_cs": float(p_cs[cs]),
                     "top": [(int(i) + 1, sg_symbol(int(i) + 1), float(p_sg[i])) for i in top]})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    args = get_parser().parse_args(argv)
    try:
        rows = predict_files(args.ckpt, collect(args.paths), args.wavelength, args.topk, args.device)
    except XRDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    for r in rows:
        print(f"{r['file']}\n  crystal system: {r['crystal_system']} (p = {r['p_cs']:.3f})")
        for rank, (num, sym, p) in enumerate(r["top"], 1):
            print(f"  {rank}. {sym:<12} (No. {num:>3})  p = {p:.3f}")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "crystal_system", "p_cs"] + [f"{k}{i}" for i in range(1, args.topk + 1)
                                                             for k in ("sg", "symbol", "p")])
            for r in rows:
                w.writerow([r["file"], r["crystal_system"], f"{r['p_cs']:.4f}"]
                           + [v for t in r["top"] for v in (t[0], t[1], f"{t[2]:.4f}")])
    return rows


if __name__ == "__main__":
    main()
