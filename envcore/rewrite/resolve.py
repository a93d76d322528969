"""Resolve a rule at a match: the target side's shape parameters at the real shapes.

Rules are generated on small shapes (2x4x4x4) and applied to real ones (16x1024x64x64), so the
target side's shape parameters (split sizes, constant shapes, a conv's groups) are re-derived at
each match.  A proved rule carries its *scope* (`rule.meta["scope"]`, made by `verifier.scope`):
- `requires`: the sizes that must be equal (or equal a constant) for its proof to hold; a match
  that breaks one is not applicable;
- `resolve`: where each target shape parameter comes from, structurally: the dim of a bound or
  matched tensor, a matched node's shape parameter, or a constant.
The target then infers its shapes through the catalogue, and every replaced tensor must keep its
exact shape.  A rule without a scope (built by hand, `--unverified`) is resolved the old way: a
generated size may stand for any real size found at the same position, first fit wins.
Resolutions are cached per shape signature.  The matcher calls `resolve` to keep a scoped rule's
matches inside its proof's scope; `apply` builds from its result.
"""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Protocol

from envcore.graph import Graph, Node, freeze
from envcore.ops import LEAVES, OPS, SHAPE_PARAMS, Shape, ShapeError
from envcore.rewrite.pattern import pattern_of
from envcore.rewrite.rule import Rule

class MatchLike(Protocol):
    """What resolving reads of a match (`envcore.rewrite.match.Match`, which imports this module)."""
    mapping: Mapping[int, int]
    bindings: Mapping[str, Any]


MAX_COMBOS = 512        # per shape parameter: enough for split/reshape of rank <= 4


# ---------------------------------------------------------------------------------------------
# resolving the target's shape parameters

class Resolution(dict):
    """dst node id -> (full params as sorted pairs, output shapes), for dst operator nodes."""


def dst_info(rule: Rule) -> tuple[tuple[int, ...], dict, CompiledScope | None]:
    """(the target's operator node ids in topological order, resolution cache, compiled scope),
    kept on the target graph object per scope (rules that share a target graph but not a scope,
    e.g. a hand-built rule and its verified copy, keep apart caches)."""
    scope = rule.meta.get("scope")
    per_scope = rule.dst.memo("resolve.dst_info", lambda _g: {})
    hit = per_scope.get(id(scope))
    if hit is None or hit[3] is not scope:
        dst = rule.dst
        order = tuple(i for i in dst.topo_order if dst.nodes[i].op not in LEAVES)
        hit = (order, {}, CompiledScope(scope) if scope is not None else None, scope)
        per_scope[id(scope)] = hit
    return hit[:3]


def resolve(graph: Graph, rule: Rule, match: MatchLike, reads: tuple | None = None
            ) -> Resolution | None:
    """The target's params and shapes at this match's real shapes, or None if it does not fit
    (or, for a scoped rule, the match lies outside the proof's scope).

    What it reads of the graph is the matched nodes' shapes and params and the bound
    tensors' shapes, nothing else.  So the last answer is kept on the match object (one that
    has a `__dict__`) with the graph it was given for, and handed back for a graph whose
    matched nodes are the same node objects and whose bound tensors have the same shapes: a
    match is resolved when it is found, priced, priced again near a change and applied, in
    the graph it was found in and in the graphs below it that inherit it.  `reads`: what
    `reads_of(graph, match)` gives, where the caller has it already."""
    memo = getattr(match, "__dict__", None)
    hit = memo.get(_MEMO) if memo is not None else None
    if hit is not None and hit[0] is rule:
        seen = hit[1]
        if seen is graph or _same_reads(seen, graph, match):
            if seen is not graph:
                memo[_MEMO] = (rule, graph, hit[2])
            return hit[2]
    out = _resolve(graph, rule, match, reads)
    if memo is not None:
        memo[_MEMO] = (rule, graph, out)
    return out


_MEMO = "_resolved"     # on a match: (rule, graph, resolution) of its last `resolve`


def _same_reads(old: Graph, new: Graph, match: MatchLike) -> bool:
    """Whether `resolve` reads the same of `new` as of `old` at this match."""
    on, nn = old.nodes, new.nodes
    for g in match.mapping.values():
        a = nn.get(g)
        if a is None or a is not on.get(g):
            return False
    for r in match.bindings.values():
        a, b = nn.get(r.node), on.get(r.node)
        if a is None or b is None or (a is not b and a.shapes[r.index] != b.shapes[r.index]):
            return False
    return True


def reads_of(graph: Graph, match: MatchLike) -> tuple:
    """What resolving reads of the graph at a match, whatever the rule: (variable -> real
    shape, pattern node -> real shapes, and both as sorted tuples).  Rules that share a source
    (and so a structural match) share it: `resolve(..., reads=)`."""
    var_real = {v: graph.shape(r) for v, r in match.bindings.items()}
    node_real = {p: graph.nodes[g].shapes for p, g in match.mapping.items()}
    return var_real, node_real, tuple(sorted(var_real.items())), tuple(sorted(node_real.items()))


def _resolve(graph: Graph, rule: Rule, match: MatchLike, reads: tuple | None = None
             ) -> Resolution | None:
    var_real, node_real, var_sig, node_sig = reads or reads_of(graph, match)
    order, cache, scope = dst_info(rule)
    if scope is not None:
        params_real = tuple((p, graph.nodes[match.mapping[p]].params) for p in scope.param_nodes)
        sig = (var_sig, node_sig, params_real)
        if sig not in cache:
            cache[sig] = _resolve_scoped(graph, rule, match, scope, order, var_real, node_real)
        return cache[sig]
    sig = (var_sig, node_sig)
    if sig in cache:
        return cache[sig]
    pat = pattern_of(rule.src)
    # pool value -> real values seen at the same positions, in a fixed order
    dims: dict[int, list[int]] = {}
    pairs = [(pat.var_shapes[v], var_real[v]) for v in sorted(var_real)]
    pairs += [(ps, rs) for p in sorted(node_real)
              for ps, rs in zip(pat.nodes[p].shapes, node_real[p])]
    for pool, real in pairs:
        for a, b in zip(pool, real):
            seen = dims.setdefault(a, [])
            if b not in seen:
                seen.append(b)
    result = _search_dst(rule.dst, order, var_real, dims, _targets(rule, var_real, node_real))
    cache[sig] = result
    return result


