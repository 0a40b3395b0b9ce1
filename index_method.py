"""``--method index``: the crystallographer's answer as a method (composition, layer 4).

No training. Every evaluated pattern (the data's rendered or loaded input on its 2θ grid, before
any log-d resampling of a frontend) is peak-picked and indexed (``indexing.patterns``: cell
search, extinction-group likelihoods; cached per pattern content under ``Log/index_cache/patterns``,
misses indexed in parallel). The 230 space groups are then scored as

    logit(sg) = log π(sg) + w · ℓ_ext(ext(sg))

where π is the training prior (class counts + α, ``--index_prior_smoothing``), ℓ_ext the
extinction-group log-likelihood of the best cell (``PatternEvidence.ext_loglik``: floored at −30,
0 when no cell was found) and w = ``--index_ext_weight``. With the default w = 100 the extinction
term decides (any likelihood gap above ~0.06 nats outweighs the widest prior ratio) and the prior
chooses the space group within the most likely extinction group; an unsolved pattern gets the
prior alone. Crystal-system logits likewise: log π(cs) + w · ℓ_cs. The settings, the class counts
and the grid travel in the checkpoint (``model_config``), so ``test.py --ckpt`` re-evaluates and
``predict.py`` predicts with them.

Pieces: :class:`IndexMethod` (the ``LOSSES`` plug-in: flags, trainer ``index``, nothing to
optimise), :class:`IndexModel` (x → logits; in :data:`COMPOSED_MODELS`, which ``builders`` consults
next to ``models.MODELS``: ``models/`` may not import ``indexing``), :func:`describe` (one line per
indexed pattern, for ``predict.py``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger
from torch import nn

from indexing.api import EVIDENCE_DIM
from indexing.bundle import BUNDLE_NAME
from indexing.cache import CACHE_DIR
from indexing.parallel import ENGINES, IndexRow
from indexing.patterns import index_patterns
from loss import LOSSES
from Trainer.fusion import log_prior
from utils.cli import Bounded
from utils.errors import ConfigError
from utils.registry import Registry
from utils.sg_tables import N_CS, N_SG, SG_TO_CS, extinction_groups, sg_symbol

COMPOSED_MODELS = Registry("composed model")
PATTERN_CACHE = CACHE_DIR / "patterns"
N_EXT = 99
_EXT = extinction_groups()  # (230,) extinction group 1..99 per 0-based space group


@LOSSES.register("index")
class IndexMethod(nn.Module):
    """The ``--method index`` plug-in: declares the flags; there is nothing to optimise."""

    summary = ("no training: peaks picked, cell indexed; the training prior chooses the space group "
               "within the most likely extinction group")
    default_model = "index"
    trainer = "index"

    def on_epoch_start(self, epoch: int) -> None:
        """Stateless: nothing to do."""

    def forward(self, outputs: Any, batch: Any) -> Any:
        raise RuntimeError("--method index trains nothing (its trainer only evaluates)")

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("index (no training: peak picking, indexing, extinction groups)")
        g.add_argument("--index_lines", type=Bounded(int, 6, 60), default=20,
                       help="index: lowest-angle lines used by the cell search (indexing.api.analyse)")
        g.add_argument("--index_min_snr", type=Bounded(float, 0, lo_open=True), default=5.0,
                       help="index: a picked line is kept when its area is this many σ above 0")
        g.add_argument("--index_ext_weight", type=Bounded(float, 0), default=100.0,
                       help="index: w in log π(sg) + w·ℓ_ext; large: the extinction group decides and "
                            "the training prior picks within it; 1: the plain Bayes posterior")
        g.add_argument("--index_prior_smoothing", type=Bounded(float, 0, lo_open=True), default=1.0,
                       help="index: α added to every training class count of the prior π")
        g.add_argument("--index_workers", type=Bounded(int, 1, 256), default=2,
                       help="index: processes that pick and index the patterns not in the cache")
        g.add_argument("--index_engine", default="local", choices=list(ENGINES),
                       help="index: parallel engine (indexing.parallel: local processes or Ray)")

    @staticmethod
    def args_to_kwargs(args: argparse.Namespace) -> dict[str, Any]:
        return {}


@COMPOSED_MODELS.register("index")
class IndexModel(nn.Module):
    """Maps patterns x (B,1,L) on the 2θ grid to ``logits`` (B,230) and ``cs_logits`` (B,7)
    (module docstring). ``last_rows`` keeps the :class:`IndexRow` of the last batch.

    Args:
        class_counts: (230,) training counts (the prior).
        grid: ``[n_points, two_theta_min, two_theta_max, wavelength]`` of the input.
        frontend, frontend_kwargs: accepted for the common model config, unused.
        n_lines, min_snr, ext_weight, prior_smoothing, workers, engine: the ``--index_*`` flags.
        cache_dir: per-pattern cache (None: ``Log/index_cache/patterns`` of the checkout).
    """

    def __init__(self, class_counts: list[float], grid: list[float], frontend: str = "",
                 num_classes: int = N_SG, frontend_kwargs: dict | None = None, n_lines: int = 20,
                 min_snr: float = 5.0, ext_weight: float = 100.0, prior_smoothing: float = 1.0,
                 workers: int = 2, engine: str = "local", cache_dir: str | None = None) -> None:
        super().__init__()
        if num_classes != N_SG or len(class_counts) != N_SG:
            raise ConfigError(f"--method index scores the {N_SG} space groups; this data has {num_classes} "
                              "classes. Fix: use it on an XRD dataset")
        self.n_points, self.tt_min, self.tt_max, self.wavelength = int(grid[0]), *map(float, grid[1:4])
        self.options = {"n_lines": int(n_lines), "min_snr": float(min_snr)}
        self.ext_weight, self.workers, self.engine = float(ext_weight), int(workers), engine
        self.cache_dir = Path(cache_dir) if cache_dir else PATTERN_CACHE
        counts = np.asarray(class_counts, np.float64)
        # the one fitted thing, the prior: a parameter (never stepped) so the common optimiser builds
        self.log_prior = nn.Parameter(torch.tensor(log_prior(counts, prior_smoothing), dtype=torch.float32))
        cs_counts = np.bincount(SG_TO_CS, weights=counts, minlength=N_CS)
        self.register_buffer("log_prior_cs", torch.tensor(log_prior(cs_counts, prior_smoothing),
                                                          dtype=torch.float32))
        self.register_buffer("ext_index", torch.as_tensor(_EXT - 1, dtype=torch.long))
        self.last_rows: list[IndexRow] = []
        self.cache_hits = 0

    @classmethod
    def args_to_kwargs(cls, args: argparse.Namespace) -> dict[str, Any]:
        return {"n_lines": args.index_lines, "min_snr": args.index_min_snr,
                "ext_weight": args.index_ext_weight, "prior_smoothing": args.index_prior_smoothing,
                "workers": args.index_workers, "engine": args.index_engine,
                "cache_dir": str(Path(args.output_dir) / "index_cache" / "patterns")}

    @property
    def two_theta(self) -> np.ndarray:
        """The input's 2θ axis, as ``utils.grid.GridSpec.two_theta`` lays it (no end point)."""
        return self.tt_min + (self.tt_max - self.tt_min) / self.n_points * np.arange(self.n_points)

    def index(self, x: np.ndarray, sources: list[str] | None = None) -> list[IndexRow]:
        """Index patterns (N, L) on the grid (cached); returns one row per pattern."""
        if x.shape[-1] != self.n_points:
            raise ConfigError(f"--method index: patterns of {x.shape[-1]} points, the grid has "
                              f"{self.n_points}")
        rows, hits = index_patterns(x.reshape(len(x), -1), self.two_theta, self.wavelength, self.options,
                                    self.workers, self.engine, self.cache_dir, sources)
        self.cache_hits += hits
        return rows

    def scores(self, rows: list[IndexRow]) -> dict[str, torch.Tensor]:
        """``logits`` (N,230), ``cs_logits`` (N,7) from the rows' evidence vectors."""
        ev = torch.as_tensor(np.stack([r.vector for r in rows]), dtype=torch.float32,
                             device=self.log_prior.device)
        cs_ll, ext_ll = ev[:, :N_CS], ev[:, N_CS:N_CS + N_EXT]
        logits = self.log_prior.detach() + self.ext_weight * ext_ll[:, self.ext_index]
        return {"logits": logits, "cs_logits": self.log_prior_cs + self.ext_weight * cs_ll}

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.last_rows = self.index(x.detach().float().cpu().numpy())
        out = self.scores(self.last_rows)
        return {k: v.to(x.device) for k, v in out.items()}


