"""Predict the crystal system and space group of measured (or simulated) powder patterns.

    python predict.py --ckpt Log/sg/RUN/best.pt pattern.xy more.xye folder/ [--csv out.csv]
    python -m predict --ckpt ...   # the same

Each pattern file (PANalytical .xrdml, Rigaku .ras, or two-column .xy/.xye/.csv/.txt/.dat text;
rules in docs/DATA.md) is read with its wavelength (from the file; ``--wavelength`` overrides it, a
mismatch is reported, and a file without one needs the flag) and resampled by d-spacing onto the
model's 2θ grid (stored in the checkpoint; a scan that misses part of the model's d-range is
predicted with a warning naming that part); the output lists, per file, the crystal system
with its probability and the top-k space groups (number and Hermann–Mauguin symbol) with
probabilities, and the cell indexed from the pattern's own peaks (``indexed: cF a=… M20=…; extinction
group …``, or ``indexed: no cell (reason)``; ``index_method``, off with ``--no_index``), followed,
when strong peaks stay unexplained by that cell, by ``n peaks (largest at 2θ …) are not explained: a
second phase?`` (``indexing.phases``). With a
``--method index`` checkpoint the prediction itself is the index's.

Files named on the command line must be readable: the first one that is not stops the run with its
reason. In a folder only the pattern extensions are read, and a file that cannot be read (a
``labels.csv`` beside the patterns, a broken export) is reported with its reason while every other
file is predicted; a summary follows, and the exit status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from loguru import logger

import builders
import index_method
from config.args import HelpFormatter
from datasets.readers.npy import read_sg_count
from Trainer.evidence import variants
from Trainer.fusion import FusionParams
from utils.checkpoint import atomic_writer, load_checkpoint
from utils.cli import Bounded, Parser, device_spec, writable_file
from utils.crystal import CRYSTAL_SYSTEMS, SG_TO_CS, sg_symbol
from utils.errors import DataError, XRDError, exit_message
from utils.grid import GridSpec
from utils.logging import setup_logging
from utils.pattern_io import PATTERN_SUFFIXES, MeasuredPattern, pattern_to_grid, read_pattern
from utils.pattern_io import collect_pattern_files as collect  # the rules python -m indexing shares

ROOT = Path(__file__).resolve().parent
SHIPPED = ROOT / "data" / "checkpoints" / "icl_quick.pt"


def get_parser() -> argparse.ArgumentParser:
    p = Parser("predict.py", formatter_class=HelpFormatter,
                                description="Predict the crystal system and space group of pattern "
                                            "files with a checkpoint written by train.py.")
    p.add_argument("paths", nargs="+", help="pattern files, or folders whose pattern files "
                                            f"({', '.join(PATTERN_SUFFIXES)}) are all predicted")
    p.add_argument("--ckpt", default=None,
                   help="checkpoint written by train.py (a run's best.pt); unset: the model shipped in "
                        f"{SHIPPED.relative_to(ROOT)} (provenance in the .json beside it)")
    p.add_argument("--target_prior", default=None, metavar="SG_COUNT_CSV",
                   help="move the model from its training prior to this one (post-hoc logit adjustment), "
                        "e.g. data/xrd_mp_default/sg_count.csv for Materials-Project-like samples")
    p.add_argument("--wavelength", type=Bounded(float, 0, 10, lo_open=True), default=None,
                   help="Kα1 (or monochromatic) wavelength of the patterns in Å; overrides the files' "
                        "(a mismatch is reported). Unset: each file's own (XRDML, RAS, a '# wavelength:' "
                        "comment in text files); a file without one is an error")
    p.add_argument("--topk", type=Bounded(int, 1, 230), default=5, help="space groups listed per file")
    p.add_argument("--csv", default=None, type=writable_file,
                   help="also write the predictions to this CSV file (unset: printed only)")
    p.add_argument("--device", default="cpu", type=device_spec, help="'cpu' or a CUDA index")
    p.add_argument("--no_index", action="store_true",
                   help="do not index the patterns (no 'indexed:' line, no indexed_* CSV columns)")
    return p


def _ranked(p_sg: np.ndarray, p_cs: np.ndarray, topk: int) -> dict:
    cs = int(p_cs.argmax())
    top = np.argsort(-p_sg)[:topk]
    return {"crystal_system": CRYSTAL_SYSTEMS[cs], "p_cs": float(p_cs[cs]),
            "top": [(int(i) + 1, sg_symbol(int(i) + 1), float(p_sg[i])) for i in top]}


def _probs(pred: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(p_sg (230,), p_cs (7,)) of a one-pattern prediction dict."""
    z = pred["logits"][0].astype(np.float64)
    p_sg = np.exp(z - z.max())
    p_sg /= p_sg.sum()
    if "cs_logits" in pred:
        c = pred["cs_logits"][0].astype(np.float64)
        p_cs = np.exp(c - c.max())
        return p_sg, p_cs / p_cs.sum()
    # marginalise the space-group distribution over crystal systems
    return p_sg, np.bincount(SG_TO_CS, weights=p_sg, minlength=len(CRYSTAL_SYSTEMS))


