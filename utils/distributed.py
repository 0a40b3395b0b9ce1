"""Multi-process training helpers (``torchrun``); every helper is a no-op in a single process.

``torchrun --nproc_per_node=N train.py ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment. :func:`init_from_env`
reads them and joins the process group: ``nccl`` when the process trains on CUDA (each process
on GPU ``LOCAL_RANK``), ``gloo`` on CPU. Without those variables (``python train.py``) nothing is
initialised and every function below returns the single-process answer, so single-process runs
do exactly what they did before.

Conventions: rank 0 is the only writer (run directory, logs, checkpoints, reports); collective
helpers must be called by every rank in the same order, or the processes wait forever.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


def env_world_size() -> int:
    """``WORLD_SIZE`` set by the launcher (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """True in rank 0 and in a single process: the process that writes files."""
    return rank() == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group described by torchrun's environment; returns this process's device.

    Args:
        device: the device asked for (``--device``). CUDA → ``cuda:LOCAL_RANK`` and ``nccl``
            (the index given on the command line is ignored: one GPU per process); CPU → ``gloo``.

    Returns ``device`` unchanged when ``WORLD_SIZE`` is unset or 1.
    """
    if env_world_size() <= 1 or is_distributed():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    atexit.register(cleanup)  # leave the group however train.py returns
    return device


def cleanup() -> None:
    """Leave the process group (end of ``train.py``)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s (picklable) ``obj`` on every rank, e.g. the run directory's path."""
    if not is_distributed():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: dict[str, float]) -> dict[str, float]:
    """Sum of each value over ranks (every rank must pass the same keys)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return dict(zip(keys, t.cpu().tolist(), strict=True))


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Mean of each value over ranks."""
    n = world_size()
    return {k: v / n for k, v in all_reduce_sum(values).items()}


def all_reduce_max(values: dict[str, float]) -> dict[str, float]:
    """Maximum of each value over ranks (e.g. the slowest rank's epoch time)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return dict(zip(keys, t.cpu().tolist(), strict=True))


def all_true(flag: bool) -> bool:
    """True on every rank iff ``flag`` is True on every rank (collective decisions, e.g. skipping a
    batch whose loss is not finite on one rank: the others must skip it too, or DDP hangs)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([0.0 if flag else 1.0], device=_comm_device())
    dist.all_reduce(t)
    return float(t) == 0.0


def gather_interleaved(arr: np.ndarray, n: int) -> np.ndarray:
    """Undo :class:`datasets.samplers.ShardSampler` sharding of an ordered pass.

    Rank r holds the items at positions ``r, r + W, r + 2W, ...`` of the padded order (W ranks,
    every rank the same count). Returns the first ``n`` items of the full order, identical on
    every rank: for an unshuffled evaluation loader, exactly what a single process would predict.

    Args:
        arr: (m, ...) this rank's items; m equal on every rank.
        n: length of the unpadded order.
    """
    if not is_distributed():
        return arr[:n]
    w = world_size()
    t = torch.as_tensor(np.ascontiguousarray(arr)).to(_comm_device())
    parts = [torch.empty_like(t) for _ in range(w)]
    dist.all_gather(parts, t)
    full = torch.stack(parts, dim=1)  # (m, W, ...): position i·W + r
    return full.reshape(-1, *t.shape[1:])[:n].cpu().numpy()


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside ``DistributedDataParallel`` (checkpoints store the bare state dict,
    so ``test.py`` and single-process resumes read them unchanged)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def broadcast_module(module: nn.Module, src: int = 0, buffers_only: bool = False) -> None:
    """Copy rank ``src``'s parameters and buffers (or only its buffers, e.g. BatchNorm running
    statistics, which DDP leaves to drift per rank after the last step) into every rank's
    ``module``, in place."""
    if not is_distributed():
        return
    tensors = list(module.buffers()) if buffers_only else list(module.state_dict().values())
    for t in tensors:
        if not torch.is_tensor(t):
            continue
        t = t.detach()
        dev = t.device
        buf = t.detach().to(_comm_device())
        dist.broadcast(buf, src=src)
        if buf.data_ptr() != t.data_ptr():
            t.copy_(buf.to(dev))


def wrap_ddp(model: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` unchanged.

    DDP broadcasts rank 0's weights at construction and averages gradients in ``backward``.
    ``find_unused_parameters``: needed only when some trainable parameter gets no gradient in a
    step (DDP then stops with an error naming this option); it costs a graph walk per step.
    """
    if not is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=find_unused_parameters)