EVIDENCE = Registry("evidence source")


class PatternEvidenceSource:
    """``source(x, name) -> (N, 110)``: the indexing evidence vectors of patterns (N, L) on a 2θ
    grid (peaks picked and indexed with the default settings; cached per pattern content under
    ``cache_dir``, then in the read-only ``bundles`` shipped beside the data; misses indexed by
    ``workers`` processes). Injected into the Trainer and ``test.py`` for ``--evidence index``
    (``Trainer.evidence``)."""

    def __init__(self, grid: Any, workers: int = 2, engine: str = "local",
                 cache_dir: str | Path | None = None, options: dict | None = None,
                 bundles: list[Path] | None = None) -> None:
        self.two_theta, self.wavelength = grid.two_theta(), float(grid.wavelength)
        self.workers, self.engine = int(workers), engine
        self.cache_dir = Path(cache_dir) if cache_dir else PATTERN_CACHE
        self.options = dict(options or {"n_lines": 20, "min_snr": 5.0})
        self.bundles = list(bundles or [])
        self.rows: dict[str, list[IndexRow]] = {}

    def __call__(self, x: np.ndarray, name: str = "patterns") -> np.ndarray:
        x = np.asarray(x, np.float32).reshape(len(x), -1)
        if x.shape[1] != len(self.two_theta):
            raise ConfigError(f"--evidence index: patterns of {x.shape[1]} points, the grid has "
                              f"{len(self.two_theta)}")
        t0 = time.perf_counter()
        names = [f"{name} pattern {i}" for i in range(len(x))]
        rows, hits = index_patterns(x, self.two_theta, self.wavelength, self.options, self.workers,
                                    self.engine, self.cache_dir, names, bundles=self.bundles)
        solved = sum(r.solved for r in rows)
        where = " and ".join([str(self.cache_dir), *map(str, self.bundles)])
        logger.info(f"indexing evidence for {name}: {len(rows)} patterns ({hits} from {where}), "
                    f"{solved} indexed, {time.perf_counter() - t0:.1f} s")
        self.rows[name] = rows
        return np.stack([r.vector for r in rows]) if rows else np.zeros((0, EVIDENCE_DIM), np.float32)


