"""NNI: search spaces use flag names, the callback reports floats, a trial applies its parameters,
standalone runs never import nni, and (slow) a real 2-trial experiment via scripts/nni/run.sh."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

import train
from config.args import apply_overrides, parse_args
from Trainer.callbacks import NniCallback, flatten_nni_parameters
from utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "scripts" / "nni").glob("*/search_space.json"))
TINY = ["--device", "cpu", "--batch_size", "16", "--width_mult", "0.125", "--use_adamw",
        "--warmup_epochs", "0.5", "--epochs", "1"]


def _examples(spec: dict) -> list:
    """A few values an NNI tuner can sample from one parameter spec (nested choices as dicts)."""
    kind, v = spec["_type"], spec["_value"]
    if kind == "choice":
        return [{"_name": x["_name"], **{k: _examples(s)[0] for k, s in x.items() if k != "_name"}}
                if isinstance(x, dict) else x for x in v]
    if kind in ("uniform", "loguniform", "normal", "lognormal"):
        return [v[0], v[1], (v[0] + v[1]) / 2]
    if kind in ("quniform", "qloguniform"):
        return [v[0], v[1]]
    if kind == "randint":
        return [v[0], v[1] - 1]
    raise AssertionError(f"unexpected _type {kind}")


def _keys(space: dict) -> set[str]:
    keys = set(space)
    for spec in space.values():
        for x in spec["_value"] if spec["_type"] == "choice" else []:
            if isinstance(x, dict):
                keys |= _keys({k: s for k, s in x.items() if k != "_name"})
    return keys


def test_every_method_has_an_experiment():
    from loss import LOSSES

    assert {p.parent.name for p in SPACES} == set(LOSSES.names())


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.parent.name)
def test_search_space_keys_are_flags_and_examples_apply(path):
    method = path.parent.name
    space = json.loads(path.read_text())
    parser = train.get_parser(["--method", method])
    dests = {a.dest for a in parser._actions}
    assert _keys(space) <= dests, f"not flags of --method {method}: {sorted(_keys(space) - dests)}"
    for key, spec in space.items():
        for value in _examples(spec):
            args = parse_args(["--method", method, "--config", "quick"], parser)
            flat = flatten_nni_parameters({key: value})
            apply_overrides(args, flat, parser)
            assert {k: getattr(args, k) for k in flat} == flat
    from nni.common.hpo_utils import format_search_space  # the tuner's own parser accepts it

    format_search_space(space)


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.parent.name)
def test_experiment_config(path):
    method = path.parent.name
    cfg = yaml.safe_load((path.parent / "config.yml").read_text())
    assert (path.parent / cfg["searchSpaceFile"]).resolve() == path.resolve()
    assert (path.parent / cfg["trialCodeDirectory"]).resolve() == ROOT
    assert cfg["trialCommand"].startswith(f"python train.py --method {method} --config quick")
    assert cfg["trialConcurrency"] == 1 and cfg["maxTrialNumber"] >= 1
    assert cfg["tuner"] == {"name": "TPE", "classArgs": {"optimize_mode": "maximize"}}
    assert cfg["trainingService"] == {"platform": "local", "useActiveGpu": False}
    from nni.experiment.config import ExperimentConfig

    ExperimentConfig.load(path.parent / "config.yml").validate()


def test_apply_overrides_checks_types_choices_and_keys():
    parser = train.get_parser(["--method", "icl"])
    args = parse_args(["--method", "icl"], parser)  # no preset: --lr and --weight_decay are None
    apply_overrides(args, {"lr": "0.002", "num_experts": 4.0, "adjust_lr_strategy": "true"}, parser)
    assert args.lr == 0.002 and args.num_experts == 4 and args.adjust_lr_strategy is True
    with pytest.raises(ConfigError, match="scl_variant"):
        apply_overrides(args, {"scl_variant": "bogus"}, parser)
    with pytest.raises(ConfigError, match="weight_decay"):
        apply_overrides(args, {"weight_decay": "abc"}, parser)
    with pytest.raises(ConfigError, match="label_smoothing"):
        apply_overrides(args, {"label_smoothing": 0.1}, parser)  # a CE flag, not ICL's


class FakeNni(types.ModuleType):
    """Stands in for the ``nni`` package: hands out parameters, records what is reported."""

    def __init__(self, params):
        super().__init__("nni")
        self.params, self.intermediate, self.final = params, [], []

    def get_next_parameter(self):
        return self.params

    def get_experiment_id(self):
        return "EXP"

    def get_trial_id(self):
        return "TRIAL"

    def report_intermediate_result(self, value):
        self.intermediate.append(value)

    def report_final_result(self, value):
        self.final.append(value)


def test_callback_reports_floats(monkeypatch):
    fake = FakeNni({"lr": 0.01, "num_experts": {"_name": 4, "head_experts": "0,1", "tail_experts": "2,3"}})
    monkeypatch.setitem(sys.modules, "nni", fake)
    cb = NniCallback()
    assert cb.parameters == {"lr": 0.01, "num_experts": 4, "head_experts": "0,1", "tail_experts": "2,3"}
    assert (cb.experiment_id, cb.trial_id) == ("EXP", "TRIAL")
    trainer = types.SimpleNamespace(monitor="sg_top1", best=np.float32(0.5))
    cb.on_epoch_end(trainer, {"epoch": 1, "val_sg_top1": np.float32(0.25), "test_sg_top1": 0.9})
    cb.on_epoch_end(trainer, {"epoch": 2, "val_sg_top1": float("nan")})
    cb.on_epoch_end(trainer, {"epoch": 3, "test_sg_top1": np.float64(0.5)})  # no validation split
    cb.on_fit_end(trainer, {"sg_top1": 0.99})  # the test split never reaches the tuner
    assert fake.intermediate == [0.25, 0.0, 0.5] and fake.final == [0.5]
    assert all(type(x) is float for x in fake.intermediate + fake.final)


def test_trial_applies_parameters_and_reports(tiny_data, tmp_path, monkeypatch):
    fake = FakeNni({"lr": 0.002, "label_smoothing": "0.1"})
    monkeypatch.setitem(sys.modules, "nni", fake)
    monkeypatch.setenv("NNI_PLATFORM", "local")
    res = train.main(["--method", "ce", "--data_dir", str(tiny_data), "--output_dir", str(tmp_path),
                      *TINY, "--epochs", "2"])
    assert Path(res["run_dir"]) == tmp_path / "nni" / "EXP" / "TRIAL"
    saved = yaml.safe_load((tmp_path / "nni" / "EXP" / "TRIAL" / "args.yaml").read_text())
    assert saved["lr"] == 0.002 and saved["label_smoothing"] == 0.1
    assert len(fake.intermediate) == 2 and len(fake.final) == 1
    assert fake.final[0] == max(fake.intermediate)
    assert all(type(x) is float and 0 <= x <= 1 for x in fake.intermediate + fake.final)


def test_trial_rejects_unknown_parameter(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nni", FakeNni({"lambda_dol": 1.0}))
    monkeypatch.setenv("NNI_PLATFORM", "local")
    with pytest.raises(ConfigError, match="lambda_dol"):
        train.main(["--method", "ce", "--output_dir", str(tmp_path), *TINY])


def test_standalone_never_imports_nni(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv("NNI_PLATFORM", raising=False)
    monkeypatch.setitem(sys.modules, "nni", None)  # any `import nni` now raises ImportError
    res = train.main(["--method", "ce", "--data_dir", str(tiny_data), "--output_dir", str(tmp_path), *TINY])
    assert res["test"] is not None and "nni" not in Path(res["run_dir"]).parts


# ---- a real experiment: scripts/nni/run.sh ----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nni_processes(marker: str) -> list[int]:
    """Our processes whose command line or environment mentions ``marker`` (the experiment's
    working directory): the NNI manager, the tuner and the trials."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            blob = (p / "cmdline").read_bytes() + (p / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in blob:
            pids.append(int(p.name))
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _run_sh_env(tmp_path, tiny_data, epochs: int) -> dict[str, str]:
    home = tmp_path / "home"  # nnictl keeps its registry in ~/nni-experiments: keep it in tmp_path
    home.mkdir(exist_ok=True)
    # --evidence none: the experiment's plumbing is under test here, not the fusion (tests/test_fusion.py);
    # with the quick preset's `evidence: index` each trial would index the tiny val/test patterns again
    trial = ["--data_dir", str(tiny_data), "--data_source", "files", "--output_dir", str(tmp_path / "Log"),
             "--evidence", "none", *TINY[:-1], str(epochs)]
    return {**os.environ, "HOME": str(home), "NNI_EXP_DIR": str(tmp_path / "exp"), "NNI_POLL_S": "1",
            "NNI_PORT": str(_free_port()), "NNI_TRIAL_ARGS": " ".join(trial), "OMP_NUM_THREADS": "1",
            "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}


def _cleanup(proc: subprocess.Popen, marker: str) -> list[int]:
    """Stop run.sh (its trap stops the experiment); kill what is left and return those pids."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
    deadline = time.time() + 20
    while _nni_processes(marker) and time.time() < deadline:
        time.sleep(0.5)
    left = _nni_processes(marker)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux)")
def test_two_trial_experiment(tiny_data, tmp_path):
    env = _run_sh_env(tmp_path, tiny_data, epochs=1)
    marker = str(tmp_path / "exp")
    proc = subprocess.Popen(["bash", str(ROOT / "scripts/nni/run.sh"), "icl", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=600)  # 240 s was exceeded beside a training (2026-12-07)
    finally:
        left = _cleanup(proc, marker)
    assert proc.returncode == 0, out
    assert not left, f"NNI processes survived the experiment: {left}"
    exp_id = re.search(r"experiment id: (\w+)", out).group(1)
    assert f"http://127.0.0.1:{env['NNI_PORT']}" in out
    db = sqlite3.connect(tmp_path / "exp" / exp_id / "db" / "nni.sqlite")
    rows = db.execute("SELECT trialJobId, type, data FROM MetricData").fetchall()
    db.close()
    final = {t: float(json.loads(json.loads(d))) for t, kind, d in rows if kind == "FINAL"}
    assert len(final) == 2, (rows, out)
    assert all(0.0 <= v <= 1.0 for v in final.values())
    assert {t for t, kind, _ in rows if kind == "PERIODICAL"} == set(final)  # one per epoch
    for trial in final:  # each trial trained in its own run directory
        run = tmp_path / "Log" / "nni" / exp_id / trial
        assert (run / "test_metrics.json").is_file() and (run / "args.yaml").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("stop_timeout", ["60", "0.5"], ids=["nnictl_stop", "killed_by_id"])
def test_ctrl_c_stops_the_experiment(tiny_data, tmp_path, stop_timeout):
    """Ctrl-C: run.sh stops the experiment with `nnictl stop`, or, when that takes longer than
    NNI_STOP_TIMEOUT_S (0.5 s: always, nnictl alone takes longer to start), kills its processes."""
    env = _run_sh_env(tmp_path, tiny_data, epochs=500)  # a trial that would run for a long time
    env["NNI_STOP_TIMEOUT_S"] = stop_timeout
    if stop_timeout == "0.5":  # and a first `nnictl create` that fails as on a busy machine: retried
        shim = tmp_path / "bin"
        shim.mkdir()
        (shim / "nnictl").write_text(
            "#!/usr/bin/env bash\n"
            f"if [ \"$1\" = create ] && [ ! -e {tmp_path}/failed_once ]; then touch {tmp_path}/failed_once\n"
            "  echo 'ERROR: Create experiment failed: /api/v1/nni/check-status (Connection refused)'\n"
            "  exit 1\n"
            f"fi\nexec {Path(sys.executable).parent / 'nnictl'} \"$@\"\n")
        (shim / "nnictl").chmod(0o755)
        # run.sh would put the venv first if none were active: make this interpreter's the active one
        env["PATH"] = f"{shim}:{Path(sys.executable).parent}:{env['PATH']}"
        env["VIRTUAL_ENV"] = sys.prefix
    marker = str(tmp_path / "exp")
    # Output to a file, not a pipe: the NNI manager daemon inherits run.sh's stdout, so a pipe can
    # stay open after run.sh has exited (communicate() would then wait for the daemon, not run.sh).
    log = tmp_path / "run_sh.log"
    with open(log, "w") as fh:
        # SIGINT back to its default in the child: a shell started with SIGINT ignored (pytest run
        # in the background, `nohup … &`, hands that on) can never trap it, and run.sh would go on
        # (2026-12-07: both cases then timed out after 600 s, while they pass in a foreground run)
        proc = subprocess.Popen(["bash", str(ROOT / "scripts/nni/run.sh"), "icl", "3"], cwd=ROOT, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        while ("waiting for the trials" not in log.read_text() and proc.poll() is None
               and time.time() < deadline):
            time.sleep(0.5)
        assert "waiting for the trials" in log.read_text(), log.read_text()
        deadline = time.time() + 60  # until the first trial's log shows it is training
        while not list((tmp_path / "Log" / "nni").glob("*/*/log.jsonl")) and time.time() < deadline:
            time.sleep(0.5)
        assert list((tmp_path / "Log" / "nni").glob("*/*/log.jsonl")), log.read_text()
        running = " ".join(_cmdline(pid) for pid in _nni_processes(marker))
        assert all(x in running for x in ("main.js", "-m nni --exp_params", "train.py"))  # seen
        proc.send_signal(signal.SIGINT)
        # Bounded: nnictl stop gets NNI_STOP_TIMEOUT_S (60 s), then the processes are killed by id.
        # 600 s, not less: on 2 cores with the other pytest-xdist worker and a training beside it,
        # the python/nnictl start-ups of the exit path alone took over 150 s (2026-12-06), and in
        # the full suite of 2026-12-07 (1,185 tests, the other worker training) over 300 s, while
        # the same test alone exits in seconds (42 s for both variants, start-up included).
        proc.wait(timeout=600)
        out = log.read_text()
    finally:
        left = _cleanup(proc, marker)
    assert proc.returncode == 130, out
    assert "stopping experiment" in out
    assert not left, f"NNI processes survived Ctrl-C: {left}"
    if stop_timeout == "0.5":
        assert "killing its processes" in out and re.search(r"killed [1-9]\d* process", out), out
        assert "did not answer in time (busy machine?); retrying (1/2)" in out, out


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux)")
def test_kill_experiment_kills_by_id_and_spares_others(tmp_path):
    """run.sh's fallback when `nnictl stop` hangs: every process naming the id (cmdline or
    environment) dies, one that ignores SIGTERM gets SIGKILL, a similar id is left alone."""
    sys.path.insert(0, str(ROOT / "scripts" / "nni"))
    try:
        import kill_experiment
    finally:
        sys.path.pop(0)
    exp = "t3stEx9q"
    env = {**os.environ, "NNI_EXP_ID": exp}
    ready = tmp_path / "ready"
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    stubborn = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "pathlib.Path(sys.argv[1]).touch(); time.sleep(120)")
    procs = {
        "trial": subprocess.Popen(sleeper, env=env),
        "stubborn": subprocess.Popen([sys.executable, "-c", stubborn, str(ready)], env=env),
        "manager": subprocess.Popen([*sleeper, "--experiment-id", exp]),
        "other": subprocess.Popen(sleeper, env={**os.environ, "NNI_EXP_ID": exp + "Z"}),
    }
    try:
        deadline = time.time() + 60  # the children have exec'd and the stubborn one ignores SIGTERM
        while not (ready.exists() and all("time.sleep(120)" in _cmdline(p.pid) for p in procs.values())
                   ) and time.time() < deadline:
            time.sleep(0.1)
        assert ready.exists()
        with pytest.raises(SystemExit, match="not an NNI experiment id"):
            kill_experiment.kill_experiment("a b")
        mine = set(kill_experiment.experiment_processes(exp))
        assert {procs[k].pid for k in ("trial", "stubborn", "manager")} <= mine
        assert procs["other"].pid not in mine
        assert kill_experiment.main([exp, "--grace", "1"]) == 0
        for k in ("trial", "stubborn", "manager"):
            assert procs[k].wait(timeout=10) is not None
        assert procs["stubborn"].returncode == -signal.SIGKILL  # ignored SIGTERM
        assert procs["trial"].returncode == procs["manager"].returncode == -signal.SIGTERM
        assert procs["other"].poll() is None
        assert not kill_experiment.experiment_processes(exp)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
