"""Workers never outlive their driver: after a SIGKILL of `subgen generate --workers 2` (while
its workers run), of `subgen verify --workers 2` and of a driver with a local Ray, no descendant
is alive seconds later."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

psutil = pytest.importorskip("psutil")
SUBGEN = [sys.executable, "-c", "from subgen.cli import main; main()"]


def _pool_workers_busy(children, min_children=2):
    workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    return len(workers) >= min_children and any(c.cpu_percent(0.2) > 0 for c in workers)


def _kill_when(cmd, ready=_pool_workers_busy, timeout=120, env=None, settle=0.0):
    """Runs `cmd`, SIGKILLs it once `ready(its descendants)` holds (and `settle` seconds more),
    and returns every descendant it had then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    me = psutil.Process(proc.pid)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if ready(me.children(recursive=True)):
                break
        except psutil.Error:           # a child went while we looked: look again
            pass
        if proc.poll() is not None:
            pytest.fail("the command ended before what the test waits for was seen")
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("what the test waits for was never seen")
    time.sleep(settle)
    everyone = me.children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return everyone


def _alive_after(procs, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.25)
    return alive


def test_generate_workers_die_with_their_driver(tmp_path):
    procs = _kill_when([*SUBGEN, "generate", "--max-ops", "3", "--workers", "2",
                        "--out", str(tmp_path / "r.db")])
    assert _alive_after(procs) == []


def test_verify_workers_die_with_their_driver(tmp_path):
    from subgen.paths import DEFAULT_RULES
    if not DEFAULT_RULES.exists():
        pytest.skip("no shipped rule DB")
    import shutil
    db = tmp_path / "r.db"
    shutil.copy(DEFAULT_RULES, db)
    import sqlite3
    with sqlite3.connect(db) as c:         # everything back to candidate: verify has work
        c.execute("UPDATE rules SET status='candidate', scope=NULL")
    procs = _kill_when([*SUBGEN, "verify", str(db), "--workers", "2"])
    assert _alive_after(procs) == []


def test_ray_local_cluster_dies_with_its_driver(tmp_path):
    """`--executor ray` without an address starts a local Ray (GCS, raylet, workers) under the
    driver: a SIGKILL of the driver must take all of it down, not leave a cluster behind."""
    pytest.importorskip("ray")
    cmd = [*SUBGEN, "generate", "--max-ops", "3", "--executor", "ray", "--workers", "2",
           "--out", str(tmp_path / "r.db")]

    def ray_workers_up(children):            # Ray's own workers are named ray::...
        names = [_describe(k) for k in children]
        return any("raylet" in n for n in names) and any(n.startswith("ray::") for n in names)
    everyone = _kill_when(cmd, ray_workers_up, timeout=180, env={**os.environ, "RAY_ADDRESS": ""},
                          settle=1.0)
    alive = _alive_after(everyone, seconds=15.0)
    assert alive == [], [_describe(p)[:80] for p in alive]


def _describe(p) -> str:
    """A process's name and command line ('' once it is gone)."""
    try:
        return f"{p.name()} {' '.join(p.cmdline())}"
    except psutil.Error:
        return ""
