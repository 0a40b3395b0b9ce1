"""Shared fixtures: a tiny peak-list dataset on a short 2θ grid, written like the simulator's."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from loguru import logger

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # the suite runs on 2 pytest-xdist workers (pyproject.toml): one torch thread per worker and
    # per command a test starts, so that two workers do not fight over the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from datasets.peaks import PeakTable  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

TINY_GRID = {"two_theta_min": 5.0, "two_theta_max": 90.0, "n_points": 1024, "wavelength": 1.5406}
TINY_CLASSES = [1, 14, 62, 139, 166, 194, 225]  # one space group per crystal system


def _table(n_per_class: dict[int, int], seed: int) -> PeakTable:
    rng = np.random.default_rng(seed)
    tts, ints, sgs = [], [], []
    for sg, n in n_per_class.items():
        base = np.sort(np.random.default_rng(sg).uniform(10, 85, 6 + sg % 5))  # class fingerprint
        for _ in range(n):
            tt = base + rng.normal(0, 0.05, len(base))
            inten = rng.uniform(20, 100, len(base))
            inten[0] = 100.0
            tts.append(tt.astype(np.float32))
            ints.append(inten.astype(np.float32))
            sgs.append(sg)
    return PeakTable.from_lists(tts, ints, sgs, meta={"formula": [f"X{s}" for s in sgs]})


def write_tiny_dataset(root, seed: int = 0) -> None:
    """Long-tailed train (40 → 3 per class), balanced val/test (4 per class)."""
    root.mkdir(parents=True, exist_ok=True)
    train_n = dict(zip(TINY_CLASSES, [40, 30, 20, 10, 6, 4, 3], strict=True))
    _table(train_n, seed).save(root / "peaks_train.npz")
    _table(dict.fromkeys(TINY_CLASSES, 4), seed + 1).save(root / "peaks_val.npz")
    _table(dict.fromkeys(TINY_CLASSES, 4), seed + 2).save(root / "peaks_test.npz")
    with open(root / "sg_count.csv", "w") as fh:
        fh.writelines(f"{sg},{n}\n" for sg, n in train_n.items())
    with open(root / "dataset.json", "w") as fh:
        json.dump({"name": "tiny", "grid": TINY_GRID}, fh)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_peaks")
    write_tiny_dataset(root)
    return root


def tiny_args(data, out, *extra) -> list[str]:
    """train.py flags of a seconds-long run on the tiny dataset (output under ``out``)."""
    return ["--data_dir", str(data), "--output_dir", str(out), "--device", "cpu", "--batch_size", "16",
            "--width_mult", "0.125", "--use_adamw", "--warmup_epochs", "0.5", "--seed", "3", *extra]


@contextlib.contextmanager
def _log_messages(level: str):
    """The messages of loguru records at ``level`` or above, logged inside the block."""
    got: list[str] = []
    handler = logger.add(lambda m: got.append(m.record["message"]), level=level, format="{message}")
    try:
        yield got
    finally:
        logger.remove(handler)


@pytest.fixture
def warnings_():
    """The messages of loguru warnings logged during the test."""
    with _log_messages("WARNING") as got:
        yield got


@pytest.fixture
def info_messages():
    """The messages of loguru INFO (and higher) records logged during the test."""
    with _log_messages("INFO") as got:
        yield got


@pytest.fixture(scope="session")
def test_cli():
    """``test.py`` as a module (``import test`` can reach the standard library's ``test`` package)."""
    path = Path(__file__).resolve().parents[1] / "test.py"
    spec = importlib.util.spec_from_file_location("xrd_test_cli", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def make_cubic_set(tmp_path_factory):
    """``make(name, n_cubic, n_train, seed)``: a copy of the default set (its sg_count.csv and
    dataset.json, its first ``n_train`` training crystals) whose val/test are ``n_cubic`` cubic
    crystals of its test split drawn with ``seed`` (4 test, the rest val)."""
    import shutil
    default = Path(__file__).resolve().parents[1] / "data" / "xrd_mp_default"

    def make(name: str, n_cubic: int, n_train: int, seed: int) -> Path:
        root = tmp_path_factory.mktemp(name)
        test = PeakTable.load(default / "peaks_test.npz")
        cubic = np.flatnonzero(test.sg >= 195)
        pick = np.sort(np.random.default_rng(seed).choice(cubic, n_cubic, replace=False))
        test.subset(pick[:4]).save(root / "peaks_test.npz")
        test.subset(pick[4:]).save(root / "peaks_val.npz")
        PeakTable.load(default / "peaks_train.npz").subset(np.arange(n_train)).save(root / "peaks_train.npz")
        for f in ("sg_count.csv", "dataset.json"):
            shutil.copy(default / f, root / f)
        return root

    return make


@pytest.fixture(scope="module")
def cubic_data(make_cubic_set):
    """The default set's prior, 40 training crystals, val/test: a few cubic crystals (the evidence
    fusion's and the evidence inputs' end-to-end tests)."""
    return make_cubic_set("cubic_fusion", 7, 40, 1)
