"""Peak picking (``indexing.picking.pick_peaks``) against the true lines of rendered test patterns.

Usage (from the repository root, venv active; renderings from ``benchmarks.index_renderings``):
    python -m benchmarks.picking_eval                     # 150 patterns (every 6th), clean + lab
    python -m benchmarks.picking_eval --n 0               # all 900
    python -m benchmarks.picking_eval --background snip,arpls,pspline_arpls --kinds lab
    python -m benchmarks.picking_eval --normalized        # lab patterns scaled to max 1, not counts

Truth of a pattern: its sticks (times the lab texture factor, without the weak sticks the lab
rendering dropped), moved by the drawn zero shift and specimen displacement (Δ2θ = z − 2 s cos θ / R),
merged by ``indexing.peaks.from_sticks`` (0.02° resolution). Picked and true lines are paired
one to one within ``--tol`` degrees, strongest true line first. Reported:

* ``rec1`` / ``rec3``: recall of the first 20 true lines (by position) among those ≥ 1 % / ≥ 3 %
  of the strongest;
* ``spur``: fraction of the first 20 picked lines that pair with no true line (any intensity);
* ``|Δ2θ|``: median |picked − true| over the paired lines of the rec3 set (shift known, removed);
* ``ka2 ok``: the Kα2 decision (ratio > 0 iff the pattern has Kα2); ``t med/p90``: CPU seconds
  per pattern;
* ``bg``: median |estimated − true background| and median signed error, in units of the noise σ,
  over the points where the lab pattern is within 2σ of its true background (lab only).

Groups: the lab rendering's drawn max counts (< 2e3, 2e3–2e4, > 2e4), Kα2 present / absent, an
amorphous hump, a steep low-angle rise (amplitude / decay length > :data:`AIR_SLOPE`). The clean
rendering is the nominal instrument: noise-free, Cu Kα2 at 0.5, no shift.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("OMP_NUM_THREADS", "1")

import indexing.background  # noqa: E402
from benchmarks.index_renderings import CACHE_DIR, DEFAULT_DATA, load_renderings  # noqa: E402
from indexing.background import pattern_background  # noqa: E402
from indexing.peaks import from_sticks  # noqa: E402
from indexing.picking import pick_peaks  # noqa: E402

COUNT_EDGES = (2e3, 2e4)
AIR_SLOPE = 0.02  # low-angle rise amplitude / decay length [1/deg] above which "steep air scatter"


def true_lines(d: dict, i: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Merged true lines (2θ, relative intensity) of pattern ``i`` as rendering ``kind`` shows them."""
    a, b = d["offsets"][i], d["offsets"][i + 1]
    tt = d["two_theta"][a:b].astype(np.float64)
    it = d["intensity"][a:b].astype(np.float64)
    if kind == "lab":
        it = it * d["stick_factor"][a:b] * d["stick_keep"][a:b]
        theta = np.radians(tt / 2.0)
        s = d["p_displacement_mm"][i]
        tt = tt + d["p_zero_shift_deg"][i] - np.degrees(2.0 * s * np.cos(theta) / d["goniometer_radius_mm"])
    g = d["grid"]
    on = (tt >= g[0]) & (tt < g[1])
    pl = from_sticks(tt[on], it[on], float(d["wavelength"]), min_rel=0.0)
    return pl.two_theta, pl.intensity / max(float(pl.intensity.max(initial=0.0)), 1e-300)


def match(picked: np.ndarray, true: np.ndarray, rel: np.ndarray, tol: float) -> np.ndarray:
    """(T,) index of the picked line paired with each true line (−1: none), strongest first."""
    out = np.full(len(true), -1)
    used = np.zeros(len(picked), bool)
    for t in np.argsort(-rel, kind="stable"):
        dist = np.abs(picked - true[t])
        dist[used] = np.inf
        j = int(np.argmin(dist)) if len(picked) else -1
        if j >= 0 and dist[j] <= tol:
            out[t], used[j] = j, True
    return out


def score(pl, tt_true: np.ndarray, rel: np.ndarray, tol: float) -> dict:
    m = match(pl.two_theta, tt_true, rel, tol)
    row = {}
    for thr, name in ((0.01, "rec1"), (0.03, "rec3")):
        sel = np.flatnonzero(rel >= thr)[:20]
        row[name] = float(np.mean(m[sel] >= 0)) if len(sel) else np.nan
        if name == "rec3":
            ok = sel[m[sel] >= 0]
            row["dtt"] = np.abs(pl.two_theta[m[ok]] - tt_true[ok]).tolist()
    paired = np.zeros(len(pl), bool)
    paired[m[m >= 0]] = True
    first = paired[:20]
    row["spur"] = float(np.mean(~first)) if len(first) else 0.0
    return row


