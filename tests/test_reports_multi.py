"""reports_multi.py: mean ± sd over seeds, the target verdict, the ablation table and the figure,
on hand-made run directories whose numbers are checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

import reports_multi as rm


def _run(path, metrics, acc, ext=None):
    ev = path / "eval"
    ev.mkdir(parents=True)
    (ev / "test_metrics.json").write_text(json.dumps(metrics))
    counts = np.where(np.arange(230) < 10, 300, 5)           # 10 many-shot, 220 few-shot classes
    lines = ["sg,train_count,n_eval,accuracy"]
    lines += [f"{g + 1},{counts[g]},{4 if g < 200 else 0},{acc if g < 200 else ''}" for g in range(230)]
    (ev / "per_class.csv").write_text("\n".join(lines) + "\n")
    if ext is not None:
        (ev / rm.EXTERNAL).mkdir()
        (ev / rm.EXTERNAL / "test_metrics.json").write_text(json.dumps(ext))


def _m(top1, few, f1):
    return {"sg_top1": top1, "sg_top5": 2 * top1, "cs_acc": 0.5, "few_acc": few, "macro_f1": f1,
            "many_acc": 0.9, "lab_sg_top1": top1 - 0.01}


def test_seed_table_mean_sd_runs_done_verdict_and_plot(tmp_path):
    root = tmp_path / "compare"
    _run(root / "seed0" / "icl", _m(0.10, 0.20, 0.10), 0.2, ext={"sg_top1": 0.3, "cs_acc": 0.6})
    _run(root / "seed1" / "icl", _m(0.12, 0.24, 0.12), 0.3)
    _run(root / "seed0" / "ce", _m(0.08, 0.10, 0.08), 0.1)
    _run(root / "seed1" / "ce", _m(0.09, 0.12, 0.09), 0.1)
    plot = tmp_path / "fig.png"
    table = rm.seed_table(root, ["icl", "ce", "arb"], [0, 1, 2], plot=plot)
    icl = next(line for line in table.splitlines() if line.startswith("| icl |"))
    cells = [c.strip() for c in icl.strip("|").split("|")]
    assert cells[1] == "2/3 (0, 1)"
    # SG top-1: mean 11.0, sd (ddof 1) of 10 and 12 = 1.414
    assert cells[2] == "11.0 ± 1.4"
    assert cells[-2] == "30.0"                                  # one real-crystal evaluation
    assert "| arb | 0/3 (–) |" in table
    assert "*always the most common training class*" in table
    # few-shot: icl 22.0 ± 2.8 vs ce 11.0 ± 1.4: +11 points > the larger sd 2.8, a win
    assert ("few-shot accuracy: icl 22.0 vs best baseline ce 11.0 (+11.0 points, larger sd 2.8): "
            "icl beats") in table
    assert plot.is_file() and plot.stat().st_size > 10_000


def test_verdict_does_not_call_a_win_inside_the_noise_or_with_one_seed(tmp_path):
    one = {"icl": [{("", "few_acc"): 0.2, ("", "macro_f1"): 0.1}], "ce": [{("", "few_acc"): 0.1,
                                                                           ("", "macro_f1"): 0.1}]}
    assert "no call" in rm.verdict(one)
    noisy = {"icl": [{("", "few_acc"): a, ("", "macro_f1"): a} for a in (0.1, 0.3)],
             "ce": [{("", "few_acc"): a, ("", "macro_f1"): a} for a in (0.15, 0.16)]}
    assert "does NOT beat" in rm.verdict(noisy)


def test_ablation_table_rows_and_missing_runs(tmp_path):
    _run(tmp_path / "base", _m(0.10, 0.2, 0.1), 0.2)
    table = rm.main(["ablation", "--row", f"ICL={tmp_path / 'base'}:eval",
                     "--row", f"no L_scl={tmp_path / 'missing'}:eval",
                     "--out", str(tmp_path / "R.md"), "--section", "abl"])
    assert "| ICL | 10.0 | 20.0 | 50.0 |" in table
    assert "| no L_scl | not run yet |" in table
    text = (tmp_path / "R.md").read_text()
    assert "<!-- abl:begin -->" in text and "no L_scl" in text


def test_plot_needs_some_accuracy(tmp_path):
    with pytest.raises(ValueError, match="no class"):
        rm.plot_per_class_vs_count_methods({"a": np.full(230, np.nan)}, np.ones(230), tmp_path / "x.png")


def test_variants_of_a_run_evaluated_with_evidence(tmp_path):
    """--evidence index: unprefixed = the fusion, model_* / lab_model_* the model alone, index_*
    the index alone; a run without evidence is the model alone and has no index variant."""
    fused = {"sg_top1": 0.45, "lab_sg_top1": 0.34, "model_sg_top1": 0.11, "lab_model_sg_top1": 0.09,
             "index_sg_top1": 0.33, "lab_index_sg_top1": 0.24, "cs_acc": 0.9, "model_cs_acc": 0.58}
    _run(tmp_path / "ev", fused, 0.4, ext={"sg_top1": 0.36, "model_sg_top1": 0.10})
    _run(tmp_path / "plain", {"sg_top1": 0.12, "lab_sg_top1": 0.10}, 0.1)
    assert rm.variant_view(fused, "model") == {"sg_top1": 0.11, "lab_sg_top1": 0.09, "cs_acc": 0.58}
    assert rm.variant_view(fused, "index") == {"sg_top1": 0.33, "lab_sg_top1": 0.24}
    assert rm.variant_view({"sg_top1": 0.12}, "index") is None
    assert rm.variant_view({"sg_top1": 0.12}, "model") == {"sg_top1": 0.12}
    table = rm.main(["ablation", "--row", f"fused={tmp_path / 'ev'}:eval",
                     "--row", f"alone={tmp_path / 'ev'}:eval@model",
                     "--row", f"idx={tmp_path / 'plain'}:eval@index"])
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines() if line.startswith("| ")}
    assert rows["fused"][1] == "45.0" and rows["fused"][3] == "90.0" and rows["fused"][-2] == "36.0"
    assert rows["alone"][1] == "11.0" and rows["alone"][3] == "58.0" and rows["alone"][-2] == "10.0"
    assert rows["alone"][9] == "9.0"                      # lab SG top-1 of the model alone
    assert rows["idx"][1] == "not run yet"
    with pytest.raises(ValueError, match="unknown variant"):
        rm.variant_view(fused, "both")
