"""Prior baselines (issue 10, item 5): hand-computed values, and agreement with the metric code
(``summarize`` of the constant predictor; the prior guess as the p_train-weighted mean of the
constant predictors, exact for every metric that is linear in the predictions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import reports
from metrics import summarize
from metrics.baselines import KEYS, flat_baselines, prior_baselines
from utils.crystal import N_CS, N_SG, SG_TO_CS

# 0-based groups: 0 P1 / 1 P-1 (triclinic, one extinction group), 13 P2_1/c (monoclinic),
# 75 P4_1 / 77 P4_3 (tetragonal enantiomorphs, one extinction group), 224 Pm-3m (cubic)
TRAIN = {13: 150, 1: 50, 75: 30, 224: 10}
EVAL = {13: 1, 1: 3, 75: 2, 77: 2, 224: 4, 0: 2}


def _vec(d):
    v = np.zeros(N_SG, np.int64)
    for c, n in d.items():
        v[c] = n
    return v


def test_hand_computed_values():
    b = prior_baselines(_vec(TRAIN), _vec(EVAL))
    maj, pri = b["majority"], b["prior"]
    n, tot = 14, 240
    # majority: always 13 (P2_1/c); ranked answers 13, 1, 75, 224, then 0 (first of the zeros)
    assert maj["sg_top1"] == pytest.approx(1 / n)
    assert maj["sg_top5"] == pytest.approx((1 + 3 + 2 + 4 + 2) / n)
    assert maj["sg_top1_enantio"] == pytest.approx(1 / n)          # 13 has no partner
    assert maj["sg_top1_extinction"] == pytest.approx(1 / n)
    assert maj["cs_acc"] == maj["cs_head_acc"] == pytest.approx(1 / n)   # monoclinic: 1 of 14
    assert maj["macro_f1"] == pytest.approx((2 * (1 / n) / (1 + 1 / n)) / 6)
    assert (maj["many_acc"], maj["medium_acc"], maj["few_acc"]) == (1.0, 0.0, 0.0)
    # prior: Σ p_train(c)·p_eval(c)
    assert pri["sg_top1"] == pytest.approx((150 * 1 + 50 * 3 + 30 * 2 + 10 * 4) / (tot * n))
    assert pri["sg_top1_enantio"] == pytest.approx((150 * 1 + 50 * 3 + 30 * (2 + 2) + 10 * 4) / (tot * n))
    # extinction groups {0, 1}, {13}, {75, 77}, {224}
    assert pri["sg_top1_extinction"] == pytest.approx((50 * 5 + 150 * 1 + 30 * 4 + 10 * 4) / (tot * n))
    # crystal systems: triclinic 50 / 5, monoclinic 150 / 1, tetragonal 30 / 4, cubic 10 / 4
    assert pri["cs_acc"] == pytest.approx((50 * 5 + 150 * 1 + 30 * 4 + 10 * 4) / (tot * n))
    assert np.isnan(pri["sg_top5"]) and np.isnan(pri["macro_f1"])
    # shot groups (standard): many {13}, medium {1, 75}, few {224, 77, 0} (present in eval)
    assert pri["many_acc"] == pytest.approx(150 / tot)
    assert pri["medium_acc"] == pytest.approx((50 + 30) / 2 / tot)
    assert pri["few_acc"] == pytest.approx((10 + 0 + 0) / 3 / tot)


def _constant_metrics(c: int, train, y, cs: int) -> dict[str, float]:
    """summarize() of a predictor that answers c (ranking the rest by training count)."""
    order = np.argsort(-train, kind="stable")
    score = np.empty(N_SG)
    score[order] = -np.arange(N_SG, dtype=float)
    score[c] = 1.0
    cs_logits = np.tile(np.eye(N_CS)[cs], (len(y), 1))
    return summarize(np.tile(score, (len(y), 1)), y, train, cs_logits=cs_logits)


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_the_metric_code_on_random_counts(seed):
    rng = np.random.default_rng(seed)
    train = np.where(rng.random(N_SG) < 0.6, rng.zipf(1.6, N_SG).clip(max=500), 0)
    y = rng.choice(N_SG, 400, p=rng.dirichlet(np.ones(N_SG)))
    b = prior_baselines(train, np.bincount(y, minlength=N_SG))
    c_star = int(np.argmax(train))
    cs_train = np.bincount(SG_TO_CS, weights=train, minlength=N_CS)
    maj = _constant_metrics(c_star, train, y, int(np.argmax(cs_train)))
    # cs_acc of summarize is the system of the SG answer; the baseline's is the CS task's (= head)
    for k in (k for k in KEYS if k != "cs_acc"):
        assert b["majority"][k] == pytest.approx(maj[k], nan_ok=True), k
    # the prior guess: p_train-weighted mean of the constant predictors (linear metrics)
    p = train / train.sum()
    linear = ("sg_top1", "sg_top1_enantio", "sg_top1_extinction", "many_acc", "medium_acc", "few_acc")
    mean = dict.fromkeys(linear, 0.0)
    for c in np.flatnonzero(p):
        m = _constant_metrics(int(c), train, y, 0)
        for k in linear:
            mean[k] += p[c] * (0.0 if np.isnan(m[k]) else m[k])
    for k in linear:
        assert b["prior"][k] == pytest.approx(mean[k], nan_ok=True), k


def test_other_label_sets_and_bad_input():
    b = prior_baselines([30, 10, 0], [5, 5, 5])
    assert b["majority"]["sg_top1"] == pytest.approx(1 / 3)
    assert b["prior"]["sg_top1"] == pytest.approx((30 * 5 + 10 * 5) / (40 * 15))
    assert np.isnan(b["majority"]["cs_acc"]) and np.isnan(b["prior"]["sg_top1_extinction"])
    with pytest.raises(Exception, match="sum to 0"):
        prior_baselines([0, 0], [1, 1])
    flat = flat_baselines(_vec(TRAIN), _vec(EVAL))
    assert flat["baseline_prior_sg_top1"] == pytest.approx(400 / 3360) and len(flat) == 2 * len(KEYS)


def test_reports_write_and_print_baselines(tmp_path):
    y = np.repeat(np.array(list(EVAL)), list(EVAL.values()))
    logits = np.random.default_rng(0).normal(size=(len(y), N_SG))
    counts = _vec(TRAIN)
    metrics = summarize(logits, y, counts)
    reports.write_test_reports(tmp_path, {"logits": logits, "y_sg": y}, counts, metrics)
    saved = json.loads((tmp_path / "test_metrics.json").read_text())
    assert saved["baseline_majority_sg_top1"] == pytest.approx(1 / 14)
    assert saved["baseline_prior_sg_top5"] is None          # NaN → null in JSON
    table = reports.results_table(saved)
    assert "| majority class | prior guess |" in table.splitlines()[0]
    row = next(r for r in table.splitlines() if r.startswith("| SG top-1 |"))
    assert row.split("|")[3].strip() == f"{100 / 14:.2f} %"


def test_comparison_table_has_baseline_rows(tmp_path):
    y = np.repeat(np.array(list(EVAL)), list(EVAL.values()))
    counts = _vec(TRAIN)
    runs = []
    for i, method in enumerate(("icl", "ce")):
        run = tmp_path / method
        logits = np.random.default_rng(i).normal(size=(len(y), N_SG))
        reports.write_test_reports(run, {"logits": logits, "y_sg": y}, counts, summarize(logits, y, counts))
        (run / "log.jsonl").write_text(json.dumps({"epoch": 1, "epoch_time_s": 2.0, "best_epoch": 1}) + "\n")
        (run / "args.yaml").write_text(f"method: {method}\nmodel: null\nfrontend_type: restcn\n")
        runs.append(run)
    lines = reports.comparison_table(runs, "t").splitlines()
    maj = next(r for r in lines if r.startswith("| *always the most common training class*"))
    pri = next(r for r in lines if r.startswith("| *guess by the training prior"))
    # columns: SG top-1, SG top-5, enantio, extinction, CS, macro-F1, many, medium, few
    assert [c.strip() for c in maj.split("|")[3:12]] == [
        f"{100 / 14:.1f}", f"{1200 / 14:.1f}", f"{100 / 14:.1f}", f"{100 / 14:.1f}", f"{100 / 14:.1f}",
        f"{100 / 45:.1f}", "100.0", "0.0", "0.0"]
    assert pri.split("|")[3].strip() == f"{100 * 400 / 3360:.1f}" and pri.split("|")[4].strip() == "–"
    assert lines.index(maj) > max(i for i, r in enumerate(lines) if r.startswith("| ce |"))
