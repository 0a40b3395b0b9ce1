"""The seed's per-dataset recipes (scripts/{ccdc,coremof19,inor}/icl.sh) train on an NPY layout:
the exact flags of docs/SEED_CLI.md, plus a tiny budget appended by the test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from datasets.peaks import PeakTable
from datasets.readers.npy_format import split_path, write_dataset_json, write_npy
from datasets.readers.peak_lists import render_table
from utils.grid import GridSpec
from utils.rule_matrix import build_rule_matrix, save_rule_matrix

ROOT = Path(__file__).resolve().parents[1]


def _npy_layout(tiny_data, root: Path, name: str) -> None:
    grid = GridSpec(n_points=1024)
    for split, src in (("train", "train"), ("test_val", "val"), ("test", "test")):
        table = PeakTable.load(tiny_data / f"peaks_{src}.npz")
        write_npy(split_path(root, name, split), render_table(table, grid), table.sg)
    write_dataset_json(root, name, grid)
    save_rule_matrix(build_rule_matrix("symop_cosine"), root / "rule_matrix.csv")


@pytest.mark.slow
@pytest.mark.parametrize("name,weights", [("inor", (0.5, 1.2, 0.15)), ("coremof19", (0.4, 1.8, 0.25))])
def test_seed_recipe_script_trains_on_npy(tiny_data, tmp_path, name, weights):
    data = tmp_path / "npy"
    _npy_layout(tiny_data, data, name)
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = ["bash", str(ROOT / f"scripts/{name}/icl.sh"), str(data), "--epochs", "1",
           "--width_mult", "0.125", "--batch_size", "16", "--output_dir", str(tmp_path / "Log")]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = list((tmp_path / "Log" / "sg").glob(f"{name}-1_icl-icl_moe-restcn_*"))
    assert len(runs) == 1 and (runs[0] / "test_metrics.json").is_file()
    args = yaml.safe_load((runs[0] / "args.yaml").read_text())
    assert (args["lambda_dol"], args["lambda_hier"], args["lambda_scl"]) == weights
    assert args["use_processed_npy"] and args["use_contrast_scheme2"] and args["adjust_lr_strategy"]
    assert args["rule_matrix_path"] == str(data / "rule_matrix.csv") and args["seed"] == 42
    assert "CUDA is not available" in out.stderr  # --device 0 fell back to the CPU, with a warning
    assert np.isfinite(yaml.safe_load((runs[0] / "test_metrics.json").read_text())["sg_top1"])
