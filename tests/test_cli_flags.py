"""Every flag is validated before any work starts (issue 24).

The walk feeds each flag of ``train.py`` (every method's), ``test.py``, ``predict.py`` and
``python -m datasets.simulate`` its out-of-range values and asserts one line on stderr, exit code 2
and no traceback. It runs the parsers in process (the same parse the commands run first); a few
subprocesses check the real commands end to end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import predict
import test as test_py
import train
from config.args import get_args_parser, parse_args, str2bool
from config.validate import NEEDS
from datasets import simulate
from loss import LOSSES

ROOT = Path(__file__).resolve().parents[1]
# flags whose value is a name or a path: no range to violate (a path is checked when it is read,
# with its own one-line error); every other flag must carry a range-checked type or choices
FREE_TEXT = {"config", "data_dir", "dataset", "processed_data_dir", "rule_matrix_path", "sg_count_path",
             "output_dir", "frontend_type", "resume", "model", "run_dir", "task", "wandb_project",
             "stream_cache", "ray_address", "head_experts", "tail_experts", "ckpt", "out_dir",
             "eval_counts_path", "out", "method", "paths", "target_prior"}


def bad_values(action: argparse.Action) -> list[str]:
    """Out-of-range inputs of one flag ([] for a switch or a free-text flag)."""
    if action.choices is not None:
        return ["__not_a_choice__"]
    if hasattr(action.type, "bad_values"):
        return list(action.type.bad_values)
    if action.type is str2bool:
        return ["maybe"]
    if action.type is float:  # a plug-in's flag: the parser refuses non-finite and non-numbers
        return ["nan", "inf", "abc"]
    if action.type is int:
        return ["abc", "1.5"]
    return []


def walk(parser: argparse.ArgumentParser, base: list[str], core: set[str] | None = None):
    """(flag, bad value) pairs of every flag of ``parser``; a core flag without a range is a failure."""
    pairs = []
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.dest == "help":
            continue
        values = bad_values(action)
        if not values:
            assert action.dest in FREE_TEXT, f"--{action.dest} has no range-checked type"
        if core is not None and action.dest in core:
            assert action.type not in (int, float), f"--{action.dest}: plain {action.type.__name__}"
        pairs += [(action.option_strings[0], v) for v in values]
    return pairs


def assert_one_line_usage_error(fn, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        fn(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, (argv, err)
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err, (argv, err)
    return err


@pytest.mark.parametrize("method", sorted(LOSSES.names()))
def test_every_train_flag_refuses_out_of_range_values(method, capsys):
    base = ["--method", method, "--data_dir", "D"]
    parser = train.get_parser(base)
    core = {a.dest for a in get_args_parser()._actions}
    pairs = walk(parser, base, core)
    assert len(pairs) > 60
    for flag, value in pairs:
        argv = [*base, f"{flag}={value}"]
        err = assert_one_line_usage_error(lambda a: parse_args(a, train.get_parser(a)), argv, capsys)
        assert flag in err, err


@pytest.mark.parametrize("name, parser, base", [
    ("test.py", test_py.get_parser, ["--ckpt", "c.pt"]),
    ("predict.py", predict.get_parser, ["--ckpt", "c.pt", "p.xy"]),
    ("datasets.simulate", simulate.get_args_parser, ["--out", "o"]),
])
def test_every_flag_of_the_other_commands_refuses_out_of_range_values(name, parser, base, capsys):
    pairs = walk(parser(), base)
    assert pairs
    for flag, value in pairs:
        err = assert_one_line_usage_error(lambda a: parser().parse_args(a), [*base, f"{flag}={value}"],
                                          capsys)
        assert err.startswith(name) and flag in err, err


# one non-default value per flag of config/validate.NEEDS, given without what it needs
UNREAD = {"processed_data_dir": ["--processed_data_dir", "D", "--dataset", "toy"],
          "use_processed_npy": ["--use_processed_npy"],
          "max_train_samples": ["--data_dir", "D", "--data_source", "stream", "--max_train_samples", "64"],
          "stream_structures": ["--stream_structures", "5"], "stream_reuse": ["--stream_reuse", "3"],
          "stream_workers": ["--stream_workers", "2"], "stream_profile": ["--stream_profile", "balanced"],
          "stream_engine": ["--stream_engine", "ray"], "stream_cache": ["--stream_cache", "C"],
          "ray_address": ["--ray_address", "auto"], "vit_patch_size": ["--vit_patch_size", "10"],
          "vit_embed_dim": ["--vit_embed_dim", "64"], "vit_depth": ["--vit_depth", "2"],
          "vit_num_heads": ["--vit_num_heads", "2"], "vit_mlp_ratio": ["--vit_mlp_ratio", "2"],
          "vit_use_cls_token": ["--vit_use_cls_token"],
          "early_decay_ratio": ["--early_decay_ratio", "0.5"],
          "early_decay_target_lr": ["--early_decay_target_lr", "0.01"],
          "lr_restart_patience": ["--lr_restart_patience", "5"],
          "momentum": ["--use_adamw", "--momentum", "0.5"],
          "grad_warn_threshold": ["--disable_grad_warn", "--grad_warn_threshold", "5"],
          "wandb_project": ["--wandb_project", "p"]}


@pytest.mark.parametrize("dest", sorted(NEEDS))
def test_a_flag_that_would_be_ignored_is_an_error_naming_what_it_needs(dest, capsys):
    argv = ["--data_dir", "D", "--data_source", "files", *UNREAD[dest]]
    if dest in ("processed_data_dir", "use_processed_npy"):
        argv = UNREAD[dest]  # no --data_dir: the NPY flags alone
    err = assert_one_line_usage_error(lambda a: parse_args(a, train.get_parser(a)), argv, capsys)
    assert f"--{dest} is given but would be ignored" in err and "needs" in err, err


def test_needed_flags_make_the_combination_valid():
    ok = [["--use_processed_npy", "--processed_data_dir", "D"],
          ["--data_format", "npy", "--processed_data_dir", "D"],
          ["--data_dir", "D", "--max_train_samples", "64", "--data_source", "files"],
          ["--data_source", "stream", "--stream_structures", "5"],
          ["--frontend_type", "vit", "--vit_depth", "2"],
          ["--adjust_lr_strategy", "--early_decay_ratio", "0.5"],
          ["--lr_restart_enabled", "--lr_restart_patience", "5"], ["--use_wandb", "--wandb_project", "p"]]
    for argv in ok:
        parse_args(argv, train.get_parser(argv))


def test_every_rule_is_walked():
    assert set(UNREAD) == set(NEEDS)


@pytest.mark.parametrize("cmd", [
    ["train.py", "--epochs", "0"],
    ["train.py", "--processed_data_dir", "D", "--dataset", "toy"],
    ["predict.py", "--ckpt", "c.pt", "p.xy", "--wavelength", "0"],
    ["-m", "datasets.simulate", "--out", "SIM", "--groups", "231"],
])
def test_real_commands_print_one_line_and_exit_2(cmd, tmp_path):
    cmd = [a.replace("SIM", str(tmp_path / "sim")) for a in cmd]
    res = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "sim").exists() and not (tmp_path / "sim.partial").exists()
