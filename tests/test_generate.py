"""The generator: fingerprints, renaming pruning, a small end-to-end run, and the CLI's errors."""
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from envcore.execute import equivalent
from envcore.graph import GraphBuilder
from envcore.rewrite.rule import Rule
from subgen.enumeration.fingerprint import graph_fingerprint
from subgen.pairing.prune import canonical_key, dedupe, generalizes, instance_keys

SUBGEN = [sys.executable, "-c", "from subgen.cli import main; main()"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(2, 4))
def test_fingerprint_ignores_output_order(seed, n):
    rng = np.random.default_rng(seed)
    outs = [rng.integers(0, 1000, size=(2, 3)) for _ in range(n)]
    perm = rng.permutation(n)
    assert graph_fingerprint(outs) == graph_fingerprint([outs[i] for i in perm])
    changed = [o.copy() for o in outs]
    changed[0][0, 0] += 1
    assert graph_fingerprint(changed) != graph_fingerprint(outs)


def test_enumerated_split_graph_fingerprint_ignores_output_order():
    from subgen.pairing.pairs import buckets
    from subgen.enumeration.enumerator import Enumerator
    en = Enumerator(("concat", "split"), 3)     # levels 1 and 2 keep their values
    en.level(1)
    en.level(2)
    split = next(n for n in en.nodes if n.op == "split" and
                 len(set(en.nodes[en.terms[n.inputs[0]].node].inputs)) == 2)
    vals = [en.terms[o].value for o in split.outputs]
    assert graph_fingerprint(vals) == graph_fingerprint(vals[::-1])
    # the split's two outputs share a bucket with the two leaves it gives back
    bks = buckets(en)
    bucket = next(b for b in bks.values() if tuple(split.outputs) in b)
    assert any(all(en.terms[o].node is None for o in g) for g in bucket)


def _assoc(names):
    a, b, c = names
    s, d = GraphBuilder(), GraphBuilder()
    xs = {k: s.input(k, (2, 4)) for k in names}
    ys = {k: d.input(k, (2, 4)) for k in names}
    src = s.build([s.add("ewadd", s.add("ewadd", xs[a], xs[b]), xs[c])])
    dst = d.build([d.add("ewadd", ys[a], d.add("ewadd", ys[b], ys[c]))])
    return Rule(f"assoc-{a}{b}{c}", src, dst)


@pytest.mark.parametrize("perm", list(itertools.permutations(["p", "q", "r"])))
def test_renamed_duplicates_are_pruned(perm):
    base = _assoc(("p", "q", "r"))
    renamed = _assoc(perm)
    assert canonical_key(renamed) == canonical_key(base)
    assert canonical_key(renamed.reversed()) == canonical_key(base)
    assert len(dedupe([base, renamed, renamed.reversed()])) == 1
    # a different rule survives beside it
    s, d = GraphBuilder(), GraphBuilder()
    x, y = s.input("p", (2, 4)), s.input("q", (2, 4))
    u, v = d.input("p", (2, 4)), d.input("q", (2, 4))
    comm = Rule("comm", s.build([s.add("ewadd", x, y)]), d.build([d.add("ewadd", v, u)]))
    assert len(dedupe([base, renamed, comm])) == 2


def test_instances_and_smaller_rules_are_recognised():
    # x*(x*s) = (x*x)*s is an instance of x*(y*s) = (x*y)*s
    def rule(second):
        s, d = GraphBuilder(), GraphBuilder()
        xs = {k: s.input(k, (2, 4)) for k in {"x", second}}
        xd = {k: d.input(k, (2, 4)) for k in {"x", second}}
        ss, sd = s.input("s", ()), d.input("s", ())
        src = s.build([s.add("ewmul", xs["x"], s.add("scalar_mul", xs[second], ss))])
        dst = d.build([d.add("scalar_mul", d.add("ewmul", xd["x"], xd[second]), sd)])
        return Rule(second, src, dst)
    assert canonical_key(rule("x")) in instance_keys(rule("y"))
    assert canonical_key(rule("y")) not in instance_keys(rule("x"))
    # relu(relu(x)) = relu(x) is not an instance of relu(y) = y: it must stay
    s, d = GraphBuilder(), GraphBuilder()
    src = s.build([s.add("relu", s.add("relu", s.input("x", (2, 4))))])
    dst = d.build([d.add("relu", d.input("x", (2, 4)))])
    assert not generalizes(Rule("idem", src, dst))


def test_small_run_finds_true_rules(tmp_path):
    from subgen.pipelines.generate import Settings, generate
    from subgen.rules.db import RuleDB
    out = tmp_path / "r.db"
    s = generate(Settings(max_ops=2, ops=("ewadd", "ewmul", "relu", "matmul"), verify=False),
                 out)
    assert s.enumerated > 0 and s.candidates >= s.after_pruning > 0
    assert [st["name"] for st in s.stages][:2] == ["enumerate", "pair"]
    for a, b in zip(s.stages, s.stages[1:]):
        assert b["in"] == a["out"] or a["name"] == "enumerate"
    with RuleDB(out) as db:
        rules = [sr.rule for sr in db.rules()]
    assert len(rules) == s.after_pruning == s.unverified
    keys = {canonical_key(r) for r in rules}
    assert len(keys) == len(rules)
    for r in rules:
        assert equivalent(r.src, r.dst)[0], r.name
    # distributivity and commutativity are among them
    ops = [tuple(sorted(n.op for n in r.src.nodes.values() if n.op != "input")) for r in rules]
    assert ("ewadd",) in ops and ("ewadd", "ewmul") in ops or ("ewmul", "ewmul") in ops


