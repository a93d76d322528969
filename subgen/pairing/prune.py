"""Pruning: which candidate rules say nothing new.

* `canonical_key`: a rule's identity up to renaming of its variables, its direction and the order
  of its outputs.  Variables are numbered in the order a structure-only walk first meets them
  (outputs in order, inputs by position), so no permutation search is needed; the key is the
  smallest over the two directions and the output orders.  With `shapes="rank"` concrete
  dimensions are left out but ranks kept (how the generator dedupes: matching and proofs are
  rank-generic); with `shapes=False` ranks go too, which is how rules over differently shaped
  pools are compared.
* `generalizes`: the rule is an instance of a smaller one.  Some operator that is not an output
  can be replaced by a fresh variable (on both sides where it occurs, up to normal form: a+b
  and b+a are one operator here) and the two sides still agree on exact random values.  This covers TASO's "common subgraph" (a shared operator that is
  not the result) and operands whose value the result ignores, e.g. split(concat(x, T)).0 = x.
* `common_supergraph`: both sides end in the same operator whose inputs agree pairwise, so the
  rule is the smaller rule on those inputs, put in context.

`generalizes` and `common_supergraph` work on any `Rule` and are the definitions; the generator
runs the same tests on its enumeration's terms (`subgen.pairing.term_prune`, tested against these).
"""
from __future__ import annotations

import itertools

import numpy as np

from envcore.graph import Graph
from envcore.ops import LEAVES, OPS, PRIME, SHAPE_PARAMS, semantic_dims
from envcore.rewrite.rule import Rule

# -- canonical forms ------------------------------------------------------------------------


def _serialise(sides, shapes: bool) -> str:
    leaf_ix: dict[str, int] = {}
    parts = []
    for g, outs in sides:
        memo: dict[int, str] = {}

        def visit(nid: int) -> str:
            if nid in memo:
                return memo[nid]
            n = g.nodes[nid]
            if n.op in LEAVES:
                k = leaf_ix.setdefault(n.p["name"], len(leaf_ix))
                s = f"v{k}" + (f":{len(n.shapes[0])}" if shapes == "rank" else
                               f":{n.shapes[0]}" if shapes else "")
            else:
                skip = () if shapes is True else SHAPE_PARAMS.get(n.op, ())
                params = tuple((k, v) for k, v in n.params if k not in skip)
                args = ",".join(f"{visit(r.node)}.{r.index}" for r in n.inputs)
                if shapes == "rank":   # kernel sizes stay part of a rule's identity
                    params += semantic_dims(n.op, [g.shape(r) for r in n.inputs])
                s = f"{n.op}{params}({args})"
            memo[nid] = s
            return s

        parts.append("|".join(f"{visit(o.node)}.{o.index}" for o in outs))
    return " => ".join(parts)


def canonical_key(rule: Rule, shapes: bool | str = True) -> str:
    """Equal for rules equal up to variable renaming, direction and output order."""
    return _key_of(rule.src, rule.dst, shapes)


def _renamed(g: Graph, old: str, new: str) -> Graph:
    nodes = {i: (n if n.op not in LEAVES or n.p["name"] != old else
                 type(n)(n.op, n.inputs, tuple((k, new if k == "name" else v)
                                               for k, v in n.params), n.shapes))
             for i, n in g.nodes.items()}
    return Graph(nodes, g.outputs)


def instance_keys(rule: Rule, shapes: bool | str = True) -> set[str]:
    """Canonical keys of every rule obtained by merging variables of the same shape (its
    instances).  A rule whose key is here for some other true rule says nothing new."""
    out: set[str] = set()
    frontier = [(rule.src, rule.dst)]
    while frontier:
        src, dst = frontier.pop()
        leaves = {}
        for n in src.nodes.values():
            if n.op in LEAVES:
                leaves[n.p["name"]] = n.shapes[0]
        for a, b in itertools.combinations(sorted(leaves), 2):
            if leaves[a] != leaves[b]:
                continue
            s2, d2 = _renamed(src, b, a), _renamed(dst, b, a)
            key = _key_of(s2, d2, shapes)
            if key not in out:
                out.add(key)
                frontier.append((s2, d2))
    return out


def _key_of(src: Graph, dst: Graph, shapes: bool | str) -> str:
    best = None
    n = len(src.outputs)
    for a, b in ((src, dst), (dst, src)):
        for perm in itertools.permutations(range(n)):
            key = _serialise([(a, [a.outputs[i] for i in perm]),
                              (b, [b.outputs[i] for i in perm])], shapes)
            if best is None or key < best:
                best = key
    return best


def dedupe(rules, shapes: bool | str = True):
    """Keeps the first rule of every canonical class."""
    seen, out = set(), []
    for r in rules:
        k = canonical_key(r, shapes)
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


# -- exact evaluation with some operators replaced by fresh values --------------------------


