"""``--method index`` end to end on a few real simulated cubic crystals: train.py (no training, a
checkpoint, reports), test.py --ckpt (the same metrics, from the cache), predict.py (the indexed
cell next to the prediction), and the method's flags in --help."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import index_method
import predict
import train
from datasets.peaks import PeakTable
from utils.crystal import SG_TO_CS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "data" / "xrd_mp_default"
CUBIC_FIRST = 195



@pytest.fixture(scope="module")
def cubic_data(make_cubic_set):
    """The default set's training prior (its sg_count.csv; 20 training crystals, never read) and
    val/test cut down to a few cubic crystals."""
    return make_cubic_set("cubic", 6, 20, 0)


def test_method_flags_in_help(capsys):
    with pytest.raises(SystemExit):
        train.main(["--method", "index", "--help"])
    out = capsys.readouterr().out
    for flag in ("--index_lines", "--index_workers", "--index_ext_weight", "--index_prior_smoothing",
                 "--index_min_snr", "--index_engine"):
        assert flag in out


def test_train_test_predict(cubic_data, tmp_path, capsys, test_cli):
    t0 = time.perf_counter()
    res = train.main(["--method", "index", "--data_dir", str(cubic_data),
                      "--output_dir", str(tmp_path / "Log"), "--device", "cpu", "--batch_size", "8",
                      "--index_workers", "1", "--seed", "0"])
    first = time.perf_counter() - t0
    run = Path(res["run_dir"])
    for f in ("args.yaml", "log.jsonl", "best.pt", "last.pt", "test_metrics.json", "per_class.csv",
              "cs_confusion.png"):
        assert (run / f).is_file(), f
    m = json.loads((run / "test_metrics.json").read_text())
    # 4 cubic crystals: the prior alone (225 groups) scores 16 % CS, 3 % extinction group, ~0 % SG;
    # within a cubic extinction group the MP prior often picks another member, so SG top-1 is low
    assert m["cs_acc"] >= 0.75 and m["cs_acc"] > m["baseline_prior_cs_acc"] + 0.5, m
    assert m["sg_top1_extinction"] >= 0.5 > 10 * m["baseline_prior_sg_top1_extinction"], m
    assert m["sg_top5"] >= 0.5 > 10 * m["baseline_prior_sg_top1"], m
    assert m["lab_cs_acc"] >= 0.5, m
    ckpt = run / "best.pt"
    import torch
    state = torch.load(ckpt, weights_only=False)
    cfg = state["model_config"]
    assert cfg["name"] == "index" and cfg["n_lines"] == 20 and len(cfg["class_counts"]) == 230
    assert cfg["grid"][0] == 8500 and state["args"]["method"] == "index"
    # the log: one evaluation-only row; the comparison table gets an index row
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and "val_sg_top1" in log[0] and "train_loss" not in log[0]
    import reports
    assert "\n| index | " in reports.comparison_table([run])

    t0 = time.perf_counter()
    again = test_cli.main(["--ckpt", str(ckpt), "--out_dir", str(tmp_path / "eval")])
    cached = time.perf_counter() - t0
    for k in ("sg_top1", "sg_top5", "cs_acc", "lab_sg_top1", "lab_cs_acc", "sg_top1_extinction"):
        assert again[k] == pytest.approx(m[k]), k
    assert cached < first  # every pattern came from the per-pattern cache

    # predict.py with the index checkpoint: the prediction is the index's, with the indexed line
    test = PeakTable.load(cubic_data / "peaks_test.npz")
    tt, inten = test.peaks(0)
    xs = np.linspace(5, 90, 8500)
    y = sum(i * np.exp(-0.5 * ((xs - t) / 0.03) ** 2) for t, i in zip(tt, inten, strict=True)) + 1.0
    pat = tmp_path / "cubic.xy"
    np.savetxt(pat, np.c_[xs, 1000 * y / y.max()], header="wavelength: 1.5406")  # no silent Cu Kα
    capsys.readouterr()
    rows = predict.main(["--ckpt", str(ckpt), str(pat), "--csv", str(tmp_path / "p.csv")])
    out = capsys.readouterr().out
    assert "indexed: c" in out and "M20=" in out and "extinction group" in out, out
    assert rows[0]["crystal_system"] == "cubic" and SG_TO_CS[test.sg[0] - 1] == 6
    head = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert "indexed_bravais" in head and "indexed_cell" in head and "indexed_m20" in head
    rows = predict.main(["--ckpt", str(ckpt), str(pat), "--no_index"])
    assert "indexed:" not in capsys.readouterr().out


def test_describe_unsolved_and_scores_prior_only():
    row = index_method.IndexRow(np.zeros(index_method.EVIDENCE_DIM, np.float32), message="too few peaks")
    assert index_method.describe(row) == "no cell (too few peaks)"
    counts = np.arange(230) % 7
    model = index_method.IndexModel(counts.tolist(), [100, 5.0, 90.0, 1.5406])
    logits = model.scores([row])["logits"][0].numpy()
    assert np.allclose(logits, index_method.log_prior(counts, 1.0), atol=1e-5)
