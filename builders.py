"""Composition helpers shared by ``train.py``, ``test.py`` and ``predict.py`` (layer 4).

Everything here turns the parsed flags into explicit keyword arguments for the packages below;
no class receives the argparse namespace.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from loguru import logger
from torch.utils.data import DataLoader

from datasets import READERS, DataBundle, counts_from_labels, resolve_data_source
from datasets.samplers import ClassBalancedSampler, EpochShuffleSampler, ShardSampler
from datasets.views import DrawTaggedDataset, DrawTaggedSampler, dataset_labels, reseeded, with_views
from index_method import COMPOSED_MODELS  # registers --method index (no training)
from loss import LOSSES
from models import FRONTENDS, MODELS, create_model
from utils import distributed as ddp
from utils.checkpoint import atomic_writer, config_diff, load_checkpoint
from utils.errors import CheckpointError, ConfigError
from utils.logging import add_log_file, setup_logging
from utils.rule_matrix import build_rule_matrix, load_rule_matrix
from utils.runlock import lock_run_dir

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "xrd_mp_default"
READER_OPTIONS = ("imbalance_factor", "lt_sampling", "cifar_view_aug", "lattice_aug", "lattice_strain",
                  "lattice_angle_deg")
EXTRA_LOADER_SEED_SALT = 7919  # an extra loader's augmentations: a stream of their own
LAB_SEED = 20251203  # the lab rendering of an evaluation set: fixed, not the run's seed


def resolve_device(spec: str) -> torch.device:
    """``--device 0`` → cuda:0; ``cpu`` → cpu; without CUDA fall back to CPU with one warning."""
    spec = str(spec).strip().lower()
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        spec = spec.split(":")[-1] if ":" in spec else "0"
    if not spec.isdigit():
        raise ConfigError(f"--device {spec!r}: expected a CUDA index (0, 1, ...) or 'cpu'")
    if not torch.cuda.is_available():
        logger.warning(f"--device {spec}: CUDA is not available, running on CPU")
        return torch.device("cpu")
    return torch.device(f"cuda:{int(spec)}")


def init_distributed(device: torch.device) -> torch.device:
    """Under ``torchrun`` join the process group (gloo on CPU, nccl with one GPU per process) and
    quiet the ranks other than 0 to warnings; a plain ``python train.py`` is left untouched."""
    device = ddp.init_from_env(device)
    if not ddp.is_main():
        setup_logging(None, "WARNING")
    return device


def open_run_dir(args: argparse.Namespace, model_cfg: dict[str, Any]) -> Path:
    """Create the run directory, take its lock, log into its ``train.log`` and write ``args.yaml``.

    Under ``torchrun`` rank 0 names the directory (timestamps differ per process) and is the only
    writer (and lock holder); every rank returns rank 0's path. A folder that another process
    writes into is a ``RunBusyError`` naming that process, before anything is written.
    """
    run_dir = Path(ddp.broadcast_object(str(make_run_dir(args, model_cfg)) if ddp.is_main() else None))
    if not ddp.is_main():
        return run_dir
    lock_run_dir(run_dir, f"training --method {args.method}")
    if args.save_log:  # the console was configured at start-up (train.py); add the file
        add_log_file(run_dir / "train.log", args.log_level)
    with atomic_writer(run_dir / "args.yaml", "w") as fh:
        yaml.safe_dump(vars(args), fh, sort_keys=True)
    return run_dir


def resume_mismatch(ckpt: dict[str, Any], method: str, model_cfg: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's model and the one these flags build (``[]``: none):
    the method and every entry of the model config, as ``name: saved -> now``."""
    saved = {"method": (ckpt.get("args") or {}).get("method"), **(ckpt.get("model_config") or {})}
    return config_diff(saved, {"method": method, **model_cfg})


