"""`prune-smaller` and `prune-supergraph` on the enumerator's terms, before any Rule is built.

The same tests as `subgen.prune.generalizes` and `common_supergraph` (see there), read off the
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
from subgen.enumerate import Enumerator


class ExactValues:
    """Exact values of terms on the pool: stored below the last level, computed (once per
    node) on it, or with some nodes' outputs replaced (`with_override`)."""

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

    def with_override(self, outs: tuple, override: dict[int, list[np.ndarray]],
                      below: frozenset) -> list[np.ndarray]:
        """Values of terms `outs` with node outputs replaced (node id -> values); only nodes in
        `below` (the operators under `outs`) that read a replaced node are recomputed."""
        en = self.en
        env: dict[int, list[np.ndarray]] = dict(override)
        changed = set(override)
        for nid in sorted(below):                       # node ids grow bottom up
            if nid in env:
                continue
            n = en.nodes[nid]
            reads = [en.terms[i].node for i in n.inputs]
            if any(r in changed for r in reads if r is not None):
                args = [env[en.terms[i].node][en.terms[i].index]
                        if en.terms[i].node in env else self.of(i) for i in n.inputs]
                env[nid] = OPS[n.op].exact(args, dict(n.params))
                changed.add(nid)
        out = []
        for o in outs:
            t = en.terms[o]
            out.append(env[t.node][t.index] if t.node in env else self.of(o))
        return out


def _ops(en: Enumerator, outs: tuple) -> frozenset:
    return frozenset().union(*(en.terms[o].ops for o in outs))


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def generalizes(en: Enumerator, vals: ExactValues, src: tuple, dst: tuple, nf,
                seed: int = 0) -> bool:
    """True when the rule is an instance of a rule with fewer operators: some group of inner
    operators (one node, or, failing that, nodes of one normal form `nf(term)`) replaced by a
    fresh variable leaves the two sides equal (`subgen.prune.generalizes`)."""
    rng = np.random.default_rng(seed)
    sides = (src, dst)
    below = [_ops(en, s) for s in sides]
    roots = [{en.terms[o].node for o in s} for s in sides]
    inner = [b - r for b, r in zip(below, roots)]
    both = below[0] & below[1]
    candidates = sorted(inner[0] | inner[1], key=lambda n: (n not in both, n))
    for nid in candidates:
        if _replaced_agree(en, vals, sides, below, {nid}, rng):
            return True
    # nodes equal up to normal form (a+b on one side, b+a on the other) as one group
    form = {n: tuple(nf(o) for o in en.nodes[n].outputs) for n in below[0] | below[1]}
    groups: dict[tuple, set] = {}
    for n, f in form.items():
        groups.setdefault(f, set()).add(n)
    for nid in candidates:
        group = groups[form[nid]]
        if len(group) > 1 and min(n for n in group if n in candidates) == nid:
            if _replaced_agree(en, vals, sides, below, group, rng):
                return True
    return False


def _replaced_agree(en, vals, sides, below, group: set, rng) -> bool:
    shapes = [en.terms[o].shape for o in en.nodes[min(group)].outputs]
    fresh = [rng.integers(0, PRIME, size=s, dtype=np.int64) for s in shapes]
    override = {n: fresh for n in group}
    return _same(*(vals.with_override(s, override, b) for s, b in zip(sides, below)))


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
