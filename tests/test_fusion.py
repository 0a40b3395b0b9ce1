"""Fusion of a model's posterior with the indexing evidence (``Trainer/fusion.py``,
``Trainer/evidence.py``, ``--evidence index``): the formula against a naive per-group loop, the
two-level posterior against ``utils.crystal.soft_cs_mask``, the fit on synthetic evidence, the hard
mask by the fused system, the target prior, bad evidence, and train.py → test.py end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import reports
from Trainer.evidence import summarize_variants, variants, with_target_prior
from Trainer.fusion import (
    EVIDENCE_DIM,
    EXT_OF_SG,
    MASK_PENALTY,
    N_EXT,
    FusionParams,
    fit_fusion,
    fuse,
    fused_log_probs,
    index_logits,
    model_log_probs,
)
from utils.crystal import N_CS, N_SG, SG_TO_CS, soft_cs_mask
from utils.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "data" / "xrd_mp_default"


def _evidence(rng, n, true_sg=None, gap=6.0, solved=True):
    """Evidence vectors: the true group's extinction group and system at 0, the rest below."""
    ev = np.zeros((n, EVIDENCE_DIM))
    if not solved:
        return ev
    ev[:, :N_CS] = -rng.uniform(1, 4, (n, N_CS))
    ev[:, N_CS:N_CS + N_EXT] = -rng.uniform(gap, 2 * gap, (n, N_EXT))
    if true_sg is not None:
        ev[np.arange(n), N_CS + EXT_OF_SG[true_sg]] = 0.0
        ev[np.arange(n), SG_TO_CS[true_sg]] = 0.0
    ev[:, -1] = 1.0
    return ev


def test_layout_matches_indexing():
    from indexing.api import EVIDENCE_DIM as DIM
    from indexing.conditions import N_GROUPS
    assert EVIDENCE_DIM == DIM and N_EXT == N_GROUPS
    assert EXT_OF_SG.min() == 0 and EXT_OF_SG.max() == N_EXT - 1


def test_fused_log_probs_equal_a_naive_loop():
    rng = np.random.default_rng(0)
    n = 3
    logits = rng.normal(0, 2, (n, N_SG))
    ev = _evidence(rng, n, rng.integers(0, N_SG, n))
    p = FusionParams(temperature=0.7, w_ext=0.8, ext_cap=5.0, w_cs=0.3)
    got = fused_log_probs(model_log_probs({"logits": logits}), ev, p)
    for i in range(n):
        z = logits[i] - max(logits[i])
        log_pm = z - math.log(sum(math.exp(v) for v in z))
        s = []
        for g in range(N_SG):
            ext_ll = ev[i, N_CS + EXT_OF_SG[g]]
            cs_ll = ev[i, SG_TO_CS[g]]
            s.append(log_pm[g] / 0.7 + 0.8 * max(ext_ll, -5.0) + 0.3 * cs_ll)
        m = max(s)
        lse = m + math.log(sum(math.exp(v - m) for v in s))
        np.testing.assert_allclose(got[i], np.array(s) - lse, atol=1e-9)


def test_two_level_posterior_matches_soft_cs_mask():
    rng = np.random.default_rng(1)
    o, cs = rng.normal(0, 3, (4, N_SG)), rng.normal(0, 2, (4, N_CS))
    ours = model_log_probs({"logits": o, "ensemble_logits": o, "cs_logits": cs})
    ref = soft_cs_mask(torch.tensor(o), torch.tensor(cs)).double().numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(np.exp(ours).sum(1), 1.0, atol=1e-9)


def test_unsolved_patterns_keep_the_model_answer():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2, (5, N_SG))
    out = fuse({"logits": logits, "y_sg": np.zeros(5, int)}, _evidence(rng, 5, solved=False),
               FusionParams(1.0, 3.0, 30.0, 2.0))
    assert (out["logits"].argmax(1) == logits.argmax(1)).all()


