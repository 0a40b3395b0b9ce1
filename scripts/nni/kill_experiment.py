"""Kill every process of one NNI experiment: the fallback of run.sh when ``nnictl stop`` hangs.

Usage: python scripts/nni/kill_experiment.py EXPERIMENT_ID [--grace S]

The NNI 3 manager carries the experiment id on its command line (``--experiment-id``), the tuner in
its environment (``NNI_LOG_DIRECTORY=<dir>/<id>/log``) and every trial (and what the trial starts)
in its environment (``NNI_EXP_ID``). This sends SIGTERM to each process of the current user whose
command line or environment contains the id, waits ``--grace`` seconds, then SIGKILLs what is left.
Prints the pids it signalled; exits 0. Linux only (reads /proc).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path


def experiment_processes(exp_id: str, proc_root: Path = Path("/proc")) -> list[int]:
    """Pids (not this process) whose cmdline or environment contains ``exp_id`` as a whole token."""
    token = re.compile(rb"(?<![A-Za-z0-9])" + re.escape(exp_id.encode()) + rb"(?![A-Za-z0-9])")
    me = os.getpid()
    pids = []
    for p in proc_root.iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            blob = (p / "cmdline").read_bytes() + b"\0" + (p / "environ").read_bytes()
        except OSError:  # gone, or another user's process
            continue
        if token.search(blob):
            pids.append(int(p.name))
    return sorted(pids)


def kill_experiment(exp_id: str, grace_s: float = 5.0) -> list[int]:
    """SIGTERM the experiment's processes, SIGKILL the survivors after ``grace_s``; the pids hit."""
    if not re.fullmatch(r"[A-Za-z0-9]{4,}", exp_id):
        raise SystemExit(f"kill_experiment.py: {exp_id!r} is not an NNI experiment id (letters and "
                         "digits, e.g. 'x1b2c3d4'); see 'nnictl experiment list'")
    hit = experiment_processes(exp_id)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in experiment_processes(exp_id) if sig == signal.SIGKILL else hit:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if sig == signal.SIGTERM:
            deadline = time.time() + grace_s
            while experiment_processes(exp_id) and time.time() < deadline:
                time.sleep(0.2)
    return hit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exp_id")
    ap.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    args = ap.parse_args(argv)
    hit = kill_experiment(args.exp_id, args.grace)
    print(f"killed {len(hit)} process(es) of experiment {args.exp_id}: {' '.join(map(str, hit))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
