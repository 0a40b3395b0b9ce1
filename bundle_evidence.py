"""Ship the indexing evidence of a dataset's fixed evaluation patterns beside it (issue 23, part 1).

    python bundle_evidence.py                                   # data/xrd_mp_default/index_evidence.npz
    python bundle_evidence.py --data_dir data/external_pyxtal   # another dataset, same rendering
    python bundle_evidence.py --check 5                         # re-index 5 bundled patterns, compare

``--evidence index`` (the quick preset) indexes every validation and test pattern the run
evaluates (peaks picked on the rendering, cell, extinction groups): on a new machine that is
~23 min of 2 cores for the built-in benchmark, more than its training. These patterns are fixed
(the files, the renderer and the lab conditions' seed do not change from run to run), so their
results are data: this command renders them exactly as a run's evaluation does (the data flags
of ``--ckpt``, default the shipped model; ``builders.make_loaders``: ``val``, ``test``,
``test_lab``), indexes them (from the per-pattern cache when present) and writes them into one
file, ``DATA_DIR/index_evidence.npz`` (:mod:`indexing.bundle`), which every run reading that
data directory looks up after its own cache (``index_method.shipped_bundles``). A bundle is keyed
by each pattern's bytes and by the indexing code's digest: after any change to the indexing code
it is simply not used (a warning says so) until this command is run again. ``--check N``
re-indexes N bundled patterns of each split from scratch and fails unless they match.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from loguru import logger

import builders
import index_method
from indexing.bundle import BUNDLE_NAME, bundle_key, load_bundle, save_bundle
from indexing.patterns import index_pattern
from Trainer import Evaluator
from Trainer.evidence import predict_with_inputs
from utils.checkpoint import load_checkpoint
from utils.errors import DataError
from utils.logging import setup_logging

SHIPPED = Path(__file__).resolve().parent / "data" / "checkpoints" / "icl_quick.pt"
SPLITS = ("val", "test", "test_lab")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("bundle_evidence.py", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default=str(SHIPPED), help="a run whose data flags (grid, axis) render the "
                   "patterns (default: the shipped model)")
    p.add_argument("--data_dir", default=None, help="dataset (default: the checkpoint's)")
    p.add_argument("--out", default=None, help=f"bundle file (default DATA_DIR/{BUNDLE_NAME})")
    p.add_argument("--workers", type=int, default=2, help="indexing processes for cache misses")
    p.add_argument("--cache_dir", default=None, help="per-pattern cache (default Log/index_cache/patterns)")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="instead of writing: re-index N bundled patterns per split and compare")
    p.add_argument("--log_level", default="INFO")
    return p


def split_patterns(args: argparse.Namespace) -> tuple[dict[str, np.ndarray], object, Path]:
    """The evaluation patterns (N, L) of each split, in loader order, as a run's evaluation renders
    them; the grid; the data directory."""
    ckpt = load_checkpoint(args.ckpt)
    run_args = argparse.Namespace(**ckpt["args"])
    if args.data_dir:
        run_args.data_dir, run_args.processed_data_dir = args.data_dir, None
    run_args.data_source = "files"
    data = builders.build_data(run_args, augment=False)
    root = Path(run_args.data_dir or run_args.processed_data_dir or builders.DEFAULT_DATA)
    loaders = builders.make_loaders(data, 256, 0, int(run_args.seed), torch.device("cpu"))
    evaluator = Evaluator(builders.model_from_checkpoint(ckpt, args.ckpt), np.asarray(data.class_counts),
                          torch.device("cpu"))
    xs = {name: predict_with_inputs(evaluator, loaders[name])[1] for name in SPLITS if loaders.get(name)}
    return xs, data.grid, root


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when inside it (the bundle is shipped with the checkout)."""
    here = Path(__file__).resolve().parent
    return str(path.resolve().relative_to(here)) if path.resolve().is_relative_to(here) else str(path)


def main(argv: list[str] | None = None) -> dict:
    args = get_parser().parse_args(argv)
    setup_logging(None, args.log_level)
    xs, grid, root = split_patterns(args)
    out = Path(args.out or root / BUNDLE_NAME)
    source = index_method.PatternEvidenceSource(grid, args.workers, cache_dir=args.cache_dir)
    if args.check:
        return check(out, xs, source, args.check)
    t0 = time.perf_counter()
    table: dict = {}  # key -> row (a pattern rendered twice alike is stored once)
    counts = {}
    for name, x in xs.items():
        source(x, name)
        for p, r in zip(x, source.rows[name], strict=True):
            table.setdefault(bundle_key(p, source.two_theta, source.wavelength, source.options), r)
        counts[name] = len(x)
    keys, rows = list(table), list(table.values())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip()
    given = argv if argv is not None else sys.argv[1:]
    meta = {"command": "python " + " ".join([Path(__file__).name, *given]),
            "data_dir": _shown(root), "splits": counts, "options": source.options, "commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M"), "indexing_cpu_s": round(sum(r.cpu_s for r in rows), 1),
            "solved": int(sum(r.solved for r in rows))}
    save_bundle(out, keys, rows, meta)
    logger.info(f"{out}: {len(rows)} patterns ({counts}), {meta['solved']} indexed, "
                f"{out.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f} s")
    return {"out": str(out), **meta, "n": len(rows)}


def check(path: Path, xs: dict[str, np.ndarray], source: index_method.PatternEvidenceSource, n: int,
          min_found: float = 0.95) -> dict:
    """Fail unless ≥ ``min_found`` of the patterns of every split are in the bundle, and ``n`` of
    them per split, re-indexed here without any cache, give its evidence vectors."""
    table = load_bundle(path)
    bad, done, found = [], 0, {}
    for name, x in xs.items():
        keys = [bundle_key(p, source.two_theta, source.wavelength, source.options) for p in x]
        hit = [i for i, k in enumerate(keys) if k in table]
        found[name] = len(hit) / max(len(x), 1)
        if found[name] < min_found:
            raise DataError(f"{path}: only {len(hit)} of {len(x)} {name} patterns are in the bundle "
                            "(other renderings or indexing code). Fix: python bundle_evidence.py to "
                            "write it again")
        for i in [hit[j] for j in np.linspace(0, len(hit) - 1, min(n, len(hit))).astype(int)]:
            row = index_pattern(x[i], source.two_theta, source.wavelength, source.options)
            done += 1
            if not np.allclose(row.vector, table[keys[i]].vector, atol=1e-4):
                bad.append(f"{name} {i}")
    if bad:
        raise DataError(f"{path}: {len(bad)} of {done} re-indexed patterns differ from the bundle "
                        f"({', '.join(bad[:5])}). Fix: python bundle_evidence.py to write it again")
    logger.info(f"{path}: patterns found {found}; {done} re-indexed ones match the bundle")
    return {"checked": done, "found": found}


if __name__ == "__main__":
    from utils.errors import XRDError, exit_message

    try:
        print(json.dumps(main()))
    except (XRDError, OSError) as exc:
        if (line := exit_message(exc)) is None:
            raise
        raise SystemExit(line) from None
