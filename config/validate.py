"""Cross-flag checks of ``train.py`` (and the data flags of ``test.py``), run by the parser right
after parsing, before any work starts.

Single values are range-checked by their argparse ``type`` (``utils.cli.Bounded``); what is left
here are combinations. A flag given in a combination where nothing reads it would be silently
ignored (e.g. ``--processed_data_dir`` without ``--use_processed_npy``: the run would train on other
data under the user's dataset name), so it is an error naming the flag that is missing. The rules
are data (:data:`NEEDS`), checked by one loop; a flag counts as given when its value differs from
its default (a preset's value is a default).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

# flag -> (is it read in this combination?, what is missing when it is not)
Rule = tuple[Callable[[argparse.Namespace], bool], str]
_STREAM: Rule = (lambda a: a.data_source == "stream", "--data_source stream")
_VIT: Rule = (lambda a: a.frontend_type == "vit", "--frontend_type vit")
_EARLY: Rule = (lambda a: a.adjust_lr_strategy, "--adjust_lr_strategy")

DATA_NEEDS: dict[str, Rule] = {
    "processed_data_dir": (lambda a: a.use_processed_npy or a.data_format == "npy",
                           "--use_processed_npy (or --data_format npy); without it the data would come "
                           "from --data_dir or the built-in set"),
    "use_processed_npy": (lambda a: bool(a.processed_data_dir or a.data_dir),
                          "--processed_data_dir DIR (the folder holding NAME_sg_train/ and NAME_sg_test/)"),
}

NEEDS: dict[str, Rule] = {
    **DATA_NEEDS,
    "max_train_samples": (lambda a: a.data_source == "files",
                          "--data_source files (a stream makes new crystals every epoch; size it with "
                          "--stream_structures)"),
    **dict.fromkeys(("stream_structures", "stream_reuse", "stream_workers", "stream_profile",
                     "stream_engine", "stream_cache"), _STREAM),
    "ray_address": (lambda a: a.stream_engine == "ray", "--stream_engine ray"),
    **dict.fromkeys(("vit_patch_size", "vit_embed_dim", "vit_depth", "vit_num_heads", "vit_mlp_ratio",
                     "vit_use_cls_token"), _VIT),
    **dict.fromkeys(("early_decay_ratio", "early_decay_target_lr"), _EARLY),
    "lr_restart_patience": (lambda a: a.lr_restart_enabled, "--lr_restart_enabled"),
    "momentum": (lambda a: not a.use_adamw, "SGD (drop --use_adamw: AdamW has no momentum flag)"),
    "grad_warn_threshold": (lambda a: not a.disable_grad_warn, "the warning on (drop --disable_grad_warn)"),
    "wandb_project": (lambda a: a.use_wandb, "--use_wandb"),
}


def _given(ns: argparse.Namespace, parser: argparse.ArgumentParser, dest: str) -> bool:
    return hasattr(ns, dest) and getattr(ns, dest) != parser.get_default(dest)


def unread_flags(ns: argparse.Namespace, parser: argparse.ArgumentParser,
                 needs: dict[str, Rule] | None = None) -> str | None:
    """The first flag given where nothing reads it, as an error message (None when all are read)."""
    for dest, (is_read, missing) in (NEEDS if needs is None else needs).items():
        if _given(ns, parser, dest) and not is_read(ns):
            return (f"--{dest} is given but would be ignored: it needs {missing}. Fix: add that, or "
                    f"drop --{dest}")
    return None


def expert_ids(ns: argparse.Namespace) -> str | None:
    """``--head_experts`` / ``--tail_experts``: comma-separated ids within ``--num_experts``."""
    for dest in ("head_experts", "tail_experts"):
        text = getattr(ns, dest, None)
        if text is None:
            continue
        try:
            ids = [int(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            return f"--{dest} {text!r}: expected comma-separated expert ids, e.g. 0,1,2,3"
        if not ids or any(not 0 <= i < ns.num_experts for i in ids):
            return (f"--{dest} {text!r}: ids must lie in 0..{ns.num_experts - 1} (--num_experts "
                    f"{ns.num_experts})")
    return None


def install(parser: Any) -> Any:
    """Attach the checks of ``train.py`` to ``parser`` (a :class:`utils.cli.Parser`)."""
    parser.add_validator(lambda ns: unread_flags(ns, parser))
    parser.add_validator(expert_ids)
    return parser