def check_resume(ckpt: dict[str, Any], method: str, model_cfg: dict[str, Any], source: Any) -> None:
    """Refuse to resume ``ckpt`` into another model (instead of a state-dict size-mismatch)."""
    diff = resume_mismatch(ckpt, method, model_cfg)
    if diff:
        raise ConfigError(f"{source}: cannot resume, the run was made with other model-defining "
                          f"flags ({'; '.join(diff[:6])}). Fix: pass that run's flags to continue it, "
                          "or start a new run (drop --resume, or pass another --run_dir)")


def build_data(args: argparse.Namespace, augment: bool | None = None) -> DataBundle:
    fmt, root = resolve_data_source(
        data_format=args.data_format, use_processed_npy=args.use_processed_npy,
        processed_data_dir=args.processed_data_dir, data_dir=args.data_dir, default_dir=DEFAULT_DATA,
        dataset=args.dataset)
    logger.info(f"data: {fmt} reader on {root} (dataset '{args.dataset}')")
    # reader-specific flags go to the readers that name them (CIFAR-LT: imbalance_factor, ...)
    params = inspect.signature(READERS.get(fmt)).parameters
    options = {k: getattr(args, k) for k in READER_OPTIONS if k in params}
    stream = args.data_source == "stream" and augment is None  # test.py (augment=False) reads files only
    if stream and "lattice_aug" in options:  # the files' train split is replaced: derive nothing for it
        options["lattice_aug"] = False
    bundle = READERS.build(fmt, root=root, name=args.dataset, seed=args.seed,
                           augment=args.augment if augment is None else augment,
                           sg_count_path=args.sg_count_path, **options)
    if stream:
        if not hasattr(getattr(bundle, "train_collate", None), "lattice"):
            raise ConfigError(f"--data_source stream generates crystals rendered as peak lists, but {root} "
                              f"is a '{fmt}' dataset. Fix: --data_source files to train on its training "
                              "split (the quick preset sets stream: pass --data_source files after --config "
                              "quick)")
        if Path(root).resolve() != Path(DEFAULT_DATA).resolve():
            logger.warning(f"--data_source stream: training on new random crystals; the training split of "
                           f"{root} is not used (only its val/test). Fix: --data_source files to train on it")
        with_stream(bundle, args)
    elif args.max_train_samples:  # with a stream the parser refuses the flag (config/validate.py)
        idx = np.random.default_rng(args.seed).permutation(len(bundle.train))[: args.max_train_samples]
        bundle.train = torch.utils.data.Subset(bundle.train, np.sort(idx).tolist())
    # How the training batches are drawn (views, extra loaders) travels with the bundle to
    # make_loaders and into the checkpoint's data_spec.
    bundle.spec["train_loaders"] = loader_plan(args)
    # the training counts travel with the checkpoint: test.py on another (e.g. evaluation-only)
    # dataset still splits classes into many/medium/few by the counts the model was trained on
    bundle.spec["class_counts"] = np.asarray(bundle.class_counts).tolist()
    return bundle


