"""Visual check of the renderer: NaCl (rock salt) sticks from pymatgen, nominal and augmented.

Usage (from the repository root):
    python -m benchmarks.render_example --out render_example.png [--seed 0] [--n 4]

The top panel is the nominal rendering (what validation and test see) with the sticks; the
others are train-time augmentations of the same sticks (width, Kα2, shifts, texture jitter,
background, counting noise). They should look like measured laboratory Cu Kα patterns of a salt:
resolved Kα1/Kα2 doublets above ≈ 50°, a small low-angle rise, noise visible in the background.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.rendering.instrument import RenderConfig, sample_seeds  # noqa: E402
from datasets.rendering.renderer import PeakRenderer  # noqa: E402
from datasets.synthesis.reflections import structure_peaks  # noqa: E402
from utils.grid import GridSpec  # noqa: E402


def nacl_sticks(wavelength: float = 1.5406) -> tuple[np.ndarray, np.ndarray]:
    """(2θ, intensity) sticks of rock-salt NaCl, a = 5.64 Å, 5–90° 2θ."""
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                  [[0, 0, 0], [0.5, 0.5, 0.5]])
    return structure_peaks(s, wavelength=wavelength)


def render_example_png(path: str | Path, seed: int = 0, n_aug: int = 4,
                       cfg: RenderConfig | None = None) -> Path:
    """Save a PNG of the nominal and ``n_aug`` augmented renderings of NaCl; return its path."""
    from matplotlib.figure import Figure

    grid = GridSpec()
    tt, inten = nacl_sticks(grid.wavelength)
    r = PeakRenderer(grid, cfg)
    x = grid.two_theta()
    t = torch.from_numpy(np.tile(tt, (n_aug + 1, 1)))
    it = torch.from_numpy(np.tile(inten, (n_aug + 1, 1)))
    nominal = r.render(t[:1], it[:1])[0, 0].numpy()
    aug = r.render(t[1:], it[1:], augment=True, seeds=sample_seeds(seed, 0, torch.arange(n_aug)))
    fig = Figure(figsize=(11, 2.2 * (n_aug + 1)))
    axes = fig.subplots(n_aug + 1, 1, sharex=True)
    axes[0].plot(x, nominal, lw=0.7, color="k")
    axes[0].vlines(tt, 0, inten / 100.0, color="tab:red", lw=0.8, alpha=0.6)
    axes[0].set_title("NaCl, nominal rendering (validation/test) with pymatgen sticks", fontsize=9)
    for k in range(n_aug):
        axes[k + 1].plot(x, aug[k, 0].numpy(), lw=0.6, color="tab:blue")
        axes[k + 1].set_title(f"train-time augmentation {k}", fontsize=9)
    axes[-1].set_xlabel("2θ (deg, Cu Kα)")
    # An inset-like zoom on the (420)/(422) doublets shows Kα2 and the peak shape.
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    zoom = path.with_name(path.stem + "_zoom" + path.suffix)
    fz = Figure(figsize=(11, 3))
    ax = fz.subplots(1, 2)
    for a, (lo, hi) in zip(ax, ((30.5, 33.5), (74.0, 77.0))):
        sel = (x >= lo) & (x <= hi)
        a.plot(x[sel], nominal[sel], color="k", lw=1, label="nominal")
        for k in range(min(n_aug, 2)):
            a.plot(x[sel], aug[k, 0].numpy()[sel], lw=0.8, label=f"aug {k}")
        a.set_xlabel("2θ (deg)")
        a.legend(fontsize=7)
    fz.tight_layout()
    fz.savefig(zoom, dpi=110)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="render_example.png")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=4, help="augmented renderings")
    a = ap.parse_args(argv)
    print(render_example_png(a.out, a.seed, a.n))


if __name__ == "__main__":
    main()