def evaluate(d: dict, rows: np.ndarray, kind: str, background: str, tol: float, normalized: bool,
             min_snr: float) -> list[dict]:
    g = d["grid"]
    x = g[0] + (g[1] - g[0]) / g[2] * np.arange(int(g[2]))
    out = []
    for i in rows:
        y = d[kind][i].astype(np.float64)
        if kind == "lab" and not normalized:
            y = y * d["lab_counts"][i]
        t0 = time.process_time()
        pl = pick_peaks(x, y, float(d["wavelength"]), background=background, min_snr=min_snr,
                        source=f"{kind}[{i}]")
        cpu = time.process_time() - t0
        tt_true, rel = true_lines(d, i, kind)
        row = score(pl, tt_true, rel, tol)
        if kind == "lab":  # background error in noise units where the pattern is background only
            pb = pattern_background(x, y, background)
            true_bg = d["lab_bg"][i].astype(np.float64) * (1.0 if normalized else d["lab_counts"][i])
            e = (pb.background - true_bg) / pb.sigma
            only = np.abs(y - true_bg) < 2.0 * pb.sigma
            row["bg_err"] = float(np.median(np.abs(e[only]))) if only.any() else np.nan
            row["bg_bias"] = float(np.median(e[only])) if only.any() else np.nan
        has_ka2 = bool(d["p_has_ka2"][i]) if kind == "lab" else True
        lab = kind == "lab"
        row.update(hump=lab and bool(d["p_has_hump"][i]),
                   air=lab and d["p_bg_decay_amp"][i] / d["p_bg_decay_deg"][i] > AIR_SLOPE)
        row.update(i=int(i), t=cpu, has_ka2=has_ka2, ratio=pl.info["ka2_ratio"],
                   ka2_ok=(pl.info["ka2_ratio"] > 0) == has_ka2, n=len(pl),
                   counts=float(d["p_max_counts"][i]) if kind == "lab" else np.inf)
        out.append(row)
    return out


def _nanmedian(v: list[float]) -> float:
    v = np.asarray(v, np.float64)
    return float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() else np.nan


def summarize(rows: list[dict]) -> dict:
    if not rows:
        return {}
    dtt = np.concatenate([r["dtt"] for r in rows]) if rows else np.zeros(0)
    t = np.array([r["t"] for r in rows])
    return {"n": len(rows), "rec1": float(np.nanmean([r["rec1"] for r in rows])),
            "rec3": float(np.nanmean([r["rec3"] for r in rows])),
            "spur": float(np.mean([r["spur"] for r in rows])),
            "dtt_med": float(np.median(dtt)) if dtt.size else np.nan,
            "ka2_ok": float(np.mean([r["ka2_ok"] for r in rows])),
            "bg_err": _nanmedian([r.get("bg_err", np.nan) for r in rows]),
            "bg_bias": _nanmedian([r.get("bg_bias", np.nan) for r in rows]),
            "t_med": float(np.median(t)), "t_p90": float(np.percentile(t, 90))}


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    lo, hi = COUNT_EDGES
    out = {"all": rows}
    for name, f in ((f"counts<{lo:.0e}", lambda r: r["counts"] < lo),
                    (f"{lo:.0e}-{hi:.0e}", lambda r: lo <= r["counts"] < hi),
                    (f"counts>{hi:.0e}", lambda r: hi <= r["counts"] < np.inf),
                    ("Kα2", lambda r: r["has_ka2"]), ("no Kα2", lambda r: not r["has_ka2"]),
                    ("amorphous hump", lambda r: r["hump"]), ("steep air scatter", lambda r: r["air"])):
        sel = [r for r in rows if f(r)]
        if sel and len(sel) < len(rows):
            out[name] = sel
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=150, help="patterns, evenly spaced (0: all)")
    p.add_argument("--kinds", default="clean,lab")
    p.add_argument("--background", default="snip", help="comma-separated background methods")
    p.add_argument("--tol", type=float, default=0.05, help="pairing tolerance [deg]")
    p.add_argument("--min_snr", type=float, default=4.0)
    p.add_argument("--window_factor", type=float, default=None,
                   help="background clipping window / broadest FWHM (default: the module's)")
    p.add_argument("--normalized", action="store_true", help="lab patterns as max-1 intensities")
    p.add_argument("--out", type=Path, default=None, help="JSON of the summaries")
    a = p.parse_args(argv)
    if a.window_factor is not None:
        indexing.background.WINDOW_FACTOR = a.window_factor
    d = load_renderings(a.data, a.split)
    total = len(d["sg"])
    rows = (np.arange(total) if a.n <= 0 or a.n >= total
            else np.linspace(0, total - 1, a.n).round().astype(int))
    result = {}
    print(f"{a.data} {a.split}: {len(rows)} patterns, tol {a.tol}°, min_snr {a.min_snr}")
    print("| rendering | background | group | n | rec1 | rec3 | spur | med |Δ2θ| | Kα2 ok "
          "| t med / p90 [s] | bg |err| / bias [σ] |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in a.kinds.split(","):
        for bg in a.background.split(","):
            res = evaluate(d, rows, kind, bg, a.tol, a.normalized, a.min_snr)
            for gname, sel in groups(res).items():
                s = summarize(sel)
                result[f"{kind}/{bg}/{gname}"] = s
                print(f"| {kind} | {bg} | {gname} | {s['n']} | {s['rec1']:.3f} | {s['rec3']:.3f} | "
                      f"{s['spur']:.3f} | {s['dtt_med']:.4f} | {s['ka2_ok']:.2f} | "
                      f"{s['t_med']:.3f} / {s['t_p90']:.3f} | {s['bg_err']:.2f} / {s['bg_bias']:+.2f} |")
    out = a.out or CACHE_DIR / f"picking_eval_{a.data.name}_{a.split}_n{len(rows)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "summary": result}, indent=1))
    return result


if __name__ == "__main__":
    main()
