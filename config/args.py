"""``get_args_parser()``: every flag of the seed's command line (docs/SEED_CLI.md) plus the
framework's.

Flags use underscores; flag == dest == NNI search-space key. Plug-ins (losses, models) add their
own hyperparameters with ``add_args(parser)`` from the composition root, so they show in --help.
YAML presets only set argparse defaults (timm habit); the command line always wins.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from config import validate
from utils.cli import Bounded, Parser, device_spec
from utils.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
POS_INT, NONNEG_INT, SEED = Bounded(int, 1), Bounded(int, 0), Bounded(int, 0, 2**32 - 1)
POS, NONNEG, UNIT = Bounded(float, 0, lo_open=True), Bounded(float, 0), Bounded(float, 0, 1, hi_open=True)


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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every flag's default, keeps explicit line breaks (e.g. the list of methods), and
    leaves out "(default: None)" where the help text already says what the default means."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or not action.option_strings or action.required
                or action.default is argparse.SUPPRESS):
            return text
        if action.default in (None, "") and any(w in text.lower() for w in ("default", "unset", "empty")):
            return text  # the text says what an unset flag means, e.g. --lr's optimizer-dependent value
        return text + " (default: %(default)s)"

    def _split_lines(self, text: str, width: int) -> list[str]:
        if "\n" not in text:
            return super()._split_lines(text, width)
        lines: list[str] = []
        for para in text.splitlines():
            indent = " " * (len(para) - len(para.lstrip()))
            lines += textwrap.wrap(para, width, subsequent_indent=indent + "      ") or [""]
        return lines


def describe_choices(parser: argparse.ArgumentParser, dest: str, entries: dict[str, str]) -> None:
    """Restrict flag ``dest`` to ``entries`` and list them, one line each, in its help.

    The composition root calls it with a registry's names and one-line summaries (e.g. the
    methods), since this layer does not import the plug-in packages.
    """
    action = next(a for a in parser._actions if a.dest == dest)
    action.choices = list(entries)
    width = max(map(len, entries), default=0)
    action.help = (action.help or "") + ":\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in entries.items())


def get_args_parser(add_help: bool = True, prog: str = "train.py") -> argparse.ArgumentParser:
    """Every flag of ``train.py``; the first group holds the flags users change most."""
    p = Parser(
        prog=prog, add_help=add_help, formatter_class=HelpFormatter,
        usage="python %(prog)s [--method NAME] [--config PRESET] [--data_dir DIR] [--FLAG VALUE ...]",
        description="Train a long-tailed space-group classifier on powder XRD patterns. "
                    "Method-specific flags appear with --method NAME --help.")

    c = p.add_argument_group("most used")
    c.add_argument("--method", default="icl", help="training method (default: %(default)s)")
    c.add_argument("--config", default=None,
                   help="YAML preset whose values become the defaults (a file, or a name in "
                        "config/presets, e.g. quick); flags on the command line still win. Default: "
                        "when neither --config nor a data flag (--data_dir, --processed_data_dir, "
                        "--use_processed_npy) is given, the quick preset applies (the short CPU recipe "
                        "on the built-in data); with a data flag, the seed's defaults apply")
    c.add_argument("--data_dir", default=None,
                   help="root of a peak-list / LMDB / raw-CSV / CIFAR-LT dataset (default: the "
                        "built-in benchmark in data/xrd_mp_default)")
    c.add_argument("--epochs", type=POS_INT, default=100, help="training epochs")
    c.add_argument("--batch_size", type=POS_INT, default=128,
                   help="patterns per step (per process under torchrun)")
    c.add_argument("--lr", type=POS, default=None,
                   help="base learning rate; unset: 5e-4 with --use_adamw, else 1e-4")
    c.add_argument("--device", default="0", type=device_spec,
                   help="CUDA index or 'cpu'; without CUDA it falls back to the CPU with one warning")
    c.add_argument("--seed", type=SEED, default=42,
                   help="seed of initialisation, data order and augmentations")
    c.add_argument("--resume", default="",
                   help="'auto' (continue the newest matching run from its last.pt) or a checkpoint "
                        "path; empty = start afresh")
    c.add_argument("--output_dir", default="Log", help="root of the run directories")
    c.add_argument("--frontend_type", default="restcn",
                   help="frontend network: restcn (13 residual 1-D blocks), restcn_lite (strided stem "
                        "+ 4 residual stages, the CPU recipe's; BENCHMARKS.md) or vit")
    c.add_argument("--width_mult", type=POS, default=1.0,
                   help="ResTcn/ResTcn-Lite channel multiplier (1.0 = the original 32..1024 channels)")
    c.add_argument("--stem_stride", type=POS_INT, default=8,
                   help="restcn_lite: grid points per stem output (8 = 0.08 deg on the default grid)")
    c.add_argument("--input_norm", default="pattern", choices=["batch", "pattern", "none"],
                   help="restcn_lite: input normalisation: pattern = each pattern standardised on its "
                        "own (training, on augmented patterns, and evaluation see one transform), "
                        "batch = BatchNorm as the seed's ResTcn (which always keeps it)")

    c.add_argument("--input_axis", default="two_theta", choices=["two_theta", "log_d"],
                   help="restcn_lite: 'log_d' resamples each pattern onto a grid uniform in ln sin θ "
                        "(= −ln d), where a change of the lattice scale is a shift")
    c.add_argument("--position_channel", action="store_true",
                   help="restcn_lite: add the 2θ position as a second input channel (CoordConv)")

    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="xrd_mp",
                   help="dataset name; selects file names in the NPY layout "
                        "(ccdc, coremof19, inor, xrd_mp, ...) and names the run directory")
    d.add_argument("--data_format", default="auto",
                   choices=["auto", "npy", "lmdb", "raw", "peaks", "cifar10_lt", "cifar100_lt"],
                   help="reader; 'auto' = npy with --use_processed_npy, else detected from --data_dir "
                        "(the built-in default without it)")
    d.add_argument("--use_processed_npy", action="store_true",
                   help="read the seed's NPY layout under --processed_data_dir (docs/SEED_CLI.md)")
    d.add_argument("--processed_data_dir", default=None,
                   help="root of the NPY layout (default: none; needs --use_processed_npy)")
    d.add_argument("--rule_matrix_path", default=None,
                   help="230x230 space-group similarity CSV (default: the derived crystallographic one)")
    d.add_argument("--sg_count_path", default=None,
                   help="sg,count CSV of training counts (default: counted from the training labels)")
    d.add_argument("--num_workers", type=NONNEG_INT, default=0,
                   help="DataLoader worker processes (0 = load in the main process)")
    d.add_argument("--augment", type=str2bool, default=True,
                   help="train-time pattern augmentations (peak-list datasets; True/False)")
    d.add_argument("--lattice_aug", type=str2bool, default=None,
                   help="exact lattice augmentation: re-render each training crystal in a randomly "
                        "strained cell of its crystal system (default: on for simulated data, which "
                        "carries structures; data without them, e.g. user NPY, cannot use it)")
    d.add_argument("--lattice_strain", type=UNIT, default=0.06,
                   help="lattice augmentation: max relative change of each free cell length")
    d.add_argument("--lattice_angle_deg", type=Bounded(float, 0, 45), default=3.0,
                   help="lattice augmentation: max change of each free cell angle [deg]")
    d.add_argument("--data_source", default="files", choices=["files", "stream"],
                   help="training data: 'files' = the training split on disk; 'stream' = new random "
                        "crystals generated while training runs (datasets.synthesis.stream; val/test "
                        "stay the files of --data_dir or the built-in set)")
    d.add_argument("--stream_structures", type=POS_INT, default=1000,
                   help="stream: crystals per epoch (slots; each slot keeps its space group all run)")
    d.add_argument("--stream_reuse", type=POS_INT, default=24,
                   help="stream: patterns per crystal and epoch (each in its own strained cell); the "
                        "default keeps one generation process >= 2x ahead of 2-core training "
                        "(BENCHMARKS.md, 'Data supply')")
    d.add_argument("--stream_workers", type=POS_INT, default=1,
                   help="stream: generation processes (the other cores train)")
    d.add_argument("--stream_profile", default="mp", choices=["mp", "balanced"],
                   help="stream: space groups of the slots: 'mp' = Materials Project profile "
                        "(like the built-in train split), 'balanced' = equal per group")
    d.add_argument("--stream_engine", default="local", choices=["local", "ray"],
                   help="stream: generation engine (datasets.synthesis.engines)")
    d.add_argument("--stream_cache", default=None, metavar="DIR",
                   help="stream: cache of the generated epochs in DIR/<key>/ (key: seed, structures, "
                        "profile, generator settings; not --stream_reuse): runs with the same key load "
                        "the crystals instead of generating them (default: off)")
    d.add_argument("--ray_address", default=None,
                   help="stream with --stream_engine ray: cluster address (HEAD:6379, auto; "
                        "default: a private local Ray instance)")
    d.add_argument("--max_train_samples", type=POS_INT, default=None,
                   help="debug: keep this many random training samples (default: all)")
    d.add_argument("--imbalance_factor", type=Bounded(float, 1), default=100.0,
                   help="CIFAR-LT readers: n_max / n_min of the exponential training profile")
    d.add_argument("--lt_sampling", default="cao", choices=["cao", "glmc", "first"],
                   help="CIFAR-LT readers: which images each class keeps "
                        "(docs/methods/conventions.md §1.1)")
    d.add_argument("--cifar_view_aug", default="standard", choices=["standard", "simclr"],
                   help="CIFAR-LT readers: augmentation of the extra views of two-view methods")

    m = p.add_argument_group("model")
    m.add_argument("--model", default=None,
                   help="model head (default: the method's own, e.g. icl_moe for icl)")
    m.add_argument("--vit_patch_size", type=POS_INT, default=50, help="ViT: patch length in grid points")
    m.add_argument("--vit_embed_dim", type=POS_INT, default=256, help="ViT: token width")
    m.add_argument("--vit_depth", type=POS_INT, default=6, help="ViT: transformer blocks")
    m.add_argument("--vit_num_heads", type=POS_INT, default=8, help="ViT: attention heads")
    m.add_argument("--vit_mlp_ratio", type=POS, default=4.0, help="ViT: MLP width / token width")
    m.add_argument("--vit_use_cls_token", action="store_true",
                   help="ViT: pool with a class token (else the mean of the patch tokens)")
    m.add_argument("--num_experts", type=POS_INT, default=8, help="experts of the ICL mixture")
    m.add_argument("--head_experts", default="0,1,2,3",
                   help="expert ids trained with CE; the gate prior routes head-heavy systems to them")
    m.add_argument("--tail_experts", default="4,5,6,7",
                   help="expert ids trained with focal loss; the gate prior routes tail-heavy systems here")
    m.add_argument("--expert_mode", default="lightweight", choices=["lightweight", "original"],
                   help="lightweight: experts share layer3 and differ in classifiers; original: own layer3")
    m.add_argument("--mask_mode", default="hard", choices=["hard", "soft", "none"],
                   help="dynamic masking of SG logits by the predicted crystal system at inference (the "
                        "prediction); the ICL loss's L_sg has its own --train_mask_mode")
    m.add_argument("--gate_prior_strength", type=NONNEG, default=1.0,
                   help="weight of the crystallographic gate prior R_gate (0 = rule prior off: the "
                        "gate is learned from the features alone)")
    m.add_argument("--learn_gate_prior", action="store_true",
                   help="make the (7, K) crystallographic gate prior learnable (else a fixed buffer)")

    o = p.add_argument_group("optim")
    o.add_argument("--use_adamw", action="store_true", help="AdamW (lr 5e-4, wd 1e-4) instead of SGD")
    o.add_argument("--weight_decay", type=NONNEG, default=None,
                   help="weight decay; unset: 1e-4 with --use_adamw, else 5e-4")
    o.add_argument("--momentum", type=UNIT, default=0.9, help="SGD momentum (unused with --use_adamw)")
    o.add_argument("--max_grad_norm", type=Bounded(float), default=1.0,
                   help="clip the gradient norm to this value (<= 0: no clipping)")
    o.add_argument("--grad_warn_threshold", type=POS, default=100.0,
                   help="warn once per epoch, with the count of steps, when the pre-clip gradient "
                        "norm exceeded this; steps of the first epoch and the lr warm-up are not "
                        "counted (a fresh ResTcn ICL network starts at 100-300)")
    o.add_argument("--disable_grad_warn", action="store_true", help="never warn about gradient norms")
    o.add_argument("--warmup_epochs", type=NONNEG, default=1.0,
                   help="linear lr warm-up, in epochs (fractions allowed)")
    o.add_argument("--adjust_lr_strategy", action="store_true",
                   help="delay early decay: cosine to --early_decay_target_lr over the first "
                        "--early_decay_ratio of training, then cosine to ~0")
    o.add_argument("--early_decay_ratio", type=Bounded(float, 0, 1), default=0.2,
                   help="fraction of the run spent in the early phase of --adjust_lr_strategy")
    o.add_argument("--early_decay_target_lr", type=POS, default=1e-3,
                   help="lr at the end of the early phase of --adjust_lr_strategy")
    o.add_argument("--lr_restart_enabled", action="store_true",
                   help="warm restart (to half the base lr) after a validation plateau")
    o.add_argument("--lr_restart_patience", type=POS_INT, default=20,
                   help="epochs without improvement before a restart (--lr_restart_enabled)")

    t = p.add_argument_group("train")
    t.add_argument("--early_stop_patience", type=NONNEG_INT, default=0,
                   help="stop after this many epochs without improvement (0 = off)")
    t.add_argument("--run_dir", default=None,
                   help="exact run directory (default: OUTPUT_DIR/TASK/DATASET-EPOCHS_METHOD-MODEL-"
                        "FRONTEND_TIMESTAMP)")
    t.add_argument("--task", default="sg", help="task name, the folder under --output_dir")
    t.add_argument("--skip_nonfinite", action="store_true",
                   help="skip batches with a non-finite loss instead of stopping")
    t.add_argument("--stop_after_epoch", type=NONNEG_INT, default=0,
                   help="exit (checkpointed) after this epoch, e.g. to fit a job time limit; continue "
                        "with --resume auto (0 = run to --epochs)")
    t.add_argument("--snapshot_patterns", default="", type=pattern_counts,
                   help="comma-separated numbers of training patterns seen (e.g. 50000,200000) at "
                        "which to keep the weights as RUN/seen_<count>.pt, for learning curves "
                        "(scripts/default/learning_curve.sh)")
    t.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                   help="autocast dtype (bf16: CPUs with AVX512-BF16/AMX and recent GPUs; see "
                        "BENCHMARKS.md for speed and accuracy)")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the model (inductor; needs a C++ compiler on CPU); the first "
                        "steps compile, checkpoints are unchanged")
    t.add_argument("--evidence", default="none", choices=["none", "index"],
                   help="index: fuse the model with the crystallographer's evidence at evaluation (peaks "
                        "picked, cell indexed, extinction-group likelihoods; weights fitted on val; "
                        "reported as fused, model_* and index_*): Trainer/fusion.py")
    t.add_argument("--evidence_workers", type=Bounded(int, 1, 256), default=2,
                   help="processes that index the evaluated patterns not yet in the cache")
    t.add_argument("--ddp_find_unused_parameters", action="store_true",
                   help="under torchrun: let DDP tolerate parameters without a gradient in a step "
                        "(only when DDP's error asks for it; costs a graph walk per step)")

    lg = p.add_argument_group("log")
    lg.add_argument("--save_log", type=str2bool, default=True,
                    help="write train.log into the run directory (True/False)")
    lg.add_argument("--log_level", default="INFO", type=str.upper,
                    choices=["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"],
                    help="loguru level of the console and train.log")
    lg.add_argument("--progress", default="auto", choices=["auto", "bar", "log", "none"],
                    help="training progress: auto = a live bar (patterns/s, ETA) when stderr is a "
                         "terminal, else a log line with the ETA every --progress_interval seconds "
                         "and at each 10%% of an epoch; bar/log force one; none = epoch lines only")
    lg.add_argument("--progress_interval", type=NONNEG, default=30.0,
                    help="seconds between progress log lines when stderr is not a terminal (0 = a "
                         "line at every 10%% of an epoch)")
    lg.add_argument("--use_wandb", action="store_true",
                    help="log to wandb (offline unless there is a login and the server answers)")
    lg.add_argument("--wandb_project", default="xrd-longtail", help="wandb project name")
    return validate.install(p)


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


def pattern_counts(text: str | list[int]) -> list[int]:
    """``--snapshot_patterns``: '50000,200000' (k/M suffixes allowed: '50k,1M') -> [50000, 200000]."""
    if isinstance(text, list):
        return [int(v) for v in text]
    out = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        mult = {"k": 1_000, "m": 1_000_000}.get(part[-1].lower(), 1)
        try:
            value = int(float(part[:-1] if mult > 1 else part) * mult)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a count of patterns (e.g. 50000, 50k, 1M)") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{part!r}: counts of patterns must be positive")
        out.append(value)
    return sorted(set(out))


pattern_counts.bad_values = ["fifty", "0", "-5k"]  # type: ignore[attr-defined]


def parse_args(argv: list[str] | None = None,
               parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse with a preset pass first: ``--config`` values become defaults, the CLI wins.

    A preset may hold a ``per_method`` mapping (``{method: {flag: value}}``) for flags that only
    one method declares (e.g. ICL's ``use_contrast_scheme2``); only the chosen method's entry applies.
    """
    parser = parser or get_args_parser()
    # the preset pass ignores -h, so that --help shows the defaults the run would really use
    argv = list(sys.argv[1:] if argv is None else argv)
    pre, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    if pre.config:
        preset = load_preset(pre.config)
        per_method = preset.pop("per_method", {}) or {}
        preset.update(per_method.get(pre.method, {}))
        unknown = set(preset) - set(vars(pre))
        if unknown:
            raise ConfigError(f"{pre.config}: unknown keys {sorted(unknown)}")
        parser.set_defaults(**preset)
        parser.epilog = (f"Defaults above include the preset '{pre.config}': "
                         + ", ".join(f"--{k} {v}" for k, v in preset.items()) + ".")
    return parser.parse_args(argv)
