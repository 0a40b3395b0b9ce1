"""metrics: hand-computed examples, naive references and sklearn as oracles."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion

from metrics import (
    ICL_XRD_REFERENCE_N,
    PER_CLASS_COLUMNS,
    SHOT_PRESETS,
    confusion_matrix,
    cs_accuracy_from_sg,
    cs_head_accuracy,
    enantiomorph_accuracy,
    enantiomorph_correct,
    extinction_accuracy,
    extinction_correct,
    macro_f1,
    macro_recall,
    per_class_accuracy,
    per_class_table,
    shot_accuracy,
    shot_groups,
    summarize,
    topk_accuracy,
    topk_correct,
    true_class_rank,
    write_per_class_csv,
)
from utils.crystal import ENANTIOMORPH_PAIRS, N_SG, extinction_groups
from utils.errors import ConfigError, DataError

# ------------------------------------------------------------------ top-k


def test_topk_hand_example():
    z = np.array([[0.1, 0.5, 0.2, 0.3],   # y=3: 0.5 ahead -> rank 1
                  [1.0, 1.0, 0.0, 0.0],   # y=1: tie with class 0, argmax picks 0 -> rank 1
                  [1.0, 1.0, 0.0, 0.0],   # y=0: wins the tie -> rank 0
                  [0.0, 0.1, 0.2, 0.3]])  # y=0: last -> rank 3
    y = np.array([3, 1, 0, 0])
    np.testing.assert_array_equal(true_class_rank(z, y), [1, 1, 0, 3])
    np.testing.assert_array_equal(topk_correct(z, y, 1), z.argmax(1) == y)
    assert topk_accuracy(z, y, (1, 2, 3, 4, 10)) == {1: 0.25, 2: 0.75, 3: 0.75, 4: 1.0, 10: 1.0}


def test_topk_matches_naive_and_torch():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 230, generator=g)
    y = torch.randint(0, 230, (500,), generator=g)
    # naive rank with argmax tie-breaking, one row at a time
    naive = [int(sum((z[i, c] > z[i, y[i]]) or (z[i, c] == z[i, y[i]] and c < y[i])
                     for c in range(230))) for i in range(20)]
    np.testing.assert_array_equal(true_class_rank(z, y)[:20], naive)
    for k in (1, 2, 5):
        ref = (z.topk(k, dim=1).indices == y[:, None]).any(1).float().mean().item()
        assert topk_accuracy(z, y, (k,))[k] == pytest.approx(ref)
    # tensors, numpy and bfloat16 agree (bf16 only through to_numpy's float cast)
    assert topk_accuracy(z.numpy(), y.numpy(), (1, 5)) == topk_accuracy(z, y, (1, 5))
    assert set(topk_accuracy(z.bfloat16(), y, (1,))) == {1}


def test_rank_chunking_is_invisible():
    rng = np.random.default_rng(1)
    z = rng.integers(0, 3, size=(40000, 7)).astype(np.float32)  # many ties, > one chunk
    y = rng.integers(0, 7, size=40000)
    np.testing.assert_array_equal(true_class_rank(z, y) == 0, z.argmax(1) == y)


# ------------------------------------------------------------------ confusion / per-class / macro


def test_confusion_and_per_class_accuracy():
    t = np.array([0, 0, 1, 1, 1, 3])
    p = np.array([0, 1, 1, 1, 0, 3])
    cm = confusion_matrix(t, p, 4)
    np.testing.assert_array_equal(cm, sk_confusion(t, p, labels=range(4)))
    acc, n_eval = per_class_accuracy(t, p, 4)
    np.testing.assert_array_equal(n_eval, [2, 3, 0, 1])
    np.testing.assert_allclose(acc[[0, 1, 3]], [0.5, 2 / 3, 1.0])
    assert math.isnan(acc[2])  # absent from the evaluation set: no accuracy, not 0


def test_macro_f1_and_recall_hand_example():
    t, p = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2])
    # class 0: P=1, R=1/2, F1=2/3; class 1: P=1/2, R=1/2, F1=1/2; class 2: never true, F1=0
    assert macro_f1(t, p, 3) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert macro_f1(t, p, 3, labels="union") == pytest.approx((2 / 3 + 1 / 2) / 3)
    assert macro_recall(t, p, 3) == pytest.approx(0.5)
    assert macro_recall(t, p, 3, labels="union") == pytest.approx(1 / 3)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_recall_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 40, 800)
    p = np.where(rng.random(800) < 0.5, t, rng.integers(0, 50, 800))  # predicts unseen classes too
    present = np.unique(t)
    kw = dict(average="macro", zero_division=0)
    assert macro_f1(t, p, 50) == pytest.approx(f1_score(t, p, labels=present, **kw))
    assert macro_f1(t, p, 50, labels="union") == pytest.approx(f1_score(t, p, **kw))
    assert macro_f1(t, p, 50, labels=[1, 2, 3]) == pytest.approx(f1_score(t, p, labels=[1, 2, 3], **kw))
    assert macro_recall(t, p, 50) == pytest.approx(recall_score(t, p, labels=present, **kw))
    assert macro_recall(t, p, 50) == pytest.approx(balanced_accuracy_score(t, p))
    assert macro_f1(torch.from_numpy(t), torch.from_numpy(p), 50) == macro_f1(t, p, 50)


def test_bad_inputs_raise_data_error():
    with pytest.raises(DataError, match="Fix:"):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        per_class_accuracy([0, 3], [0, 1], 3)
    with pytest.raises(DataError):
        true_class_rank(np.zeros((3, 4)), [0, 1])
    with pytest.raises(DataError):
        topk_accuracy(np.zeros(4), [0])
    with pytest.raises(DataError):
        macro_f1([0, 1], [0, 1], 2, labels="everything")


# ------------------------------------------------------------------ crystallography


def test_enantiomorph_credit():
    # 0-based: 75 = P4_1 (76), 77 = P4_3 (78), 76 = P4_2 (77)
    assert enantiomorph_correct([75, 77, 75, 211], [77, 75, 76, 212]).tolist() == [True, True, False, True]
    assert enantiomorph_accuracy([75, 75, 0], [77, 75, 1]) == pytest.approx(2 / 3)
    # strict accuracy gives no such credit
    assert topk_accuracy(np.eye(230)[[77]], [75], (1,))[1] == 0.0


def test_extinction_credit():
    eg = extinction_groups()
    # P2 (3), Pm (6), P2/m (10) share the extinction group (no absences); P2_1 (4) does not
    assert eg[2] == eg[5] == eg[9] != eg[3]
    assert extinction_correct([2, 2, 2, 75], [5, 9, 3, 77]).tolist() == [True, True, False, True]
    assert extinction_accuracy([2, 2], [9, 3]) == 0.5


def test_enantiomorph_credit_implies_extinction_credit():
    eg = extinction_groups()
    for a, b in ENANTIOMORPH_PAIRS:
        assert eg[a - 1] == eg[b - 1], (a, b)
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 230, 5000), rng.integers(0, 230, 5000)
    assert not np.any(enantiomorph_correct(t, p) & ~extinction_correct(t, p))


def test_cs_accuracy_from_sg_and_head():
    # sg1->sg2 same (triclinic); sg3 (mono) -> sg2 wrong; sg195 -> sg230 cubic right; sg194 -> 195 wrong
    assert cs_accuracy_from_sg([0, 2, 194, 193], [1, 1, 229, 194]) == 0.5
    assert cs_accuracy_from_sg(torch.tensor([142, 143]), torch.tensor([141, 166])) == 0.5  # 143 trig
    cs_logits = torch.zeros(3, 7)
    cs_logits[0, 6] = cs_logits[1, 2] = cs_logits[2, 0] = 1.0
    assert cs_head_accuracy(cs_logits, [6, 2, 5]) == pytest.approx(2 / 3)
    with pytest.raises(DataError):
        cs_head_accuracy(torch.zeros(3, 5), [0, 1, 2])


# ------------------------------------------------------------------ many / medium / few

EDGE_COUNTS = np.array([0, 19, 20, 21, 99, 100, 101, 5000])


@pytest.mark.parametrize("preset,many,medium,few", [
    ("standard", [101, 5000], [20, 21, 99, 100], [0, 19]),
    ("glmc", [101, 5000], [21, 99, 100], [0, 19, 20]),
    ("ncl", [100, 101, 5000], [21, 99], [0, 19, 20]),
])
def test_shot_groups_fixed_thresholds(preset, many, medium, few):
    g = shot_groups(EDGE_COUNTS, preset)
    assert EDGE_COUNTS[g.many].tolist() == many
    assert EDGE_COUNTS[g.medium].tolist() == medium
    assert EDGE_COUNTS[g.few].tolist() == few
    assert g.sizes == {"many": len(many), "medium": len(medium), "few": len(few)}
    assert g.extreme is None
    assert g.names()[EDGE_COUNTS.tolist().index(20)] == ("medium" if preset == "standard" else "few")


@pytest.mark.parametrize("scale", [1, 2])
def test_shot_groups_icl_xrd_at_reference_size(scale):
    # total N = 120588·scale, so the thresholds are exactly 1000/100/20 times scale
    body = np.array([1001, 1000, 100, 99, 20, 19]) * scale
    counts = np.append(body, ICL_XRD_REFERENCE_N * scale - body.sum())
    g = shot_groups(torch.from_numpy(counts), "icl-xrd")
    assert g.many.tolist() == [True, False, False, False, False, False, True]
    assert g.medium.tolist() == [False, True, True, False, False, False, False]
    assert g.few.tolist() == [False, False, False, True, True, True, False]
    assert g.extreme.tolist() == [False] * 5 + [True, False]
    assert g.sizes == {"many": 2, "medium": 2, "few": 3, "extreme": 1}
    assert (g.low, g.high) == (100.0 * scale, 1000.0 * scale)


def test_shot_groups_icl_xrd_scales_with_n():
    # N = 60294 = 120588 / 2: thresholds 500 / 50 / 10, compared exactly
    body = np.array([501, 500, 50, 49, 10, 9])
    counts = np.append(body, 60294 - body.sum())
    g = shot_groups(counts, "icl-xrd")
    assert g.names().tolist() == ["many", "medium", "medium", "few", "few", "few", "many"]
    assert g.extreme.tolist() == [False] * 5 + [True, False]
    # a small dataset: N = 1000 -> medium from 0.83 samples, many above 8.29
    g = shot_groups(np.array([9, 8, 1, 0, 982]), "icl-xrd")
    assert g.names().tolist() == ["many", "medium", "medium", "few", "many"]


def test_shot_groups_partition_and_errors():
    counts = np.random.default_rng(0).integers(0, 3000, 230)
    for preset in SHOT_PRESETS:
        g = shot_groups(counts, preset)
        assert np.all(g.many.astype(int) + g.medium + g.few == 1)
    with pytest.raises(ConfigError, match="standard"):
        shot_groups(counts, "median")
    with pytest.raises(DataError):
        shot_groups(np.array([3, -1]))


def test_shot_accuracy_ignores_absent_classes():
    counts = np.array([200, 150, 50, 30, 5, 3])
    acc = np.array([1.0, 0.5, np.nan, 0.4, 0.2, np.nan])
    out = shot_accuracy(acc, counts)
    assert out == pytest.approx({"many_acc": 0.75, "medium_acc": 0.4, "few_acc": 0.2,
                                 "n_many": 2, "n_medium": 1, "n_few": 1})
    assert shot_accuracy(np.nan_to_num(acc), counts, n_eval=[4, 4, 0, 4, 4, 0]) == out
    empty = shot_accuracy(np.array([1.0, np.nan]), np.array([500, 5]))
    assert math.isnan(empty["few_acc"]) and empty["n_few"] == 0 and empty["n_medium"] == 0
    icl = shot_accuracy(np.array([1.0, 0.5, 0.0]), np.array([119000, 500, 10]), "icl-xrd")
    assert icl["extreme_acc"] == 0.0 and icl["n_extreme"] == 1 and icl["medium_acc"] == 0.5


# ------------------------------------------------------------------ summarize / per-class table


def _ranked(order: list[int]) -> np.ndarray:
    row = np.zeros(N_SG, dtype=np.float32)
    row[order] = 100.0 - np.arange(len(order))
    return row


def _hand_case():
    counts = np.zeros(N_SG, dtype=np.int64)
    counts[[0, 2, 75, 77, 224]] = [500, 50, 5, 5, 1000]  # many, medium, few, few, many
    logits = np.stack([
        _ranked([77, 75]),                       # y=75 (P4_1) -> P4_3: enantiomorph, top2
        _ranked([75]),                           # y=75 correct
        _ranked([1, 5, 0]),                      # y=0 (P1) -> P-1: same CS & extinction, top5
        _ranked([2]),                            # y=2 correct
        _ranked([2, 3, 4, 5, 6, 7, 8, 9, 10, 224]),  # y=224 (Pm-3m) -> P2: all wrong, rank 9
        _ranked([224]),                          # y=224 correct
    ])
    y = np.array([75, 75, 0, 2, 224, 224])
    return logits, y, counts


def test_summarize_hand_example():
    logits, y, counts = _hand_case()
    cs_logits = np.eye(7)[[3, 3, 0, 0, 6, 1]]  # true CS: 3 3 0 1 6 6 -> 4 of 6 right
    out = summarize(torch.from_numpy(logits), torch.from_numpy(y), counts, cs_logits=cs_logits)
    expected = {
        "sg_top1": 3 / 6, "sg_top2": 4 / 6, "sg_top5": 5 / 6,
        "sg_top1_enantio": 4 / 6, "sg_top1_extinction": 5 / 6, "cs_acc": 5 / 6, "cs_head_acc": 4 / 6,
        # per-class acc: 75 -> 1/2, 0 -> 0, 2 -> 1, 224 -> 1/2
        "macro_recall": 0.5,
        # F1: 75 -> 2/3, 0 -> 0, 2 -> 2/3 (one false positive), 224 -> 2/3
        "macro_f1": 0.5,
        "many_acc": 0.25, "n_many": 2, "medium_acc": 1.0, "n_medium": 1, "few_acc": 0.5, "n_few": 1,
        "n_samples": 6, "n_classes_eval": 4,
    }
    assert out == pytest.approx(expected)
    assert "cs_head_acc" not in summarize(logits, y, counts)
    icl = summarize(logits, y, counts, preset="icl-xrd", topk=(1,))
    assert {"extreme_acc", "n_extreme"} <= set(icl) and "sg_top2" not in icl


def test_summarize_agrees_with_sklearn_on_random_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 230, 3000)
    logits = rng.normal(size=(3000, 230)).astype(np.float32)
    logits[np.arange(3000), y] += 2.5
    out = summarize(logits, y, rng.integers(0, 400, 230))
    pred = logits.argmax(1)
    assert out["sg_top1"] == pytest.approx(np.mean(pred == y))
    assert out["macro_f1"] == pytest.approx(f1_score(y, pred, labels=np.unique(y), average="macro",
                                                     zero_division=0))


def test_summarize_rejects_wrong_width():
    with pytest.raises(DataError, match="230"):
        summarize(np.zeros((2, 7)), [0, 1], np.ones(230))
    with pytest.raises(DataError):
        summarize(np.zeros((2, 230)), [0, 1], np.ones(229))


def test_per_class_table_and_csv(tmp_path):
    logits, y, counts = _hand_case()
    rows = per_class_table(logits, y, counts)
    assert len(rows) == N_SG and all(set(r) == set(PER_CLASS_COLUMNS) for r in rows)
    r76 = rows[75]
    assert (r76["sg"], r76["crystal_system"], r76["train_count"], r76["shot_group"]) == \
        (76, "tetragonal", 5, "few")
    assert (r76["n_eval"], r76["accuracy"], r76["top5"]) == (2, 0.5, 1.0)
    assert (r76["most_confused"], r76["most_confused_frac"]) == (78, 0.5)
    assert rows[224]["top5"] == 0.5 and rows[224]["most_confused"] == 3
    assert rows[2]["most_confused"] is None and rows[2]["accuracy"] == 1.0
    assert rows[10]["n_eval"] == 0 and math.isnan(rows[10]["accuracy"])
    path = write_per_class_csv(rows, tmp_path / "run" / "per_class.csv")
    with open(path, newline="") as fh:
        back = list(csv.DictReader(fh))
    assert list(back[0]) == list(PER_CLASS_COLUMNS) and len(back) == N_SG
    assert back[75]["accuracy"] == "0.5" and back[10]["accuracy"] == "" and back[0]["sg"] == "1"


def test_hierarchy_diagnostics_by_hand():
    """Oracle = argmax within the TRUE crystal system; the system head per shot group."""
    from metrics.summary import hierarchy_diagnostics

    counts = np.full(230, 5)
    counts[[1, 13]] = 500                                   # P-1 (triclinic) and P2_1/c many-shot
    z = np.zeros((3, 230))
    z[0, 200], z[0, 1] = 9.0, 5.0                         # true P-1: global argmax cubic, oracle right
    z[1, 14], z[1, 13] = 9.0, 1.0                         # true P2_1/c: C2/c wins inside monoclinic
    z[2, 220] = 3.0                                         # true 221 (few-shot, cubic): 220 is cubic too
    y = np.array([1, 13, 220])
    cs = np.zeros((3, 7))
    cs[0, 6], cs[1, 1], cs[2, 6] = 1.0, 1.0, 1.0          # head: wrong, right, right
    out = hierarchy_diagnostics(z, cs, y, counts)
    assert out["sg_top1_cs_oracle"] == pytest.approx(2 / 3)
    assert out["many_acc_cs_oracle"] == pytest.approx(0.5) and out["few_acc_cs_oracle"] == 1.0
    assert out["cs_head_many_acc"] == pytest.approx(0.5) and out["cs_head_few_acc"] == 1.0
    full = summarize(z, y, counts, cs_logits=cs, ensemble_logits=z)
    assert full["sg_top1_cs_oracle"] == out["sg_top1_cs_oracle"]
    assert "sg_top1_cs_oracle" not in summarize(z, y, counts)
    # per expert: expert 0 = the ensemble above, expert 1 ranks every true group first
    experts = np.stack([z, np.eye(230)[y] * 5.0], axis=1)
    per = hierarchy_diagnostics(z, None, y, counts, expert_logits=experts)
    assert (per["expert0_many_acc_cs_oracle"], per["expert0_few_acc_cs_oracle"]) == (0.5, 1.0)
    assert (per["expert1_many_acc_cs_oracle"], per["expert1_few_acc_cs_oracle"]) == (1.0, 1.0)
    assert "cs_head_few_acc" not in per
