"""Renderer, augmentations, peak-list dataset/collate and the ``peaks`` reader.

Profile properties are checked against values computed by hand here (Caglioti, Scherrer, TCH,
Bragg), the fast sum against the dense reference sum.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.peaks import PeakTable
from datasets.readers.peak_lists import PeakCollate, PeakListDataset, build_peaks_bundle, render_table
from datasets.registry import READERS
from datasets.rendering.instrument import RenderConfig, draw_params, hash_normal, hash_uniform, sample_seeds
from datasets.rendering.physics import pseudo_voigt, pv_area
from datasets.rendering.renderer import PeakRenderer, pad_peaks
from utils.crystal import SG_TO_CS
from utils.errors import ConfigError, DataError
from utils.grid import GridSpec

GRID = GridSpec()
NO_KA2 = RenderConfig(ka2_ratio=(0.0, 0.45, 0.55))
# Sharp lines (FWHM ≈ 0.02–0.03°): resolves the Kα doublet everywhere.
SHARP = RenderConfig(caglioti_u=(0.0, 0.0, 0.02), caglioti_v=(0.0, -0.01, 0.0),
                     caglioti_w=(0.0004, 0.001, 0.01), crystallite_nm=(1000.0, 30.0, 1000.0),
                     microstrain=(0.0, 0.0, 1e-3))


def one(tt, inten=100.0, cfg=NO_KA2, wavelength=None, method="fast"):
    """Nominal rendering of sticks given as lists → (L,) numpy."""
    t = torch.tensor([list(np.atleast_1d(tt))], dtype=torch.float32)
    i = torch.tensor([list(np.atleast_1d(inten))], dtype=torch.float32).expand_as(t)
    return PeakRenderer(GRID, cfg, method).render(t, i, wavelength=wavelength)[0, 0].numpy()


def random_sticks(b, n=110, seed=0):
    rng = np.random.default_rng(seed)
    tts = [np.sort(rng.uniform(5, 90, n)).astype(np.float32) for _ in range(b)]
    its = [(rng.pareto(1.0, n) * 10 + 0.5).astype(np.float32) for _ in range(b)]
    return pad_peaks(tts, its)


def half_max_width(y, x):
    """FWHM of the single peak in y by linear interpolation of the half-maximum crossings."""
    k = int(np.argmax(y))
    half = y[k] / 2
    lo = k
    while y[lo] > half:
        lo -= 1
    hi = k
    while y[hi] > half:
        hi += 1
    left = x[lo] + (half - y[lo]) / (y[lo + 1] - y[lo]) * (x[lo + 1] - x[lo])
    right = x[hi - 1] + (half - y[hi - 1]) / (y[hi] - y[hi - 1]) * (x[hi] - x[hi - 1])
    return right - left


def tch_by_hand(two_theta, u=0.004, v=-0.002, w=0.003, size_nm=150.0, strain=2e-4, lam=1.5406):
    th = math.radians(two_theta / 2)
    hg = math.sqrt(u * math.tan(th) ** 2 + v * math.tan(th) + w)
    hl = math.degrees(0.9 * lam / (size_nm * 10) / math.cos(th) + 4 * strain * math.tan(th))
    h = (hg ** 5 + 2.69269 * hg ** 4 * hl + 2.42843 * hg ** 3 * hl ** 2 + 4.47163 * hg ** 2 * hl ** 3
         + 0.07842 * hg * hl ** 4 + hl ** 5) ** 0.2
    return h


# ---------------------------------------------------------------------------- profile
@pytest.mark.parametrize("method", ["fast", "dense"])
def test_peak_maximum_at_position_and_fwhm(method):
    x = GRID.two_theta()
    for tt in (20.0, 50.0, 80.0):  # on grid points: the sampled maximum is the true one
        y = one(tt, method=method)
        assert abs(x[np.argmax(y)] - tt) < 1e-6
        assert y.max() == pytest.approx(1.0)
        assert half_max_width(y, x) == pytest.approx(tch_by_hand(tt), abs=GRID.step)


def test_pv_area_and_integrated_intensity_ratio():
    for eta in (0.0, 0.3, 1.0):
        xs = torch.linspace(-2e4, 2e4, 4_000_001, dtype=torch.float64)
        num = torch.trapezoid(pseudo_voigt(xs, torch.tensor(1.0, dtype=torch.float64),
                                           torch.tensor(eta, dtype=torch.float64)), xs)
        assert float(pv_area(torch.tensor(1.0), torch.tensor(eta))) == pytest.approx(float(num), rel=1e-4)
    # Sticks are integrated intensities: the 80° peak is broader, so lower, but has half the area.
    y = one([30.0, 80.0], [100.0, 50.0])
    x = GRID.two_theta()
    a30 = y[(x > 26) & (x < 34)].sum()
    a80 = y[(x > 76) & (x < 84)].sum()
    assert a30 / a80 == pytest.approx(2.0, rel=0.02)
    h30, h80 = y[np.abs(x - 30) < 0.005].max(), y[np.abs(x - 80) < 0.005].max()
    assert h30 / h80 > 2.2


def test_ka2_position_from_bragg_and_ratio():
    cfg = SHARP
    y = one(70.0, cfg=cfg)
    x = GRID.two_theta()
    expected = 2 * math.degrees(math.asin(math.sin(math.radians(35.0)) * 1.54439 / 1.5406))
    sel = (x > 70.1) & (x < 70.3)
    k2 = x[sel][np.argmax(y[sel])]
    assert abs(k2 - expected) <= GRID.step
    a1 = y[(x > 69.9) & (x < 70.1)].sum()
    a2 = y[(x > 70.1) & (x < 70.3)].sum()
    assert a2 / a1 == pytest.approx(0.5, rel=0.05)
    # Without Kα2 only the Kα1 tail is there: decreasing, no second maximum.
    y0 = one(70.0, cfg=RenderConfig(**{**cfg.to_dict(), "ka2_ratio": [0.0, 0.45, 0.55]}))
    assert np.all(np.diff(y0[sel]) <= 0) and y0[sel].max() < 0.01 < y[sel].max() / 40


def test_wavelength_conversion_through_d_spacing():
    d = 2.5
    tt_mo = 2 * math.degrees(math.asin(0.7093 / (2 * d)))
    expected = 2 * math.degrees(math.asin(1.5406 / (2 * d)))
    y = one(tt_mo, wavelength=0.7093)
    assert abs(GRID.two_theta()[np.argmax(y)] - expected) <= GRID.step / 2 + 1e-9
    # A line the grid's wavelength cannot reach (sin θ > 1) is dropped, not NaN.
    y2 = one([170.0], wavelength=0.5)
    assert np.isfinite(y2).all() and y2.max() == 0.0


# ---------------------------------------------------------------------------- fast vs dense
@pytest.mark.parametrize("cfg", [RenderConfig(), RenderConfig(crystallite_nm=(30.0, 30.0, 60.0)), SHARP],
                         ids=["default", "broad", "sharp"])
@pytest.mark.parametrize("augment", [False, True])
def test_fast_matches_dense(cfg, augment):
    tt, it, m = random_sticks(4)
    r = PeakRenderer(GRID, cfg)
    seeds = sample_seeds(1, 0, torch.arange(4))
    fast = r.render(tt, it, m, augment=augment, seeds=seeds)
    dense = r.render(tt, it, m, augment=augment, seeds=seeds, method="dense")
    assert (fast - dense).abs().max() < 1e-4


def test_isolated_peak_tails_match_dense_everywhere():
    fast, dense = one(45.0), one(45.0, method="dense")
    assert np.abs(fast - dense).max() < 5e-5
    far = np.abs(GRID.two_theta() - 45.0) > 5  # far Lorentzian tail present and right
    assert dense[far].max() > 1e-5 and np.abs(fast - dense)[far].max() < 1e-6


# ---------------------------------------------------------------------------- contract
@pytest.mark.parametrize("augment", [False, True])
def test_max_normalised_finite_nonnegative(augment):
    tt, it, m = random_sticks(5)
    y = PeakRenderer(GRID).render(tt, it, m, augment=augment, seeds=sample_seeds(0, 0, torch.arange(5)))
    assert y.shape == (5, 1, GRID.n_points) and y.dtype == torch.float32
    assert torch.isfinite(y).all() and y.min() >= 0
    assert torch.allclose(y.amax(dim=-1), torch.ones(5, 1))


def test_deterministic_per_seed_and_independent_of_batch():
    tt, it, m = random_sticks(6, seed=3)
    r = PeakRenderer(GRID)
    seeds = sample_seeds(7, 2, torch.arange(6))
    a = r.render(tt, it, m, augment=True, seeds=seeds)
    assert torch.equal(a, r.render(tt, it, m, augment=True, seeds=seeds))
    b = r.render(tt, it, m, augment=True, seeds=sample_seeds(7, 3, torch.arange(6)))
    assert (a - b).abs().amax(dim=-1).min() > 0.01  # another epoch: other patterns
    # Sample 2 alone (no padding, no neighbours) equals sample 2 inside a batch with more peaks.
    n2 = int(m[2].sum())
    tt2, it2, _ = random_sticks(1, n=150, seed=9)
    batch_tt = torch.zeros(2, 150)
    batch_it = torch.zeros(2, 150)
    batch_tt[0], batch_it[0] = tt2[0], it2[0]
    batch_tt[1, :n2], batch_it[1, :n2] = tt[2, :n2], it[2, :n2]
    mask = batch_it > 0
    inside = r.render(batch_tt, batch_it, mask, augment=True, seeds=torch.stack([seeds[0], seeds[2]]))
    alone = r.render(tt[2:3, :n2], it[2:3, :n2], augment=True, seeds=seeds[2:3])
    assert torch.allclose(inside[1], alone[0], atol=1e-6, rtol=0)


def test_empty_and_out_of_grid_peak_lists():
    r = PeakRenderer(GRID)
    tt = torch.tensor([[0.0, 0.0], [150.0, 2.0], [30.0, float("nan")]])
    it = torch.tensor([[0.0, 0.0], [100.0, 50.0], [100.0, 10.0]])
    m = torch.tensor([[False, False], [True, True], [True, True]])
    y = r.render(tt, it, m)
    assert torch.isfinite(y).all()
    # Sticks more than margin_deg (2°) outside the grid are dropped; a NaN stick is ignored.
    assert y[0].abs().max() == 0 and y[1].abs().max() == 0 and y[2].max() == pytest.approx(1.0)
    # A stick just below the grid still shows its tail, as in a measured pattern.
    edge = one(4.95)
    assert edge[0] == pytest.approx(1.0) and edge[50] < 0.05
    ya = r.render(tt, it, m, augment=True, seeds=torch.arange(3))
    assert torch.isfinite(ya).all() and torch.allclose(ya.amax(-1), torch.ones(3, 1))
    assert torch.isfinite(r.render(torch.zeros(2, 0), torch.zeros(2, 0))).all()
    with pytest.raises(DataError):
        r.render(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    tt, it, m = random_sticks(4)
    r = PeakRenderer(GRID)
    seeds = sample_seeds(0, 0, torch.arange(4))
    cpu = r.render(tt, it, m, augment=True, seeds=seeds)
    gpu = r.render(tt.cuda(), it.cuda(), m.cuda(), augment=True, seeds=seeds.cuda())
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-4)


# ---------------------------------------------------------------------------- augmentation
def test_counter_rng_statistics_and_seeds():
    s = sample_seeds(0, 0, torch.arange(4))
    assert torch.equal(s, sample_seeds(0, 0, torch.arange(4))) and len(set(s.tolist())) == 4
    assert not torch.equal(s, sample_seeds(0, 1, torch.arange(4)))
    assert not torch.equal(s, sample_seeds(1, 0, torch.arange(4)))
    u = hash_uniform(s, 0, 50_000)
    assert 0 < u.min() and u.max() < 1
    assert u.mean().item() == pytest.approx(0.5, abs=0.01)
    assert u.var().item() == pytest.approx(1 / 12, rel=0.03)
    z = hash_normal(s, 1, 50_000)
    assert z.mean().item() == pytest.approx(0.0, abs=0.02) and z.std().item() == pytest.approx(1.0, abs=0.02)
    assert abs(np.corrcoef(hash_uniform(s, 0, 1000)[0], hash_uniform(s, 2, 1000)[0])[0, 1]) < 0.1


def test_drawn_parameters_stay_in_their_ranges():
    cfg = RenderConfig()
    p = draw_params(cfg, sample_seeds(0, 0, torch.arange(2000)), 2000, "cpu")
    for name in ("caglioti_u", "caglioti_w", "crystallite_nm", "zero_shift_deg", "max_counts"):
        _, lo, hi = getattr(cfg, name)
        assert lo <= p[name].min() and p[name].max() <= hi
        assert p[name].max() - p[name].min() > 0.8 * (hi - lo) * (0.1 if name in ("crystallite_nm",
                                                                                  "max_counts") else 1)
    assert p["has_ka2"].mean().item() == pytest.approx(1 - cfg.p_no_ka2, abs=0.03)
    nominal = draw_params(cfg, None, 3, "cpu")
    assert (nominal["zero_shift_deg"] == 0).all() and (nominal["max_counts"] == 0).all()


def test_render_config_validation_and_roundtrip():
    cfg = RenderConfig(zero_shift_deg=(0.0, -0.05, 0.05))
    assert RenderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError):
        RenderConfig(caglioti_u=(0.0, 0.02, 0.01))
    with pytest.raises(ConfigError):
        RenderConfig(p_hump=1.5)
    with pytest.raises(ConfigError):
        RenderConfig.from_dict({"no_such_setting": 1})


# ---------------------------------------------------------------------------- dataset, collate, bundle
def tiny_table(n=6, seed=0):
    rng = np.random.default_rng(seed)
    tts = [np.sort(rng.uniform(10, 80, 5 + i)).astype(np.float32) for i in range(n)]
    its = [rng.uniform(1, 100, 5 + i).astype(np.float32) for i in range(n)]
    return PeakTable.from_lists(tts, its, [1, 14, 62, 139, 194, 225][:n])


def test_dataset_items_and_collate_contract():
    ds = PeakListDataset(tiny_table(), indices=[5, 0, 3])
    assert len(ds) == 3 and ds.labels.tolist() == [224, 0, 138]
    item = ds[0]
    assert item["y_sg"] == 224 and item["y_cs"] == int(SG_TO_CS[224]) == 6 and item["idx"] == 0
    assert item["two_theta"].dtype == np.float32 and len(item["two_theta"]) == 10
    grid = GridSpec(n_points=1024)
    col = PeakCollate(grid, augment=True, seed=3)
    b = col([ds[i] for i in range(3)])
    assert set(b) == {"x", "y_sg", "y_cs", "idx"}
    assert b["x"].shape == (3, 1, 1024) and b["x"].dtype == torch.float32
    assert b["y_sg"].dtype == b["y_cs"].dtype == b["idx"].dtype == torch.int64
    assert torch.equal(b["y_cs"], torch.as_tensor(SG_TO_CS)[b["y_sg"]])
    assert torch.equal(col([ds[i] for i in range(3)])["x"], b["x"])
    assert torch.equal(col([ds[2], ds[0]])["x"][1], b["x"][0])  # batch composition does not matter
    col.set_epoch(1)
    assert not torch.allclose(col([ds[0]])["x"], b["x"][:1])
    ev = PeakCollate(grid)([ds[i] for i in range(3)])["x"]
    rows = render_table(ds.table.subset(np.array([5, 0, 3])), grid)
    assert np.allclose(ev[:, 0].numpy(), rows, atol=1e-6)


def test_peaks_bundle_on_tiny_dataset(tiny_data):
    bundle = READERS.build("peaks", root=tiny_data, name="tiny", seed=0, augment=True, sg_count_path=None)
    assert bundle.grid.n_points == 1024 and bundle.val is not None
    assert np.array_equal(bundle.class_counts, np.bincount(bundle.train.labels, minlength=230))
    assert bundle.spec["format"] == "peaks" and bundle.spec["class_counts_source"].endswith("sg_count.csv")
    assert bundle.train_collate.augment and not bundle.eval_collate.augment
    loader = DataLoader(bundle.train, batch_size=16, collate_fn=bundle.train_collate)
    batch = next(iter(loader))
    assert batch["x"].shape == (16, 1, 1024) and torch.isfinite(batch["x"]).all()
    e1 = bundle.eval_collate([bundle.test[0], bundle.test[1]])["x"]
    assert torch.equal(e1, bundle.eval_collate([bundle.test[0], bundle.test[1]])["x"])
    # An explicit grid wins over dataset.json (peak lists render on any grid).
    other = build_peaks_bundle(tiny_data, name="tiny", grid=GridSpec(n_points=512), augment=False)
    assert other.eval_collate([other.test[0]])["x"].shape == (1, 1, 512)


def test_collate_in_workers_equals_main_process(tiny_data):
    bundle = build_peaks_bundle(tiny_data, name="tiny", seed=5, augment=True)
    bundle.train_collate.set_epoch(2)
    kw = dict(batch_size=8, collate_fn=bundle.train_collate, shuffle=False)
    main = [b["x"] for b in DataLoader(bundle.train, **kw)]
    workers = [b["x"] for b in DataLoader(bundle.train, num_workers=2, persistent_workers=False, **kw)]
    assert all(torch.equal(a, b) for a, b in zip(main, workers))


def test_peaks_bundle_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_peaks_bundle(tmp_path / "missing")
    tiny_table(6).save(tmp_path / "peaks_train.npz")
    with pytest.raises(DataError, match="peaks_test.npz"):
        build_peaks_bundle(tmp_path)
    tiny_table(3, seed=1).save(tmp_path / "peaks_test.npz")
    b = build_peaks_bundle(tmp_path)
    assert b.val is None and b.grid == GridSpec() and b.class_counts.sum() == 6
    (tmp_path / "sg_count.csv").write_text("1,5\n231,2\n")
    with pytest.raises(DataError, match="sg_count.csv"):
        build_peaks_bundle(tmp_path)
    (tmp_path / "sg_count.csv").write_text("1,5\n14,2\n")
    assert build_peaks_bundle(tmp_path).class_counts[[0, 13]].tolist() == [5, 2]
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="dataset.json"):
        build_peaks_bundle(tmp_path)
