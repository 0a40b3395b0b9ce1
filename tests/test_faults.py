"""Runs that survive faults: SIGKILL/SIGTERM/SIGINT mid-run then --resume auto equals an
uninterrupted run; a signal writes a mid-epoch checkpoint; a non-finite loss stops with the epoch,
step and component named and keeps the last good checkpoint (or is skipped on request)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from loss import LOSSES
from tests.conftest import tiny_args
from Trainer import TRAINERS, NonFiniteLossError, Trainer, TrainingInterrupted
from utils.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TIMING_KEYS = ("train_samples_per_s", "epoch_time_s", "wall_s")


def _args(data, run_dir, *extra):
    return tiny_args(data, Path(run_dir).parent, "--run_dir", str(run_dir), *extra)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


def _log(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6, rtol=0), k
    la, lb = _log(a), _log(b)
    assert len(la) == len(lb)
    for ra, rb in zip(la, lb, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], abs=1e-6), (ra["epoch"], k)
    ma = json.loads((a / "test_metrics.json").read_text())
    mb = json.loads((b / "test_metrics.json").read_text())
    assert ma == pytest.approx(mb, abs=1e-9)


# ------------------------------------------------------------------ in process: the exact mechanics

class _Killed(BaseException):
    """Stands in for SIGKILL inside the process: no handler, no cleanup."""


@pytest.mark.parametrize("when", ["before_first_write", "after_first_write"])
def test_kill_between_epoch_end_writes_then_resume_equals_uninterrupted(tiny_data, tmp_path, monkeypatch,
                                                                         when):
    """A kill at the end of epoch 2, after its log row, before (or between) its checkpoint writes:
    resume must not repeat the log row, and best.pt must never lag behind last.pt's best epoch
    (best.pt is written first), so the final test metrics equal an uninterrupted run's."""
    import Trainer.base as tb

    common = ["--epochs", "3", "--method", "icl"]
    train.main(_args(tiny_data, tmp_path / "full", *common))
    real_save = tb.atomic_save

    def save_then_die(state, path):
        if state.get("epoch") == 2 and "partial" not in state:
            if when == "after_first_write":
                real_save(state, path)
            raise _Killed(str(path))
        real_save(state, path)

    monkeypatch.setattr(tb, "atomic_save", save_then_die)
    cut = tmp_path / "cut"
    with pytest.raises(_Killed):
        train.main(_args(tiny_data, cut, *common))
    monkeypatch.setattr(tb, "atomic_save", real_save)
    rows = _log(cut)
    assert [r["epoch"] for r in rows] == [1, 2]  # epoch 2's row is out, its checkpoint is not
    last = load_checkpoint(cut / "last.pt")
    if (cut / "best.pt").is_file():
        assert load_checkpoint(cut / "best.pt")["epoch"] >= last["best"]["epoch"]
    train.main(_args(tiny_data, cut, *common, "--resume", "auto"))
    _assert_same_run(tmp_path / "full", cut)


@pytest.mark.parametrize("method", ["icl", "glmc"])
def test_sigterm_mid_epoch_saves_and_resume_equals_uninterrupted(tiny_data, tmp_path, monkeypatch, method):
    common = ["--epochs", "3", "--method", method]
    train.main(_args(tiny_data, tmp_path / "full", *common))

    # the method's own trainer (icl: MoETrainer, glmc: GLMCTrainer) signals after its step
    trainer_cls = TRAINERS.get(LOSSES.get(method).trainer)
    real_step = trainer_cls.train_step
    kill_at = (1, 3)  # epoch 2 (0-based 1), 0-based step 3 of 7

    def step_then_signal(self, batch, epoch, step):
        out = real_step(self, batch, epoch, step)
        if (epoch, step) == kill_at:
            os.kill(os.getpid(), signal.SIGTERM)  # as a job scheduler would
        return out

    monkeypatch.setattr(trainer_cls, "train_step", step_then_signal)
    cut = tmp_path / "cut"
    with pytest.raises(TrainingInterrupted) as info:
        train.main(_args(tiny_data, cut, *common))
    assert info.value.exit_code == 128 + signal.SIGTERM and "--resume auto" in str(info.value)
    state = load_checkpoint(cut / "last.pt")
    assert state["epoch"] == 1 and state["partial"]["step"] == 4  # mid-epoch 2, 4 steps done
    assert len(_log(cut)) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))

    monkeypatch.undo()
    train.main(_args(tiny_data, cut, *common, "--resume", "auto"))
    _assert_same_run(tmp_path / "full", cut)


def test_nonfinite_loss_stops_naming_step_and_component_and_keeps_checkpoint(tiny_data, tmp_path,
                                                                              monkeypatch):
    real_forward = Trainer.forward_loss
    calls = {"n": 0}

    def poisoned(self, batch):
        outputs, losses = real_forward(self, batch)
        calls["n"] += 1
        if calls["n"] == 7 + 3:  # 7 steps per epoch: epoch 2, step 3
            losses = {**losses, "loss": losses["loss"] * float("nan"), "l_dol": torch.tensor(float("nan"))}
        return outputs, losses

    monkeypatch.setattr(Trainer, "forward_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"epoch 2 step 3 \(components: ") as e:
        train.main(_args(tiny_data, run, "--epochs", "3"))
    assert "l_dol" in str(e.value) and "--skip_nonfinite" in str(e.value)
    assert load_checkpoint(run / "last.pt")["epoch"] == 1  # the last good state is kept

    calls["n"] = 0
    res = train.main(_args(tiny_data, tmp_path / "skip", "--epochs", "3", "--skip_nonfinite"))
    log = _log(Path(res["run_dir"]))
    assert [r["skipped_batches"] for r in log] == [0, 1, 1] and res["test"] is not None


# ------------------------------------------------------------------ real processes and signals

def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_epochs(run_dir: Path, proc: subprocess.Popen, n: int, timeout: float = 240) -> None:
    end = time.time() + timeout
    while time.time() < end:
        log = run_dir / "log.jsonl"  # the row comes first, last.pt is the epoch's last write
        if log.is_file() and len(log.read_text().splitlines()) >= n and (run_dir / "last.pt").is_file():
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no epoch finished in time")


@pytest.mark.slow
def test_real_process_killed_or_signalled_then_resumed_equals_uninterrupted(tiny_data, tmp_path):
    common = ["--epochs", "4", "--method", "icl"]
    ref = _spawn(_args(tiny_data, tmp_path / "ref", *common))
    assert ref.wait(timeout=600) == 0, ref.communicate()[1][-2000:]
    interrupted = []
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        run = tmp_path / sig.name
        proc = _spawn(_args(tiny_data, run, *common))
        _wait_for_epochs(run, proc, 1)
        time.sleep(0.15)  # into epoch 2 (or its evaluation: both must resume exactly)
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
        err = proc.communicate()[1]
        if code == 0:  # finished before the signal landed: nothing to test for this signal
            continue
        interrupted.append(sig.name)
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL
        else:  # caught: state written, conventional exit status, one clear line
            assert code == 128 + sig, err[-2000:]
            assert "last.pt saved. Continue with --resume auto" in err and "Traceback" not in err
        assert load_checkpoint(run / "last.pt")["epoch"] >= 1  # never corrupt
        again = _spawn(_args(tiny_data, run, *common, "--resume", "auto"))
        assert again.wait(timeout=600) == 0, again.communicate()[1][-2000:]
        _assert_same_run(tmp_path / "ref", run)
    assert len(interrupted) >= 2, f"signals landed too late to test: only {interrupted}"