def _cli(*args, cwd=None):
    return subprocess.run(SUBGEN + list(args), capture_output=True, text=True, timeout=120,
                          cwd=cwd)


@pytest.mark.parametrize("args,words", [
    (["--ops", "ewadd,frobnicate"], "frobnicate"),
    (["--max-ops", "0"], "max-ops"),
    (["--max-ops", "99"], "max-ops"),
])
def test_bad_settings_give_one_line_and_exit_2(tmp_path, args, words):
    r = _cli("generate", "--no-verify", "--out", str(tmp_path / "x.db"), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "x.db").exists()


def test_json_summary_is_last_line(tmp_path):
    r = _cli("generate", "--max-ops", "1", "--no-verify", "--json", "--out",
             str(tmp_path / "x.db"))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout.strip().splitlines()[-1])
    for k in ("enumerated", "candidates", "after_pruning", "proved", "refuted", "unknown",
              "rules", "seconds", "stages"):
        assert k in d
    assert all({"name", "in", "out"} <= set(st) for st in d["stages"])


def test_rules_differing_only_in_dimensions_are_one_rule():
    """Matching and proofs are rank-generic, so ewadd's commutativity is found once per rank
    (2-D and 4-D pools), not once per pool shape."""
    from subgen.pipelines.generate import Settings, find_candidates
    rules, _ = find_candidates(Settings(max_ops=1, ops=("ewadd",), verify=False))
    comm = [r for r in rules if r.src.num_ops == r.dst.num_ops == 1]
    ranks = sorted(len(r.src.shape(next(iter(r.src.inputs.values())))) for r in comm)
    assert ranks == [2, 4]
    assert len({canonical_key(r, shapes="rank") for r in rules}) == len(rules)


def test_equal_normal_forms_mean_equal_values():
    """Soundness of the normal form: enumerated terms that share one have the same exact
    value (fingerprint); and it does identify reorderings (classes do merge)."""
    from subgen.enumeration.enumerator import Enumerator
    from subgen.pairing.normal_form import NormalForms

    en = Enumerator(("ewadd", "ewmul", "matmul", "concat", "scalar_mul", "relu"), 2)
    en.run()

    def describe(tid):
        t = en.terms[tid]
        if t.node is None:
            return ("leaf", t.name)
        n = en.nodes[t.node]
        return ("op", n.op, n.params, n.inputs, t.index,
                tuple(en.terms[i].shape == () for i in n.inputs))
    nf = NormalForms(describe)
    fps: dict[str, set] = {}
    for t in en.terms:
        fps.setdefault(nf.of(t.id), set()).add(t.fp)
    assert all(len(v) == 1 for v in fps.values())
    assert len(fps) < len(en.terms)


class _Inputs(dict):
    """Inputs made on first use, so a graph holds only the variables it reads."""

    def __init__(self, builder):
        super().__init__()
        self.builder = builder

    def __missing__(self, name):
        self[name] = self.builder.input(name, (2, 4))
        return self[name]


def _graph(build):
    b = GraphBuilder()
    return b.build([build(b, _Inputs(b))])


def test_normal_form_trivial_rules_hold_and_others_do_not_look_trivial():
    from subgen.pairing.normal_form import rule_is_trivial
    src = _graph(lambda b, x: b.add("ewadd", x["c"], b.add("ewadd", x["c"], b.add(
        "ewadd", x["a"], x["b"]))))
    dst = _graph(lambda b, x: b.add("ewadd", b.add("ewadd", x["a"], x["c"]),
                                    b.add("ewadd", x["b"], x["c"])))
    r = Rule("ac", src, dst)
    assert rule_is_trivial(r) and equivalent(r.src, r.dst)[0]
    # concat is associative but not commutative
    c1 = _graph(lambda b, x: b.add("concat", x["a"], x["b"], axis=0))
    c2 = _graph(lambda b, x: b.add("concat", x["b"], x["a"], axis=0))
    assert not rule_is_trivial(Rule("swap", c1, c2))
    # a fused relu is not linear: the scalar may not float out of it
    s = GraphBuilder()
    x, k = s.input("x", (1, 4, 4, 4)), s.input("k", (4, 4, 3, 3))
    sc = s.input("s", ())
    inner = s.build([s.add("conv2d", s.add("scalar_mul", x, sc), k, stride=(1, 1),
                           padding="same", activation="relu")])
    d = GraphBuilder()
    x2, k2, sc2 = d.input("x", (1, 4, 4, 4)), d.input("k", (4, 4, 3, 3)), d.input("s", ())
    outer = d.build([d.add("scalar_mul", d.add("conv2d", x2, k2, stride=(1, 1),
                                               padding="same", activation="relu"), sc2)])
    assert not rule_is_trivial(Rule("relu-scale", inner, outer))


