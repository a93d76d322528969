"""verify_rule, batches, and `subgen verify`: proved rules are numerically sound (a property
test), results persist into the DB and a rerun resumes, unusable input exits 2."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcore.execute import equivalent
from envcore.graph import Graph
from envcore.ops import ShapeError
from envcore.rewrite.rule import MalformedRule, Rule
from rulekit import rule
from subgen.cli import main
from verifier import RuleResult, verify_rule
from verifier.axioms import AXIOMS
from verifier.batch import summary, verify_many

SQ = (3, 3)
GOOD = rule("mm_linear", lambda b, x, y, z: b.add("matmul", x, b.add("ewadd", y, z)),
            lambda b, x, y, z: b.add("ewadd", b.add("matmul", x, y), b.add("matmul", x, z)),
            x=SQ, y=SQ, z=SQ)
BAD = rule("mm_swapped", lambda b, x, y: b.add("matmul", x, y),
           lambda b, x, y: b.add("matmul", y, x), x=SQ, y=SQ)
# relu(x)^2 == relu(x) * x: true (both are 0 where x < 0), but no axiom gives it
TRUE_UNPROVABLE = rule("relu_square",
                         lambda b, x: b.add("ewmul", b.add("relu", x), b.add("relu", x)),
                         lambda b, x: b.add("ewmul", b.add("relu", x), x), x=SQ)


def test_verify_rule_statuses():
    good, bad, unk = (verify_rule(r) for r in (GOOD, BAD, TRUE_UNPROVABLE))
    assert isinstance(good, RuleResult) and good.status == "proved"
    assert good.axioms == ("matmul_ewadd",) and good.seconds > 0
    assert bad.status == "refuted" and bad.counterexample["max_abs_err"] > 0
    assert unk.status == "unknown" and unk.counterexample is None   # no relu idempotence axiom


# --- property: whatever the prover proves is numerically true --------------------------------

def _instances():
    out = []
    for ax in AXIOMS:
        for inst in ax.instances(3, limit=6, seed=2):
            try:
                g1, g2 = ax.graphs(inst)
            except ShapeError:
                continue
            out.append((ax.name, g1, g2))
    return out


INSTANCES = _instances()


def _rename(g: Graph, perm: dict) -> Graph:
    d = g.to_dict()
    for e in d["nodes"]:
        if e["op"] == "input":
            e["params"]["name"] = perm.get(e["params"]["name"], e["params"]["name"])
    return Graph.from_dict(d)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(INSTANCES), st.booleans(), st.booleans(), st.randoms(use_true_random=False))
def test_proved_rules_pass_numeric_checks(case, reverse, mutate, rnd):
    name, g1, g2 = case
    if reverse:
        g1, g2 = g2, g1
    if mutate:   # swap two same-shaped variables on one side: often a false rule
        leaves = g2.inputs
        by_shape = {}
        for n, ref in leaves.items():
            by_shape.setdefault(g2.shape(ref), []).append(n)
        pairs = [v for v in by_shape.values() if len(v) >= 2]
        if pairs:
            a, b = rnd.sample(rnd.choice(pairs), 2)
            g2 = _rename(g2, {a: b, b: a})
    try:
        r = Rule(name, g1, g2)
    except MalformedRule:
        return
    res = verify_rule(r, timeout_ms=3000)
    if res.status == "proved":
        ok, err = equivalent(r.src, r.dst, trials=3, seed=rnd.randrange(10**6))
        assert ok, (name, err)
    if not mutate:
        assert res.status != "refuted", res.counterexample   # every axiom instance is true


# --- batches ---------------------------------------------------------------------------------

def test_workers_agree_with_serial():
    rules = [GOOD, BAD, TRUE_UNPROVABLE]
    seen = []
    par = verify_many(rules, workers=2, on_result=lambda i, r: seen.append(i))
    assert sorted(seen) == [0, 1, 2]
    assert [r.status for r in par] == ["proved", "refuted", "unknown"]
    s = summary(par, 1.0)
    assert (s["rules"], s["proved"], s["refuted"], s["unknown"]) == (3, 1, 1, 1)


# --- the CLI ---------------------------------------------------------------------------------

def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_db_results_persist_and_rerun_resumes(tmp_path, capsys):
    from subgen.rules.db import RuleDB
    path = tmp_path / "rules.db"
    with RuleDB(path) as db:
        db.add_rules([GOOD, BAD])
    report = tmp_path / "report.json"
    code, out, _ = run_cli(["verify", str(path), "--json", "--report", str(report)], capsys)
    assert code == 1
    s = json.loads(out.strip().splitlines()[-1])
    assert (s["rules"], s["proved"], s["refuted"], s["unknown"]) == (2, 1, 1, 0)
    with RuleDB(path) as db:
        got = {r.rule.name: r for r in db.rules()}
    assert got["mm_linear"].status == "proved" and got["mm_linear"].axioms
    assert got["mm_swapped"].status == "refuted" and got["mm_swapped"].counterexample
    rep = json.loads(report.read_text())
    assert {r["name"]: r["status"] for r in rep["rules"]} == {"mm_linear": "proved",
                                                            "mm_swapped": "refuted"}
    code, out, _ = run_cli(["verify", str(path), "--json"], capsys)   # nothing left to do
    s2 = json.loads(out.strip().splitlines()[-1])
    assert code == 1 and s2["skipped_final"] == 2 and s2["proved"] == 1


def test_all_proved_exits_zero(tmp_path, capsys):
    from subgen.rules.db import RuleDB
    path = tmp_path / "good.db"
    with RuleDB(path) as db:
        db.add_rules([GOOD])
    code, out, _ = run_cli(["verify", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["proved"] == 1


@pytest.mark.parametrize("name,content", [
    ("missing.json", None),
    ("corrupt.db", b"definitely not sqlite" * 10),
    ("rules.txt", b"{}"),
])
def test_unusable_input_exits_2_with_one_line(tmp_path, capsys, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_cli(["verify", str(path)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("name,content", [
    ("bad.json", b"{ this is not json"),
    # a readable file with a malformed rule is not unusable input: that rule is "malformed",
    # exit 1 (tests/test_verdicts.py::test_lone_malformed_rule_exits_1)
    ("bad.pb", b"\x0a\xff\xff\xff\xff\x0f\x01\x02"),
    ("garbage.pb", bytes(range(256))),
])
def test_malformed_json_or_pb_exits_2_with_one_line(tmp_path, capsys, name, content):
    pytest.importorskip("subgen.rules.io")
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run_cli(["verify", str(path)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
