"""`prune-smaller` and `prune-supergraph` on the enumerator's terms, before any Rule is built.

The same tests as `subgen.pairing.prune.generalizes` and `common_supergraph` (see there), read off the
enumeration instead of a built `Rule`:
* nodes are hash-consed, so "the same subgraph on both sides" is the same node id;
* values are the pool's exact values, already computed for every term below the last level
  (last-level values are computed here, once per node);
* two inputs agree exactly when their fingerprints do.

A pair (src, dst) is a pair of output-term tuples of one enumerator.
"""
from __future__ import annotations

import numpy as np

from envcore.ops import OPS, PRIME
from subgen.enumeration.enumerator import Enumerator
from subgen.pairing.prune import _same


class ExactValues:
    """Exact values of terms on the pool: stored below the last level, computed (once per
    node) on it."""

    def __init__(self, en: Enumerator):
        self.en = en
        self.memo: dict[int, list[np.ndarray]] = {}

    def node(self, nid: int) -> list[np.ndarray]:
        n = self.en.nodes[nid]
        first = self.en.terms[n.outputs[0]]
        if first.value is not None:
            return [self.en.terms[o].value for o in n.outputs]
        out = self.memo.get(nid)
        if out is None:
            out = self.memo[nid] = OPS[n.op].exact([self.of(i) for i in n.inputs], dict(n.params))
        return out

    def of(self, tid: int) -> np.ndarray:
        t = self.en.terms[tid]
        if t.value is not None or t.node is None:
            return t.value
        return self.node(t.node)[t.index]


def _ops(en: Enumerator, outs: tuple) -> frozenset:
    return frozenset().union(*(en.terms[o].ops for o in outs))


class Replaced:
    """Exact values of terms with a group of operator nodes replaced by fresh values.  The
    fresh value of a group depends only on its outputs' shapes (drawn once per shape), so a
    term's replaced value depends only on (term, group) and is kept: the representative on a
    rule's right side is shared by many rules, and so are the subterms on its left."""

    def __init__(self, en: Enumerator, vals: ExactValues, seed: int = 0):
        self.en, self.vals, self.seed = en, vals, seed
        self.memo: dict[tuple, list[np.ndarray]] = {}
        self.fresh_by_shapes: dict[tuple, list[np.ndarray]] = {}

    def fresh(self, shapes: tuple) -> list[np.ndarray]:
        f = self.fresh_by_shapes.get(shapes)
        if f is None:
            rng = np.random.default_rng([self.seed, len(self.fresh_by_shapes)])
            f = self.fresh_by_shapes[shapes] = [rng.integers(0, PRIME, size=s, dtype=np.int64)
                                                for s in shapes]
        return f

    def term(self, tid: int, group: frozenset, fresh: list) -> np.ndarray:
        t = self.en.terms[tid]
        if t.node is None or not (t.ops & group):
            return self.vals.of(tid)
        if t.node in group:
            return fresh[t.index]
        key = (t.node, group)
        out = self.memo.get(key)
        if out is None:
            n = self.en.nodes[t.node]
            out = self.memo[key] = OPS[n.op].exact(
                [self.term(i, group, fresh) for i in n.inputs], dict(n.params))
        return out[t.index]

    def agree(self, sides, group: frozenset) -> bool:
        shapes = tuple(self.en.terms[o].shape for o in self.en.nodes[min(group)].outputs)
        fresh = self.fresh(shapes)
        a, b = ([self.term(o, group, fresh) for o in side] for side in sides)
        return _same(a, b)


def generalizes(en: Enumerator, replaced: Replaced, src: tuple, dst: tuple, nf) -> bool:
    """True when the rule is an instance of a rule with fewer operators: some group of inner
    operators (one node, or, failing that, nodes of one normal form `nf(term)`) replaced by a
    fresh variable leaves the two sides equal (`subgen.pairing.prune.generalizes`)."""
    sides = (src, dst)
    below = [_ops(en, s) for s in sides]
    roots = [{en.terms[o].node for o in s} for s in sides]
    inner = [b - r for b, r in zip(below, roots)]
    both = below[0] & below[1]
    candidates = sorted(inner[0] | inner[1], key=lambda n: (n not in both, n))
    for nid in candidates:
        if replaced.agree(sides, frozenset((nid,))):
            return True
    # nodes equal up to normal form (a+b on one side, b+a on the other) as one group
    form = {n: tuple(nf(o) for o in en.nodes[n].outputs) for n in below[0] | below[1]}
    groups: dict[tuple, set] = {}
    for n, f in form.items():
        groups.setdefault(f, set()).add(n)
    for nid in candidates:
        group = groups[form[nid]]
        if len(group) > 1 and min(n for n in group if n in candidates) == nid:
            if replaced.agree(sides, frozenset(group)):
                return True
    return False


def common_supergraph(en: Enumerator, src: tuple, dst: tuple) -> bool:
    """True when every output of both sides comes from the same operator (same params, same
    output index) applied to inputs that agree pairwise: a smaller rule in context."""
    for a, b in zip(src, dst):
        ta, tb = en.terms[a], en.terms[b]
        if ta.node is None or tb.node is None or ta.index != tb.index:
            return False
        na, nb = en.nodes[ta.node], en.nodes[tb.node]
        if (na.op, na.params) != (nb.op, nb.params) or len(na.inputs) != len(nb.inputs):
            return False
        if any(en.terms[i].fp != en.terms[j].fp for i, j in zip(na.inputs, nb.inputs)):
            return False
    return True