def test_derivation_search_joins_sides_with_the_rules_and_only_true_ones():
    from subgen.rules.derive import both_directions, derivable
    comm = Rule("comm", _graph(lambda b, x: b.add("ewadd", x["a"], x["b"])),
                _graph(lambda b, x: b.add("ewadd", x["b"], x["a"])))
    assoc = Rule("assoc", _graph(lambda b, x: b.add("ewadd", b.add("ewadd", x["a"], x["b"]),
                                                    x["c"])),
                 _graph(lambda b, x: b.add("ewadd", x["a"], b.add("ewadd", x["b"], x["c"]))))
    rules = both_directions([comm, assoc])
    target = Rule("t", _graph(lambda b, x: b.add("ewadd", x["c"], b.add("ewadd", x["a"],
                                                                       x["b"]))),
                  _graph(lambda b, x: b.add("ewadd", b.add("ewadd", x["a"], x["c"]), x["b"])))
    steps = derivable(target, rules)
    assert steps is not None and 1 <= steps <= 4
    assert derivable(target, [comm]) is None
    false = Rule("f", _graph(lambda b, x: b.add("ewadd", x["a"], x["b"])),
                 _graph(lambda b, x: b.add("ewmul", x["a"], x["b"])))
    assert derivable(false, rules) is None


def test_compare_sorts_every_rule_into_held_subsumed_derivable_or_missing(tmp_path):
    from subgen.rules.compare import compare
    from subgen.rules.io import save_json
    comm = Rule("comm", _graph(lambda b, x: b.add("ewadd", x["a"], x["b"])),
                _graph(lambda b, x: b.add("ewadd", x["b"], x["a"])))
    assoc = Rule("assoc", _graph(lambda b, x: b.add("ewadd", b.add("ewadd", x["a"], x["b"]),
                                                    x["c"])),
                 _graph(lambda b, x: b.add("ewadd", x["a"], b.add("ewadd", x["b"], x["c"]))))
    derived = Rule("d", _graph(lambda b, x: b.add("ewadd", x["c"], b.add("ewadd", x["a"],
                                                                        x["b"]))),
                   _graph(lambda b, x: b.add("ewadd", x["a"], b.add("ewadd", x["c"], x["b"]))))
    other = Rule("m", _graph(lambda b, x: b.add("ewmul", x["a"], x["b"])),
                 _graph(lambda b, x: b.add("ewmul", x["b"], x["a"])))
    save_json([comm, assoc], tmp_path / "ours.json")
    in_context = Rule("c", _graph(lambda b, x: b.add("ewmul", b.add("ewadd", x["a"], x["b"]),
                                                     x["c"])),
                      _graph(lambda b, x: b.add("ewmul", b.add("ewadd", x["b"], x["a"]),
                                                x["c"])))
    instance = Rule("i", _graph(lambda b, x: b.add("ewadd", b.add("ewadd", x["a"], x["b"]),
                                                   x["a"])),
                    _graph(lambda b, x: b.add("ewadd", x["a"], b.add("ewadd", x["b"], x["a"]))))
    save_json([assoc.reversed("renamed"), derived, other, in_context, instance],
              tmp_path / "theirs.json")
    res = compare(tmp_path / "ours.json", tmp_path / "theirs.json")
    assert (res["held"], res["subsumed"], res["derivable"], res["missing"]) == (1, 2, 1, 1)
    assert res["covered"] == res["held"] + res["subsumed"]
    assert sorted(d["name"] for d in res["subsumed_rules"]) == ["c", "i"]
    assert [d["name"] for d in res["derivable_rules"]] == ["d"]
    assert res["derivable_rules"][0]["steps"] >= 2
    assert res["missing_rules"][0]["name"] == "m"


def test_derived_rules_skip_the_verifier_and_inherit_a_true_status(tmp_path):
    pytest.importorskip("verifier")
    from subgen.pipelines.generate import Settings, generate
    from subgen.rules.db import RuleDB
    out = tmp_path / "r.db"
    s = generate(Settings(max_ops=3, ops=("ewadd", "scalar_mul")), out)
    nf = next(st for st in s.stages if st["name"] == "normal-form")
    verify = next(st for st in s.stages if st["name"] == "verify")
    # rules that follow from a leader are proved themselves (a leader's precondition is in its
    # own slots); those that follow from the base rules alone skip the verifier
    assert nf["out"] < nf["in"] and nf["out"] <= verify["in"] < nf["in"]
    with RuleDB(out) as db:
        stored = db.rules()
    derived = [sr for sr in stored if sr.axioms[:1] == ("normal-form",)]
    assert derived and all(sr.status == "proved" for sr in derived)
    assert all(sr.scope and sr.scope["forward"]["requires"] == [] for sr in derived)
    assert s.proved == sum(sr.status == "proved" for sr in stored)
    for sr in derived:
        assert equivalent(sr.rule.src, sr.rule.dst)[0], sr.rule.name
