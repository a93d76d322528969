"""The search's fast paths give exactly what the plain computations give.

- `apply` finds a cycle without sorting the whole rewritten graph, and skips the second try
  (without hash-consing) when the first reused nothing: the same graphs, the same refusals, as
  building the whole graph and sorting it (`reference_apply`, the former code);
- a state's canonical hash derived from its parent's node hashes equals the one computed from
  scratch;
- a candidate set's match order, kept by merging, equals sorting from scratch.
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcore.graph import Graph, Node, Ref
from envcore.ops import LEAVES
from envcore.rewrite.apply import RewriteError, _drop_dead, apply
from envcore.rewrite.candidate_set import CandidateSet
from envcore.rewrite.resolve import dst_info, resolve
from random_graphs import random_graph
from rules_fixture import hand_rules, load_db_rules

RULES = hand_rules()
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# -- the former apply: build the whole graph, then sort it ------------------------------------
def reference_apply(graph: Graph, rule, match):
    res = resolve(graph, rule, match)
    if res is None:
        raise RewriteError("does not fit")
    try:
        return _reference_build(graph, rule, match, res, True)
    except RewriteError:
        return _reference_build(graph, rule, match, res, False)


def _reference_build(graph, rule, match, res, hash_cons):
    dst = rule.dst
    nodes = dict(graph.nodes)
    cons = graph.consumers
    next_id = max(graph.nodes) + 1
    matched = set(match.mapping.values())
    ids, created = {}, []

    def tensor(r):
        n = dst.nodes[r.node]
        return match.bindings[n.p["name"]] if n.op in LEAVES else Ref(ids[r.node], r.index)

    def existing(node):
        if node.inputs:
            pool = itertools.chain(graph.consumers.get(node.inputs[0].node, ()), created)
        else:
            pool = itertools.chain((i for i, n in graph.nodes.items() if not n.inputs), created)
        for c in pool:
            n = nodes.get(c)
            if n is not None and n.op == node.op and n.inputs == node.inputs and \
                    n.params == node.params:
                return c
        return None

    for i in dst_info(rule)[0]:
        n = dst.nodes[i]
        params, shapes = res[i]
        node = Node(n.op, tuple(tensor(r) for r in n.inputs), params, shapes)
        same = existing(node) if hash_cons else None
        if same is None:
            same = next_id
            next_id += 1
            nodes[same] = node
            created.append(same)
        ids[i] = same
    replace = {}
    for s, d in zip(rule.src.outputs, dst.outputs):
        old, new = Ref(match.mapping[s.node], s.index), tensor(d)
        if old != new:
            replace[old] = new
    changed = set()
    for old in replace:
        for c in cons[old.node]:
            if c in matched or c not in nodes:
                continue
            n = nodes[c]
            ins = tuple(replace.get(r, r) for r in n.inputs)
            if ins != n.inputs:
                nodes[c] = Node(n.op, ins, n.params, n.shapes, n.origin)
                changed.add(c)
    outputs = tuple(replace.get(o, o) for o in graph.outputs)
    _drop_dead(nodes, cons, matched | {b.node for b in match.bindings.values()},
               set(created) | changed, {o.node for o in outputs})
    new = Graph(nodes, outputs, graph.origin)
    if not new.is_acyclic():
        raise RewriteError("cycle")
    return new, frozenset(i for i in created if i in nodes)


def same_outcome(graph, rule, match) -> bool:
    """apply and reference_apply agree: both refuse, or both build the same graph (the same
    ids in the same order, the same node objects' values, the same outputs and created ids)."""
    try:
        want = reference_apply(graph, rule, match)
    except RewriteError:
        want = None
    try:
        got = apply(graph, rule, match)
    except RewriteError:
        got = None
    if want is None or got is None:
        assert want is got, f"{rule.name}: reference {want is not None}, fast {got is not None}"
        return want is None
    (g1, c1), (g2, c2) = want, got
    assert list(g1.nodes.items()) == list(g2.nodes.items())
    assert g1.outputs == g2.outputs and c1 == c2
    assert g1.topo_order == g2.topo_order
    return False


def cyclic_rules():
    """Hand rules whose matches can close cycles (several outputs), both directions."""
    return [r for r in RULES if len(r.src.outputs) > 1]


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), num_ops=st.integers(3, 14),
       choices=st.lists(st.integers(0, 10**6), min_size=0, max_size=4))
def test_apply_matches_the_whole_graph_sort_on_random_graphs(seed, num_ops, choices):
    """Every match, those that close a cycle included (`matches`, not `applicable`), after a
    few random rewrites (so graphs carry created nodes and rewired consumers)."""
    g = random_graph(seed, num_ops)
    for c in choices:
        options = CandidateSet(RULES, g).applicable()
        if not options:
            break
        m = options[c % len(options)]
        g, _ = apply(g, RULES[m.rule_index], m)
    for m in CandidateSet(RULES, g).matches:
        same_outcome(g, RULES[m.rule_index], m)


