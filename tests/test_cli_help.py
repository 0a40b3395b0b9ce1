"""`python train.py --help`: every method named with a one-line summary, every flag explained with
its real default (the quick preset's when it applies), the most used flags first."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

import train
from config.args import HelpFormatter

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("icl", "ce", "glmc", "ncl", "arb", "gh")


def _help(*argv: str) -> str:
    res = subprocess.run([sys.executable, "train.py", *argv, "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _flag_help(text: str, flag: str) -> str:
    """The help paragraph of ``flag`` (its lines up to the next flag), whitespace-normalised."""
    m = re.search(rf"^  {re.escape(flag)}\b.*?(?=^  -|^\S|\Z)", text, re.S | re.M)
    assert m, f"{flag} missing from --help"
    return " ".join(m.group(0).split())


def test_help_lists_methods_and_real_defaults():
    text = _help()
    groups = re.findall(r"^(\S[^:\n]*):$", text, re.M)
    assert groups[:2] == ["options", "most used"], groups  # the flags users change most come first
    method = _flag_help(text, "--method")
    for name in METHODS:
        summary = train.method_summaries()[name]
        assert re.search(rf"\b{name}\s+{re.escape(summary.split()[0])}", method), (name, method)
    assert "(default: icl)" in method
    # the quick preset applies to a bare `python train.py`, and --help says so and shows its values
    config = _flag_help(text, "--config")
    assert "quick preset applies" in config and "(default: None)" not in config
    assert "(default: 25)" in _flag_help(text, "--epochs")
    assert "(default: 64)" in _flag_help(text, "--batch_size")
    assert "Defaults above include the preset 'quick'" in text
    assert "(default: None)" not in text
    # the icl group of the default method is listed too
    assert "--lambda_dol" in text


def test_help_with_a_data_flag_shows_the_seed_defaults(tmp_path):
    text = _help("--data_dir", str(tmp_path))
    assert "(default: 100)" in _flag_help(text, "--epochs")
    assert "(default: 128)" in _flag_help(text, "--batch_size")
    assert "preset 'quick'" not in text


def test_unknown_method_is_a_usage_error():
    res = subprocess.run([sys.executable, "train.py", "--method", "nope"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2
    assert "invalid choice: 'nope'" in res.stderr and "icl" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("method", METHODS)
def test_every_flag_has_help_and_a_default(method):
    parser = train.get_parser(["--method", method])
    fmt = HelpFormatter("train.py")
    checked = 0
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        assert action.help and len(action.help.strip()) > 3, f"{action.option_strings[0]} has no help"
        shown = fmt._get_help_string(action)
        explained = action.default in (None, "") and re.search(r"default|unset|empty", action.help, re.I)
        assert "%(default)" in shown or explained, f"{action.option_strings[0]}: default not shown"
        checked += 1
    assert checked > 60


@pytest.mark.parametrize("script", ["predict.py", "test.py"])
def test_other_commands_explain_their_flags(script):
    res = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "(default: None)" not in res.stdout
    assert "--ckpt CKPT" in res.stdout and script in res.stdout.splitlines()[0]
    ckpt_help = " ".join(res.stdout.split("\n  --ckpt CKPT", 1)[1].split("\n  -", 1)[0].split())
    assert "written by train.py" in ckpt_help and "default" not in ckpt_help  # required: no default
