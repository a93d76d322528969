"""Property tests of soundness at every size the matcher admits.

The shipped rule DB's proved rules, in both directions as `optimize` and the env load them, are
instantiated at random sizes that only the source's own typing constrains (non-square, unequal,
other batch and channel counts, other split sizes).  Every candidate the project's matcher lists
there is applied with the project's rewriter and checked in float64: zero mismatches.  Random
graphs with strided, grouped, depthwise and valid-padded convs, padded pools, concat and split on
any axis and shared readers are checked the same way, candidate by candidate.
"""
from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcore.rewrite.candidate_set import CandidateSet
from envcore.execute import evaluate
from envcore.graph import GraphBuilder
from envcore.ops import ShapeError
from envcore.rewrite.apply import apply
from scope_sampling import check_listed_candidates
from subgen.paths import DEFAULT_RULES

TOL = 1e-9       # float64, relative to each output's own scale


@lru_cache(maxsize=1)
def shipped():
    if not DEFAULT_RULES.exists():
        pytest.skip("no shipped rule DB")
    from subgen.rules.load import load_rules_for_use
    return load_rules_for_use(DEFAULT_RULES)


def family(rule) -> tuple:
    """A rule's template family: the operators of its two sides."""
    return (tuple(sorted(n.op for n in rule.src.nodes.values())),
            tuple(sorted(n.op for n in rule.dst.nodes.values())))


@lru_cache(maxsize=1)
def families():
    out = defaultdict(list)
    for r in shipped():
        out[family(r)].append(r)
    return [out[k] for k in sorted(out)]


def _structural(rule) -> bool:
    ops = {n.op for g in (rule.src, rule.dst) for n in g.nodes.values()}
    grouped = any(n.op == "conv2d" and n.p["groups"] > 1
                  for g in (rule.src, rule.dst) for n in g.nodes.values())
    return bool(ops & {"concat", "split"}) or grouped


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_template_family_is_sound_at_admitted_sizes(data):
    fam = data.draw(st.sampled_from(families()), label="family")
    rule = data.draw(st.sampled_from(fam), label="rule")
    seed = data.draw(st.integers(0, 10_000), label="seed")
    applied, worst = check_listed_candidates(rule, seed)
    assert worst <= TOL, (rule.name, rule.meta["scope"], seed)


def test_all_concat_split_and_grouped_conv_rules_are_sound_at_admitted_sizes():
    """Every such rule direction of the shipped DB, once, at sizes drawn for it: these are the
    families where a proof at equal sizes said more than holds."""
    rules = [r for r in shipped() if _structural(r)]
    assert len(rules) > 1000
    applied = 0
    for k, rule in enumerate(rules):
        n, worst = check_listed_candidates(rule, k)
        applied += n
        assert worst <= TOL, (rule.name, rule.meta["scope"], k)
    assert applied > len(rules) // 2      # most draws do reach the rewriter


# -- random graphs that look like real CNN blocks -------------------------------------------------

def random_cnn(seed: int, num_ops: int = 7):
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    c0 = int(rng.choice([2, 3, 4]))
    imgs = [b.input("x", (int(rng.choice([1, 2])), c0, int(rng.integers(4, 8)),
                          int(rng.integers(4, 8))))]
    count = [0]

    def weight(shape):
        count[0] += 1
        return b.weight(f"w{count[0]}", tuple(int(d) for d in shape))

    for _ in range(num_ops * 4):
        if len(b.nodes) > 3 * num_ops:
            break
        x = imgs[int(rng.integers(len(imgs)))]
        n, c, h, w = b.shape(x)
        kind = rng.choice(["conv", "conv", "dwconv", "gconv", "pool", "concat", "split",
                           "relu", "add"])
        try:
            if kind in ("conv", "dwconv", "gconv"):
                g = c if kind == "dwconv" else (2 if kind == "gconv" and c % 2 == 0 else 1)
                k = int(rng.choice([1, 3]))
                co = c if kind == "dwconv" else g * int(rng.integers(1, 3))
                imgs.append(b.add("conv2d", x, weight((co, c // g, k, k)), groups=g,
                                  stride=tuple(int(s) for s in rng.choice([1, 2], size=2)),
                                  padding=str(rng.choice(["same", "valid"])),
                                  activation=str(rng.choice(["none", "relu"]))))
            elif kind == "pool":
                imgs.append(b.add(str(rng.choice(["pool_avg", "pool_max"])), x,
                                  stride=tuple(int(s) for s in rng.choice([1, 2], size=2)),
                                  padding=str(rng.choice(["same", "valid"]))))
            elif kind == "concat":
                axis = int(rng.integers(4))
                same = [t for t in imgs if all(b.shape(t)[a] == b.shape(x)[a]
                                               for a in range(4) if a != axis)]
                imgs.append(b.add("concat", x, same[int(rng.integers(len(same)))], axis=axis))
            elif kind == "split":
                axis = int(rng.integers(4))
                size = b.shape(x)[axis]
                if size < 2:
                    continue
                cut = int(rng.integers(1, size))
                imgs.extend(b.add("split", x, axis=axis, sizes=(cut, size - cut)))
            elif kind == "relu":
                imgs.append(b.add("relu", x))
            else:
                same = [t for t in imgs if b.shape(t) == b.shape(x)]
                imgs.append(b.add("ewadd", x, same[int(rng.integers(len(same)))]))
        except ShapeError:
            continue
    produced = [r for r in imgs if b.nodes[r.node].op not in ("input", "weight")]
    read = {r for node in b.nodes.values() for r in node.inputs}
    outs = [r for r in produced if r not in read] or [imgs[-1]]
    return b.build(outs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_every_candidate_listed_on_a_random_cnn_block_is_sound(seed):
    g = random_cnn(seed)
    rules = shipped()
    rng = np.random.default_rng(seed)
    vals = {name: rng.uniform(-1, 1, size=g.shape(ref)) for name, ref in g.leaves().items()}
    before = evaluate(g, vals)
    for m in CandidateSet(rules, g).applicable():
        new, _ = apply(g, rules[m.rule_index], m)
        after = evaluate(new, vals)
        for p, q in zip(before, after):
            scale = max(1.0, float(np.max(np.abs(p))))
            assert float(np.max(np.abs(p - q))) <= TOL * scale, rules[m.rule_index].name
