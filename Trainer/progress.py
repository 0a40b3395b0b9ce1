"""Training progress a user can see: a live bar in a terminal, a log line with the ETA otherwise.

Modes (``--progress``): ``bar`` draws a tqdm bar per epoch (steps, patterns/s, loss, lr, the
epoch's remaining time and the whole run's ETA); ``log`` writes a loguru line with the same
numbers every ``interval`` seconds and at every 10 % of an epoch (at most one line per
``interval / 6`` s, so a short epoch does not flood the file); ``none`` leaves the epoch lines
only; ``auto`` = ``bar`` when stderr is a terminal, else ``log`` (runs redirected to a file, NNI
trials, batch jobs).

The run's ETA counts the remaining steps of this epoch at the measured step rate plus the
remaining epochs at the measured duration of the last whole epoch (training and validation); in
the first epoch, before a whole epoch was measured, the remaining epochs are extrapolated from the
step rate alone.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from loguru import logger
from tqdm import tqdm

MODES = ("auto", "bar", "log", "none")
MILESTONE = 0.1  # log mode: a line at every 10 % of an epoch


def resolve_mode(mode: str | bool, stream: TextIO | None = None) -> str:
    """``auto`` → ``bar`` on a terminal, ``log`` otherwise; True/False mean auto/none."""
    if mode is True or mode is False:
        mode = "auto" if mode else "none"
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r}: use one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    return "bar" if hasattr(stream, "isatty") and stream.isatty() else "log"


def terminal_size(stream: TextIO | None = None) -> tuple[int, int]:
    """(columns, rows) of the terminal behind ``stream``. A pseudo-terminal that reports 0×0
    (``script``, some container and IDE consoles) makes tqdm hide its bar (it derives −1 rows), so
    fall back to $COLUMNS/$LINES or 80×24."""
    try:
        cols, rows = os.get_terminal_size((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        cols = rows = 0
    fallback = shutil.get_terminal_size((80, 24))
    return (cols if cols > 0 else fallback.columns, rows if rows > 0 else fallback.lines)


def fmt_duration(seconds: float) -> str:
    """``75`` → ``1:15``; ``3725`` → ``1:02:05``; unknown → ``?``."""
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of a whole run; :meth:`epoch` opens one epoch's display.

    Args:
        mode: ``auto``, ``bar``, ``log`` or ``none`` (or True/False for auto/none).
        epochs: total epochs of the run.
        interval: seconds between progress lines in log mode (0: a line at every 10 %).
        clock: time source (tests pass a fake one).
    """

    def __init__(self, mode: str | bool = "auto", epochs: int = 1, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mode = resolve_mode(mode)
        self.epochs, self.interval, self.clock = epochs, max(float(interval), 0.0), clock
        self.epoch_seconds: float | None = None  # duration of the last whole epoch (train + eval)
        self._epoch_start: float | None = None

    def epoch(self, epoch: int, n_steps: int, start_step: int = 0) -> EpochProgress:
        """Start epoch ``epoch`` (0-based) of ``n_steps`` steps, ``start_step`` of them already done."""
        self._epoch_start = self.clock()
        return EpochProgress(self, epoch, n_steps, start_step)

    def remaining_epochs_s(self, epoch: int, est_epoch_s: float) -> float:
        """Seconds for the epochs after ``epoch``: the last measured epoch's duration, else ``est``."""
        per = self.epoch_seconds if self.epoch_seconds is not None else est_epoch_s
        return max(self.epochs - epoch - 1, 0) * per

    def end_epoch(self, epoch: int) -> str:
        """Record the duration of epoch ``epoch`` (from :meth:`epoch` to now, validation included)
        and return the run's ETA as text for the epoch line."""
        if self._epoch_start is not None:
            self.epoch_seconds = self.clock() - self._epoch_start
        if epoch + 1 >= self.epochs:
            return "done"
        return f"ETA {fmt_duration(self.remaining_epochs_s(epoch, float('nan')))}"


class EpochProgress:
    """One epoch's bar or log lines; :meth:`update` after every optimisation step."""

    def __init__(self, run: Progress, epoch: int, n_steps: int, start_step: int) -> None:
        self.run, self.epoch, self.n_steps = run, epoch, max(int(n_steps), 1)
        self.step = self.start_step = int(start_step)
        self.patterns = 0
        self.t0 = self.last_line = run.clock()
        self.next_milestone = (int(self.start_step / self.n_steps / MILESTONE) + 1) * MILESTONE
        self.postfix: dict[str, Any] = {}
        self.bar = None
        if run.mode == "bar":
            cols, rows = terminal_size()
            self.bar = tqdm(total=self.n_steps, initial=self.start_step, leave=False, file=sys.stderr,
                            desc=f"epoch {epoch + 1}/{run.epochs}", unit="step",
                            ncols=cols, nrows=rows, mininterval=0.5,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                       "[{elapsed}<{remaining}{postfix}]")

    # ------------------------------------------------------------------ numbers
    def rate(self) -> float:
        """Patterns per second over the steps computed in this epoch."""
        return self.patterns / max(self.run.clock() - self.t0, 1e-9)

    def epoch_eta_s(self) -> float:
        done = self.step - self.start_step
        if done <= 0:
            return float("nan")
        return (self.run.clock() - self.t0) / done * (self.n_steps - self.step)

    def run_eta_s(self) -> float:
        done = self.step - self.start_step
        if done <= 0:
            return float("nan")
        est_epoch = (self.run.clock() - self.t0) / done * self.n_steps
        return self.epoch_eta_s() + self.run.remaining_epochs_s(self.epoch, est_epoch)

    # ------------------------------------------------------------------ updates
    def update(self, n_patterns: int, **postfix: float) -> None:
        """One step done with ``n_patterns`` patterns; ``postfix`` (e.g. loss, lr) is shown."""
        self.step += 1
        self.patterns += int(n_patterns)
        self.postfix.update(postfix)
        if self.bar is not None:
            self.bar.set_postfix_str(self._bar_postfix(), refresh=False)
            self.bar.update(1)
        elif self.run.mode == "log" and self._line_due():
            logger.info(self.line())
            self.last_line = self.run.clock()

    def _line_due(self) -> bool:
        now, frac = self.run.clock(), self.step / self.n_steps
        since = now - self.last_line
        if self.step >= self.n_steps:  # the epoch line follows at once
            return False
        if since >= self.run.interval > 0:
            return True
        if frac + 1e-12 >= self.next_milestone:
            self.next_milestone = (int(frac / MILESTONE + 1e-9) + 1) * MILESTONE
            return since >= self.run.interval / 6
        return False

    def _bar_postfix(self) -> str:
        """After tqdm's ``[elapsed<epoch remaining``: patterns/s, the loss and the run's ETA (the lr
        stays in the log lines: the bar must fit 80 columns)."""
        loss = self.postfix.get("loss")
        parts = [f"{self.rate():.0f} patterns/s"] + ([f"loss {loss:.3f}"] if loss is not None else [])
        return ", ".join(parts + [f"run ETA {fmt_duration(self.run_eta_s())}"])

    def line(self) -> str:
        """The log-mode progress line."""
        pct = 100.0 * self.step / self.n_steps
        extra = "".join(f" | {k} {v:.4g}" if isinstance(v, float) else f" | {k} {v}"
                        for k, v in self.postfix.items())
        return (f"epoch {self.epoch + 1}/{self.run.epochs} {pct:3.0f}% ({self.step}/{self.n_steps} steps)"
                f" | {self.rate():.1f} patterns/s{extra} | epoch ETA {fmt_duration(self.epoch_eta_s())}"
                f" | run ETA {fmt_duration(self.run_eta_s())}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