def fused_rows(out: dict[str, torch.Tensor], ckpt: dict, row: Any, topk: int,
               target: np.ndarray | None) -> dict:
    """The prediction of one pattern: the model's (``model``), and with fusion weights in the
    checkpoint and an indexed row the index's (``index``) and the fusion (the row's main keys)."""
    pred = {k: out[k].float().cpu().numpy() for k in ("logits", "cs_logits", "ensemble_logits") if k in out}
    pred["y_sg"] = np.zeros(1, np.int64)
    counts = np.asarray(ckpt.get("data_spec", {}).get("class_counts", np.ones(230)), np.float64)
    params = FusionParams.from_dict(ckpt.get("fusion"))
    evidence = None if row is None or params is None else row.vector[None].astype(np.float64)
    preds = variants(pred, evidence, params, counts, target)
    main = _ranked(*_probs(preds.get("fused", preds["model"])), topk)
    main["model"] = _ranked(*_probs(preds["model"]), topk)
    if "index" in preds:
        main["index"] = _ranked(*_probs(preds["index"]), topk)
    return main


@torch.no_grad()
def predict_files(ckpt_path: str | None, files: list[Path] | list[tuple[Path, bool]],
                  wavelength: float | None = None, topk: int = 5,
                  device: str = "cpu", index: bool = True,
                  target_prior: str | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predictions for ``files``; returns ``(rows, failures)``.

    ``files`` holds paths or ``(path, named)`` pairs (see :func:`collect`). A file that cannot be
    read raises its :class:`DataError` when it was named, else it is logged and listed in
    ``failures`` as ``(file, reason)``. With ``index`` each row also holds ``indexed`` (the
    pattern's :class:`IndexRow`, cached per pattern; an index model's own row).
    """
    if ckpt_path is None:
        if not SHIPPED.is_file():
            raise DataError(f"{SHIPPED}: the shipped model is missing. Fix: pass --ckpt RUN/best.pt of a "
                            "run of train.py, or restore the file from the repository")
        ckpt_path = str(SHIPPED)
        logger.info(f"model: the shipped checkpoint {SHIPPED.relative_to(ROOT)} (provenance: "
                    f"{SHIPPED.with_suffix('.json').name})")
    ckpt = load_checkpoint(ckpt_path)
    target = read_sg_count(target_prior) if target_prior else None
    grid = GridSpec.from_dict(ckpt.get("data_spec", {}).get("grid"))
    dev = builders.resolve_device(device)
    model = builders.model_from_checkpoint(ckpt, ckpt_path).to(dev).eval()
    rows: list[dict] = []
    failures: list[tuple[str, str]] = []
    for item in files:
        f, named = item if isinstance(item, tuple) else (item, True)
        try:
            pattern, measured = read_on_grid(f, grid, wavelength)
        except DataError as exc:
            if named:
                raise
            logger.error(f"skipped: {exc}")
            failures.append((str(f), str(exc)))
            continue
        x = torch.as_tensor(pattern, dtype=torch.float32)

        def index_own(measured: MeasuredPattern = measured, f: Path = f) -> list:
            """The file indexed on its own 2θ axis."""
            return [index_method.index_measured_row(measured.two_theta, measured.intensity,
                                                    measured.wavelength.ka1, str(f))]

        # a model with evidence inputs (train_evidence.py) gets the file's evidence
        own = index_own() if index and getattr(model, "uses_evidence", False) else None
        extra = {} if own is None else {"evidence": torch.as_tensor(own[0].vector[None], dtype=torch.float32,
                                                                    device=dev)}
        out = model(x.view(1, 1, -1).to(dev), **extra)
        # an index model has just indexed it
        if index and own is None:
            own = getattr(model, "last_rows", None) or index_own()
        fusable = own is not None and not getattr(model, "last_rows", None)
        row = {"file": str(f), "read_as": f"{measured.format}, {measured.wavelength.describe()}",
               **fused_rows(out, ckpt, own[0] if fusable else None, topk, target)}
        rows.append(row)
        if own is not None:
            row["indexed"] = own[0]
            row["second_phase"] = second_phase_line(pattern, grid, own[0], measured)
    return rows, failures


# ------------------------------------------------- files, wavelengths, a second phase (issue 25)
def read_on_grid(path: Path, grid: GridSpec, wavelength: float | None) -> tuple[np.ndarray, MeasuredPattern]:
    """One pattern file (any format of ``utils.pattern_io``) with its wavelength, resampled by
    d-spacing onto the model's grid: ``(x (L,) float32 max 1, the file as read)``.

    Raises:
        DataError: unreadable/unsupported file, not a powder scan, unknown wavelength, no overlap.
    """
    measured = read_pattern(path, wavelength)
    x, _ = pattern_to_grid(measured, grid)
    return x, measured


def second_phase_line(pattern: np.ndarray, grid: GridSpec, row, measured: MeasuredPattern) -> str:
    """``n peaks (largest at 2θ …) are not explained: a second phase?`` for the indexed cell of
    ``row`` (an ``IndexRow``), with 2θ at the file's wavelength; '' when nothing is flagged."""
    from indexing.peaks import IndexingInputError
    from indexing.phases import second_phase
    from indexing.picking import pick_peaks

    if not row.solved:
        return ""
    try:  # the same lines the indexer saw (index_method.index_measured_row: the file's axis, min_snr 5)
        peaks = pick_peaks(measured.two_theta, measured.intensity, measured.wavelength.ka1, min_snr=5.0,
                           source=str(measured.path))
    except IndexingInputError:
        return ""
    return second_phase(peaks, row.cell, row.bravais, row.zero).message(measured.wavelength.ka1)


def write_csv(fh: IO[str], rows: list[dict], topk: int) -> None:
    """The predictions as CSV rows into the open text file ``fh``."""
    w = csv.writer(fh)
    indexed = bool(rows) and "indexed" in rows[0]
    w.writerow(["file", "crystal_system", "p_cs"] + [f"{k}{i}" for i in range(1, topk + 1)
                                                     for k in ("sg", "symbol", "p")]
               + (list(index_method.csv_fields(None)) + ["second_phase"] if indexed else []))
    for r in rows:
        w.writerow([r["file"], r["crystal_system"], f"{r['p_cs']:.4f}"]
                   + [v for t in r["top"] for v in (t[0], t[1], f"{t[2]:.4f}")]
                   + (list(index_method.csv_fields(r["indexed"]).values()) + [r.get("second_phase", "")]
                      if indexed else []))


def main(argv: list[str] | None = None) -> list[dict]:
    args = get_parser().parse_args(argv)
    setup_logging(None, "INFO")
    try:
        files = collect(args.paths)
        rows, failures = predict_files(args.ckpt, files, args.wavelength, args.topk, args.device,
                                       not args.no_index, args.target_prior)
    except XRDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    for r in rows:
        print(f"{r['file']}\n  read as: {r['read_as']}\n  crystal system: {r['crystal_system']} "
              f"(p = {r['p_cs']:.3f})")
        for rank, (num, sym, p) in enumerate(r["top"], 1):
            print(f"  {rank}. {sym:<12} (No. {num:>3})  p = {p:.3f}")
        if "index" in r:  # the fusion above; each source alone below
            for name, label in (("model", "model alone"), ("index", "index alone")):
                num, sym, p = r[name]["top"][0]
                print(f"  {label}: {sym} (No. {num}) p = {p:.3f}, {r[name]['crystal_system']} "
                      f"(p = {r[name]['p_cs']:.3f})")
        if "indexed" in r:
            print(f"  indexed: {index_method.describe(r['indexed'])}")
        if r.get("second_phase"):
            print(f"  {r['second_phase']}")
    if args.csv:
        try:
            with atomic_writer(args.csv, "w", newline="") as fh:
                write_csv(fh, rows, args.topk)
        except OSError as exc:  # full disk, no permission: the predictions above stay printed
            print(f"error: {exit_message(exc) or exc}", file=sys.stderr)
            raise SystemExit(1) from None
    names = [Path(f).name for f, _ in failures]
    listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    print(f"\n{len(rows)} predicted, {len(failures)} failed"
          + (f" ({listed}; reasons above)" if names else ""))
    if failures:
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main()
