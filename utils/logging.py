"""Logging setup (loguru) and the one-JSON-line-per-epoch writer."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from loguru import logger
from tqdm import tqdm

LOG_FORMAT = "{time:HH:mm:ss} | {level: <7} | {message}"
COLOR_FORMAT = "<green>{time:HH:mm:ss}</green> | <level>{level: <7}</level> | {message}"


def _to_stderr(message: str) -> None:
    """Console sink: through ``tqdm.write`` so that a line never tears a live progress bar
    (looked up at call time, so redirected/captured stderr works)."""
    tqdm.write(str(message), end="", file=sys.stderr)


def setup_logging(log_file: str | os.PathLike | None = None, level: str = "INFO") -> None:
    """Configure loguru once for the process: stderr in one short format, and, when given,
    ``log_file`` (the run's ``train.log``) in the same format. Call it before anything logs."""
    logger.remove()
    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    logger.add(_to_stderr, level=level, format=COLOR_FORMAT if tty else LOG_FORMAT, colorize=tty)
    if log_file is not None:
        add_log_file(log_file, level)


def add_log_file(log_file: str | os.PathLike, level: str = "INFO") -> None:
    """Also write every log line to ``log_file``, in the console's format (no colours)."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    logger.add(str(log_file), level=level, format=LOG_FORMAT, colorize=False, enqueue=False)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if hasattr(v, "item") and callable(v.item):
        try:
            return _clean(v.item())
        except (ValueError, RuntimeError):
            return str(v)
    return v


class JsonlWriter:
    """Appends one JSON object per line (dino's ``log.txt`` habit) and flushes each line."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({k: _clean(v) for k, v in record.items()})
        with open(self.path, "a") as fh:
            fh.write(line + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path) as fh:
            return [json.loads(x) for x in fh if x.strip()]
