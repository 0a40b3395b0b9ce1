"""``python -m indexing``: index powder patterns as a crystallographer would, from the command line.

    python -m indexing scan.xrdml scan.ras pattern.xy folder/ [--wavelength 1.5406] [--csv out.csv]
    python -m indexing sticks.csv --sticks --wavelength 1.5406   # a 2θ/intensity stick list

Per file it prints the best cells (a, b, c, α, β, γ, volume, Bravais lattice, M₂₀, F_N, zero
shift), the most likely extinction groups with their space groups (Hermann–Mauguin symbols), and
the crystal system, and, when strong peaks stay unexplained by the best cell, a "second phase?" line
(``indexing.phases``: the unexplained lines are indexed on their own when there are enough). Files
are read by the rules of ``predict.py`` (``utils.pattern_io``: XRDML, RAS, two-column text; the
wavelength from the file, ``--wavelength`` overriding it with a warning on a mismatch, and an error
when neither gives one): files named on the command line must all be readable (the first bad one
stops the run, exit status 2, before any indexing); in a folder, a file that cannot be read or
indexed is reported and skipped, a summary line ends the output, and the exit status is 1 when any
failed.

Peaks: from a pattern, ``indexing.picking.pick_peaks`` (background, search, profile fits, Kα2);
with ``--sticks``, ``indexing.peaks.from_sticks`` (sticks merged at 0.02°). No torch is imported.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from functools import partial
from pathlib import Path

from loguru import logger

from indexing.api import analyse
from indexing.index import MIN_LINES
from indexing.parallel import ENGINES, cell_volume, parallel_map
from indexing.peaks import IndexingInputError, PeakList, from_sticks
from indexing.phases import second_phase
from indexing.picking import pick_peaks
from utils.cli import Bounded, Parser, writable_file
from utils.errors import DataError, exit_message
from utils.logging import setup_logging
from utils.pattern_io import PATTERN_SUFFIXES, collect_pattern_files, read_pattern

CSV_CELL = ("a", "b", "c", "alpha", "beta", "gamma")


def get_parser() -> argparse.ArgumentParser:
    p = Parser("python -m indexing", description="Index powder patterns: unit cells, Bravais lattice, "
               "extinction groups and crystal system, from peak positions (no model needed).")
    p.add_argument("paths", nargs="+", help="pattern files (2θ, intensity), or folders whose pattern "
                                            f"files ({', '.join(PATTERN_SUFFIXES)}) are all indexed")
    p.add_argument("--wavelength", type=Bounded(float, 0, 10, lo_open=True), default=None,
                   help="Kα1 (or monochromatic) wavelength in Å; overrides the file's (a mismatch is "
                        "reported). Unset: the file's (XRDML, RAS, a '# wavelength:' comment); a file "
                        "without one is an error")
    p.add_argument("--sticks", action="store_true",
                   help="the files are stick lists (2θ, intensity of each reflection), not patterns")
    p.add_argument("--top", type=Bounded(int, 1, 50), default=3,
                   help="cells and extinction groups listed per file")
    p.add_argument("--csv", default=None, type=writable_file,
                   help="also write one row per file to this CSV file (its folder must exist)")
    p.add_argument("--workers", type=Bounded(int, 1, 512), default=1,
                   help="processes that index the files (1: this process)")
    p.add_argument("--engine", choices=ENGINES, default="local", help="parallel engine for --workers > 1")
    return p


def read_peaks(path: Path, wavelength: float | None, sticks: bool) -> PeakList:
    """The peak list of one file (a pattern, or with ``sticks`` a stick list).

    Args:
        wavelength: ``--wavelength`` [Å] (None: the file's).

    Raises:
        DataError: unreadable or unsupported file, not a powder scan, unknown wavelength (the file
            and the fix).
        IndexingInputError: a pattern the picker refuses, or fewer than ``MIN_LINES`` peaks.
    """
    pat = read_pattern(path, wavelength)
    tt, y, wl = pat.two_theta, pat.intensity, pat.wavelength
    if sticks:
        peaks = from_sticks(tt, y, wl.ka1, source=str(path))
    else:  # the file's Kα2 line (any anode); a stated ratio 0 means Kα1 only, else estimated
        peaks = pick_peaks(tt, y, wl.ka1, wavelength_ka2=wl.ka2, source=str(path),
                           ka2_ratio=0.0 if wl.ratio == 0 else "auto")
    peaks.info["wavelength_note"] = f"{pat.format}, {wl.describe()}"
    if len(peaks) < MIN_LINES:
        fix = ("list at least that many reflections" if sticks else
               "measure a wider 2θ range or longer (weak peaks are below the noise), or pass a "
               "peak list with --sticks")
        raise IndexingInputError(f"{path}: only {len(peaks)} peaks found; indexing needs at least "
                                 f"{MIN_LINES}. Fix: {fix}")
    return peaks


def report(peaks: PeakList, top: int = 3) -> dict:
    """Index ``peaks`` and keep what the command prints (plain data, picklable)."""
    ev = analyse(peaks)
    out = {"n_peaks": len(peaks), "solved": ev.solved, "message": ev.message,
           "crystal_system": ev.crystal_system() or "", "cells": [], "ext": [],
           "ka2": (peaks.info.get("ka2_ratio"), peaks.info.get("ka2_source"))}
    for c in ev.index.candidates[:top]:
        cell = [float(v) for v in c.lattice.conventional]
        out["cells"].append({"bravais": str(c.lattice.bravais), "cell": cell, "volume": cell_volume(cell),
                             "m20": float(c.m20), "f_n": (float(c.f_n[0]), float(c.f_n[1]), int(c.f_n[2])),
                             "n_lines": int(c.n_lines), "n_indexed": int(c.n_indexed),
                             "zero": float(c.fit.zero)})
    out["second_phase"] = _second_phase(peaks, ev)
    if ev.extinction is not None:
        post = ev.extinction.posterior
        out["ext"] = [(g, float(post[g - 1]), tuple(sym)) for g, _, sym in ev.extinction.ranked(top)]
    return out


def _second_phase(peaks: PeakList, ev) -> dict:
    """The second-phase check of the best cell (``indexing.phases``) as plain data."""
    best = ev.index.best
    if best is None:
        return {"n": 0, "two_theta": [], "message": ""}
    sp = second_phase(peaks, best.lattice.conventional, best.lattice.bravais, best.fit.zero)
    return {"n": len(sp.strong) if sp.flagged else 0, "two_theta": [float(t) for t in sp.two_theta[:3]],
            "message": sp.message()}


def _print(path: Path, r: dict) -> None:
    ka2, how = r["ka2"]
    extra = f"; Kα2/Kα1 {ka2:.2f} ({how})" if ka2 is not None else ""
    note = f"; {r['wavelength']}" if r.get("wavelength") else ""
    print(f"{path}  ({r['n_peaks']} peaks{extra}{note})")
    if not r["solved"]:
        print(f"  no cell found ({r['message'] or 'no candidate indexed the lines'}): crystal system unknown")
        return
    print(f"  crystal system: {r['crystal_system']}")
    print("  cells, best first:")
    print(f"      {'':4}{'a':>9}{'b':>9}{'c':>9}{'α':>8}{'β':>8}{'γ':>8}{'V':>10}{'M20':>8}"
          "  F_N (mean|Δ2θ|, N_poss)  zero shift")
    for i, c in enumerate(r["cells"], 1):
        a, b, cc, al, be, ga = c["cell"]
        fn, d2t, npos = c["f_n"]
        print(f"  {i:>2}. {c['bravais']:<4}{a:>9.4f}{b:>9.4f}{cc:>9.4f}{al:>8.2f}{be:>8.2f}{ga:>8.2f}"
              f"{c['volume']:>10.1f}{c['m20']:>8.1f}  F{c['n_lines']}={fn:.1f} ({d2t:.4f}°, {npos})"
              f"  {round(c['zero'], 4) + 0.0:+.4f}°  ({c['n_indexed']}/{c['n_lines']} lines indexed)")
    print("  extinction groups, most likely first (space groups):")
    for i, (g, p, sym) in enumerate(r["ext"], 1):
        print(f"  {i:>2}. group {g:>2}  p = {p:.3f}  {' '.join(sym)}")
    if r.get("second_phase", {}).get("message"):
        print(f"  {r['second_phase']['message']}")


def _csv_row(path: Path, r: dict) -> list:
    row: list = [str(path), r["n_peaks"], int(r["solved"]), r["crystal_system"]]
    if r["cells"]:
        c = r["cells"][0]
        row += [c["bravais"], *(f"{v:.5f}" for v in c["cell"]), f"{c['volume']:.3f}", f"{c['m20']:.2f}",
                f"{c['f_n'][0]:.2f}", f"{c['zero']:.5f}"]
    else:
        row += [""] * 11
    ext = r["ext"][:3] + [(None, None, ())] * (3 - len(r["ext"][:3]))
    sp = r.get("second_phase", {"n": 0, "two_theta": []})
    return (row + [g if g is not None else "" for g, _, _ in ext] + [" ".join(sym) for _, _, sym in ext]
            + [sp["n"], " ".join(f"{t:.3f}" for t in sp["two_theta"]) if sp["n"] else ""])


def write_csv(path: str, results: list[tuple[Path, dict]]) -> None:
    """One row per indexed file, written atomically (temporary file, then ``os.replace``)."""
    tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "n_peaks", "solved", "crystal_system", "bravais", *CSV_CELL, "volume", "M20",
                        "F_N", "zero", "ext1", "ext2", "ext3", "sgs1", "sgs2", "sgs3",
                        "unexplained_peaks", "unexplained_two_theta"])
            for f, r in results:
                w.writerow(_csv_row(f, r))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> tuple[list[tuple[Path, dict]], list[tuple[str, str]]]:
    """Read every file, index them; returns ``(results, failures)`` (see the module docstring)."""
    files = collect_pattern_files(args.paths)
    peaks: list[tuple[Path, PeakList]] = []
    failures: list[tuple[str, str]] = []
    for f, named in files:
        try:
            peaks.append((f, read_peaks(f, args.wavelength, args.sticks)))
        except (DataError, IndexingInputError) as exc:
            if named:
                raise
            logger.error(f"skipped: {exc}")
            failures.append((str(f), str(exc)))
    reports = parallel_map(partial(report, top=args.top), [p for _, p in peaks], args.workers, args.engine,
                           chunk_size=1, desc="indexing", progress=len(peaks) > 1)
    for (_, p), r in zip(peaks, reports):
        r["wavelength"] = p.info.get("wavelength_note", "")
    return [(f, r) for (f, _), r in zip(peaks, reports)], failures


def main(argv: list[str] | None = None) -> list[tuple[Path, dict]]:
    args = get_parser().parse_args(argv)
    setup_logging(None, "INFO")
    try:
        results, failures = run(args)
    except (DataError, IndexingInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    for f, r in results:
        _print(f, r)
    if args.csv:
        try:
            write_csv(args.csv, results)
        except OSError as exc:  # full disk, no permission: the results above stay printed
            print(f"error: {exit_message(exc) or exc}", file=sys.stderr)
            raise SystemExit(1) from None
    names = [Path(f).name for f, _ in failures]
    listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    unsolved = sum(not r["solved"] for _, r in results)
    print(f"\n{len(results)} indexed ({unsolved} without a cell), {len(failures)} failed"
          + (f" ({listed}; reasons above)" if names else ""))
    if failures:
        raise SystemExit(1)
    return results
