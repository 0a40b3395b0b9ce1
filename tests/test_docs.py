"""The documentation lives in the project (issue 12, items 5-6): no reference to documents outside
the repository, every link and every `docs/...md §N` the code cites resolves, the README's timing
table exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", ".git", "Log", "wandb", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}


def _files(*suffixes: str) -> list[Path]:
    out = []
    for p in ROOT.rglob("*"):
        rel = p.relative_to(ROOT)
        if p.is_file() and p.suffix in suffixes and not (set(rel.parts) & SKIP) and rel.parts[0] != "data":
            out.append(p)
    return out


def test_nothing_points_outside_the_repository():
    outside = re.compile(r"\.\./shared|shared/(methods|SEED_CLI|DATA|DESIGN)")
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in _files(".py", ".md", ".sh", ".yml", ".yaml", ".json")
           if p.name != "test_docs.py"
           for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if outside.search(line)]
    assert not bad, bad


DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        assert (path.parent / target.split("#")[0]).exists(), f"{doc}: broken link {target}"


def test_cited_docs_and_sections_exist():
    cite = re.compile(r"docs/((?:methods/)?[A-Za-z_]+\.md)(?:[^§\n]{0,3}§ ?(\d+(?:\.\d+)?))?")
    seen = 0
    for p in _files(".py", ".sh", ".md"):
        for doc, section in cite.findall(p.read_text(errors="replace")):
            target = ROOT / "docs" / doc
            assert target.is_file(), f"{p.relative_to(ROOT)} cites missing docs/{doc}"
            if section:
                heads = re.findall(r"^#+ (\d+(?:\.\d+)?)\.? ", target.read_text(), re.M)
                assert section in heads, f"{p.relative_to(ROOT)} cites docs/{doc} §{section}; it has {heads}"
            seen += 1
    assert seen > 30


def test_readme_states_measured_times():
    text = (ROOT / "README.md").read_text()
    assert "a few minutes" not in text
    table = text[text.index("### What to expect"):text.index("## Contents")]
    assert re.search(r"whole run \| \d+ min \d+ s", table)
    assert "ETA" in table
    for doc in ("SEED_CLI.md", "DATA.md", "methods/icl.md"):
        assert f"docs/{doc}" in text
