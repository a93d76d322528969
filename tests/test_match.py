"""Matching and rewriting on hand-built graphs: what must match, what must not, and what a
rewrite must produce."""
from __future__ import annotations

import pytest

from envcore.rewrite.candidate_set import CandidateSet
from envcore.execute import equivalent
from envcore.graph import GraphBuilder
from envcore.rewrite.match import find_matches, match_at
from envcore.rewrite.pattern import pattern_of
from envcore.rewrite.apply import RewriteError, apply, would_create_cycle
from envcore.rewrite.resolve import resolve
from rules_fixture import (conv_merge, conv_relu_fuse, matmul_eye, matmul_merge,
                           matmul_unmerge, relu_idempotent, split_concat)


def shared_input_matmuls(widths=(8, 16, 24), batch=5, k=12):
    b = GraphBuilder()
    x = b.input("x", (batch, k))
    outs = [b.add("relu", b.add("matmul", x, b.weight(f"w{i}", (k, n))))
            for i, n in enumerate(widths)]
    return b.build(outs)


def test_every_ordered_pair_of_shared_input_matmuls_matches():
    g = shared_input_matmuls()
    ms = find_matches(g, matmul_merge())
    assert len(ms) == 3 * 2
    assert all(m.bindings["x"] == g.inputs["x"] for m in ms)
    assert len({m.key for m in ms}) == len(ms)


def test_merge_resolves_split_sizes_from_real_shapes_and_keeps_semantics():
    g = shared_input_matmuls(widths=(8, 24))
    m = find_matches(g, matmul_merge())[0]
    new, created = apply(g, matmul_merge(), m)
    split = next(new.nodes[i] for i in created if new.nodes[i].op == "split")
    w1, w2 = (g.shape(m.bindings[v])[1] for v in ("w1", "w2"))
    assert split.p["sizes"] == (w1, w2)
    assert new.nodes[next(i for i in created if new.nodes[i].op == "matmul")].shapes == ((5, 32),)
    assert equivalent(g, new)[0]
    # and back again: the reverse rule finds the split and restores two matmuls
    back = find_matches(new, matmul_unmerge())
    assert len(back) == 1
    again, _ = apply(new, matmul_unmerge(), back[0])
    assert equivalent(g, again)[0]
    assert sum(n.op == "matmul" for n in again.nodes.values()) == 2


def test_a_leaking_internal_tensor_blocks_the_match():
    b = GraphBuilder()
    x, w = b.input("x", (1, 3, 6, 6)), b.weight("w", (4, 3, 3, 3))
    c = b.add("conv2d", x, w)
    r = b.add("relu", c)
    assert len(find_matches(b.build([r]), conv_relu_fuse())) == 1
    assert find_matches(b.build([r, c]), conv_relu_fuse()) == []        # conv is an output
    s = b.add("sigmoid", c)
    assert find_matches(b.build([r, s]), conv_relu_fuse()) == []        # conv read elsewhere


def test_params_must_agree_but_shape_params_are_wildcards():
    b = GraphBuilder()
    x, w = b.input("x", (1, 3, 8, 8)), b.weight("w", (4, 3, 3, 3))
    strided = b.add("relu", b.add("conv2d", x, w, stride=(2, 2)))
    assert find_matches(b.build([strided]), conv_relu_fuse()) == []
    b = GraphBuilder()
    x = b.input("x", (6, 7))
    y = b.add("matmul", x, b.add("eye", shape=(7, 7)))          # pattern's eye is 4x4
    g = b.build([b.add("relu", y)])
    (m,) = find_matches(g, matmul_eye())
    new, _ = apply(g, matmul_eye(), m)
    assert sum(n.op == "matmul" for n in new.nodes.values()) == 0
    assert "eye" not in {n.op for n in new.nodes.values()}      # dead constant removed
    assert equivalent(g, new)[0]


def test_split_sizes_in_a_source_pattern_match_any_real_split():
    b = GraphBuilder()
    x = b.input("x", (3, 10))
    p, q = b.add("split", x, axis=1, sizes=(3, 7))
    good = b.build([b.add("relu", b.add("concat", p, q, axis=1))])
    (m,) = find_matches(good, split_concat())
    new, _ = apply(good, split_concat(), m)
    assert {n.op for n in new.nodes.values()} == {"input", "relu"}
    assert equivalent(good, new)[0]
    b = GraphBuilder()
    x = b.input("x", (3, 10))
    p, q = b.add("split", x, axis=1, sizes=(3, 7))
    swapped = b.build([b.add("concat", q, p, axis=1)])
    assert find_matches(swapped, split_concat()) == []


