"""Fault injection beyond the single-command cases of test_outputs/test_ruledb/test_onnx:
concurrent writers on one DB, truncated and empty DB files, hostile rule files and hostile ONNX.
Every case must end in one line on stderr (exit 2) or a sound DB, never a traceback."""
import json
import subprocess
import sys
import textwrap

import pytest

from envcore.graph import GraphBuilder
from envcore.rewrite.rule import Rule
from subgen.rules.db import RuleDB
from subgen.rules.io import save_json

SUBGEN = [sys.executable, "-c", "from subgen.cli import main; main()"]


def _one_line_exit_2(res):
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr


def _scaled_rule(k: int) -> Rule:
    """k distinct rules: relu(x) @ w == relu(x) @ w with w of width k (true, trivially)."""
    sides = []
    for _ in range(2):
        b = GraphBuilder()
        x, w = b.input("x", (2, 4)), b.input("w", (4, k))
        sides.append(b.build([b.add("matmul", b.add("relu", x), w)]))
    return Rule(f"r{k}", *sides)


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_faults import _scaled_rule
    from subgen.rules.db import RuleDB
    start = int(sys.argv[1])
    with RuleDB(sys.argv[2]) as db:
        for k in range(start, start + 20):           # one transaction per rule: interleaved
            (rid,) = db.add_rules([_scaled_rule(k)])
            db.set_result(rid, "proved", axioms=("w" + sys.argv[1],))