def _targets(rule: Rule, var_real, node_real) -> list:
    return [(d, node_real[s.node][s.index] if s.node in node_real else var_real[
        rule.src.nodes[s.node].p["name"]]) for s, d in zip(rule.src.outputs, rule.dst.outputs)]


class CompiledScope:
    """A rule's scope (see the module doc) in the form the matcher evaluates."""

    def __init__(self, scope: dict):
        self.requires = [(tuple(a), tuple(b) if isinstance(b, list) else b)
                         for a, b in scope["requires"]]
        self.resolve = {int(i): {p: [tuple(r) for r in rs] for p, rs in ps.items()}
                        for i, ps in scope["resolve"].items()}
        recipes = [r for ps in self.resolve.values() for rs in ps.values() for r in rs]
        slots = [q for req in self.requires for q in req if isinstance(q, tuple)]
        self.param_nodes = tuple(sorted({q[1] for q in slots + recipes if q[0] == "param"}))


def _value(q, graph: Graph, match: MatchLike):
    """The real size a slot or recipe names at this match."""
    kind = q[0]
    if kind == "var":
        return graph.shape(match.bindings[q[1]])[q[2]]
    if kind == "param":
        v = graph.nodes[match.mapping[q[1]]].p[q[2]]
        return v[q[3]] if isinstance(v, tuple) else v
    if kind == "dim":
        return graph.nodes[match.mapping[q[1]]].shapes[q[2]][q[3]]
    if kind == "const":
        return q[1]
    raise ValueError(f"unknown size recipe {q!r}")


def _resolve_scoped(graph, rule, match, scope: CompiledScope, order, var_real, node_real):
    try:
        for a, b in scope.requires:
            if _value(a, graph, match) != (b if not isinstance(b, tuple) else
                                           _value(b, graph, match)):
                return None
    except (KeyError, IndexError):
        return None
    dst = rule.dst
    shapes: dict[int, tuple[Shape, ...]] = {i: (var_real[n.p["name"]],)
                                            for i, n in dst.nodes.items() if n.op in LEAVES}
    chosen = Resolution()
    for i in order:
        n = dst.nodes[i]
        params = n.p
        for name, recipes in scope.resolve.get(i, {}).items():
            vals = tuple(_value(r, graph, match) for r in recipes)
            params[name] = vals if isinstance(params[name], tuple) else vals[0]
        ins = [shapes[r.node][r.index] for r in n.inputs]
        try:
            out = tuple(OPS[n.op].infer(ins, params))
        except (ShapeError, ValueError, TypeError, IndexError, ZeroDivisionError):
            return None
        shapes[i] = out
        chosen[i] = (tuple(sorted((k, freeze(v)) for k, v in params.items())), out)
    if not all(shapes[d.node][d.index] == want
               for d, want in _targets(rule, var_real, node_real)):
        return None
    return chosen


def _search_dst(dst: Graph, order, var_real, dims, targets) -> Resolution | None:
    shapes: dict[int, tuple[Shape, ...]] = {i: (var_real[n.p["name"]],)
                                            for i, n in dst.nodes.items() if n.op in LEAVES}
    chosen = Resolution()

    def fits() -> bool:
        return all(shapes[d.node][d.index] == want for d, want in targets)

    def rec(k: int) -> bool:
        if k == len(order):
            return fits()
        i = order[k]
        n = dst.nodes[i]
        opdef = OPS[n.op]
        ins = [shapes[r.node][r.index] for r in n.inputs]
        for params in _param_options(n, ins, dims):
            try:
                out = tuple(opdef.infer(ins, params))
            except (ShapeError, ValueError, TypeError, IndexError, ZeroDivisionError):
                continue
            shapes[i] = out
            chosen[i] = (tuple(sorted((kk, freeze(v)) for kk, v in params.items())), out)
            if rec(k + 1):
                return True
        shapes.pop(i, None)
        chosen.pop(i, None)
        return False

    return chosen if rec(0) else None


def _param_options(n: Node, ins: list[Shape], dims: dict[int, list[int]]):
    """The node's params with each shape param replaced by every plausible real value."""
    base: dict[str, Any] = n.p
    wild = SHAPE_PARAMS.get(n.op, ())
    if not wild:
        yield base
        return
    per_param = []
    for name in wild:
        pool = tuple(base[name])
        opts = [dims.get(v, []) + ([v] if v not in dims.get(v, []) else []) for v in pool]
        values = list(itertools.islice(itertools.product(*opts), MAX_COMBOS))
        if n.op == "reshape" and ins:  # one dimension may also follow from the element count
            total = 1
            for d in ins[0]:
                total *= d
            for j in range(len(pool)):
                for rest in itertools.islice(
                        itertools.product(*(o for q, o in enumerate(opts) if q != j)), MAX_COMBOS):
                    known = 1
                    for d in rest:
                        known *= d
                    if known and total % known == 0:
                        v = list(rest)
                        v.insert(j, total // known)
                        values.append(tuple(v))
        per_param.append(list(dict.fromkeys(values)))
    for combo in itertools.product(*per_param):
        yield {**base, **dict(zip(wild, combo))}