def test_fit_uses_informative_evidence_and_ignores_noise():
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, N_SG, n)
    logits = rng.normal(0, 1, (n, N_SG))
    logits[np.arange(n), y] += 1.5            # a weak model: top-1 well below 50 %
    pred = {"logits": logits, "y_sg": y}
    good = fit_fusion(pred, _evidence(rng, n, y))
    assert good.w_ext > 0.2 and good.fit["val_top1_fused"] > good.fit["val_top1_model"] + 0.2
    assert good.fit["val_nll_fused"] < good.fit["val_nll_model"]
    noise = fit_fusion(pred, _evidence(rng, n, rng.integers(0, N_SG, n)))
    # evidence unrelated to the labels: the fit turns it (nearly) off and costs no likelihood
    assert noise.fit["val_nll_fused"] <= noise.fit["val_nll_model"] + 1e-6
    assert noise.w_ext * min(noise.ext_cap, 12) < 1.0


def test_hierarchical_model_is_masked_by_the_fused_system():
    rng = np.random.default_rng(4)
    y = np.array([220, 10])                                        # cubic, monoclinic
    o = rng.normal(0, 0.1, (2, N_SG))
    cs = np.full((2, N_CS), -5.0)
    cs[:, 0] = 5.0                                                 # the model says triclinic
    pred = {"logits": o, "ensemble_logits": o, "cs_logits": cs, "y_sg": y}
    out = fuse(pred, _evidence(rng, 2, y, gap=10), FusionParams(1.0, 2.0, 30.0, 1.0))
    assert (out["cs_logits"].argmax(1) == SG_TO_CS[y]).all()
    top = out["logits"].argmax(1)
    assert (SG_TO_CS[top] == SG_TO_CS[y]).all()
    outside = SG_TO_CS != SG_TO_CS[y[0]]
    assert out["logits"][0, outside].max() < out["logits"][0, ~outside].min() - MASK_PENALTY / 2


def test_index_alone_is_prior_inside_the_best_extinction_group():
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 500, N_SG).astype(float)
    y = np.array([0, 61, 224])
    logits, cs_logits = index_logits(_evidence(rng, 3, y), counts)
    for i, g in enumerate(y):
        members = np.flatnonzero(EXT_OF_SG == EXT_OF_SG[g])
        assert logits[i].argmax() == members[np.argmax(counts[members])]
        assert cs_logits[i].argmax() == SG_TO_CS[g]


def test_target_prior_moves_a_flat_model_to_the_target():
    counts = np.ones(N_SG)
    target = np.ones(N_SG)
    target[61] = 1e4                                                # Pnma dominates the target
    logits = np.zeros((1, N_SG))
    logits[0, 13] = 2.0                                             # the model leans to P2_1/c
    pred = {"logits": logits, "y_sg": np.array([61])}
    assert with_target_prior(pred, counts, None) is pred
    moved = with_target_prior(pred, counts, target)
    assert moved["logits"].argmax() == 61
    np.testing.assert_allclose(moved["logits"][0] - moved["logits"][0, 0],
                               np.log((target + 1) / (target[0] + 1)) + logits[0], atol=1e-4)  # α = 1


@pytest.mark.parametrize("bad,match", [(np.zeros((2, 10)), "expected \\(2, 110\\)"),
                                       (np.full((2, EVIDENCE_DIM), np.nan), "NaN")])
def test_bad_evidence_is_refused(bad, match):
    with pytest.raises(DataError, match=match):
        fuse({"logits": np.zeros((2, N_SG)), "y_sg": np.zeros(2, int)}, bad, FusionParams())


