"""Ctrl-C anywhere: one line, exit 130 within a second, no worker tracebacks, and a state that
resumes to the same result an uninterrupted run gives.

Every phase of `generate` and of `verify` is hit, not only the long ones: the command announces
the phase (`subgen.faults`, set up through the environment) and the test then sends SIGINT to
its whole process group, as a terminal does.  Phases marked "@s" are hit that many seconds in,
while the workers are busy."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from subgen.faults import READY, VARIABLE

SUBGEN = [sys.executable, "-c", "from subgen.cli import main; main()"]
# Both paths of generate: depth 2 runs every stage here, depth 3 in the workers (sharded; a
# small op set keeps it quick).  Phases in the order a run passes them.
GENERATE = {
    "in-process": (["generate", "--max-ops", "2", "--workers", "2"],
                   ["enumerate: 1", "enumerate: 2", "pair", "prune: renaming", "refute",
                    "prune: instances", "prune: smaller rules", "prune: common supergraph",
                    "normal forms", "store", "verify", "verify@1"]),
    "sharded": (["generate", "--max-ops", "3", "--ops", "ewadd,relu,matmul,transpose",
                 "--workers", "2"],
                ["enumerate: 3", "enumerate: 3@0.3", "pair, prune: renaming",
                 "pair, prune: renaming@0.2",
                 "refute (float), prune: instances", "prune: smaller rules, common supergraph",
                 "normal forms", "store", "verify", "verify@1"]),
}
VERIFY_PHASES = ["read", "verify", "verify@1", "report"]


def _sigint_as_at_a_terminal():
    """The child starts with SIGINT at its default, as a command typed at a terminal does.  A
    test run from a background job (`make test &`, nohup) inherits SIGINT ignored, and Python
    keeps an ignored SIGINT ignored: Ctrl-C would then never reach the command under test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(args, phase, tmp_path):
    """(exit code, seconds from SIGINT to exit, stderr lines) of `args` interrupted at `phase`."""
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)
    env = {**os.environ, VARIABLE: phase, READY: str(ready)}
    proc = subprocess.Popen([*SUBGEN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env,
                            preexec_fn=_sigint_as_at_a_terminal)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, f"{phase}: finished before the phase ({proc.returncode})"
        assert time.monotonic() < deadline, f"{phase}: never reached"
        time.sleep(0.01)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)          # what a terminal sends: the whole group
    err = proc.communicate(timeout=30)[1]
    took = time.monotonic() - t0
    lines = [ln for ln in err.replace("\r", "\n").splitlines()
             if ln.strip() and not any(c in ln for c in "━╸")]   # progress bars aside
    return proc.returncode, took, lines


def _assert_one_line_and_quick(got, phase):
    code, took, lines = got
    assert code == 130 and took < 1.0, (phase, code, took)
    assert lines and lines[-1].startswith("interrupted"), (phase, lines)
    assert not any("Traceback" in ln or "Error" in ln for ln in lines), (phase, lines)


def _rows(path):
    with sqlite3.connect(path) as c:
        return dict((k, (s, sc)) for k, s, sc in c.execute("SELECT key, status, scope FROM rules"))


def _generate(args, out):
    done = subprocess.run([*SUBGEN, *args, "--out", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _generate(GENERATE["in-process"][0], tmp_path_factory.mktemp("ref") / "rules.db")


@pytest.mark.parametrize("path", list(GENERATE))
def test_ctrl_c_in_every_phase_of_generate_then_resume_gives_the_uninterrupted_result(
        tmp_path, uninterrupted, path):
    args, phases = GENERATE[path]
    out = tmp_path / "rules.db"
    for phase in phases:
        _assert_one_line_and_quick(_interrupt([*args, "--out", str(out)], phase, tmp_path), phase)
        with sqlite3.connect(out) as c:           # nothing half-written
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    want = uninterrupted if path == "in-process" else _generate(args, tmp_path / "ref.db")
    assert _rows(_generate(args, out)) == _rows(want)


def test_ctrl_c_in_every_phase_of_verify_then_resume_gives_the_uninterrupted_result(
        tmp_path, uninterrupted):
    db = tmp_path / "r.db"
    shutil.copy(uninterrupted, db)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE rules SET status='candidate', scope=NULL, axioms='[]'"
                  " WHERE axioms NOT LIKE '[\"normal-form\"%'")
        pending = c.execute("SELECT count(*) FROM rules WHERE status='candidate'").fetchone()[0]
    assert pending > 100
    args = ["verify", str(db), "--workers", "2", "--report", str(tmp_path / "report.json")]
    for phase in VERIFY_PHASES:
        _assert_one_line_and_quick(_interrupt(args, phase, tmp_path), phase)
        with sqlite3.connect(db) as c:             # what was committed is kept
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert not (tmp_path / "report.json").exists()
        assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    done = subprocess.run([*SUBGEN, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr         # 1: some rules are not proved
    assert (tmp_path / "report.json").exists()
    assert {k: s for k, (s, _) in _rows(db).items()} == \
        {k: s for k, (s, _) in _rows(uninterrupted).items()}


def _interrupt_after(args, seconds, tmp_path):
    """As `_interrupt`, at a moment of the clock: for the commands without phases to name."""
    proc = subprocess.Popen([*SUBGEN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=tmp_path,
                            preexec_fn=_sigint_as_at_a_terminal)
    time.sleep(seconds)
    assert proc.poll() is None, f"{args[0]} finished within {seconds} s"
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate(timeout=30)[1]
    lines = [ln for ln in err.replace("\r", "\n").splitlines()
             if ln.strip() and not any(c in ln for c in "━╸")]
    return proc.returncode, time.monotonic() - t0, lines


@pytest.mark.parametrize("args,seconds", [
    (["verify", "--axioms", "--workers", "2"], 3.0),
    (["optimize", "inception_v3", "--model-size", "small", "--agent", "taso", "--budget", "5000",
      "--out", "x.onnx"], 6.0),
    (["train", "--agent", "ppo", "--model", "nasrnn", "--steps", "5000", "--out", "run"], 8.0),
], ids=["verify-axioms", "optimize", "train"])
def test_ctrl_c_in_the_other_long_commands_is_one_line_and_quick(tmp_path, args, seconds):
    got = _interrupt_after(args, seconds, tmp_path)
    _assert_one_line_and_quick(got, args[0])
    assert not (tmp_path / "x.onnx").exists()                    # nothing half-written
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
