"""Logging setup (loguru) and the one-JSON-line-per-epoch writer."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from loguru import logger


def setup_logging(log_file: str | os.PathLike | None = None, level: str = "INFO") -> None:
    """Log to stderr and, when given, to ``log_file`` (the run's ``train.log``)."""
    logger.remove()
    logger.add(sys.stderr, level=level, format="<green>{time:HH:mm:ss}</green> | "
               "<level>{level: <7}</level> | {message}")
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        logger.add(str(log_file), level=level, enqueue=False)


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