def test_three_variants_in_metrics_and_table():
    rng = np.random.default_rng(6)
    y = rng.integers(0, N_SG, 40)
    pred = {"logits": rng.normal(0, 1, (40, N_SG)), "y_sg": y, "y_cs": SG_TO_CS[y], "idx": np.arange(40)}
    preds = variants(pred, _evidence(rng, 40, y), FusionParams(1.0, 1.0, 30.0, 0.5), np.ones(N_SG))
    from metrics import summarize
    m = summarize_variants(preds, lambda p: summarize(p["logits"], p["y_sg"], np.ones(N_SG),
                                                      cs_logits=p.get("cs_logits")))
    assert m["sg_top1_extinction"] > 0.9 and m["index_sg_top1_extinction"] > 0.9
    assert m["model_sg_top1"] < 0.2 < m["sg_top1"]
    table = reports.results_table(m).splitlines()
    assert table[0] == "| test metric | clean fused | clean model | clean index |"
    row = next(r for r in table if r.startswith("| Extinction-group top-1 |"))
    assert row.count("%") == 3



@pytest.mark.slow
def test_train_with_evidence_then_test_py(cubic_data, tmp_path, capsys, test_cli):
    import train
    res = train.main(["--method", "ce", "--data_dir", str(cubic_data), "--epochs", "1",
                      "--output_dir", str(tmp_path / "Log"), "--device", "cpu", "--batch_size", "8",
                      "--evidence", "index", "--evidence_workers", "1", "--seed", "0"])
    run = Path(res["run_dir"])
    m = json.loads((run / "test_metrics.json").read_text())
    for k in ("sg_top1", "model_sg_top1", "index_sg_top1", "lab_sg_top1", "lab_model_cs_acc",
              "lab_index_cs_acc"):
        assert k in m, k
    # one epoch on 40 crystals learns nothing; the evidence finds the cubic system
    assert m["index_cs_acc"] >= 0.75 and m["cs_acc"] >= 0.75 > m["model_cs_acc"] + 0.25, m
    fusion = json.loads((run / "fusion.json").read_text())
    assert fusion["fit"]["n_val"] == 3 and fusion["w_ext"] >= 0
    state = torch.load(run / "best.pt", weights_only=False)
    assert state["fusion"]["w_ext"] == fusion["w_ext"]
    for sub in ("model_only", "index_only"):
        sub_m = json.loads((run / sub / "test_metrics.json").read_text())
        assert sub_m["sg_top1"] == m[f"{sub.split('_')[0]}_sg_top1"]
    assert (run / "per_class_vs_count_variants.png").is_file()

    test_py = test_cli
    again = test_py.main(["--ckpt", str(run / "best.pt"), "--out_dir", str(tmp_path / "eval")])
    for k in ("sg_top1", "model_sg_top1", "index_cs_acc", "lab_sg_top1"):
        assert again[k] == pytest.approx(m[k]), k
    plain = test_py.main(["--ckpt", str(run / "best.pt"), "--out_dir", str(tmp_path / "eval2"),
                          "--evidence", "none"])
    assert "model_sg_top1" not in plain and plain["sg_top1"] == pytest.approx(m["model_sg_top1"])

    # predict.py: the fusion, then the model alone and the index alone, on a measured-format file
    import predict
    nacl = ROOT / "tests" / "fixtures" / "instrument" / "nacl_cu.xrdml"
    rows = predict.main(["--ckpt", str(run / "best.pt"), str(nacl), "--topk", "3"])
    out = capsys.readouterr().out
    assert "model alone:" in out and "index alone:" in out and "indexed: cF a=5.64" in out, out
    assert rows[0]["index"]["crystal_system"] == "cubic" == rows[0]["crystal_system"]
    assert rows[0]["model"]["top"] != rows[0]["top"] or rows[0]["model"]["crystal_system"] == "cubic"


def test_evidence_refused_for_method_index(cubic_data, tmp_path):
    import train
    from utils.errors import ConfigError
    with pytest.raises(ConfigError, match="--method index already is the index alone"):
        train.main(["--method", "index", "--data_dir", str(cubic_data), "--output_dir", str(tmp_path),
                    "--device", "cpu", "--evidence", "index"])