@EVIDENCE.register("index")
def index_evidence(grid: Any, workers: int = 2, output_dir: str = "Log",
                   bundles: list[Path] | None = None) -> PatternEvidenceSource:
    return PatternEvidenceSource(grid, workers, cache_dir=Path(output_dir) / "index_cache" / "patterns",
                                 bundles=bundles)


@EVIDENCE.register("none")
def no_evidence(grid: Any, workers: int = 2, output_dir: str = "Log",
                bundles: list[Path] | None = None) -> None:
    return None


def shipped_bundles(args: argparse.Namespace) -> list[Path]:
    """The evidence bundles (``indexing.bundle.BUNDLE_NAME``) beside the data a run reads."""
    roots = [getattr(args, k, None) for k in ("data_dir", "processed_data_dir")]
    roots = [Path(r) for r in roots if r] or [Path(__file__).resolve().parent / "data" / "xrd_mp_default"]
    return [r / BUNDLE_NAME for r in roots if (r / BUNDLE_NAME).is_file()]


def evidence_source(args: argparse.Namespace, grid: Any,
                    n_classes: int = N_SG) -> PatternEvidenceSource | None:
    """The ``--evidence`` source of a run (None for ``none``)."""
    if args.evidence != "none" and (n_classes != N_SG or getattr(args, "method", "") == "index"):
        raise ConfigError(f"--evidence {args.evidence}: needs a space-group model on XRD patterns "
                          f"({n_classes} classes, method {getattr(args, 'method', '?')}). Fix: drop "
                          "--evidence (--method index already is the index alone)")
    return EVIDENCE.get(args.evidence)(grid, args.evidence_workers, args.output_dir, shipped_bundles(args))


