"""GH: Geometric Harmonization for long-tailed representation learning.

Paper: Y. Zhou, J. Yao, F. Hong, Y. Zhang, Y. Wang, "Combating Representation Learning Disparity
with Geometric Harmonization", NeurIPS 2023. Spec: docs/methods/gh.md. Written from the
formulas, not from the reference code.

GH is self-supervised: on top of SimCLR (NT-Xent on two views), the projections z^v (B, d) are
mapped onto a fixed simplex-ETF target M (K, d), t^v = normalize(z^v Mᵀ), and trained to predict
Sinkhorn pseudo-labels q of the other view (swapped prediction); the Sinkhorn marginals use a
prior π estimated from a per-sample memory bank, never from labels::

    L = L_base + w_e · L_GH,
    L_GH = −mean_i Σ_k q(t¹)_ik log softmax(t²_i/γ)_k − mean_i Σ_k q(t²)_ik log softmax(t¹_i/γ)_k

with w_e = 0 for epochs e ≤ W (1-based), (e − W)/W_GH during the next W_GH epochs, then 1. The
bank m_i ← β·m_i + (1 − β)·normalize(sg(z¹_i) Mᵀ) (the first value of a sample is stored as is;
β = 0.9 during warm-up, ``beta`` after); π_k = share of samples whose bank argmax is k, recomputed
at the end of warm-up and every ``prior_every`` epochs after (plus an optional count floor, the
paper's large-scale variant, against empty clusters).

Two modes (``mode``):

* ``"ssl"`` (faithful): L_base = NT-Xent; the classifier reads DETACHED features (an online linear
  probe: ``gh_linear`` with ``detach_classifier``) and its CE is added, so labels never reach the
  encoder and ``logits`` can be evaluated by the framework. Deviation: the paper evaluates with a
  separate linear probe (Adam, 500 epochs) on a balanced labelled set, not an online probe trained
  on the long-tailed set.
* ``"supervised"`` (the spec's adaptation (b), the default for XRD): L_base = CE + λ_ssl·NT-Xent,
  CE on both views; π still comes from the bank.

XRD changes: the two views are two independent augmented renderings of the same peak list (2θ
shift, peak width, intensity, background, noise — ``datasets.views``) instead of image crops and
colour jitter; K defaults to the number of classes (230) and the projection to d = 256 ≥ K (the
exact ETF needs d ≥ K; the paper's CIFAR setting is K = 100, d = 128). W is a fraction of
``--epochs`` (the paper: 500 of 1000). Sinkhorn runs in float64 without autocast (exp(t/ε) spans
e^(±1/ε)), which changes nothing but the rounding.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from loss.registry import LOSSES
from utils.errors import ConfigError, DataError, fail

MODES = ("supervised", "ssl")
Tensors = dict[str, torch.Tensor]


def etf_target(k: int, d: int, seed: int = 0) -> torch.Tensor:
    """Simplex ETF M = sqrt(K/(K−1)) (I_K − 11ᵀ/K) U with U (K, d) orthonormal rows (needs d ≥ K).

    Rows have unit norm and pairwise inner products −1/(K−1): M Mᵀ = K/(K−1) I − 1/(K−1) 11ᵀ.
    U is drawn from a fixed seed, so the target is reproducible (it is also saved as a buffer).
    """
    if k < 2 or d < k:
        raise fail(ConfigError, "--gh_target_dim/--gh_proj_dim", f"a {k}-point simplex ETF in {d} dimensions "
                   "does not exist (needs 2 ≤ K ≤ d)", "raise --gh_proj_dim to at least --gh_target_dim")
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))  # (d, K) orthonormal cols
    center = torch.eye(k, dtype=torch.float64) - 1.0 / k
    return (math.sqrt(k / (k - 1)) * center @ q.T).float()


@torch.no_grad()
def sinkhorn(t: torch.Tensor, prior: torch.Tensor, epsilon: float = 0.05, iters: int = 300) -> torch.Tensor:
    """Sinkhorn pseudo-labels with row marginal 1/B and class marginal π.

    P = exp(t/ε)ᵀ (K, B); c = 1/B; repeat: r = π / (P c), c = (1/B) / (Pᵀ r); Q = diag(r) P diag(c);
    q = B·Qᵀ. Rows of q sum to 1 exactly; column k sums to ≈ B·π_k.

    Args:
        t: (B, K) geometric logits (rows of unit norm in GH).
        prior: (K,) π, non-negative, sums to 1.
        epsilon: entropic temperature ε.
        iters: T_s iterations.

    Returns:
        (B, K) float32 soft labels, no gradient.
    """
    logits = t.double() / epsilon
    p = torch.exp(logits - logits.max()).T          # the global shift cancels in Q
    b = p.shape[1]
    pi = prior.double()
    c = torch.full((b,), 1.0 / b, dtype=torch.float64, device=t.device)
    r = pi
    for _ in range(iters):
        r = pi / (p @ c)
        c = (1.0 / b) / (p.T @ r)
    q = r[:, None] * p * c[None, :]
    return (b * q.T).float()


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's NT-Xent on two views (T. Chen et al., ICML 2020), mean over the 2B anchors.

    Args:
        z1, z2: (B, d) projections of the two views (normalised here).
        temperature: τ.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z.shape[0] // 2
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def gh_swap_loss(t1: torch.Tensor, t2: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor,
                 gamma: float = 0.1) -> torch.Tensor:
    """−mean Σ q1 log softmax(t2/γ) − mean Σ q2 log softmax(t1/γ); all (B, K)."""
    return (-(q1 * F.log_softmax(t2 / gamma, dim=1)).sum(1).mean()
            - (q2 * F.log_softmax(t1 / gamma, dim=1)).sum(1).mean())


def gh_weight(epoch_1based: int, warmup: int, ramp: int) -> float:
    """w_e: 0 for e ≤ W, (e − W)/W_GH for W < e ≤ W + W_GH, 1 after (W_GH = 0: a step)."""
    if epoch_1based <= warmup:
        return 0.0
    if ramp <= 0:
        return 1.0
    return min(1.0, (epoch_1based - warmup) / ramp)


@LOSSES.register("gh")
class GHLoss(nn.Module):
    """GH on top of SimCLR (``mode="ssl"``) or of CE + SimCLR (``mode="supervised"``).

    Args:
        class_counts: (C,) training counts: C sets the default K and N = Σ n the bank size (the
            counts themselves are never used; the bank grows if a larger sample index appears).
        epochs: total epochs (W = round(warmup_frac · epochs)).
        mode: "supervised" or "ssl" (see the module docstring).
        target_dim: K (0 = C). proj_dim: d of the model's projector (≥ K).
        lambda_ssl: weight of NT-Xent in supervised mode (ssl mode: 1).
        temperature: NT-Xent τ. gamma: γ of the swapped prediction. epsilon, sinkhorn_iters: ε, T_s.
        warmup_frac: W as a fraction of ``epochs``. ramp_epochs: W_GH.
        beta: bank momentum after warm-up. warmup_beta: during warm-up.
        prior_every: epochs between π refreshes after warm-up.
        prior_floor: count added to every cluster before normalising π (0 = the CIFAR recipe).

    Forward inputs: outputs with "proj" (2B, d) and "logits" (2B, C), the two views stacked
    [view 1; view 2] (the ``gh`` trainer does this); batch with "y_sg" (B,) and "idx" (B,).
    Returns {"loss", "l_sup" (or "l_probe" in ssl mode), "l_ssl", "l_gh", "gh_weight"}, detached.
    Buffers: ``etf`` (K, d), ``bank`` (N, K), ``seen`` (N,), ``prior`` (K,), ``current_epoch``.
    """

    summary = "GH (NeurIPS 2023): geometric harmonization (ETF targets, Sinkhorn) on CE + NT-Xent"
    default_model = "gh_linear"
    trainer = "gh"
    n_views = 2

    def __init__(self, class_counts: Any, epochs: int = 100, mode: str = "supervised", target_dim: int = 0,
                 proj_dim: int = 256, lambda_ssl: float = 1.0, temperature: float = 0.2, gamma: float = 0.1,
                 epsilon: float = 0.05, sinkhorn_iters: int = 300, warmup_frac: float = 0.5,
                 ramp_epochs: int = 10, beta: float = 0.999, warmup_beta: float = 0.9, prior_every: int = 20,
                 prior_floor: float = 0.0) -> None:
        super().__init__()
        if mode not in MODES:
            raise fail(ConfigError, "--gh_mode", f"unknown mode '{mode}'", f"use one of: {', '.join(MODES)}")
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
        if counts.dim() != 1 or counts.numel() < 2:
            raise fail(ConfigError, "class_counts", f"expected (C,) counts, got shape {tuple(counts.shape)}",
                       "pass the training histogram of the classes")
        checks = (("--gh_temperature", temperature, temperature > 0), ("--gh_gamma", gamma, gamma > 0),
                  ("--gh_epsilon", epsilon, 0.003 <= epsilon),
                  ("--gh_sinkhorn_iters", sinkhorn_iters, sinkhorn_iters >= 1),
                  ("--gh_warmup_frac", warmup_frac, 0 <= warmup_frac <= 1),
                  ("--gh_beta", beta, 0 <= beta < 1), ("--gh_prior_every", prior_every, prior_every >= 1),
                  ("--gh_prior_floor", prior_floor, prior_floor >= 0),
                  ("--gh_ramp_epochs", ramp_epochs, ramp_epochs >= 0))
        for name, val, ok in checks:
            if not ok:
                raise fail(ConfigError, name, f"invalid value {val}",
                           "see --method gh --help for the valid range (ε ≥ 0.003: float64 Sinkhorn)")
        k = int(target_dim) or counts.numel()
        self.mode, self.k, self.proj_dim = mode, k, int(proj_dim)
        self.lambda_ssl, self.temperature, self.gamma = float(lambda_ssl), float(temperature), float(gamma)
        self.epsilon, self.sinkhorn_iters = float(epsilon), int(sinkhorn_iters)
        self.warmup, self.ramp = int(round(warmup_frac * epochs)), int(ramp_epochs)
        self.beta, self.warmup_beta = float(beta), float(warmup_beta)
        self.prior_every, self.prior_floor = int(prior_every), float(prior_floor)
        n = max(int(counts.sum()), 1)
        self.register_buffer("etf", etf_target(k, self.proj_dim))
        self.register_buffer("bank", torch.zeros(n, k))
        self.register_buffer("seen", torch.zeros(n, dtype=torch.bool))
        self.register_buffer("prior", torch.full((k,), 1.0 / k))
        self.register_buffer("current_epoch", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ state
    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # The bank may have grown during training: take the saved size before copying.
        for name in ("bank", "seen"):
            saved = state_dict.get(prefix + name)
            cur = getattr(self, name)
            if saved is not None and saved.shape != cur.shape:
                setattr(self, name, torch.zeros(saved.shape, dtype=cur.dtype, device=cur.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def on_epoch_start(self, epoch: int) -> None:
        """Record the epoch (0-based); refresh π at the end of warm-up and every ``prior_every`` after."""
        self.current_epoch.fill_(int(epoch))
        if epoch >= self.warmup and (epoch - self.warmup) % self.prior_every == 0:
            self.refresh_prior()

    @torch.no_grad()
    def refresh_prior(self) -> torch.Tensor:
        """π_k ∝ #{seen samples with argmax_k m_i = k} + floor (uniform while the bank is empty)."""
        counts = torch.bincount(self.bank[self.seen].argmax(1), minlength=self.k).double() + self.prior_floor
        if counts.sum() > 0:
            self.prior.copy_((counts / counts.sum()).float())
        return self.prior

    @torch.no_grad()
    def update_bank(self, idx: torch.Tensor, t1: torch.Tensor, beta: float) -> None:
        """m_i ← β m_i + (1 − β) t¹_i for samples seen before, m_i ← t¹_i for new ones."""
        need = int(idx.max()) + 1
        if need > self.bank.shape[0]:  # e.g. a reader whose indices exceed Σ class_counts
            grow = need - self.bank.shape[0]
            self.bank = torch.cat([self.bank, self.bank.new_zeros(grow, self.k)])
            self.seen = torch.cat([self.seen, self.seen.new_zeros(grow)])
        old = self.bank[idx]
        new = torch.where(self.seen[idx, None], beta * old + (1.0 - beta) * t1, t1)
        self.bank[idx] = new
        self.seen[idx] = True

    # ------------------------------------------------------------------ loss
    def forward(self, outputs: Tensors, batch: Tensors) -> Tensors:
        y, idx = batch["y_sg"], batch["idx"]
        b = y.shape[0]
        proj, logits = outputs.get("proj"), outputs["logits"]
        if proj is None or proj.shape[0] != 2 * b or logits.shape[0] != 2 * b:
            raise fail(DataError, "gh loss", f"expected outputs of two stacked views (2B = {2 * b} rows with "
                       f"'proj'), got {None if proj is None else tuple(proj.shape)}",
                       "train with the 'gh' trainer and the 'gh_linear' model (the defaults of --method gh)")
        if proj.shape[1] != self.etf.shape[1]:
            raise fail(ConfigError, "--gh_proj_dim", f"the model projects to {proj.shape[1]} dimensions, the "
                       f"ETF target has {self.etf.shape[1]}", "build model and loss from the same flags")
        e1 = int(self.current_epoch) + 1
        w = gh_weight(e1, self.warmup, self.ramp)
        with torch.autocast(proj.device.type, enabled=False):
            z = proj.float()
            z1, z2 = z[:b], z[b:]
            l_ssl = nt_xent(z1, z2, self.temperature)
            t1 = F.normalize(z1 @ self.etf.T, dim=1)
            t2 = F.normalize(z2 @ self.etf.T, dim=1)
            if w > 0:
                q1 = sinkhorn(t1.detach(), self.prior, self.epsilon, self.sinkhorn_iters)
                q2 = sinkhorn(t2.detach(), self.prior, self.epsilon, self.sinkhorn_iters)
                l_gh = gh_swap_loss(t1, t2, q1, q2, self.gamma)
            else:
                l_gh = z.new_zeros(())
            ce = F.cross_entropy(logits.float(), torch.cat([y, y]))
        self.update_bank(idx, t1.detach(), self.warmup_beta if e1 <= self.warmup else self.beta)
        if self.mode == "ssl":
            loss = l_ssl + w * l_gh + ce   # ce reaches the classifier only (detached features)
            out = {"l_probe": ce.detach()}
        else:
            loss = ce + self.lambda_ssl * l_ssl + w * l_gh
            out = {"l_sup": ce.detach()}
        out.update(loss=loss, l_ssl=l_ssl.detach(), l_gh=l_gh.detach(), gh_weight=torch.tensor(w))
        return out

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("gh")
        g.add_argument("--gh_mode", default="supervised", choices=list(MODES),
                       help="ssl: SimCLR + GH, classifier as an online probe on detached features (the "
                            "paper); supervised: CE + lambda_ssl*SimCLR + GH")
        g.add_argument("--gh_target_dim", type=int, default=0,
                       help="K of the ETF target (0 = number of classes)")
        g.add_argument("--gh_proj_dim", type=int, default=256, help="projector output d (must be >= K)")
        g.add_argument("--gh_lambda_ssl", type=float, default=1.0, help="NT-Xent weight in supervised mode")
        g.add_argument("--gh_temperature", type=float, default=0.2, help="NT-Xent temperature")
        g.add_argument("--gh_gamma", type=float, default=0.1, help="temperature of the swapped prediction")
        g.add_argument("--gh_epsilon", type=float, default=0.05, help="Sinkhorn entropic temperature")
        g.add_argument("--gh_sinkhorn_iters", type=int, default=300, help="Sinkhorn iterations T_s")
        g.add_argument("--gh_warmup_frac", type=float, default=0.5,
                       help="W = round(frac * epochs) epochs without GH (paper: 500 of 1000)")
        g.add_argument("--gh_ramp_epochs", type=int, default=10, help="W_GH: epochs of the linear GH ramp")
        g.add_argument("--gh_beta", type=float, default=0.999, help="memory-bank momentum after warm-up")
        g.add_argument("--gh_prior_every", type=int, default=20, help="epochs between prior refreshes")
        g.add_argument("--gh_prior_floor", type=float, default=0.0,
                       help="count added to every cluster before normalising the prior (large-scale "
                            "variant: 100; > 0 keeps empty clusters alive)")


def gh_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Explicit GHLoss keyword arguments (the root adds ``class_counts`` and ``epochs``)."""
    return {"mode": args.gh_mode, "target_dim": args.gh_target_dim, "proj_dim": args.gh_proj_dim,
            "lambda_ssl": args.gh_lambda_ssl, "temperature": args.gh_temperature, "gamma": args.gh_gamma,
            "epsilon": args.gh_epsilon, "sinkhorn_iters": args.gh_sinkhorn_iters,
            "warmup_frac": args.gh_warmup_frac, "ramp_epochs": args.gh_ramp_epochs, "beta": args.gh_beta,
            "prior_every": args.gh_prior_every, "prior_floor": args.gh_prior_floor}


GHLoss.args_to_kwargs = staticmethod(gh_kwargs)
