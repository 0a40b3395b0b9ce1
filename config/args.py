"""``get_args_parser()``: every flag of the seed's command line (SEED_CLI.md) plus the framework's.

Flags use underscores; flag == dest == NNI search-space key. Plug-ins (losses, models) add their
own hyperparameters with ``add_args(parser)`` from the composition root, so they show in --help.
YAML presets only set argparse defaults (timm habit); the command line always wins.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import yaml

from utils.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "presets"


def str2bool(v: str | bool) -> bool:
    """Parse 'True'/'False' style strings (the seed's ``--save_log True``), case-insensitive."""
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in {"1", "true", "t", "yes", "y", "on"}:
        return True
    if s in {"0", "false", "f", "no", "n", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{v}'")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("XRD long-tailed classification", add_help=add_help,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=None,
                   help="YAML preset (file or name in config/presets) setting defaults")

    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="xrd_mp",
                   help="dataset name; selects file names in the NPY layout "
                        "(ccdc, coremof19, inor, xrd_mp, ...)")
    d.add_argument("--data_format", default="auto",
                   choices=["auto", "npy", "lmdb", "raw", "peaks", "cifar10_lt", "cifar100_lt"],
                   help="reader; 'auto' = npy with --use_processed_npy, else detected from --data_dir "
                        "(the built-in default without it)")
    d.add_argument("--use_processed_npy", action="store_true", help="read the preprocessed NPY layout")
    d.add_argument("--processed_data_dir", default=None, help="root of the NPY layout")
    d.add_argument("--data_dir", default=None, help="root of an LMDB / raw / built-in dataset")
    d.add_argument("--rule_matrix_path", default=None,
                   help="230x230 space-group similarity CSV (default: the derived crystallographic one)")
    d.add_argument("--sg_count_path", default=None, help="sg,count CSV (default: from training labels)")
    d.add_argument("--batch_size", type=int, default=128)
    d.add_argument("--num_workers", type=int, default=0)
    d.add_argument("--augment", type=str2bool, default=True,
                   help="train-time pattern augmentations (peak-list datasets)")
    d.add_argument("--max_train_samples", type=int, default=None, help="debug: cap the train split")
    d.add_argument("--imbalance_factor", type=float, default=100.0,
                   help="CIFAR-LT readers: n_max / n_min of the exponential training profile")
    d.add_argument("--lt_sampling", default="cao", choices=["cao", "glmc", "first"],
                   help="CIFAR-LT readers: which images each class keeps (conventions.md 1.1)")
    d.add_argument("--cifar_view_aug", default="standard", choices=["standard", "simclr"],
                   help="CIFAR-LT readers: augmentation of the extra views of two-view methods")

    m = p.add_argument_group("model")
    m.add_argument("--method", default="icl", help="training method (loss plug-in)")
    m.add_argument("--model", default=None, help="model head (default: the method's own)")
    m.add_argument("--frontend_type", default="restcn", help="frontend network (restcn, vit)")
    m.add_argument("--vit_patch_size", type=int, default=50)
    m.add_argument("--vit_embed_dim", type=int, default=256)
    m.add_argument("--vit_depth", type=int, default=6)
    m.add_argument("--vit_num_heads", type=int, default=8)
    m.add_argument("--vit_mlp_ratio", type=float, default=4.0)
    m.add_argument("--vit_use_cls_token", action="store_true")
    m.add_argument("--width_mult", type=float, default=1.0,
                   help="ResTcn channel multiplier (1.0 = the original 32..1024 channels)")
    m.add_argument("--num_experts", type=int, default=8)
    m.add_argument("--head_experts", default="0,1,2,3",
                   help="expert ids trained with CE; the gate prior routes head-heavy systems to them")
    m.add_argument("--tail_experts", default="4,5,6,7",
                   help="expert ids trained with focal loss; the gate prior routes tail-heavy systems here")
    m.add_argument("--expert_mode", default="lightweight", choices=["lightweight", "original"],
                   help="lightweight: experts share layer3 and differ in classifiers; original: own layer3")
    m.add_argument("--mask_mode", default="hard", choices=["hard", "soft", "none"],
                   help="dynamic masking of SG logits by the predicted crystal system at inference")
    m.add_argument("--learn_gate_prior", action="store_true",
                   help="make the (7, K) crystallographic gate prior learnable (default: fixed buffer)")

    o = p.add_argument_group("optim")
    o.add_argument("--use_adamw", action="store_true", help="AdamW (lr 5e-4, wd 1e-4) instead of SGD")
    o.add_argument("--lr", type=float, default=None,
                   help="base lr (default 5e-4 with --use_adamw, else 1e-4)")
    o.add_argument("--weight_decay", type=float, default=None,
                   help="default 1e-4 with --use_adamw, else 5e-4")
    o.add_argument("--momentum", type=float, default=0.9)
    o.add_argument("--max_grad_norm", type=float, default=1.0)
    o.add_argument("--grad_warn_threshold", type=float, default=100.0)
    o.add_argument("--disable_grad_warn", action="store_true")
    o.add_argument("--warmup_epochs", type=float, default=1.0)
    o.add_argument("--adjust_lr_strategy", action="store_true",
                   help="delay early decay: cosine to --early_decay_target_lr over the first "
                        "--early_decay_ratio of training, then cosine to ~0")
    o.add_argument("--early_decay_ratio", type=float, default=0.2)
    o.add_argument("--early_decay_target_lr", type=float, default=1e-3)
    o.add_argument("--lr_restart_enabled", action="store_true", help="warm restarts after a plateau")
    o.add_argument("--lr_restart_patience", type=int, default=20)

    t = p.add_argument_group("train")
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--device", default="0", help="CUDA index or 'cpu'; falls back to CPU without CUDA")
    t.add_argument("--resume", default="", help="'auto' (continue the run dir) or a checkpoint path")
    t.add_argument("--early_stop_patience", type=int, default=0, help="0 = off")
    t.add_argument("--output_dir", default="Log", help="root of run directories")
    t.add_argument("--run_dir", default=None, help="exact run directory (default: generated)")
    t.add_argument("--task", default="sg", help="task name in Log/{task}/...")
    t.add_argument("--skip_nonfinite", action="store_true",
                   help="skip batches with a non-finite loss instead of stopping")
    t.add_argument("--stop_after_epoch", type=int, default=0,
                   help="exit (checkpointed) after this epoch, e.g. to fit a job time limit; continue "
                        "with --resume auto (0 = run to --epochs)")
    t.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                   help="autocast dtype (bf16: CPUs with AVX512-BF16/AMX and recent GPUs; see "
                        "BENCHMARKS.md for speed and accuracy)")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the model (inductor; needs a C++ compiler on CPU); the first "
                        "steps compile, checkpoints are unchanged")
    t.add_argument("--ddp_find_unused_parameters", action="store_true",
                   help="under torchrun: let DDP tolerate parameters without a gradient in a step "
                        "(only when DDP's error asks for it; costs a graph walk per step)")

    lg = p.add_argument_group("log")
    lg.add_argument("--save_log", type=str2bool, default=True, help="write train.log (True/False)")
    lg.add_argument("--use_wandb", action="store_true")
    lg.add_argument("--wandb_project", default="xrd-longtail")
    lg.add_argument("--log_level", default="INFO")
    return p


