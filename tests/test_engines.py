"""Generation engines: every job comes back exactly once, through crashed and hung workers.

The job functions live in ``tests/engine_jobs.py`` (stdlib only, fast to import in workers).
The Ray test runs its driver in a child process, so that Ray's threads and sockets never live in
the pytest process (which forks workers in other tests).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datasets.synthesis.engine_base import JobFailed
from datasets.synthesis.engine_local import LocalEngine
from datasets.synthesis.engine_ray import RayEngine, import_ray
from datasets.synthesis.engines import ENGINES, build_engine
from tests.engine_jobs import AlwaysCrash, CrashOnce, Digest, EnvProbe, HangOn, RaiseOn, digest

ROOT = Path(__file__).resolve().parents[1]


def _expected(jobs) -> dict[int, str]:
    return {j: digest(j) for j in jobs}


def _checksum(results: dict) -> str:
    return hashlib.sha256(json.dumps(sorted(results.items())).encode()).hexdigest()


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer exists, not even as an unreaped zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _failure(job, reason):
    return ("FAILED", reason)


# ---- LocalEngine ----------------------------------------------------------------------------

@pytest.mark.parametrize("workers,inline", [(1, None), (2, None), (1, False)])
def test_local_equals_serial_map(workers, inline):
    with LocalEngine(workers=workers, inline=inline) as eng:
        out = list(eng.imap_unordered(Digest(), range(30)))
        pids = {pid for _, (pid, _) in eng.imap_unordered(EnvProbe(), range(8))}
    assert len(out) == 30 and dict(out) == _expected(range(30))
    assert eng.stats["done"] == 38 and eng.stats["failed"] == 0
    if eng.inline:
        assert workers == 1 and pids == {os.getpid()}
    else:
        assert os.getpid() not in pids and 1 <= len(pids) <= workers
        probes = dict(LocalEngine(workers=2).imap_unordered(EnvProbe(), range(4)))
        assert {omp for _, omp in probes.values()} == {"1"}  # threads pinned in workers


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_local_worker_crash_resubmits(tmp_path, how):
    fn = CrashOnce(str(tmp_path / "crashed"), bad=7, how=how)
    with LocalEngine(workers=2, job_timeout_s=60) as eng:
        out = dict(eng.imap_unordered(fn, range(30)))
    assert out == _expected(range(30))  # nothing lost, nothing mislabeled
    assert (tmp_path / "crashed").exists()
    s = eng.stats
    assert s["crashed_workers"] == 1 and s["replaced_workers"] == 1 and s["resubmitted"] >= 1
    assert s["done"] == 30 and s["failed"] == 0


def test_local_poison_job_is_failed_after_max_crashes():
    with LocalEngine(workers=2, max_job_crashes=2) as eng:
        out = dict(eng.imap_unordered(AlwaysCrash(bad=3), range(12), on_fail=_failure))
    assert out[3][0] == "FAILED" and out[3][1].startswith("lost: its worker died 2 times")
    assert {j: r for j, r in out.items() if j != 3} == _expected(j for j in range(12) if j != 3)
    assert eng.stats["crashed_workers"] == 2 and eng.stats["lost_jobs"] == 1


def test_local_hung_job_comes_back_through_on_fail():
    t0 = time.monotonic()
    with LocalEngine(workers=2, job_timeout_s=2.0) as eng:
        out = dict(eng.imap_unordered(HangOn(bad=3), range(16), on_fail=_failure))
    elapsed = time.monotonic() - t0
    assert out[3][0] == "FAILED" and out[3][1].startswith("timeout: ")
    assert {j: r for j, r in out.items() if j != 3} == _expected(j for j in range(16) if j != 3)
    s = eng.stats
    assert s["hung_jobs"] == 1 and s["crashed_workers"] == 0 and s["replaced_workers"] == 1
    assert s["done"] == 15 and s["failed"] == 1
    assert elapsed < 60, elapsed  # 2 s timeout + start-up, generous for a loaded machine


def test_local_exception_goes_to_on_fail_or_raises():
    with LocalEngine(workers=2) as eng:
        out = dict(eng.imap_unordered(RaiseOn(bad=5), range(10), on_fail=_failure))
        assert out[5][1].startswith("error: ValueError: bad job 5")
        assert eng.stats["errors"] == 1 and eng.stats["done"] == 9
        with pytest.raises(JobFailed, match="bad job 5") as info:
            list(eng.imap_unordered(RaiseOn(bad=5), range(10)))
        assert info.value.job == 5 and eng.worker_pids() == []
    inline = dict(LocalEngine(workers=1).imap_unordered(RaiseOn(bad=5), range(10), on_fail=_failure))
    assert inline[5][1].startswith("error: ValueError") and len(inline) == 10


def test_local_lazy_jobs_partial_consumption_and_close():
    pulled = itertools.count()

    def jobs():  # endless, produced on demand
        for j in itertools.count():
            next(pulled)
            yield j

    eng = LocalEngine(workers=2, max_outstanding_per_worker=2)
    it = eng.imap_unordered(Digest(), jobs())
    got = []
    for job, res in it:
        got.append((job, res))
        if len(got) == 5:
            break
    pids = eng.worker_pids()  # the iterator is only suspended: its workers are still there
    assert len(pids) == 2 and all(not _gone(p) for p in pids)
    eng.close()
    assert all(_gone(p) for p in pids), "close() left worker processes (or zombies)"
    assert dict(got) == _expected(j for j, _ in got)
    assert next(pulled) <= 5 + 2 * 2 + 2  # bounded look-ahead, not the whole generator
    del it

    for i, _ in enumerate(eng.imap_unordered(Digest(), jobs())):  # an abandoned loop cleans up too
        pids = eng.worker_pids()
        if i == 3:
            break
    assert len(pids) == 2 and all(_gone(p) for p in pids)


def test_local_keyboard_interrupt_leaves_no_process():
    pids = []
    with pytest.raises(KeyboardInterrupt):
        with LocalEngine(workers=2, job_timeout_s=60) as eng:
            for i, _ in enumerate(eng.imap_unordered(HangOn(bad=4), range(100))):
                pids = eng.worker_pids()
                if i == 2:
                    raise KeyboardInterrupt
    assert len(pids) == 2 and all(_gone(p) for p in pids)


@pytest.mark.slow
def test_local_spawn_context(tmp_path):
    fn = CrashOnce(str(tmp_path / "crashed"), bad=4)
    with LocalEngine(workers=2, mp_context="spawn", job_timeout_s=120) as eng:
        out = dict(eng.imap_unordered(fn, range(12)))
    assert out == _expected(range(12)) and eng.stats["crashed_workers"] == 1


# ---- registry and Ray without Ray -------------------------------------------------------------

def test_engine_registry():
    assert ENGINES.names() == ["local", "ray"]
    assert isinstance(build_engine("local", workers=2, job_timeout_s=5), LocalEngine)
    assert isinstance(build_engine("ray", address="head:6379"), RayEngine)  # connects lazily
    with pytest.raises(KeyError, match="local, ray"):
        build_engine("dask")


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match="pip install ray"):
        import_ray()
    with pytest.raises(ImportError, match="pip install ray"):
        next(RayEngine().imap_unordered(Digest(), range(3)))


# ---- Ray --------------------------------------------------------------------------------------

def _ray_child(marker: str) -> None:
    """Driver run in a child process by test_ray_engine; prints one JSON line."""
    import psutil
    import ray

    report: dict = {}
    eng = RayEngine(num_cpus=2, job_timeout_s=120, max_retries=3)
    try:
        out = dict(eng.imap_unordered(CrashOnce(marker, bad=7), range(20), on_fail=_failure))
        report.update(results=out, stats=dict(eng.stats), node_ip=ray.util.get_node_ip_address(),
                      crashed=os.path.exists(marker))
        with RayEngine(job_timeout_s=30) as guest:  # Ray already up: uses it, leaves it running
            hung = dict(guest.imap_unordered(HangOn(bad=3), range(6), on_fail=_failure))
        report.update(hung={str(k): v for k, v in hung.items()}, hung_stats=dict(guest.stats),
                      up_after_guest=ray.is_initialized())
        with RayEngine(max_retries=1) as guest:
            report["error"] = dict(guest.imap_unordered(RaiseOn(bad=2), range(4), on_fail=_failure))[2]
            report["lost"] = dict(guest.imap_unordered(AlwaysCrash(bad=1), range(3), on_fail=_failure))[1]
            pulled = itertools.count()
            for i, _ in enumerate(guest.imap_unordered(Digest(), (next(pulled) for _ in itertools.count()))):
                if i == 2:
                    break
            report.update(pulled=next(pulled), in_flight_after_break=len(guest._in_flight),
                          guest_stats=dict(guest.stats))
        report["ray_pids"] = [p.pid for p in psutil.Process().children(recursive=True)]
    finally:
        eng.close()
    report["up_after_close"] = ray.is_initialized()
    print("RESULT " + json.dumps(report), flush=True)


@pytest.mark.slow
def test_ray_engine_matches_local_and_survives_a_killed_worker(tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install ray)")
    import psutil

    local = dict(LocalEngine(workers=2).imap_unordered(Digest(), range(20)))
    marker = str(tmp_path / "crashed")
    cmd = [sys.executable, "-c", f"from tests.test_engines import _ray_child; _ray_child({marker!r})"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540,
                          env={**os.environ, "RAY_ADDRESS": ""})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    rep = json.loads(lines[-1][len("RESULT "):])

    ray_results = {int(k): v for k, v in rep["results"].items()}
    assert rep["crashed"], "the job that kills its Ray worker never ran"
    assert _checksum(ray_results) == _checksum(local) == _checksum(_expected(range(20)))
    assert rep["stats"]["done"] == 20 and rep["stats"]["failed"] == 0  # Ray's retry absorbed the crash
    assert rep["node_ip"] == "127.0.0.1"

    hung = {int(k): v for k, v in rep["hung"].items()}
    assert hung[3][0] == "FAILED" and hung[3][1].startswith("timeout: ")
    assert {j: r for j, r in hung.items() if j != 3} == _expected([0, 1, 2, 4, 5])
    assert rep["hung_stats"]["hung_jobs"] == 1 and rep["hung_stats"]["done"] == 5
    assert rep["up_after_guest"] and not rep["up_after_close"]
    assert rep["error"][0] == "FAILED" and rep["error"][1].startswith("error: ValueError: bad job 2")
    assert rep["lost"][0] == "FAILED" and rep["lost"][1].startswith("lost: ")  # retries exhausted
    assert rep["pulled"] <= 3 + 2 * 2 + 1 and rep["in_flight_after_break"] == 0  # lazy, cancelled
    assert rep["guest_stats"]["errors"] == 1 and rep["guest_stats"]["lost_jobs"] == 1

    deadline = time.monotonic() + 60  # Ray's processes (gcs, raylet, workers) exit after shutdown
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in rep["ray_pids"]):
        time.sleep(1)
    left = [p for p in rep["ray_pids"] if psutil.pid_exists(p)]
    assert not left, f"Ray processes still running after close(): {left}"
