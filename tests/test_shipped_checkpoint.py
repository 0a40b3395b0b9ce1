"""The model shipped in the repository (``data/checkpoints/icl_quick.pt``, issue 23 part 5): it is
small, matches its provenance file, loads without training, reproduces its recorded test metrics,
and is what ``predict.py`` uses when no ``--ckpt`` is given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import builders
import predict
from utils.checkpoint import load_checkpoint
from utils.hashing import file_sha256

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "checkpoints" / "icl_quick.pt"
PROV = SHIPPED.with_suffix(".json")


def _prov() -> dict:
    return json.loads(PROV.read_text())


def test_small_and_matches_its_provenance():
    assert SHIPPED.is_file() and PROV.is_file()
    prov = _prov()
    assert SHIPPED.stat().st_size <= 15 * 2 ** 20 and prov["bytes"] == SHIPPED.stat().st_size
    assert prov["sha256"] == file_sha256(SHIPPED)
    for k in ("command", "commit", "test_metrics", "shipped_model_metrics"):
        assert prov[k], k
    state = load_checkpoint(SHIPPED)
    assert "optimizer" not in state and state["weights_dtype"] == prov["weights_dtype"]
    model = builders.model_from_checkpoint(state, SHIPPED)
    assert sum(p.numel() for p in model.parameters()) > 10_000


@pytest.mark.slow
def test_reproduces_its_recorded_metrics(tmp_path, test_cli):
    """The model alone on the built-in test split (clean and lab rendering, 900 patterns each), as
    recorded at export; up to 2 patterns of 900 may flip on another CPU's float rounding."""
    m = test_cli.main(["--ckpt", str(SHIPPED), "--evidence", "none", "--out_dir", str(tmp_path)])
    rec = _prov()["shipped_model_metrics"]
    for k in ("sg_top1", "sg_top5", "cs_acc", "sg_top1_extinction", "lab_sg_top1", "lab_cs_acc"):
        assert m[k] == pytest.approx(rec[k], abs=2.5 / 900), k


def test_predict_uses_it_without_ckpt(capsys):
    pattern = ROOT / "tests" / "fixtures" / "instrument" / "nacl_sync.xy"
    rows = predict.main([str(pattern), "--no_index", "--topk", "3"])
    out = capsys.readouterr().out
    assert len(rows) == 1 and len(rows[0]["top"]) == 3 and "crystal system:" in out
    assert predict.get_parser().parse_args([str(pattern)]).ckpt is None