def test_cycles_are_found_on_the_zoo_as_the_sort_finds_them():
    """On small zoo models with the DB's multi-output rules: every match agrees with the
    reference, and some of them do close a cycle (the check is exercised)."""
    from envcore.zoo import build
    db = [r for r in load_db_rules() if len(r.src.outputs) > 1]
    if not db:
        pytest.skip("no rule DB")
    refused = tried = 0
    for model in ("inception_v3", "nasnet_a", "toy"):
        g = build(model, size="tiny")
        for m in CandidateSet(db, g).matches[:400]:
            refused += same_outcome(g, db[m.rule_index], m)
            tried += 1
    assert tried > 100 and refused > 0


def test_a_cycle_through_a_rewired_consumer_is_refused_and_a_near_miss_is_not():
    """relu(a) | relu(b) => split(relu(concat(a, b))): where b depends on relu(a) the merge
    closes a cycle; where it does not (a sibling branch), it builds."""
    from envcore.graph import GraphBuilder
    from envcore.rewrite.rule import Rule
    X = (1, 4, 4, 4)
    s, d = GraphBuilder(), GraphBuilder()
    src = s.build([s.add("relu", s.input("a", X)), s.add("relu", s.input("b", X))])
    a, b_ = d.input("a", X), d.input("b", X)
    parts = d.add("split", d.add("relu", d.add("concat", a, b_, axis=1)), axis=1,
                  sizes=(4, 4))
    rule = Rule("relu_pair", src, d.build(list(parts)))
    b = GraphBuilder()
    x = b.input("x", X)
    ra = b.add("relu", x)
    mid = b.add("ewadd", ra, x)                    # depends on relu(x)
    rb = b.add("relu", mid)
    side = b.add("ewmul", x, x)                    # does not
    rc = b.add("relu", side)
    g = b.build([b.add("ewadd", rb, rc)])
    ms = CandidateSet([rule], g).matches
    by_vars = {(m.bindings["a"].node, m.bindings["b"].node): m for m in ms}
    assert same_outcome(g, rule, by_vars[(x.node, mid.node)])          # refused
    assert not same_outcome(g, rule, by_vars[(x.node, side.node)])     # built
    with pytest.raises(RewriteError):
        apply(g, rule, by_vars[(x.node, mid.node)])


# -- hashes derived from the parent's ---------------------------------------------------------
def _fresh_copy(g: Graph) -> Graph:
    return Graph(dict(g.nodes), g.outputs)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), num_ops=st.integers(3, 14),
       choices=st.lists(st.integers(0, 10**6), min_size=1, max_size=6))
def test_derived_hashes_equal_the_graphs_own(seed, num_ops, choices):
    from envcore.rewrite.apply import derive_hashes
    g = random_graph(seed, num_ops)
    g.node_hashes
    for c in choices:
        options = CandidateSet(RULES, g).applicable()
        if not options:
            break
        m = options[c % len(options)]
        new, _ = apply(g, RULES[m.rule_index], m)
        assert derive_hashes(g, new)
        want = _fresh_copy(new)
        assert new.node_hashes == want.node_hashes
        assert new.canonical_hash == want.canonical_hash
        g = new


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), num_ops=st.integers(3, 14),
       choices=st.lists(st.integers(0, 10**6), min_size=1, max_size=6))
def test_derived_consumers_equal_the_graphs_own(seed, num_ops, choices):
    """The same lists in the same order, and the dict in the node order."""
    from envcore.rewrite.apply import derive_consumers
    g = random_graph(seed, num_ops)
    g.consumers
    for c in choices:
        options = CandidateSet(RULES, g).applicable()
        if not options:
            break
        m = options[c % len(options)]
        new, _ = apply(g, RULES[m.rule_index], m)
        assert derive_consumers(g, new)
        want = _fresh_copy(new).consumers
        assert list(new.consumers.items()) == list(want.items())
        g = new


def test_derived_hashes_on_a_zoo_model_walk():
    from envcore.rewrite.apply import derive_hashes
    from envcore.zoo import build
    g = build("inception_v3", size="tiny")
    g.node_hashes
    cands = CandidateSet(RULES, g)
    for step in range(12):
        options = cands.applicable()
        if not options:
            break
        m = options[(7 * step) % len(options)]
        new, created = apply(g, RULES[m.rule_index], m)
        assert derive_hashes(g, new)
        assert new.canonical_hash == _fresh_copy(new).canonical_hash
        cands, g = cands.advance(new, created), new     # derives the consumers
        assert list(g.consumers.items()) == list(_fresh_copy(g).consumers.items())
    assert step > 3