""")


def test_concurrent_writers_on_one_db_lose_nothing_and_duplicate_nothing(tmp_path):
    db_path = tmp_path / "shared.db"
    RuleDB(db_path).close()
    script = WRITER.format(tests=str(__import__("pathlib").Path(__file__).parent))
    # writers 1 and 11 overlap on rules 11..20: each such rule must end up in one row only
    procs = [subprocess.Popen([sys.executable, "-c", script, str(s), str(db_path)],
                              stderr=subprocess.PIPE, text=True) for s in (1, 11, 31)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    with RuleDB(db_path) as db:
        rows = db.rules()
        assert db.integrity_ok()
    names = sorted(r.rule.name for r in rows)
    assert len(names) == len(set(names)) == 50          # 1..30 and 31..50, none twice
    assert all(r.status == "proved" and len(r.axioms) == 1 for r in rows)


def test_a_truncated_db_is_refused_by_every_reader_and_left_as_it_was(tmp_path):
    full = tmp_path / "full.db"
    with RuleDB(full) as db:
        for k in range(1, 400):
            (rid,) = db.add_rules([_scaled_rule(k)])
            db.set_result(rid, "proved")
    data = full.read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[: len(data) // 2])
    for args in (["rules", "show", str(cut)], ["verify", str(cut)],
                 ["optimize", "toy", "--model-size", "tiny", "--rules", str(cut)],
                 ["generate", "--max-ops", "1", "--out", str(cut)]):
        _one_line_exit_2(subprocess.run(SUBGEN + args, capture_output=True, text=True,
                                        timeout=120))
    assert cut.read_bytes() == data[: len(data) // 2]


def test_an_empty_db_file_is_no_rule_set(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for args in (["rules", "show", str(empty)],
                 ["optimize", "toy", "--model-size", "tiny", "--rules", str(empty)]):
        _one_line_exit_2(subprocess.run(SUBGEN + args, capture_output=True, text=True,
                                        timeout=120))


def _hostile_rule_files(tmp_path):
    good = _scaled_rule(3).to_dict()
    huge = json.loads(json.dumps(good))
    for side in ("src", "dst"):
        for node in huge[side]["nodes"]:   # 10^16-element tensors: must not be allocated
            if node["op"] == "input":
                node["params"]["shape"] = [10 ** 8, 10 ** 8] if node["params"]["name"] == "x" \
                    else [10 ** 8, 3]
    unknown = json.loads(json.dumps(good))
    next(n for n in unknown["src"]["nodes"] if n["op"] == "relu")["op"] = "no_such_op"
    cyclic = json.loads(json.dumps(good))
    relu = next(n for n in cyclic["src"]["nodes"] if n["op"] == "relu")
    relu["inputs"] = [[relu["id"], 0]]   # reads its own output
    return {"not_json.json": "{[", "not_a_list.json": json.dumps({"a": 1}),
            "huge_dims.json": json.dumps([huge]), "unknown_op.json": json.dumps([unknown]),
            "cycle.json": json.dumps([cyclic]), "deep.json": "[" * 100000 + "]" * 100000}


@pytest.mark.parametrize("name", ["not_json.json", "not_a_list.json", "huge_dims.json",
                                  "unknown_op.json", "cycle.json", "deep.json"])
def test_hostile_rule_files_get_one_line_or_a_malformed_verdict(tmp_path, name):
    path = tmp_path / name
    path.write_text(_hostile_rule_files(tmp_path)[name])
    res = subprocess.run(SUBGEN + ["verify", str(path), "--json"], capture_output=True,
                         text=True, timeout=120)
    assert "Traceback" not in res.stderr
    if res.returncode == 2:              # unreadable as a whole: one line
        _one_line_exit_2(res)
    else:                                # readable: its one rule is judged malformed, not proved
        report = json.loads(res.stdout)
        assert res.returncode == 1, res.stderr
        assert "proved" not in json.dumps(report.get("counts", report)).replace('"proved": 0', "")
    res = subprocess.run(SUBGEN + ["optimize", "toy", "--model-size", "tiny", "--rules",
                                   str(path), "--json"], capture_output=True, text=True,
                         timeout=120)
    assert "Traceback" not in res.stderr and res.returncode in (0, 2), res.stderr
    if res.returncode == 0:              # nothing of the file was applied
        assert json.loads(res.stdout)["rewrites"] == 0
    else:
        _one_line_exit_2(res)


def test_a_sound_rule_file_still_works_beside_them(tmp_path):
    path = tmp_path / "good.json"
    save_json([_scaled_rule(3)], path)
    res = subprocess.run(SUBGEN + ["verify", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr


def _onnx_model(nodes, inputs, outputs, initializers=()):
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    g = h.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _hostile_onnx(kind):
    onnx = pytest.importorskip("onnx")
    h, T = onnx.helper, onnx.TensorProto
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 4])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 4])
    if kind == "cycle":      # y = relu(z), z = relu(y): no topological order
        return _onnx_model([h.make_node("Relu", ["z"], ["y"]), h.make_node("Relu", ["y"], ["z"])],
                           [x], [y])
    if kind == "external":   # weights in a file that is not there
        w = T(name="w", data_type=T.FLOAT, dims=[4, 4])
        w.data_location = T.EXTERNAL
        w.external_data.add(key="location", value="missing_weights.bin")
        return _onnx_model([h.make_node("MatMul", ["x", "w"], ["y"])], [x], [y], [w])
    if kind == "huge":       # a graph input of 10^16 elements: refused or kept symbolic, never built
        big = h.make_tensor_value_info("x", T.FLOAT, [10 ** 8, 10 ** 8])
        return _onnx_model([h.make_node("Relu", ["x"], ["y"])], [big],
                           [h.make_tensor_value_info("y", T.FLOAT, [10 ** 8, 10 ** 8])])
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["cycle", "external", "huge"])
def test_hostile_onnx_is_one_line_and_exit_2(tmp_path, kind):
    onnx = pytest.importorskip("onnx")
    path = tmp_path / f"{kind}.onnx"
    onnx.save(_hostile_onnx(kind), path)
    out = tmp_path / "out.onnx"
    res = subprocess.run(SUBGEN + ["optimize", str(path), "--out", str(out)],
                         capture_output=True, text=True, timeout=180)
    _one_line_exit_2(res)
    assert not out.exists()


GEN = ["generate", "--max-ops", "2", "--ops", "ewadd,ewmul,matmul,relu,concat", "--timeout-ms",
       "5000"]


def _final(db):
    import sqlite3
    con = sqlite3.connect(db)
    rows = sorted(con.execute("SELECT key, status, scope FROM rules").fetchall())
    con.close()
    return rows


def _count(db, where):
    import sqlite3
    try:
        con = sqlite3.connect(db, timeout=1)
        n = con.execute(f"SELECT COUNT(*) FROM rules WHERE {where}").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return -1


@pytest.mark.parametrize("point", ["while enumerating", "once candidates are committed"])
def test_generate_killed_at_any_point_resumes_to_the_uninterrupted_result(tmp_path, point):
    import os
    import signal
    import time
    ref = tmp_path / "ref.db"
    r = subprocess.run(SUBGEN + GEN + ["--out", str(ref)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    killed = tmp_path / "killed.db"
    proc = subprocess.Popen(SUBGEN + GEN + ["--out", str(killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if point == "while enumerating" and time.time() > deadline - 119.5:
            break                          # half a second in: still enumerating, nothing committed
        if point == "once candidates are committed" and _count(killed, "1") > 0:
            break
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    r = subprocess.run(SUBGEN + GEN + ["--out", str(killed)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert _final(killed) == _final(ref)


def _candidates_db(path, rows=300):
    """The shipped DB's first `rows` rules, all back to candidate: verify has work to do."""
    import shutil
    import sqlite3
    from subgen.paths import DEFAULT_RULES
    shutil.copy(DEFAULT_RULES, path)
    con = sqlite3.connect(path)
    with con:
        keep = [r[0] for r in con.execute("SELECT id FROM rules ORDER BY id LIMIT ?", (rows,))]
        con.execute(f"DELETE FROM rules WHERE id > {keep[-1]}")
        con.execute("UPDATE rules SET status='candidate', scope=NULL, axioms='[]'")
    con.execute("VACUUM")
    con.close()
    return path


