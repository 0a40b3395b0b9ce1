"""scripts/default/compare_methods.sh in a tiny configuration: every method trains one epoch on
the tiny dataset and one table lands in the results file (as on the default set, only smaller)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["icl", "ce", "glmc", "ncl", "arb", "gh"]


@pytest.mark.slow
def test_compare_methods_script_writes_one_table(tiny_data, tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nkept text\n")
    env = dict(os.environ, DATA=str(tiny_data), OUT=str(tmp_path / "runs"), RESULTS=str(results),
               METHODS=" ".join(METHODS), OMP_NUM_THREADS="1", WANDB_MODE="disabled",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    # the quick preset trains on new crystals (--data_source stream): the tiny files here instead
    cmd = ["bash", str(ROOT / "scripts/default/compare_methods.sh"), "7", "--epochs", "1",
           "--data_source", "files", "--width_mult", "0.125", "--batch_size", "16", "--device", "cpu"]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True, timeout=600)
    text = results.read_text()
    assert text.startswith("# Results\n\nkept text")
    assert text.count("<!-- compare_methods:begin -->") == 1
    rows = [line for line in text.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in METHODS]
    assert [r.split("|")[1].strip() for r in rows] == METHODS
    for r in rows:
        cells = [c.strip() for c in r.split("|")[3:-1]]
        assert all(c not in ("", "nan") for c in cells), r
    # re-running reuses finished runs and rewrites the section in place
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True, timeout=600)
    assert results.read_text().count("<!-- compare_methods:begin -->") == 1
