"""Physics-constrained contrastive losses (loss/scl.py) against naive double loops."""

from __future__ import annotations

import math

import pytest
import torch

from loss.scl import scl_seed, scl_soft

C = 12  # a small label space is enough: the functions index R by label


def _rule(seed: int, c: int = C) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(c, c, generator=g)
    r = (a + a.t()) / 2
    r.fill_diagonal_(1.0)
    return r


def _feats(b: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64)


def _unit(f):
    return [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in f.tolist()]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def naive_seed(f, y, r, tau, thr):
    """docs/methods/icl.md's formula, literally: S with row max, D over j≠i weighted by 1−R, eps 1e−8."""
    f, y, r = _unit(f), y.tolist(), r.tolist()
    b = len(y)
    total = 0.0
    for i in range(b):
        s = [_dot(f[i], f[j]) / tau for j in range(b)]
        m = max(s)
        s = [v - m for v in s]
        d = sum((1 - r[y[i]][y[j]]) * math.exp(s[j]) for j in range(b) if j != i)
        pos = [j for j in range(b) if j != i and (y[j] == y[i] or r[y[i]][y[j]] > thr)]
        if pos:
            total += -sum(s[j] - math.log(d + 1e-8) for j in pos) / len(pos)
    return total / b


def naive_supcon(f, y, tau, negatives_only_denominator):
    """Textbook SupCon (no max trick, no eps). Denominator: negatives only, or all a ≠ i."""
    f, y = _unit(f), y.tolist()
    b = len(y)
    total = 0.0
    for i in range(b):
        pos = [j for j in range(b) if j != i and y[j] == y[i]]
        if not pos:
            continue
        den_set = [a for a in range(b) if a != i and (y[a] != y[i] or not negatives_only_denominator)]
        den = sum(math.exp(_dot(f[i], f[a]) / tau) for a in den_set)
        total += -sum(math.log(math.exp(_dot(f[i], f[p]) / tau) / den) for p in pos) / len(pos)
    return total / b


def naive_soft(f, y, r, tau):
    f, y, r = _unit(f), y.tolist(), r.tolist()
    b = len(y)
    total = 0.0
    for i in range(b):
        den = sum(math.exp(_dot(f[i], f[a]) / tau) for a in range(b) if a != i)
        w = {j: r[y[i]][y[j]] for j in range(b) if j != i}
        ws = sum(w.values())
        if ws > 0:
            total += -sum(w[j] * math.log(math.exp(_dot(f[i], f[j]) / tau) / den) for j in w) / ws
    return total / b


LABELS = torch.tensor([0, 1, 0, 2, 3, 1, 5, 0, 7, 3])


@pytest.mark.parametrize("thr", [0.3, 0.8, 1.1])
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_seed_matches_naive_formula(thr, tau):
    f, r = _feats(len(LABELS), 6, 0), _rule(1)
    got = scl_seed(f, LABELS, r, tau, thr)
    assert got.item() == pytest.approx(naive_seed(f, LABELS, r, tau, thr), rel=1e-4, abs=1e-5)


def test_seed_with_identity_is_supcon_without_positives_in_denominator():
    # τ = 0.5 keeps D_i ≫ 1e−8, so the eps inside CODE's log is negligible.
    f = _feats(len(LABELS), 5, 2)
    got = scl_seed(f, LABELS, torch.eye(C), 0.5, 0.8)
    ref = naive_supcon(f, LABELS, 0.5, negatives_only_denominator=True)
    assert got.item() == pytest.approx(ref, rel=1e-5)


def test_soft_with_identity_is_standard_supcon():
    f = _feats(len(LABELS), 5, 3)
    for tau in (0.07, 0.5):
        got = scl_soft(f, LABELS, torch.eye(C), tau)
        assert got.item() == pytest.approx(naive_supcon(f, LABELS, tau, False), rel=1e-5)


def test_soft_matches_naive_weighted_formula():
    f, r = _feats(len(LABELS), 7, 4), _rule(5)
    assert scl_soft(f, LABELS, r, 0.2).item() == pytest.approx(naive_soft(f, LABELS, r, 0.2), rel=1e-5)


def test_soft_is_bounded_below_seed_is_not():
    y = torch.zeros(6, dtype=torch.long)  # all positives: seed's denominator is empty
    f = _feats(6, 4, 6)
    seed = scl_seed(f, y, _rule(7), 0.07, 0.8)
    assert seed.item() < 0  # −(S_ij − log 1e−8): CODE's "L_scl can be negative"
    for s in range(5):
        f, y = _feats(10, 4, s), torch.randint(0, 4, (10,), generator=torch.Generator().manual_seed(s))
        assert scl_soft(f, y, _rule(s), 0.07).item() >= 0


def test_anchors_without_positives_add_zero_and_mean_is_over_all_anchors():
    y = torch.tensor([0, 0, 1, 2])  # anchors 2 and 3 have no positives under R = I
    f = _feats(4, 3, 8)
    r = torch.eye(C)
    full = scl_seed(f, y, r, 0.5, 0.8)
    # Only anchors 0 and 1 contribute; the mean divides by B = 4.
    ref = naive_seed(f, y, r, 0.5, 0.8)
    assert full.item() == pytest.approx(ref, rel=1e-5)
    assert scl_soft(f[2:], y[2:], r, 0.5).item() == 0.0


def test_single_sample_and_gradients_are_finite():
    f = _feats(1, 4, 9).requires_grad_()
    for fn in (lambda: scl_seed(f, torch.tensor([3]), _rule(1), 0.07, 0.8),
               lambda: scl_soft(f, torch.tensor([3]), _rule(1), 0.07)):
        loss = fn()
        assert loss.item() == 0.0
    f = _feats(8, 4, 10).requires_grad_()
    y = torch.tensor([0, 0, 1, 1, 2, 3, 3, 3])
    (scl_seed(f, y, _rule(2), 0.07, 0.5) + scl_soft(f, y, _rule(2), 0.07)).backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


def test_scale_invariance_features_are_normalised():
    f, r = _feats(len(LABELS), 6, 11), _rule(3)
    a = scl_seed(f, LABELS, r, 0.1, 0.6)
    b = scl_seed(7.5 * f, LABELS, r, 0.1, 0.6)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
