"""The 2θ grid on which patterns are sampled; stored with every dataset and checkpoint.

Default (docs/DATA.md): Cu Kα1 (1.5406 Å), 2θ from 5° to 90°, 8500 points. Points are
``two_theta_min + i·step`` with ``step = (max − min)/n_points`` (i = 0..n−1, the seed's
``arange(5, 90, 0.01)``: the end point is excluded).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from utils.errors import GridMismatchError

CU_KA1 = 1.5406


@dataclass(frozen=True)
class GridSpec:
    two_theta_min: float = 5.0
    two_theta_max: float = 90.0
    n_points: int = 8500
    wavelength: float = CU_KA1

    @property
    def step(self) -> float:
        return (self.two_theta_max - self.two_theta_min) / self.n_points

    def two_theta(self) -> np.ndarray:
        """(n_points,) float64 grid in degrees."""
        return self.two_theta_min + self.step * np.arange(self.n_points, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> GridSpec:
        if not d:
            return cls()
        return cls(**{k: type(getattr(cls(), k))(d[k]) for k in asdict(cls()) if k in d})

    def check_compatible(self, other: GridSpec, source: object = "data") -> None:
        """Raise :class:`GridMismatchError` when ``other`` (the data's grid) differs from self."""
        same = (self.n_points == other.n_points
                and math.isclose(self.two_theta_min, other.two_theta_min, abs_tol=1e-6)
                and math.isclose(self.two_theta_max, other.two_theta_max, abs_tol=1e-6)
                and math.isclose(self.wavelength, other.wavelength, abs_tol=1e-5))
        if not same:
            raise GridMismatchError(
                f"{source}: pattern grid {other} differs from the model's grid {self}. Fix: "
                "re-render the peak lists or re-export the patterns onto the model's "
                "grid (python -m datasets.readers.convert_xy --help), or train a model on this grid")
