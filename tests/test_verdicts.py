"""Deterministic verdicts: a rule's status depends on the rule only, not on the rules before it or
the number of workers; `subgen verify` gives every rule of a file its own verdict (a malformed
one is `malformed`, the others go on) and exits 2 only for a file it cannot read."""
import json
import random
from pathlib import Path

import pytest

from rulekit import rule
from subgen.cli import main
from verifier.batch import verify_many
from verifier.prove import axiom_solver, prove, rlimit_for, set_limits

TASO_PB = Path(__file__).resolve().parents[2] / "shared/anchors/taso/graph_subst.pb"
SQ = (3, 3)
# refuted mutants: numerically false
MM_SWAPPED = rule("mm_swapped", lambda b, x, y: b.add("matmul", x, y),
                  lambda b, x, y: b.add("matmul", y, x), x=SQ, y=SQ)
SUB_SWAPPED = rule("ewmul_add_swapped", lambda b, x, y: b.add("ewmul", x, b.add("ewadd", x, y)),
                   lambda b, x, y: b.add("ewadd", b.add("ewmul", x, x), b.add("ewmul", y, y)),
                   x=SQ, y=SQ)
# relu(x)^2 == relu(x) * x: true (both are 0 where x < 0), but no axiom gives it
RELU_SQUARE = rule("relu_square",
                   lambda b, x: b.add("ewmul", b.add("relu", x), b.add("relu", x)),
                   lambda b, x: b.add("ewmul", b.add("relu", x), x), x=SQ)


@pytest.fixture(scope="module")
def taso20():
    if not TASO_PB.exists():
        pytest.skip("TASO anchor not present")
    from subgen.rules.taso_pb import read_rules
    rules = read_rules(TASO_PB)
    return random.Random(17).sample(rules, 20)


@pytest.fixture(scope="module")
def mixed(taso20):
    return taso20 + [MM_SWAPPED, SUB_SWAPPED, RELU_SQUARE]


@pytest.fixture(scope="module")
def serial(mixed):
    return {r.name: (res.status, res.axioms) for r, res in zip(mixed, verify_many(mixed))}


def test_mixed_set_has_every_status(serial):
    statuses = {s for s, _ in serial.values()}
    assert statuses == {"proved", "refuted", "unknown"}
    assert serial["mm_swapped"][0] == serial["ewmul_add_swapped"][0] == "refuted"
    assert sum(s == "proved" for s, _ in serial.values()) == 20    # every TASO rule proves


def test_same_statuses_in_two_orders(mixed, serial):
    rev = list(reversed(mixed))
    got = {r.name: (res.status, res.axioms) for r, res in zip(rev, verify_many(rev))}
    assert got == serial


def test_one_and_two_workers_agree(mixed, serial):
    par = verify_many(mixed, workers=2)
    assert {r.name: (res.status, res.axioms) for r, res in zip(mixed, par)} == serial


def test_prover_has_no_history(taso20):
    """The Z3 proof of a rule is the same first in a process and after many others."""
    first = prove(taso20[0])
    for r in taso20[1:] + [RELU_SQUARE] * 3:
        prove(r)
    assert prove(taso20[0]) == first and first[0] == "proved"


def test_limit_is_counted_work(taso20):
    """The limit is Z3's resource count (rlimit), scaled from timeout_ms: a tiny one cuts every
    proof off (the wall-clock safety net is a second away), the default one proves."""
    assert rlimit_for(4000) == 2 * rlimit_for(2000)
    s = set_limits(axiom_solver(), 1)
    assert s.check() is not None     # the solver accepts the limits
    assert [prove(r, timeout_ms=1)[0] for r in taso20[:5]] == ["unknown"] * 5
    assert [prove(r)[0] for r in taso20[:5]] == ["proved"] * 5


# --- the CLI ---------------------------------------------------------------------------------

def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def _bad_shape_rule() -> dict:
    """Sides that disagree in output shape: relu(x) -> transpose(relu(x)) on a (2, 3) x."""
    d = rule("shape_clash", lambda b, x: b.add("relu", x), lambda b, x: b.add("relu", x),
             x=(2, 3)).to_dict()
    nodes = d["dst"]["nodes"]
    nodes.append({"id": len(nodes), "op": "transpose", "inputs": [[len(nodes) - 1, 0]],
                  "params": {"perm": [1, 0]}})
    d["dst"]["outputs"] = [[len(nodes) - 1, 0]]
    return d


def test_malformed_rule_gets_its_own_verdict(tmp_path, capsys, taso20):
    from envcore.rewrite.rule import MalformedRule, Rule
    bad = _bad_shape_rule()
    with pytest.raises(MalformedRule):
        Rule.from_dict(bad)
    good = [r.to_dict() for r in taso20[:4]]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": good[:2] + [bad] + good[2:]}))
    report = tmp_path / "report.json"
    code, out, _ = run_cli(["verify", str(path), "--json", "--report", str(report)], capsys)
    assert code == 1
    s = json.loads(out.strip().splitlines()[-1])
    assert (s["rules"], s["proved"], s["malformed"], s["refuted"], s["unknown"]) == (5, 4, 1, 0, 0)
    rows = json.loads(report.read_text())["rules"]
    assert [r["name"] for r in rows] == [g["name"] for g in good[:2]] + ["shape_clash"] + \
        [g["name"] for g in good[2:]]
    assert rows[2]["status"] == "malformed" and rows[2]["reason"]
    assert all(r["status"] == "proved" for k, r in enumerate(rows) if k != 2)


def test_lone_malformed_rule_exits_1(tmp_path, capsys):
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps([{"name": "r", "src": {"nodes": [], "outputs": [[7, 0]]}}]))
    report = tmp_path / "report.json"
    code, out, _ = run_cli(["verify", str(path), "--json", "--report", str(report)], capsys)
    s = json.loads(out.strip().splitlines()[-1])
    assert code == 1 and (s["rules"], s["malformed"], s["proved"]) == (1, 1, 0)
    row, = json.loads(report.read_text())["rules"]
    assert (row["name"], row["status"]) == ("r", "malformed") and row["reason"]


def test_all_good_json_exits_0(tmp_path, capsys, taso20):
    path = tmp_path / "good.json"
    path.write_text(json.dumps([r.to_dict() for r in taso20[:3]]))
    code, out, _ = run_cli(["verify", str(path), "--json"], capsys)
    s = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and s["proved"] == 3 and s["malformed"] == 0


@pytest.mark.parametrize("name,content", [
    ("missing.json", None),
    ("bad.json", b"{ this is not json"),
    ("garbage.pb", bytes(range(256))),
])
def test_unreadable_file_exits_2(tmp_path, capsys, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_cli(["verify", str(path), "--json"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- axiom validation on workers -------------------------------------------------------------

def test_axiom_validation_on_two_workers_matches_serial():
    from verifier.axioms import AXIOMS
    from verifier.validate import validate_all, validate_axioms
    axioms = [a for a in AXIOMS if a.name in ("ewadd_comm", "matmul_assoc", "concat_split")]
    kw = dict(max_dim=2, limit=20, redundancy=False)
    serial = validate_axioms(axioms, **kw)
    jobs = []
    par, _ = validate_all(axioms, shape=False, workers=2, on_job=lambda d, t: jobs.append(d),
                          **kw)

    def key(r):
        d = r.to_dict()
        d.pop("seconds")
        return d
    assert [key(r) for r in par] == [key(r) for r in serial]
    assert all(r.ok and r.instances > 0 for r in par) and jobs[-1] == len(jobs)
