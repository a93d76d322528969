"""Property tests: any sequence of valid rewrites keeps the graph equivalent and acyclic, and the
incrementally maintained candidate set equals the one enumerated from scratch."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcore.rewrite.candidate_set import CandidateSet
from envcore.execute import equivalent
from envcore.rewrite.apply import apply
from random_graphs import random_graph
from rules_fixture import hand_rules, load_db_rules

RULES = hand_rules()
SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def walk(graph, rules, choices, check_incremental=True):
    """Applies the candidates picked by `choices`; checks every step; returns the final graph
    and how many rewrites were applied."""
    cands = CandidateSet(rules, graph)
    applied = 0
    for c in choices:
        options = cands.applicable()
        if not options:
            break
        m = options[c % len(options)]
        new, created = apply(graph, rules[m.rule_index], m)
        new.validate()                      # shapes re-infer, references resolve, no cycle
        assert new.is_acyclic()
        assert [new.shape(o) for o in new.outputs] == [graph.shape(o) for o in graph.outputs]
        assert not created & graph.nodes.keys()           # new nodes get fresh ids
        for i in graph.nodes.keys() & new.nodes.keys():   # old ids keep their meaning
            a, b = graph.nodes[i], new.nodes[i]
            assert b is a or (b.op, b.params, b.shapes) == (a.op, a.params, a.shapes)
        cands = cands.advance(new, created)
        if check_incremental:
            fresh = CandidateSet(rules, new)
            assert [m.key for m in cands.matches] == [m.key for m in fresh.matches]
            assert [m.key for m in cands.applicable()] == [m.key for m in fresh.applicable()]
        graph = new
        applied += 1
    return graph, applied


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), num_ops=st.integers(3, 12),
       choices=st.lists(st.integers(0, 10**6), min_size=1, max_size=10))
def test_random_rewrites_on_random_graphs_keep_semantics(seed, num_ops, choices):
    g0 = random_graph(seed, num_ops)
    g, _ = walk(g0, RULES, choices)
    ok, err = equivalent(g0, g)
    assert ok, f"max abs error {err}"
    assert g.is_acyclic()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(["bert", "nasrnn", "resnet50", "inception_v3", "squeezenet",
                              "nasnet_a", "vit", "resnext50"]),
       choices=st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_random_rewrites_on_small_zoo_models_keep_semantics(model, choices):
    from envcore.zoo import build
    g0 = build(model, size="tiny")
    g, applied = walk(g0, RULES, choices)
    ok, err = equivalent(g0, g, trials=1)
    assert ok, f"{model}: max abs error {err} after {applied} rewrites"


def test_the_random_graphs_do_meet_the_rules():
    """The property above is only worth something if rewrites actually happen."""
    applied = sum(walk(random_graph(s, 10), RULES, [s, 7 * s, 3], False)[1] for s in range(40))
    assert applied >= 40
    names = set()
    for s in range(80):
        names |= {RULES[m.rule_index].name for m in CandidateSet(RULES, random_graph(s, 10)).matches}
    assert {"matmul_merge", "conv_relu_fuse", "matmul_eye", "split_concat"} <= names


DB_RULES = load_db_rules(limit=400)


@pytest.mark.skipif(not DB_RULES, reason="subgen/data/rules.db is not there (or not readable yet)")
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), choices=st.lists(st.integers(0, 10**6), max_size=6))
def test_generated_rules_keep_semantics(seed, choices):
    g0 = random_graph(seed, 10)
    g, _ = walk(g0, DB_RULES, choices)
    ok, err = equivalent(g0, g)
    assert ok, f"max abs error {err}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_indexed_enumeration_equals_matching_each_rule_alone(seed):
    """CandidateSet's rule index (grouping rules by source, bucketing by node kind) loses and
    invents nothing: it equals find_matches run rule by rule.  Rules sharing a source included."""
    from envcore.rewrite.match import find_matches
    rules = RULES + hand_rules()            # every source twice: grouped, matched once
    g = random_graph(seed, 10)
    want = sorted(m.key for k, r in enumerate(rules) for m in find_matches(g, r, k))
    assert [m.key for m in CandidateSet(rules, g).matches] == want