def test_variables_keep_rank_and_identity():
    b = GraphBuilder()
    x = b.input("x", (2, 5, 6))                             # batched: rank 3, the rule has 2
    b3 = b.build([b.add("matmul", x, b.weight("a", (2, 6, 4))),
                  b.add("matmul", x, b.weight("c", (2, 6, 4)))])
    assert find_matches(b3, matmul_merge()) == []
    b = GraphBuilder()
    x, y = b.input("x", (5, 6)), b.input("y", (5, 6))       # different left operands
    g = b.build([b.add("matmul", x, b.weight("a", (6, 4))),
                 b.add("matmul", y, b.weight("c", (6, 4)))])
    assert find_matches(g, matmul_merge()) == []


def test_a_rule_for_other_kernel_sizes_does_not_match():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 6, 6))
    g = b.build([b.add("conv2d", x, b.weight("a", (4, 3, 3, 3))),
                 b.add("conv2d", x, b.weight("c", (4, 3, 1, 1)))])   # kernels cannot concat
    rule = conv_merge()
    # kernel sizes are semantic (envcore.ops.SEMANTIC_DIMS): a rule proved for 3x3 kernels does
    # not even match structurally where one kernel is 1x1
    structural = list(match_at(g, pattern_of(rule.src), pattern_of(rule.src).anchor,
                               next(i for i, n in g.nodes.items() if n.op == "conv2d")))
    assert structural == [] and find_matches(g, rule) == []


def test_kernel_size_is_part_of_a_rule():
    """pool_avg(conv1x1(x, w)) == conv1x1(pool_avg(x), w) is true for 1x1 kernels only."""
    def side(pool_first, k):
        b = GraphBuilder()
        x, w = b.input("x", (1, 4, 6, 6)), b.input("w", (4, 4, k, k))
        y = b.add("conv2d", b.add("pool_avg", x), w) if pool_first else \
            b.add("pool_avg", b.add("conv2d", x, w))
        return b.build([y])
    from envcore.execute import equivalent
    from envcore.rewrite.rule import Rule
    rule = Rule("pool_conv1x1", side(False, 1), side(True, 1))
    assert equivalent(rule.src, rule.dst)[0] and not equivalent(side(False, 3), side(True, 3))[0]
    assert find_matches(side(False, 3), rule) == []
    assert len(find_matches(side(False, 1), rule)) == 1


def test_a_merge_that_would_close_a_cycle_is_refused():
    b = GraphBuilder()
    x = b.input("x", (4, 4))
    a = b.add("matmul", x, b.weight("w1", (4, 4)))
    c = b.add("matmul", x, b.add("relu", a))               # the second weight depends on a
    g = b.build([c])
    rule = matmul_merge()
    ms = [m for m in find_matches(g, rule) if m.mapping[min(m.mapping)] == a.node]
    assert ms and all(would_create_cycle(g, rule, m) for m in ms)
    with pytest.raises(RewriteError):
        apply(g, rule, ms[0])
    cs = CandidateSet([rule], g)
    assert ms[0] in cs.matches and ms[0] not in cs.applicable()


def test_hash_consing_reuses_an_identical_node_and_ids_stay_stable():
    b = GraphBuilder()
    x = b.input("x", (3, 3))
    once = b.add("relu", x)
    twice = b.add("relu", b.add("relu", x))
    g = b.build([b.add("ewadd", once, twice)])
    rule = relu_idempotent()
    (m,) = find_matches(g, rule)
    new, created = apply(g, rule, m)
    assert created == frozenset()                          # relu(x) already existed
    add = next(n for n in new.nodes.values() if n.op == "ewadd")
    assert add.inputs == (once, once)
    assert new.nodes[once.node] is g.nodes[once.node]      # untouched node: same object, same id
    assert len(new.nodes) == len(g.nodes) - 2
    assert equivalent(g, new)[0]


def test_roots_restrict_matching_to_the_given_nodes():
    g = shared_input_matmuls()
    allm = find_matches(g, matmul_merge())
    root = sorted(i for i, n in g.nodes.items() if n.op == "matmul")[0]
    some = find_matches(g, matmul_merge(), roots=[root])
    assert {m.key for m in some} == {m.key for m in allm if root in m.mapping.values()}
    assert 0 < len(some) < len(allm)
