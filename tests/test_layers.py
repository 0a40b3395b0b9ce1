"""DESIGN.md's layer table, enforced: a module imports only from layers below; siblings never
import each other; wandb/nni only in the composition roots (or lazily inside functions)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"utils": 0, "config": 1, "datasets": 2, "models": 2, "loss": 2, "metrics": 2,
         "indexing": 2, "Trainer": 3, "train": 4, "test": 4, "predict": 4}
ALLOWED = {
    "utils": {"utils"},
    "config": {"utils", "config"},
    "datasets": {"utils", "datasets"},
    "models": {"utils", "models"},
    "loss": {"utils", "loss"},
    "metrics": {"utils", "metrics"},
    "indexing": {"utils", "indexing"},
    "Trainer": {"utils", "metrics", "Trainer"},
}
HEAVY_OPTIONAL = {"wandb", "nni"}


def _modules():
    for pkg in ALLOWED:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            yield pkg, f


def _imports(tree: ast.AST, top_level_only: bool):
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("pkg,path", list(_modules()), ids=lambda x: str(x))
def test_import_direction(pkg, path):
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = {m for m in _imports(tree, top_level_only=False)
           if m in LAYER and m not in ALLOWED[pkg]}
    assert not bad, f"{path.relative_to(ROOT)} (layer {pkg}) imports {sorted(bad)}"
    top = set(_imports(tree, top_level_only=True)) & HEAVY_OPTIONAL
    assert not top, f"{path.relative_to(ROOT)} imports {sorted(top)} at module top; import lazily"


def test_layer_table_covers_every_package():
    pkgs = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"}
    assert pkgs <= set(ALLOWED) | {"benchmarks"}, f"packages without a layer: {pkgs - set(ALLOWED)}"


def test_modules_stay_small():
    too_big = [str(f.relative_to(ROOT)) for _, f in _modules()
               if len(f.read_text().splitlines()) > 420]
    assert not too_big, f"modules over ~400 lines: {too_big}"


# Inside datasets/ (DESIGN.md): sub-packages import downward only. Levels: the core modules,
# then rendering, synthesis (uses the peak physics), readers (build batches from files and from the
# synthesis stream), cifar; the package __init__ and the simulate CLI sit on top.
DATASETS_LEVEL = {"core": 0, "rendering": 1, "synthesis": 2, "views": 2, "readers": 3, "cifar": 4,
                  "simulate": 5, "__init__": 5}


def _datasets_unit(path_or_module: str) -> str:
    parts = path_or_module.split(".")
    if parts[1] in ("rendering", "synthesis", "readers", "cifar"):
        return parts[1]
    return parts[1] if parts[1] in DATASETS_LEVEL else "core"


@pytest.mark.parametrize("path", sorted((ROOT / "datasets").rglob("*.py")), ids=lambda p: p.name)
def test_datasets_subpackages_import_downward(path):
    rel = path.relative_to(ROOT).with_suffix("")
    me = _datasets_unit(".".join(rel.parts))
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "datasets" else [f"datasets.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if not name.startswith("datasets."):
                continue
            other = _datasets_unit(name)
            ok = DATASETS_LEVEL[other] < DATASETS_LEVEL[me] or other == me or DATASETS_LEVEL[me] == 0 \
                and DATASETS_LEVEL[other] == 0
            assert ok, f"{rel} ({me}) imports {name} ({other}): sub-packages import downward only"


def test_indexing_needs_no_torch():
    """DESIGN.md: indexing is numpy/scipy/spglib only; importing it (and its command line, cache and
    parallel engines) must not pull in torch, also not through utils."""
    code = ("import sys, indexing.api, indexing.picking, indexing.cli, indexing.cache, indexing.parallel; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False", "importing indexing imported torch"
