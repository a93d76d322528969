"""The rule DB: round trip, corrupt and foreign files, and surviving SIGKILL mid-run."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from envcore.graph import GraphBuilder
from envcore.rewrite.rule import Rule
from subgen.errors import BadInput
from subgen.rules.db import RuleDB
from subgen.rules.io import load_rules

SUBGEN = [sys.executable, "-c", "from subgen.cli import main; main()"]


def _rule(name="comm", op="ewadd"):
    s, d = GraphBuilder(), GraphBuilder()
    x, y = s.input("x", (2, 4)), s.input("y", (2, 4))
    u, v = d.input("x", (2, 4)), d.input("y", (2, 4))
    return Rule(name, s.build([s.add(op, x, y)]), d.build([d.add(op, v, u)]))


def test_add_set_result_and_read_back(tmp_path):
    p = tmp_path / "r.db"
    with RuleDB(p) as db:
        ids = db.add_rules([_rule(), _rule("mul", "ewmul")])
        assert len(set(ids)) == 2
        assert db.add_rules([_rule("again")]) == ids[:1]        # same rule up to renaming
        general = {"requires": [], "resolve": {}, "pinned": False}
        db.set_result(ids[0], "proved", axioms=("ewadd-comm",), seconds=0.5,
                      scope={"forward": general, "reverse": general})
        db.set_result(ids[1], "refuted", counterexample={"x": [1.0]})
        b, d = GraphBuilder(), GraphBuilder()
        twice = Rule("old", b.build([b.add("relu", b.add("relu", b.input("x", (2, 4))))]),
                     d.build([d.add("relu", d.input("x", (2, 4)))]))
        unscoped = db.add_rules([twice])[0]
        db.set_result(unscoped, "proved")          # proved before scoped proofs: not applied
    with RuleDB(p, create=False) as db:
        proved = db.proved_rules()
        assert [r.name for r in proved] == ["comm"]
        assert proved[0].src == _rule().src and proved[0].meta["scope"] == general
        assert db.unscoped_proved() == [unscoped]
        st = {s.id: s for s in db.rules()}
        assert st[ids[0]].axioms == ("ewadd-comm",) and st[ids[1]].counterexample == {"x": [1.0]}
        assert db.integrity_ok()
    assert len(load_rules(p)) == 3


@pytest.mark.parametrize("content", [b"this is not sqlite at all" * 40,
                                     b"SQLite format 3\x00" + b"\x07" * 2000])
def test_corrupt_file_is_bad_input(tmp_path, content):
    p = tmp_path / "bad.db"
    p.write_bytes(content)
    with pytest.raises(BadInput):
        RuleDB(p)
    r = subprocess.run(SUBGEN + ["rules", "show", str(p)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert p.read_bytes() == content     # nothing written over it


def test_foreign_sqlite_is_bad_input(tmp_path):
    p = tmp_path / "foreign.db"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(BadInput):
        RuleDB(p)
    r = subprocess.run(SUBGEN + ["generate", "--no-verify", "--max-ops", "1", "--out", str(p)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def _final_rules(path):
    with RuleDB(path, create=False) as db:
        return sorted((json.dumps(s.rule.to_dict(), sort_keys=True), s.status)
                      for s in db.rules())


def test_sigkill_then_rerun_gives_the_same_rules(tmp_path):
    """Kill a verifying run with SIGKILL, rerun it: same final rules, integrity_check ok."""
    pytest.importorskip("verifier")
    args = ["generate", "--max-ops", "2", "--ops", "ewadd,ewmul,matmul,relu,concat",
            "--timeout-ms", "5000"]
    ref = tmp_path / "ref.db"
    r = subprocess.run(SUBGEN + args + ["--out", str(ref), "--json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    expected = _final_rules(ref)
    assert any(st == "proved" for _, st in expected)

    killed = tmp_path / "killed.db"
    proc = subprocess.Popen(SUBGEN + args + ["--out", str(killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # wait until the candidates are committed and some results are in, then kill
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            con = sqlite3.connect(killed, timeout=1)
            done = con.execute("SELECT COUNT(*) FROM rules WHERE status != 'candidate'"
                               ).fetchone()[0]
            con.close()
        except sqlite3.Error:
            continue
        if done >= 3:
            break
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    con = sqlite3.connect(killed)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    r = subprocess.run(SUBGEN + args + ["--out", str(killed), "--json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _final_rules(killed) == expected
    with RuleDB(killed) as db:
        assert db.integrity_ok()


def test_a_garbled_db_is_refused_by_every_command_and_left_as_it_was(tmp_path):
    """1 KiB of random bytes in the middle of a rule DB: one line, exit 2, nothing written
    (generate used to take it for a finished run, say 'already done' and write into it)."""
    import hashlib
    import shutil

    from subgen.paths import DEFAULT_RULES
    if not DEFAULT_RULES.exists():
        pytest.skip("no shipped rule DB")
    bad = tmp_path / "rules.db"
    shutil.copy(DEFAULT_RULES, bad)
    with open(bad, "r+b") as f:
        f.seek(bad.stat().st_size // 2)
        f.write(os.urandom(1024))
    before = hashlib.sha256(bad.read_bytes()).hexdigest()
    for args in (["generate", "--out", str(bad)], ["rules", "show", str(bad)],
                 ["verify", str(bad)], ["optimize", "toy", "--rules", str(bad)]):
        done = subprocess.run([*SUBGEN, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "corrupt" in done.stderr, args
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == before
