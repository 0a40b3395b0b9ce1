"""ResTcn-Lite (issue 10, item 3): the stem is the strided convolution it claims to be, the pools
match torch's, the default grid ends at length 1, it is the CPU recipe's default, and the seed's
command lines still build the seed's ResTcn. (Shapes, gradients and rebuild-from-config of every
model on it: the registry-parametrised tests of test_models.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import builders
import train
from config.args import parse_args
from models import create_frontend
from models.layers import PatternNorm
from models.restcn import ResTcn
from models.restcn_lite import Pool1d, ResTcnLite, StridedStem
from utils.errors import ConfigError
from utils.grid import GridSpec


@pytest.mark.parametrize("stride,kernel,length", [(8, 3, 80), (8, 3, 85), (4, 5, 37), (1, 3, 10)])
def test_stem_equals_a_strided_convolution(stride, kernel, length):
    torch.manual_seed(0)
    stem = StridedStem(2, 5, stride, kernel)
    x = torch.randn(3, 2, length)
    w = stem.conv.weight                                                 # (5, 2·s, k)
    # channel c·s + j of the space-to-depth input is sample j of each stride of input channel c
    w_strided = w.view(5, 2, stride, kernel).permute(0, 1, 3, 2).reshape(5, 2, kernel * stride)
    xp = F.pad(x, (0, (-length) % stride))
    ref = F.conv1d(xp, w_strided, stride=stride, padding=(kernel // 2) * stride)
    torch.testing.assert_close(stem(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length,k", [(16, 4), (18, 4), (3, 4), (1, 4), (9, 2)])
def test_pools_match_torch(length, k):
    x = torch.randn(2, 3, length, requires_grad=True)
    kk = min(k, length)
    for kind, ref_fn in (("max", F.max_pool1d), ("avg", F.avg_pool1d)):
        out = Pool1d(kind, k)(x)
        ref = ref_fn(x, kk, kk) if kk >= 2 else x
        torch.testing.assert_close(out, ref)
    g = torch.randn_like(Pool1d("max", k)(x))
    (ga,) = torch.autograd.grad((Pool1d("max", k)(x) * g).sum(), x)
    (gb,) = torch.autograd.grad(((F.max_pool1d(x, kk, kk) if kk >= 2 else x) * g).sum(), x)
    torch.testing.assert_close(ga, gb)  # no ties in random data: same gradient routing


def test_default_grid_reaches_length_one_and_out_dim_matches_restcn():
    for w in (0.25, 1.0):
        lite = ResTcnLite(width_mult=w).eval()
        assert lite.out_dim == ResTcn(width_mult=w).out_dim
        with torch.no_grad():
            assert lite.forward_features(torch.randn(2, 1, 8500)).shape == (2, lite.out_dim, 1)
    assert ResTcnLite(width_mult=0.25).channels == (16, 32, 64, 128, 256)
    with pytest.raises(ConfigError, match="odd"):
        ResTcnLite(stem_kernel=4)
    with pytest.raises(ConfigError, match="one pool factor per stage"):
        ResTcnLite(pools=(4, 4), base_channels=(8, 16, 32))


def _model_cfg(argv):
    argv = train.with_default_preset(argv)
    args = parse_args(argv, train.get_parser(argv))
    return args, builders.model_kwargs(args, [1] * 230, 8500, GridSpec())


def test_cpu_recipe_defaults_to_lite_and_seed_commands_to_restcn():
    args, cfg = _model_cfg([])                                        # plain `python train.py`
    assert cfg["frontend"] == "restcn_lite"
    assert cfg["frontend_kwargs"] == {"width_mult": 0.25, "stem_stride": 8, "input_norm": "pattern",
                                      "position_channel": False, "input_axis": "log_d",
                                      "grid": [8500, 5.0, 90.0]}
    assert isinstance(builders.build_model(cfg).frontend.input_norm, PatternNorm)  # one transform
    seed = ["--use_processed_npy", "--processed_data_dir", "/d", "--rule_matrix_path", "/r.csv",
            "--device", "0", "--loss_scheme", "scheme2", "--use_contrast_scheme2", "--use_adamw",
            "--epochs", "100", "--seed", "42"]
    args, cfg = _model_cfg(seed)
    assert cfg["frontend"] == "restcn" and cfg["frontend_kwargs"] == {"width_mult": 1.0}
    torch.manual_seed(0)
    built = builders.build_model(cfg).frontend
    torch.manual_seed(0)
    reference = ResTcn()                                              # the seed's network, unchanged
    assert [(k, v.shape) for k, v in built.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    for a, b in zip(built.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)
    assert isinstance(built.input_norm, torch.nn.BatchNorm1d)       # the seed's model keeps BatchNorm
    # --stem_stride reaches the frontend; a checkpoint's config rebuilds it
    _, cfg = _model_cfg(["--stem_stride", "4"])
    fe = create_frontend(cfg["frontend"], **cfg["frontend_kwargs"])
    assert fe.config["stem_stride"] == 4 and fe.stem[0].conv.in_channels == 4


def _bragg_two_theta(d, wavelength=1.5406):
    import numpy as np
    return np.rad2deg(2 * np.arcsin(wavelength / (2 * np.asarray(d))))


def test_log_d_axis_turns_a_lattice_scaling_into_a_shift():
    """A cubic pattern and the same pattern of a cell 4 % larger: on the 2θ grid the peaks move by
    different amounts, on the log-d grid by one shift of ln(1.04)/Δu points."""
    import numpy as np

    from models.layers import LogDResample

    grid = GridSpec()
    tt = torch.tensor(grid.two_theta(), dtype=torch.float64)
    hkl2 = np.array([3, 4, 8, 11, 12, 16, 19])  # an fcc lattice's h²+k²+l² (all below 2θ = 85°)

    def pattern(a):
        pos = torch.tensor(_bragg_two_theta(a / np.sqrt(hkl2)))
        return torch.exp(-0.5 * ((tt[None, :] - pos[:, None]) / 0.03) ** 2).sum(0).float()[None, None]

    r = LogDResample(grid.n_points, grid.two_theta_min, grid.two_theta_max)
    x0, x1 = r(pattern(4.0))[0, 0], r(pattern(4.16))[0, 0]
    du = (np.log(np.sin(np.deg2rad(grid.two_theta()[-1] / 2)))
          - np.log(np.sin(np.deg2rad(grid.two_theta_min / 2)))) / (grid.n_points - 1)
    shift = int(round(np.log(1.04) / du))  # a larger cell: smaller sin θ, peaks move to lower index
    n = grid.n_points
    lags = np.arange(shift - 40, shift + 41)  # x1[i] ≈ x0[i + shift]
    score = [float((x0[lag:] * x1[: n - lag]).sum()) for lag in lags]
    best = int(lags[int(np.argmax(score))])
    assert abs(best - shift) <= 1
    # the shifted copy overlaps the original almost perfectly (peaks stay whole after resampling)
    a, b = x0[best:], x1[: n - best]
    assert float((a * b).sum() / (a.norm() * b.norm())) > 0.97
    # on the 2θ grid no single shift does it
    p0, p1 = pattern(4.0)[0, 0], pattern(4.16)[0, 0]
    best_tt = max(float((p0[k:] * p1[: n - k]).sum() / (p0[k:].norm() * p1[: n - k].norm()))
                  for k in range(0, 400))
    assert best_tt < 0.5
    with pytest.raises(ConfigError, match="8500 grid points"):
        r(torch.zeros(1, 1, 100))


def test_log_d_frontend_is_built_from_the_data_grid():
    args = parse_args(["--frontend_type", "restcn_lite", "--input_axis", "log_d", "--method", "ce"],
                      train.get_parser([]))
    kw = builders.model_kwargs(args, [1] * 230, 8500, GridSpec())
    assert kw["frontend_kwargs"]["grid"] == [8500, 5.0, 90.0]
    model = builders.build_model(kw)
    assert model(torch.randn(2, 1, 8500))["logits"].shape == (2, 230)
    with pytest.raises(ConfigError, match="2θ grid"):
        builders.model_kwargs(args, [1] * 230, 8500)
    with pytest.raises(ConfigError, match="needs grid"):
        ResTcnLite(input_axis="log_d")
