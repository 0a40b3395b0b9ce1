"""Make a small inference checkpoint from a training run, with its provenance (issue 23, part 5).

    python export_checkpoint.py Log/sg/RUN/best.pt --out data/checkpoints/icl_quick.pt \\
        --command "python train.py" [--half]

Keeps what ``predict.py``/``test.py`` need — the model's weights (half precision with ``--half``:
floating-point tensors stored as float16, loaded back into the float32 model), ``model_config``,
``data_spec`` (grid, class counts), ``args`` and the fusion weights (``--evidence index``) — and
drops the optimiser, scheduler, scaler and RNG states. Beside it, ``<out>.json``: the command,
the git commit, the run folder, the sha256 of the file and the run's test metrics
(``test_metrics.json``, the fusion included) and the exported model's own metrics on the test
split (``shipped_model_metrics``: re-evaluated in fp16 when ``--half``), which
``tests/test_shipped_checkpoint.py`` checks.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from utils.checkpoint import atomic_save, atomic_writer, load_checkpoint
from utils.hashing import file_sha256

KEEP = ("model", "model_config", "data_spec", "args", "fusion", "epoch", "best")
MAX_BYTES = 15 * 2 ** 20


def slim(state: dict, half: bool) -> dict:
    """The inference subset of a training checkpoint (``KEEP``), float tensors in fp16 if ``half``."""
    out = {k: state[k] for k in KEEP if k in state}
    if half:
        out["model"] = {k: (v.half() if torch.is_floating_point(v) else v) for k, v in state["model"].items()}
    out["weights_dtype"] = "float16" if half else "float32"
    return out


def git_commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


SHIPPED_KEYS = ("sg_top1", "sg_top5", "cs_acc", "sg_top1_extinction", "macro_f1", "lab_sg_top1", "lab_cs_acc")


def evaluate_exported(path: Path) -> dict[str, float]:
    """The exported model alone (``--evidence none``) on its data's test split, as ``test.py``
    computes it (the numbers ``tests/test_shipped_checkpoint.py`` checks)."""
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("xrd_test_cli_export", here / "test.py")
    test_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_py)  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as tmp:
        m = test_py.main(["--ckpt", str(path), "--evidence", "none", "--out_dir", tmp])
    return {k: float(m[k]) for k in SHIPPED_KEYS if k in m}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ckpt", help="a run's best.pt")
    p.add_argument("--out", required=True, help="the small checkpoint to write")
    p.add_argument("--command", required=True, help="the command that trained the run (provenance)")
    p.add_argument("--half", action="store_true", help="store floating-point weights as float16")
    a = p.parse_args(argv)
    src, out = Path(a.ckpt), Path(a.out)
    state = load_checkpoint(src)
    small = slim(state, a.half)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(small, out)
    size = out.stat().st_size
    if size > MAX_BYTES:
        out.unlink()
        raise SystemExit(f"{out}: {size / 2 ** 20:.1f} MB, over the 15 MB the repository allows. "
                         "Fix: --half, or export a smaller model")
    metrics_path = src.parent / "test_metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    prov = {"file": out.name, "sha256": file_sha256(out), "bytes": size,
            "weights_dtype": small["weights_dtype"], "command": a.command,
            "commit": git_commit(Path(__file__).resolve().parent), "run_dir": str(src.parent),
            "source_checkpoint": src.name, "exported": time.strftime("%Y-%m-%d %H:%M"),
            "best_epoch": state.get("best_epoch", state.get("epoch")),
            "fusion": state.get("fusion"), "test_metrics": metrics}
    prov["shipped_model_metrics"] = evaluate_exported(out)
    with atomic_writer(out.with_suffix(".json"), "w") as fh:
        json.dump(prov, fh, indent=2)
    print(json.dumps({k: prov[k] for k in ("file", "bytes", "weights_dtype", "commit")}))
    return prov


if __name__ == "__main__":
    main()