def load_preset(name_or_path: str) -> dict[str, Any]:
    """Read a YAML preset (a file, or a name in ``config/presets``) into a dict."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"{name_or_path}: preset not found. Fix: pass a YAML file or one of "
                          f"{sorted(x.stem for x in PRESET_DIR.glob('*.yaml'))}")
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a preset must be a mapping of flag: value")
    return data


def apply_overrides(args: argparse.Namespace, overrides: dict[str, Any],
                    parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Apply ``{flag: value}`` (an NNI parameter dict or a preset) with unknown-key and type checks.

    A value is converted to the type of the current value (bool via :func:`str2bool`); an unknown
    key or a value that does not convert raises :class:`ConfigError` naming the key. With
    ``parser``, a flag whose current value is None converts with the flag's ``type``, and a flag
    with ``choices`` rejects any other value.
    """
    known = vars(args)
    actions = {a.dest: a for a in parser._actions} if parser is not None else {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown parameter '{key}'. Fix: use flag names, e.g. "
                              f"{', '.join(sorted(known)[:8])}, ...")
        cur = known[key]
        if not isinstance(value, (str, int, float)) and not (value is None and cur is None):
            # a flag holds one scalar: str() of a list/dict/None would pass silently as a string
            raise ConfigError(f"parameter '{key}'={value!r} is a {type(value).__name__}. Fix: give a "
                              "number, a string or a bool (one value per flag)")
        try:
            if isinstance(cur, bool):
                value = str2bool(value)
            elif isinstance(value, bool) and isinstance(cur, (int, float)):
                raise TypeError("a bool is not a number")
            elif isinstance(cur, int):
                if float(value) != int(float(value)):
                    raise ValueError("not an integer")
                value = int(float(value))
            elif isinstance(cur, float):
                value = float(value)
            elif isinstance(cur, str):
                value = str(value)
            elif cur is None and value is not None:
                action = actions.get(key)
                # e.g. --lr, whose default (None) has no type; a flag without a type takes a string
                value = action.type(value) if action is not None and callable(action.type) else str(value)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("not a finite number")
        except (TypeError, ValueError, OverflowError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"parameter '{key}'={value!r} does not convert to "
                              f"{type(cur).__name__}: {exc}") from exc
        choices = actions[key].choices if key in actions else None
        if choices is not None and value not in choices:
            raise ConfigError(f"parameter '{key}'={value!r} is not one of {list(choices)}")
        setattr(args, key, value)
    return args


def parse_args(argv: list[str] | None = None,
               parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse with a preset pass first: ``--config`` values become defaults, the CLI wins.

    A preset may hold a ``per_method`` mapping (``{method: {flag: value}}``) for flags that only
    one method declares (e.g. ICL's ``use_contrast_scheme2``); only the chosen method's entry applies.
    """
    parser = parser or get_args_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        preset = load_preset(pre.config)
        per_method = preset.pop("per_method", {}) or {}
        preset.update(per_method.get(pre.method, {}))
        unknown = set(preset) - set(vars(pre))
        if unknown:
            raise ConfigError(f"{pre.config}: unknown keys {sorted(unknown)}")
        parser.set_defaults(**preset)
    return parser.parse_args(argv)
