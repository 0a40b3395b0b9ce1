"""Graceful stop on SIGTERM/SIGINT: the Trainer finishes the current step, writes a mid-epoch
``last.pt`` and exits; ``--resume auto`` continues from that very step.

A job scheduler's SIGTERM (or Ctrl-C) sets a flag that the training loop checks after every
step; the handler itself does nothing else (no I/O in a signal handler). A second signal of the
same kind restores the default behaviour, so pressing Ctrl-C twice still stops at once. SIGKILL
cannot be caught: the run then resumes from the last epoch's ``last.pt`` (written atomically), and
because data order and augmentations are functions of (seed, epoch, index), the result is the
same as an uninterrupted run.

Under torchrun every rank receives the signal; ranks agree on stopping through a max-reduce of
the flag after each step, so they all stop after the same step.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from utils.meters import MeterDict

HANDLED = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """Raised after the interrupted state was saved; ``signum`` is the signal that asked for it."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell convention: 143 for SIGTERM, 130 for SIGINT


class StopFlag:
    """Installs the handlers (main thread only; elsewhere a no-op) and remembers the signal."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))  # a second one: default

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self._previous = {s: signal.getsignal(s) for s in HANDLED}
        for s in HANDLED:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, h in self._previous.items():
                signal.signal(s, h)


def meters_state(meters: MeterDict) -> dict[str, list[float]]:
    return {k: [m.sum, m.count] for k, m in meters.meters.items()}


def meters_from_state(state: dict[str, list[float]] | None) -> MeterDict:
    meters = MeterDict()
    for k, (s, n) in (state or {}).items():
        meters.meters[k].sum, meters.meters[k].count = float(s), int(n)
    return meters