def _cell_text(row: IndexRow) -> str:
    a, b, c, al, be, ga = (float(v) for v in row.cell)
    kind = row.bravais[:1]
    if kind == "c":
        return f"a={a:.4f}"
    if kind in ("t", "h"):
        return f"a={a:.4f} c={c:.4f}"
    if kind == "o":
        return f"a={a:.4f} b={b:.4f} c={c:.4f}"
    if kind == "m":
        return f"a={a:.4f} b={b:.4f} c={c:.4f} β={be:.2f}"
    return f"a={a:.4f} b={b:.4f} c={c:.4f} α={al:.2f} β={be:.2f} γ={ga:.2f}"


def ext_members(group: int, limit: int = 4) -> str:
    """Hermann–Mauguin symbols of the space groups of extinction group ``group`` (1..99)."""
    sgs = np.flatnonzero(_EXT == group) + 1
    names = [sg_symbol(int(s)) for s in sgs[:limit]]
    return ", ".join(names) + (f", … {len(sgs) - limit} more" if len(sgs) > limit else "")


def describe(row: IndexRow) -> str:
    """One line: ``cF a=5.4300 (V=160.1 Å³) M20=45.2; extinction group 88 (Fd-3m, Fd-3)`` or
    ``no cell (reason)``."""
    if not row.solved:
        return f"no cell ({row.message or 'no cell found'})"
    ext = f"; extinction group {row.ext_top[0]} ({ext_members(row.ext_top[0])})" if row.ext_top[0] else ""
    system = f", {row.crystal_system}" if row.crystal_system else ""
    return (f"{row.bravais} {_cell_text(row)} (V={row.volume:.1f} Å³{system}) M20={row.m20:.1f}{ext}")


def csv_fields(row: IndexRow | None) -> dict[str, str]:
    """The indexed Bravais lattice, cell (a b c α β γ) and M20 as CSV cells ('' when unsolved)."""
    if row is None or not row.solved:
        return {"indexed_bravais": "", "indexed_cell": "", "indexed_m20": ""}
    return {"indexed_bravais": row.bravais, "indexed_cell": " ".join(f"{v:.4f}" for v in row.cell),
            "indexed_m20": f"{row.m20:.1f}"}


def index_measured_row(two_theta: np.ndarray, intensity: np.ndarray, wavelength: float,
                       source: str) -> IndexRow:
    """Index one measured scan on its own 2θ axis (all its points, not the model's resampled grid;
    cached like every pattern): what predict.py shows and fuses."""
    rows, _ = index_patterns(np.asarray(intensity, np.float32)[None], np.asarray(two_theta, np.float64),
                             wavelength, {"n_lines": 20, "min_snr": 5.0}, 1, "local", PATTERN_CACHE, [source],
                             progress=False)
    return rows[0]


__all__ = ["COMPOSED_MODELS", "EVIDENCE", "EVIDENCE_DIM", "PatternEvidenceSource", "evidence_source",
           "IndexMethod", "IndexRow", "IndexModel", "csv_fields", "index_measured_row",
           "describe", "log_prior"]