def with_stream(bundle: DataBundle, args: argparse.Namespace) -> None:
    """Replace the bundle's training split by a :class:`StructureStream` (``--data_source stream``):
    new crystals every epoch, lattice augmentation on (unless ``--lattice_aug False``), class counts
    from the stream's fixed slot labels; val/test stay the reader's files."""
    from datasets.rendering.lattice_aug import LatticeAugment
    from datasets.synthesis.stream import StructureStream
    from datasets.synthesis.structures import mp_table_path

    settings = {"tol_factor": 0.9, "volume_factor": 1.2, "min_intensity": 0.5, "wavelength": 1.5406,
                "two_theta_min": 5.0, "two_theta_max": 90.0, "max_atoms": 60,
                **bundle.spec.get("generator", {}).get("settings", {})}  # as the files were simulated
    tt_range = (float(settings["two_theta_min"]), float(settings["two_theta_max"]))
    opts = {k: settings[k] for k in ("tol_factor", "volume_factor", "min_intensity", "wavelength")}
    engine_kwargs = {"local": {"workers": args.stream_workers, "inline": False},  # a process, even for 1
                     "ray": {"address": args.ray_address, "num_cpus": args.stream_workers}}
    ds = StructureStream(mp_table_path(), n_structures=args.stream_structures, reuse=args.stream_reuse,
                         seed=args.seed, profile=args.stream_profile,
                         opts={**opts, "two_theta_range": tt_range}, max_atoms=int(settings["max_atoms"]),
                         engine=args.stream_engine, engine_kwargs=engine_kwargs[args.stream_engine],
                         epochs=args.epochs, groups=settings.get("groups"), cache_dir=args.stream_cache)
    bundle.train = ds
    bundle.class_counts = counts_from_labels(ds.labels)
    collate = bundle.train_collate
    collate.wavelength = ds.wavelength
    lattice = None if args.lattice_aug is False or not collate.augment else LatticeAugment(
        strain=float(args.lattice_strain), angle_deg=float(args.lattice_angle_deg), two_theta_range=tt_range,
        min_rel=float(settings["min_intensity"]) / 100.0)
    collate.lattice = lattice
    bundle.spec.update(class_counts_source="stream slots",
                       lattice_aug=None if lattice is None else asdict(lattice),
                       stream={"structures": ds.n, "reuse": ds.reuse, "profile": args.stream_profile,
                               "engine": args.stream_engine, "settings": settings})


def loader_plan(args: argparse.Namespace) -> dict[str, Any]:
    """What the method's training loaders must provide, from its loss class's declarations:

    * ``n_views`` (int, default 1): augmented views per sample (``batch["views"]``);
    * ``extra_loaders`` (dict, default none): ``{loader name: flag}`` — one more training loader
      per entry, drawing with replacement (|D| draws per epoch) with per-sample weight ``n_y^(−q)``,
      q read from the named flag (GLMC: ``{"train_rb": "resample_q"}``).
    """
    cls = LOSSES.get(args.method)
    extra: dict[str, Any] = {}
    for name, flag in getattr(cls, "extra_loaders", {}).items():
        if flag not in vars(args):
            raise ConfigError(f"method '{args.method}' declares loader '{name}' with flag --{flag}, "
                              f"which its add_args does not define. Fix: add --{flag} to add_args")
        extra[name] = {"sampler": "class_balanced", "q": float(vars(args)[flag])}
    n_views = getattr(cls, "n_views", 1)  # an int, or a function of the flags (NCL: 2 only with MoCo)
    n_views = n_views(args) if callable(n_views) else n_views
    return {"n_views": int(n_views), "augment": bool(args.augment), "extra": extra}


def make_loaders(bundle: DataBundle, batch_size: int, num_workers: int, seed: int,
                 device: torch.device, plan: dict[str, Any] | None = None, num_replicas: int = 1,
                 rank: int = 0) -> dict[str, DataLoader | None]:
    """``train`` / ``val`` / ``test`` loaders, plus the method's extra training loaders.

    Args:
        plan: :func:`loader_plan` (default: the one :func:`build_data` stored in ``bundle.spec``,
            else plain single-view loaders).
        num_replicas, rank: with several processes every loader yields this rank's strided share
            of the epoch order (:class:`ShardSampler`); ``batch_size`` is per process.
    """
    plan = bundle.spec.get("train_loaders", {}) if plan is None else plan
    pin = device.type == "cuda"

    def shard(sampler):
        return sampler if num_replicas <= 1 else ShardSampler(sampler, num_replicas, rank)

    def loader(ds, collate, train: bool) -> DataLoader | None:
        if ds is None:
            return None
        sampler = shard(EpochShuffleSampler(len(ds), seed, train))
        return DataLoader(ds, batch_size=batch_size, sampler=sampler,
                          collate_fn=collate, num_workers=num_workers, pin_memory=pin,
                          persistent_workers=False,
                          # a last training batch of 1 breaks BatchNorm on the length-1 feature map
                          drop_last=train and len(sampler) > batch_size)

    g = bundle.grid
    train_collate = with_views(bundle.train_collate, int(plan.get("n_views", 1)), seed,
                               bool(plan.get("augment", True)),
                               (g.two_theta_max - g.two_theta_min) / max(g.n_points - 1, 1))
    loaders = {"train": loader(bundle.train, train_collate, True),
               "val": loader(bundle.val, bundle.eval_collate, False),
               "test": loader(bundle.test, bundle.eval_collate, False)}
    lab = lab_collate(bundle.eval_collate)
    if lab is not None:  # the test patterns once more, as a laboratory would measure them
        loaders["test_lab"] = loader(bundle.test, lab, False)
    for name, spec in plan.get("extra", {}).items():
        # With replacement, so one sample can be drawn twice per epoch: draws are tagged with their
        # position, which keys their augmentations (two draws, two different patterns).
        # (sharded after tagging: the tags stay global positions, so no two ranks share a key)
        draws = ClassBalancedSampler(dataset_labels(bundle.train), spec["q"], seed)
        sampler = shard(DrawTaggedSampler(draws))
        loaders[name] = DataLoader(
            DrawTaggedDataset(bundle.train), batch_size=batch_size, sampler=sampler,
            collate_fn=reseeded(train_collate, seed + EXTRA_LOADER_SEED_SALT), num_workers=num_workers,
            pin_memory=pin, persistent_workers=False, drop_last=len(sampler) > batch_size)
    return loaders