def test_verify_killed_at_two_points_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL at its first results, then (resumed) half way through: the second resume ends
    where an uninterrupted run does, row for row."""
    import os
    import signal
    import time
    ref = _candidates_db(tmp_path / "ref.db")
    r = subprocess.run(SUBGEN + ["verify", str(ref), "--workers", "2"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode in (0, 1), r.stderr          # 1: some rule is not proved
    killed = _candidates_db(tmp_path / "killed.db")
    for point, wanted in (("at the first results", 1), ("half way", 150)):
        proc = subprocess.Popen(SUBGEN + ["verify", str(killed), "--workers", "2"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if _count(killed, "status != 'candidate'") >= wanted:
                break
        assert proc.poll() is None, f"{point}: the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert wanted <= _count(killed, "status != 'candidate'") < 300, f"{point}: part way"
    r = subprocess.run(SUBGEN + ["verify", str(killed), "--workers", "2"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode in (0, 1), r.stderr
    assert _final(killed) == _final(ref)
    assert _count(killed, "status = 'proved'") > 250


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """SIGKILL leaves a writer no chance to clean up; the next write of the target does it, and
    leaves alone the temporary file of a writer that is still alive."""
    from envcore.files import write_atomic
    target = tmp_path / "x.json"
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()
        orphan = tmp_path / f".x.json.{dead}.k3j2.tmp"
        live = tmp_path / f".x.json.{writer.pid}.a8f1.tmp"
        other = tmp_path / f".y.json.{dead}.q0q0.tmp"          # another target's: not ours
        for p in (orphan, live, other):
            p.write_text("half")
        write_atomic(target, lambda tmp: tmp.write_text("whole"))
        assert target.read_text() == "whole"
        assert not orphan.exists() and live.exists() and other.exists()
    finally:
        writer.kill()


@pytest.mark.parametrize("option,value", [("--workers", "0"), ("--workers", "-2"),
                                          ("--timeout-ms", "0"), ("--timeout-ms", "-5")])
def test_a_limit_is_refused_the_same_way_by_every_command_that_takes_it(tmp_path, option, value):
    """One rule per option: generate and verify take --workers and --timeout-ms; a value out
    of range is one line, exit 2, and the same line from both, before any work."""
    db = tmp_path / "r.db"
    lines = []
    for args in (["generate", "--max-ops", "2", "--out", str(db)], ["verify", str(db)]):
        res = subprocess.run(SUBGEN + args + [option, value], capture_output=True, text=True,
                             timeout=120)
        _one_line_exit_2(res)
        lines.append(res.stderr.strip())
    assert lines[0] == lines[1] and option in lines[0]
    assert not db.exists()                     # refused before anything was written
