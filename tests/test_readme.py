"""The README's two commands and CI agree (CI must run exactly the README's test command)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, re.S)[:2]


def test_ci_runs_the_readme_test_command():
    main_cmd, test_cmd = _commands()
    assert main_cmd.endswith("python train.py") and "pip install -r requirements.txt" in main_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"TEST_CMD='{test_cmd}'" in ci
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text().split()