def lab_collate(collate: Any) -> Any:
    """The evaluation collate rendering lab-realistic patterns: the train-time instrument and
    sample augmentation (counting noise, background, zero shift and displacement, widths, Kα2,
    intensity jitter; ``datasets.rendering.instrument``) drawn per sample from the fixed
    :data:`LAB_SEED` (epoch 0, the sample's index), so every run and every ``test.py`` call sees
    the same patterns; no lattice augmentation (the crystal stays as it is). None for collates that
    cannot render (fixed patterns: NPY, CIFAR)."""
    if collate is None or not all(hasattr(collate, a) for a in ("augment", "seed", "renderer")):
        return None
    lab = copy.copy(collate)
    lab.augment, lab.seed, lab.epoch, lab.n_views = True, LAB_SEED, 0, 1
    if hasattr(lab, "lattice"):
        lab.lattice = None
    return lab


def load_rules(path: str | None) -> torch.Tensor:
    m = load_rule_matrix(path) if path else build_rule_matrix("crystallographic")
    return torch.as_tensor(np.asarray(m), dtype=torch.float32)


def model_kwargs(args: argparse.Namespace, class_counts: np.ndarray, seq_len: int,
                 grid: Any = None) -> dict[str, Any]:
    """Explicit model kwargs from flags (stored in the checkpoint to rebuild the model); ``grid``
    (a ``GridSpec``) is given to a frontend that resamples the pattern (``--input_axis log_d``)."""
    fe_cls = FRONTENDS.get(args.frontend_type)
    if hasattr(fe_cls, "args_to_kwargs"):  # a frontend that reads its own flags says which (as heads do)
        frontend_kwargs = fe_cls.args_to_kwargs(args)
    elif args.frontend_type == "vit":
        frontend_kwargs = dict(patch_size=args.vit_patch_size, embed_dim=args.vit_embed_dim,
                               depth=args.vit_depth, num_heads=args.vit_num_heads,
                               mlp_ratio=args.vit_mlp_ratio, use_cls_token=args.vit_use_cls_token,
                               seq_len=seq_len)
    else:
        frontend_kwargs: dict[str, Any] = dict(width_mult=args.width_mult)
    if frontend_kwargs.get("input_axis", "two_theta") != "two_theta":
        if grid is None:
            raise ConfigError(f"--input_axis {frontend_kwargs['input_axis']} needs the data's 2θ grid")
        frontend_kwargs["grid"] = [int(grid.n_points), float(grid.two_theta_min), float(grid.two_theta_max)]
    loss_cls = LOSSES.get(args.method)
    name = args.model or loss_cls.default_model
    kw: dict[str, Any] = dict(frontend=args.frontend_type, frontend_kwargs=frontend_kwargs,
                              num_classes=len(class_counts))  # 230 space groups; C on CIFAR-LT
    # a model (models.MODELS or index_method.COMPOSED_MODELS) whose head reads flags has
    # ``args_to_kwargs(args) -> dict``; one needing class counts or the 2θ grid names them
    model_cls = COMPOSED_MODELS.get(name) if name in COMPOSED_MODELS else MODELS.get(name)
    head_kwargs = getattr(model_cls, "args_to_kwargs", None)
    if head_kwargs is not None:
        kw.update(head_kwargs(args))
    params = inspect.signature(model_cls).parameters
    if "class_counts" in params:
        kw["class_counts"] = np.asarray(class_counts).tolist()
    if "grid" in params and grid is not None:
        kw["grid"] = [grid.n_points, *map(float, (grid.two_theta_min, grid.two_theta_max, grid.wavelength))]
    return {"name": name, **kw}


