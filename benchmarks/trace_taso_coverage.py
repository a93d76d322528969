"""Which generator stage loses each of TASO's rules that a rule DB does not hold strictly.

    python benchmarks/trace_taso_coverage.py OURS.db [--max-ops 3]

Replays the serial candidate stages (subgen.pipelines.generate.find_candidates) on a full enumerator and,
after each one, looks for every missing TASO rule's canonical key (`prune.canonical_key`,
shapes=False: renaming, direction and dimensions ignored).  Prints, per rule, the last stage its
key survived ("-": never paired) and whether each side was enumerated at all (up to renaming;
"rep"/"nonrep": as a representative or not).  Serial and slow (a few CPU-minutes at depth 3).
"""
from __future__ import annotations

import argparse
import itertools
import re

from envcore.ops import SHAPE_PARAMS
from subgen.pairing import pairs as C
from subgen.enumeration.enumerator import Enumerator
from subgen.pipelines.generate import Settings
from subgen.pairing.prune import _serialise, canonical_key, common_supergraph, generalizes
from subgen.rules.io import load_rules

TASO = "/work/shared/anchors/taso/graph_subst.pb"
_LEAF = re.compile("\x01([^\x02]*)\x02")


class Texts:
    """`prune._serialise(shapes=False)`'s text of enumerated terms, leaves still named."""

    def __init__(self, en):
        self.en, self.memo = en, {}

    def node(self, tid):
        t = self.en.terms[tid]
        if t.node is None:
            return f"\x01{t.name}\x02"
        if t.node not in self.memo:
            n = self.en.nodes[t.node]
            skip = SHAPE_PARAMS.get(n.op, ())
            params = tuple(kv for kv in n.params if kv[0] not in skip)
            self.memo[t.node] = f"{n.op}{params}({','.join(self.ref(i) for i in n.inputs)})"
        return self.memo[t.node]

    def ref(self, tid):
        return f"{self.node(tid)}.{self.en.terms[tid].index}"


def _least(texts):
    best = None
    for x in texts:
        ix: dict = {}
        k = _LEAF.sub(lambda m: f"v{ix.setdefault(m.group(1), len(ix))}", x)
        best = k if best is None or k < best else best
    return best


def pair_key(tx, a, b):
    return _least("|".join(tx.ref(s[i]) for i in p) + " => " + "|".join(tx.ref(d[i]) for i in p)
                  for s, d in ((a, b), (b, a)) for p in itertools.permutations(range(len(s))))


def side_key(tx, g):
    return _least("|".join(tx.ref(g[i]) for i in p) for p in itertools.permutations(range(len(g))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("--max-ops", type=int, default=3)
    args = ap.parse_args()
    held = {canonical_key(r, False) for r in load_rules(args.ours)}
    miss = [r for r in load_rules(TASO) if canonical_key(r, False) not in held]
    want = {canonical_key(r, False): r.name for r in miss}
    sides = {_serialise([(g, g.outputs)], False) for r in miss for g in (r.src, r.dst)}

    s = Settings(max_ops=args.max_ops)
    en = Enumerator(s.ops, s.max_ops, seed=s.seed).run()
    tx = Texts(en)
    bks = C.buckets(en)
    seen_side: dict[str, bool] = {}
    for b in bks.values():
        for g in b:
            k = side_key(tx, g)
            if k in sides:
                rep = all(en.is_rep(en.terms[o]) for o in g)
                seen_side[k] = seen_side.get(k, False) or rep

    fate: dict[str, str] = {}

    def mark(stage, pairs):
        for a, c in pairs:
            name = want.get(pair_key(tx, a, c))
            if name:
                fate[name] = stage
        print(f"{stage:18s} {len(pairs):8d} candidates", flush=True)

    raw = [p for b in bks.values() for p in C.pairs(en, b)]
    mark("pair", raw)
    keys: dict = {}
    for a, c in raw:
        o = C.orient(en, a, c)
        if o is not None:
            keys.setdefault(C.term_key(en, *o), o)
    mark("prune-renaming", list(keys.values()))
    fv = C.FloatValues(en)
    true = [(k, a, c) for k, (a, c) in keys.items() if fv.agree(a, c)]
    mark("refute", [(a, c) for _, a, c in true])
    inst: set = set()
    for _, a, c in true:
        inst |= C.instance_term_keys(en, a, c)
    true = [(k, a, c) for k, a, c in true if k not in inst]
    mark("prune-instances", [(a, c) for _, a, c in true])
    true = [(k, a, c) for k, a, c in true if not generalizes(C.to_rule(en, a, c, k))]
    mark("prune-smaller", [(a, c) for _, a, c in true])
    true = [(k, a, c) for k, a, c in true if not common_supergraph(C.to_rule(en, a, c, k))]
    mark("prune-supergraph", [(a, c) for _, a, c in true])

    for r in miss:
        found = []
        for g in (r.src, r.dst):
            k = _serialise([(g, g.outputs)], False)
            found.append("absent" if k not in seen_side else
                         "rep" if seen_side[k] else "nonrep")
        print(f"{r.name:9s} last stage: {fate.get(r.name, '-'):17s} "
              f"src {found[0]:7s} dst {found[1]:7s}")


if __name__ == "__main__":
    main()