def _eval_exact(g: Graph, leaves: dict, override: dict, keys: dict | None = None,
                base: dict | None = None) -> list[np.ndarray]:
    """Exact values of g's outputs; `override` replaces nodes (by `keys[node id]`, the Merkle
    hash by default)."""
    env = _evaluate(g, leaves, override, keys, base)
    return [env[o.node][o.index] for o in g.outputs]


def _evaluate(g: Graph, leaves: dict, override: dict, keys: dict | None = None,
              base: dict | None = None) -> dict:
    """Node id -> output values (see `_eval_exact`).  With `base`, the values of the same
    graph without overrides, only the nodes that read a replaced value are computed."""
    env = {}
    changed = set()
    keys = g.node_hashes if keys is None else keys
    for i in g.topo_order:
        n = g.nodes[i]
        if keys[i] in override:
            env[i] = override[keys[i]]
            changed.add(i)
        elif base is not None and not any(r.node in changed for r in n.inputs):
            env[i] = base[i]
        elif n.op in LEAVES:
            env[i] = [leaves[n.p["name"]]]
        else:
            env[i] = OPS[n.op].exact([env[r.node][r.index] for r in n.inputs], n.p)
            changed.add(i)
    return env


def _node_forms(g: Graph) -> dict[int, tuple]:
    """Node id -> the normal forms of its outputs (`subgen.pairing.normal_form`)."""
    from envcore.graph import Ref
    from subgen.pairing.normal_form import NormalForms, graph_describer
    nf = NormalForms(graph_describer(g))
    return {i: tuple(nf.of(Ref(i, k)) for k in range(len(n.shapes)))
            for i, n in g.nodes.items()}


def _leaf_values(rule: Rule, rng) -> dict:
    vals = {}
    for g in (rule.src, rule.dst):
        for name, ref in g.inputs.items():
            if name not in vals:
                vals[name] = rng.integers(0, PRIME, size=g.shape(ref), dtype=np.int64)
    return vals


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def generalizes(rule: Rule, seed: int = 0) -> bool:
    """True when the rule is an instance of a rule with fewer operators (see module doc).
    Operators are identified by structure first, then by normal form (`subgen.pairing.normal_form`):
    a subgraph that is on both sides up to reordering (a+b on one, b+a on the other) makes
    the rule the smaller one after a rewrite by the base rules, e.g. (a+b)+c => c+(b+a)."""
    rng = np.random.default_rng(seed)
    leaves = _leaf_values(rule, rng)
    sides = (rule.src, rule.dst)
    base = [_evaluate(g, leaves, {}) for g in sides]
    by_hash = [g.node_hashes for g in sides]
    if _replaceable(sides, by_hash, leaves, base, rng, ()):
        return True
    forms = [_node_forms(g) for g in sides]
    # only the groups the normal form merges are new: the others were just tried
    merged = {}
    for g, form, hashes in zip(sides, forms, by_hash):
        for i in g.nodes:
            merged.setdefault(form[i], set()).add(hashes[i])
    new = {f for f, hs in merged.items() if len(hs) > 1}
    return bool(new) and _replaceable(sides, forms, leaves, base, rng, new)


def _replaceable(sides, keys, leaves, base, rng, only) -> bool:
    """Some inner operator group (nodes with one key; keys in `only` when it is not empty)
    can be a fresh variable and both sides still agree."""
    inner: dict = {}
    for g, key in zip(sides, keys):
        roots = {o.node for o in g.outputs}
        for i, n in g.nodes.items():
            if n.op not in LEAVES and i not in roots and (not only or key[i] in only):
                inner.setdefault(key[i], n.shapes)
    # a subgraph on both sides is the likely one: try those first
    both = set(keys[0].values()) & set(keys[1].values())
    for h in sorted(inner, key=lambda h: h not in both):
        fresh = {h: [rng.integers(0, PRIME, size=s, dtype=np.int64) for s in inner[h]]}
        if _same(*(_eval_exact(g, leaves, fresh, keys=k, base=b)
                   for g, k, b in zip(sides, keys, base))):
            return True
    return False


def common_supergraph(rule: Rule, seed: int = 0) -> bool:
    """True when every output of both sides comes from the same operator (same params) applied
    to inputs that agree pairwise: the rule is a smaller rule in context."""
    leaves = _leaf_values(rule, np.random.default_rng(seed))
    for a, b in zip(rule.src.outputs, rule.dst.outputs):
        na, nb = rule.src.nodes[a.node], rule.dst.nodes[b.node]
        if na.op in LEAVES or (na.op, na.params, a.index) != (nb.op, nb.params, b.index):
            return False
        va = _eval_exact(Graph(rule.src.nodes, na.inputs), leaves, {})
        vb = _eval_exact(Graph(rule.dst.nodes, nb.inputs), leaves, {})
        if not _same(va, vb):
            return False
    return True