def build_model(cfg: dict[str, Any]) -> torch.nn.Module:
    cfg = dict(cfg)
    name = cfg.pop("name")  # a composed model (index) or a models.MODELS one
    return (COMPOSED_MODELS.build if name in COMPOSED_MODELS else create_model)(name, **cfg)


def model_from_checkpoint(ckpt: dict[str, Any], source: str | Path) -> torch.nn.Module:
    """Rebuild the model from the checkpoint alone (``model_config`` + ``model`` weights); a
    checkpoint without a usable config or with weights that do not fit it is a CheckpointError."""
    cfg = ckpt.get("model_config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("name"), str):
        raise CheckpointError(f"{source}: no 'model_config' to rebuild the model from. Fix: pass a "
                              "best.pt/last.pt written by train.py of this framework")
    try:
        model = build_model(cfg)
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: the weights do not fit the stored model config "
                              f"({type(exc).__name__}: {str(exc)[:200]}). Fix: the checkpoint was "
                              "edited or comes from another version; retrain or use the run's other "
                              "checkpoint") from exc
    return model


def build_optimizer(args: argparse.Namespace, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, float]:
    params = [p for p in model.parameters() if p.requires_grad]
    if args.use_adamw:
        lr = args.lr if args.lr is not None else 5e-4
        wd = args.weight_decay if args.weight_decay is not None else 1e-4
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd), lr
    lr = args.lr if args.lr is not None else 1e-4
    wd = args.weight_decay if args.weight_decay is not None else 5e-4
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=args.momentum), lr


def make_run_dir(args: argparse.Namespace, model_cfg: dict[str, Any]) -> Path:
    """``Log/{task}/{dataset}-{epochs}_{method}-{model}-{frontend}_{timestamp}/``; with ``--resume
    auto`` and no ``--run_dir`` the newest such run (exact name, with a ``last.pt``) whose method and
    model config match these flags is continued; when runs exist but none matches, a ConfigError
    names what differs in the newest one."""
    if args.run_dir:
        return Path(args.run_dir)
    base = Path(args.output_dir) / args.task
    stem = f"{args.dataset}-{args.epochs}_{args.method}-{model_cfg['name']}-{args.frontend_type}"
    if args.resume == "auto":
        pattern = re.compile(re.escape(stem) + r"_\d{8}-\d{6}")
        runs = sorted((p for p in base.glob(f"{stem}_*") if pattern.fullmatch(p.name)
                       and (p / "last.pt").is_file()), reverse=True)
        mismatches = []
        for run in runs:
            try:
                diff = resume_mismatch(load_checkpoint(run / "last.pt"), args.method, model_cfg)
            except CheckpointError as exc:
                diff = [str(exc)]
            if not diff:
                return run
            mismatches.append((run, diff))
        if mismatches:
            run, diff = mismatches[0]
            raise ConfigError(f"--resume auto: no run under {base} matches these flags; the newest, "
                              f"{run.name}, differs in {'; '.join(diff[:6])}. Fix: pass that run's "
                              "flags to continue it, or drop --resume auto to start a new run")
    return base / f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}"
