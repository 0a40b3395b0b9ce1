"""Progress a user can see (issue 12, items 1-2): a live bar with patterns/s and ETA on a terminal
(also on a pseudo-terminal that reports 0×0, where tqdm used to draw nothing), a progress line with
the ETA every interval / 10 % of an epoch when stderr is a file, and one log format per run."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loguru import logger

from tests.conftest import tiny_args
from Trainer.progress import Progress, fmt_duration, resolve_mode, terminal_size
from utils.logging import setup_logging, size_sizeless_terminal

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\d\d:\d\d:\d\d \| (TRACE|DEBUG|INFO|SUCCESS|WARNING|ERROR) +\| \S")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def lines(info_messages):
    """Progress lines logged while the test runs (conftest's INFO capture)."""
    return info_messages


def test_fmt_duration():
    assert [fmt_duration(s) for s in (0, 59.4, 75, 3725)] == ["0:00", "0:59", "1:15", "1:02:05"]
    assert fmt_duration(float("nan")) == "?"


def test_modes():
    class Tty:
        def isatty(self):
            return True

    assert resolve_mode("auto", Tty()) == "bar"
    assert resolve_mode("auto", open(os.devnull, "w")) == "log"
    assert resolve_mode(False) == "none" and resolve_mode("log") == "log"
    with pytest.raises(ValueError, match="progress mode"):
        resolve_mode("sometimes")


def test_log_lines_every_10_percent_with_etas(lines):
    clock = FakeClock()
    run = Progress("log", epochs=3, interval=30.0, clock=clock)
    ep = run.epoch(0, n_steps=100)
    for _ in range(100):  # 1 s per step: 10 % = 10 s, longer than interval / 6
        clock.t += 1.0
        ep.update(64, loss=2.0, lr=1e-3)
    ep.close()
    assert len(lines) == 9  # 10 %, 20 %, ..., 90 %; the epoch line itself reports 100 %
    assert lines[0].startswith("epoch 1/3  10% (10/100 steps) | 64.0 patterns/s | loss 2 | lr 0.001")
    # at 50 %: 50 s left in this epoch, then 2 more epochs of ~100 s each
    assert "epoch ETA 0:50 | run ETA 4:10" in lines[4]
    clock.t += 20.0  # validation
    assert run.end_epoch(0) == "ETA 4:00"  # 2 epochs of the measured 120 s
    assert run.end_epoch(2) == "done"


def test_log_lines_every_interval_in_long_epochs(lines):
    clock = FakeClock()
    run = Progress("log", epochs=1, interval=30.0, clock=clock)
    ep = run.epoch(0, n_steps=1000)
    for _ in range(200):  # 5 s per step: 10 % would take 500 s, so a line every 30 s instead
        clock.t += 5.0
        ep.update(8)
    steps = [int(re.search(r"\((\d+)/1000", x).group(1)) for x in lines]
    # every 6 steps (30 s), plus the 10 % and 20 % milestones, after which the 30 s count restarts
    assert steps == [*range(6, 100, 6), 100, *range(106, 200, 6), 200]
    assert "(6/1000 steps)" in lines[0] and "1.6 patterns/s" in lines[0]


def test_short_epochs_do_not_flood_the_log(lines):
    clock = FakeClock()
    run = Progress("log", epochs=2, interval=30.0, clock=clock)
    ep = run.epoch(0, n_steps=50)
    for _ in range(50):  # a 5-s epoch: milestones come every 0.5 s, less than interval / 6
        clock.t += 0.1
        ep.update(8)
    assert lines == []


def test_resumed_epoch_starts_at_its_step(lines):
    clock = FakeClock()
    ep = Progress("log", epochs=1, interval=0.0, clock=clock).epoch(0, n_steps=10, start_step=4)
    for _ in range(6):
        clock.t += 1.0
        ep.update(4)
    assert [ln.split(" (")[1].split(")")[0] for ln in lines] == ["5/10 steps", "6/10 steps", "7/10 steps",
                                                                  "8/10 steps", "9/10 steps"]
    assert "epoch ETA 0:05" in lines[0]  # the rate counts computed steps only


def test_terminal_size_falls_back_when_the_pty_reports_zero():
    master, slave = pty.openpty()  # a fresh pty reports 0 columns, 0 rows
    try:
        with os.fdopen(os.dup(slave), "w") as stream:
            assert os.get_terminal_size(stream.fileno()) == (0, 0)
            cols, rows = terminal_size(stream)
            assert cols > 0 and rows > 0
    finally:
        os.close(master)
        os.close(slave)


def test_a_sizeless_terminal_gets_a_size_a_sized_one_keeps_its_own(monkeypatch):
    import fcntl
    import struct
    import termios

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    for preset, want in (((0, 0), (80, 24)), ((132, 40), (132, 40))):
        master, slave = pty.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", preset[1], preset[0], 0, 0))
            with os.fdopen(os.dup(slave), "w") as stream:
                assert size_sizeless_terminal(stream) == (preset == (0, 0))
                assert tuple(os.get_terminal_size(stream.fileno())) == want
        finally:
            os.close(master)
            os.close(slave)
    with open(os.devnull, "w") as not_a_tty:
        assert size_sizeless_terminal(not_a_tty) is False


def test_one_format_from_the_first_line(tmp_path, capsys):
    setup_logging(tmp_path / "train.log")
    logger.warning("first")
    logger.info("second")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(LINE.match(x) for x in err), err
    assert [x.split("| ", 2)[2] for x in (tmp_path / "train.log").read_text().splitlines()] == ["first",
                                                                                             "second"]
    assert all(LINE.match(x) for x in (tmp_path / "train.log").read_text().splitlines())
    setup_logging()  # drop the file sink


def _env():
    return {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}


@pytest.mark.slow
def test_train_to_a_file_logs_progress_lines_in_one_format(tiny_data, tmp_path):
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        res = subprocess.run([sys.executable, "train.py", *tiny_args(tiny_data, tmp_path / "Log"),
                              "--epochs", "2", "--batch_size", "8", "--progress_interval", "0",
                              "--run_dir", str(tmp_path / "run")],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, env=_env(), timeout=600)
    text = err_path.read_text()
    assert res.returncode == 0, text
    lines = text.splitlines()
    assert lines and all(LINE.match(x) for x in lines), [x for x in lines if not LINE.match(x)][:3]
    prog = [x for x in lines if re.search(r"\| epoch \d/2 +\d+% \(\d+/\d+ steps\)", x)]
    assert len(prog) >= 2 * 8, prog  # every 10 % of each 14-step epoch with --progress_interval 0
    assert all("patterns/s" in x and "run ETA" in x and "epoch ETA" in x for x in prog)
    assert re.search(r"epoch 1/2 loss .* \| ETA \d+:\d\d$", text, re.M)  # the epoch line has the ETA
    log = (tmp_path / "run" / "train.log").read_text().splitlines()
    assert all(LINE.match(x) for x in log) and any("patterns/s" in x for x in log)
    assert "\r" not in text and "%|" not in text  # no bar in a file


@pytest.mark.slow
def test_train_on_a_pseudo_terminal_draws_a_live_bar(tiny_data, tmp_path):
    master, slave = pty.openpty()  # reports 0×0, like `script -c` or a fresh container console
    proc = subprocess.Popen([sys.executable, "train.py", *tiny_args(tiny_data, tmp_path / "Log"),
                             "--epochs", "2", "--batch_size", "4"],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                            env=_env())
    os.close(slave)
    out, t0, first_bar = b"", time.monotonic(), None
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if first_bar is None and b"epoch 1/2" in out and b"%|" in out:
                first_bar = time.monotonic() - t0
        elif proc.poll() is not None:
            break
    proc.wait(timeout=600)
    os.close(master)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    frames = text.replace("\n", "\r").split("\r")
    bars = [f for f in frames if re.search(r"epoch [12]/2 +\d+%\|.*\| \d+/\d+ \[", f)]
    assert bars, text[-2000:]
    live = [f for f in bars if "patterns/s" in f and "run ETA" in f and "<" in f]
    assert live, bars  # a refreshed bar: rate, epoch remaining time and the run's ETA
    assert first_bar is not None and first_bar < 30
