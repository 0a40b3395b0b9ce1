"""Property-based bad input for the rule matrix, checkpoint and NNI-parameter readers.

Property: each reader returns a validated result or raises the framework's documented error
(``RuleMatrixError``, ``CheckpointError``, ``ConfigError``); nothing else escapes, and a value
that does not fit is never accepted silently.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.args import apply_overrides, parse_args
from utils import rule_matrix as RM
from utils.checkpoint import atomic_save, load_checkpoint
from utils.errors import CheckpointError, ConfigError, RuleMatrixError

# XRD_FUZZ_EXAMPLES=N runs N random examples per test (a longer hunt); by default a fixed, fast set.
_HUNT = int(os.environ.get("XRD_FUZZ_EXAMPLES", "0"))


def fuzz(n: int = 40, **kw) -> settings:
    return settings(max_examples=_HUNT or n, deadline=None, derandomize=not _HUNT,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], **kw)


FUZZ = fuzz()
random_bytes = st.binary(max_size=600)


@contextmanager
def tmpdir():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


# ---------------------------------------------------------------------------------- rule matrix

def check_rule_matrix(path):
    try:
        m = RM.load_rule_matrix(path)
    except RuleMatrixError as exc:
        assert str(path) in str(exc) and "Fix:" in str(exc)
        return
    assert m.shape == (230, 230) and m.dtype == np.float64 and np.isfinite(m).all()
    assert np.array_equal(m, m.T) and m.min() >= 0 and m.max() <= 1
    np.testing.assert_allclose(np.diag(m), 1.0)


@FUZZ
@given(st.one_of(random_bytes, st.text(alphabet="0123456789.,-e\n\"' nai", max_size=300).map(str.encode),
                 st.sampled_from([b"", b"\n\n", b"\xef\xbb\xbf", b"\x00" * 10, b"1," * 100000])))
def test_rule_matrix_random_bytes(raw):
    with tmpdir() as d:
        (d / "r.csv").write_bytes(raw)
        check_rule_matrix(d / "r.csv")


@st.composite
def matrices(draw):
    """Mostly valid 230×230 matrices with a few cells, rows or the shape broken."""
    n, m = draw(st.sampled_from([(230, 230)] * 6 + [(229, 230), (230, 231), (1, 1), (0, 0), (231, 231)]))
    a = np.eye(n, m).astype(object)
    for _ in range(draw(st.integers(0, 3))):
        if n == 0:
            break
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, m - 1))
        v = draw(st.sampled_from([0.5, -0.1, 1.5, 1 + 1e-9, np.nan, np.inf, "abc", "", "1e400", "0x1"]))
        a[i, j] = v
        if draw(st.booleans()) and j < n and i < m:
            a[j, i] = v  # symmetric change
    rows = [list(r) for r in a]
    if rows and draw(st.integers(0, 5)) == 0:
        rows[draw(st.integers(0, len(rows) - 1))].pop()  # ragged
    if draw(st.integers(0, 6)) == 0:
        rows.insert(0, [f"c{k}" for k in range(m)])  # header
    buf = io.StringIO()
    csv.writer(buf, delimiter=draw(st.sampled_from([",", ",", ",", ";"]))).writerows(rows)
    return buf.getvalue()


@fuzz(25)
@given(matrices())
def test_rule_matrix_plausible_but_wrong(text):
    with tmpdir() as d:
        (d / "r.csv").write_text(text)
        check_rule_matrix(d / "r.csv")


def test_rule_matrix_binary_file_is_refused():
    """Trigger of a fixed bug: non-UTF-8 bytes raised UnicodeDecodeError."""
    with tmpdir() as d:
        (d / "r.csv").write_bytes(b"\xff\xfe\x00\x81")
        with pytest.raises(RuleMatrixError, match="not a CSV text file"):
            RM.load_rule_matrix(d / "r.csv")
        (d / "r.csv").write_bytes(b"1" * 200_000)  # one field above csv's size limit
        with pytest.raises(RuleMatrixError, match="not a CSV text file"):
            RM.load_rule_matrix(d / "r.csv")


# ----------------------------------------------------------------------------------- checkpoint

class Arbitrary:
    """Not allowed by ``weights_only=True``: unpickling it would import and build a class."""

    def __init__(self):
        self.x = 1


def _good_state():
    return {"model": {"w": torch.ones(3)}, "epoch": 1, "args": {"lr": 0.1}}


def check_checkpoint(path):
    try:
        ck = load_checkpoint(path)
    except CheckpointError as exc:
        assert str(path) in str(exc) and "Fix:" in str(exc)
        return None
    assert isinstance(ck, dict) and isinstance(ck["model"], dict)
    return ck


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@FUZZ
@given(random_bytes, st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95"]))
def test_checkpoint_random_bytes(raw, prefix):
    with tmpdir() as d:
        (d / "last.pt").write_bytes(prefix + raw)
        assert check_checkpoint(d / "last.pt") is None


_PAYLOADS = {
    "good": _good_state,
    "list": lambda: [1, 2, 3],
    "tensor": lambda: torch.zeros(2),
    "no model": lambda: {"epoch": 3, "optimizer": {}},
    "model not a dict": lambda: {"model": [torch.ones(1)]},
    "model None": lambda: {"model": None},
    "arbitrary object": lambda: {"model": {"w": torch.ones(1)}, "extra": Arbitrary()},
    "namespace": lambda: {"model": {}, "args": argparse.Namespace(lr=1.0)},
    "top-level object": Arbitrary,
}


@FUZZ
@given(st.sampled_from(sorted(_PAYLOADS)), st.floats(0, 1), st.booleans())
def test_checkpoint_payloads_and_truncation(kind, cut, truncate):
    with tmpdir() as d:
        p = d / "last.pt"
        torch.save(_PAYLOADS[kind](), p)
        if truncate:
            raw = p.read_bytes()
            p.write_bytes(raw[: int(len(raw) * cut * 0.999)])
        ck = check_checkpoint(p)
        if ck is not None:  # only an intact, well-formed checkpoint loads
            assert kind == "good" and not truncate, kind
            torch.testing.assert_close(ck["model"]["w"], torch.ones(3))


def test_pickled_object_is_refused_by_weights_only():
    """A checkpoint that would run code on load is refused (weights_only=True)."""
    with tmpdir() as d:
        torch.save({"model": {}, "x": Arbitrary()}, d / "evil.pt")
        with pytest.raises(CheckpointError, match="not a checkpoint written by train.py: it holds a Python"):
            load_checkpoint(d / "evil.pt")
        atomic_save(_good_state(), d / "ok.pt")
        assert load_checkpoint(d / "ok.pt")["epoch"] == 1


# ------------------------------------------------------------------------------- NNI parameters

@pytest.fixture(scope="module")
def parser_and_args():
    import train

    parser = train.get_parser(["--method", "icl"])
    return parser, parse_args(["--method", "icl", "--data_dir", "/d"], parser)


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**3, 10**3), st.integers(10**20, 10**21).map(lambda x: x ** 20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["1e400", "inf", "nan", "3", "3.0", "3.5", "True", "false", "icl", "none", "bf16",
                     "0.001", " 7 ", "", "adamw"]),
    st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.tuples(st.integers()))


@fuzz(150)
@given(st.data())
def test_nni_parameters(parser_and_args, data):
    parser, base = parser_and_args
    known = sorted(vars(base))
    keys = st.one_of(st.sampled_from(known), st.text(max_size=10), st.integers())
    params = data.draw(st.dictionaries(keys, _VALUES, max_size=3))
    args = copy.deepcopy(base)
    try:
        out = apply_overrides(args, params, parser)
    except ConfigError as exc:
        assert "parameter" in str(exc)
        return
    actions = {a.dest: a for a in parser._actions}
    for key, value in params.items():
        got, before = getattr(out, key), getattr(base, key)
        if before is None:
            if value is None:
                assert got is None
                continue
            kind = actions[key].type if callable(actions[key].type) else str
            assert type(got) is kind, (key, value, got)
        else:
            assert type(got) is type(before), (key, value, got)  # never e.g. True for --epochs
        if isinstance(got, float):
            assert math.isfinite(got), (key, value)
        if actions[key].choices is not None:
            assert got in actions[key].choices
        if isinstance(got, str):
            assert not isinstance(value, (list, dict, tuple)) and value is not None


@pytest.mark.parametrize("params", [
    {"epochs": "inf"}, {"epochs": 1e400}, {"epochs": 10**400}, {"epochs": True}, {"lr": float("nan")},
    {"method": ["icl"]}, {"dataset": None}, {"run_dir": {"a": 1}}, {"momentum": False}])
def test_nni_minimal_triggers(parser_and_args, params):
    """Triggers of fixed bugs: OverflowError escaped; bool/list/None/NaN were accepted silently."""
    parser, base = parser_and_args
    with pytest.raises(ConfigError, match=f"parameter '{next(iter(params))}'"):
        apply_overrides(copy.deepcopy(base), params, parser)


def test_nni_good_values_still_convert(parser_and_args):
    parser, base = parser_and_args
    out = apply_overrides(copy.deepcopy(base), {"epochs": "3", "lr": "0.01", "use_adamw": "True",
                                                 "run_dir": 5, "amp": "bf16", "momentum": 1}, parser)
    assert (out.epochs, out.lr, out.use_adamw, out.run_dir, out.amp, out.momentum) == \
        (3, 0.01, True, "5", "bf16", 1.0)
