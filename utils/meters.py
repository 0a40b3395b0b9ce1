"""Running averages for losses and throughput."""

from __future__ import annotations

from collections import defaultdict


class AverageMeter:
    """Sample-weighted running mean."""

    def __init__(self) -> None:
        self.sum = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.sum += float(value) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(self.count, 1)


class MeterDict:
    """A dict of ``AverageMeter`` keyed by name (e.g. every loss component)."""

    def __init__(self) -> None:
        self.meters: dict[str, AverageMeter] = defaultdict(AverageMeter)

    def update(self, values: dict[str, float], n: int = 1) -> None:
        for k, v in values.items():
            self.meters[k].update(v, n)

    def averages(self) -> dict[str, float]:
        return {k: m.avg for k, m in self.meters.items()}
