"""Apply a rule at a match: a new Graph, sharing every untouched node with the old one.

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
Resolutions are cached per shape signature.
"""
from __future__ import annotations

import itertools
from typing import Any

from envcore.graph import Graph, Node, Ref, freeze
from envcore.match import Match
from envcore.ops import LEAVES, OPS, SHAPE_PARAMS, Shape, ShapeError
from envcore.pattern import pattern_of
from envcore.rule import Rule

MAX_COMBOS = 512        # per shape parameter: enough for split/reshape of rank <= 4


class RewriteError(ValueError):
    """The rewrite cannot be applied here (it would create a cycle, or shapes do not fit)."""


# ---------------------------------------------------------------------------------------------
# resolving the target's shape parameters

class Resolution(dict):
    """dst node id -> (full params as sorted pairs, output shapes), for dst operator nodes."""


def _dst_info(rule: Rule) -> tuple[tuple[int, ...], dict, CompiledScope | None]:
    """(the target's operator node ids in topological order, resolution cache, compiled scope),
    kept on the target graph object per scope (rules that share a target graph but not a scope,
    e.g. a hand-built rule and its verified copy, keep apart caches)."""
    scope = rule.meta.get("scope")
    per_scope = rule.dst.__dict__.setdefault("_dst_info", {})
    hit = per_scope.get(id(scope))
    if hit is None or hit[3] is not scope:
        dst = rule.dst
        order = tuple(i for i in dst.topo_order if dst.nodes[i].op not in LEAVES)
        hit = (order, {}, CompiledScope(scope) if scope is not None else None, scope)
        per_scope[id(scope)] = hit
    return hit[:3]


def resolve(graph: Graph, rule: Rule, match: Match) -> Resolution | None:
    """The target's params and shapes at this match's real shapes, or None if it does not fit
    (or, for a scoped rule, the match lies outside the proof's scope)."""
    pat = pattern_of(rule.src)
    var_real = {v: graph.shape(r) for v, r in match.bindings.items()}
    node_real = {p: graph.nodes[g].shapes for p, g in match.mapping.items()}
    order, cache, scope = _dst_info(rule)
    if scope is not None:
        params_real = tuple((p, graph.nodes[match.mapping[p]].params) for p in scope.param_nodes)
        sig = (tuple(sorted(var_real.items())), tuple(sorted(node_real.items())), params_real)
        if sig not in cache:
            cache[sig] = _resolve_scoped(graph, rule, match, scope, order, var_real, node_real)
        return cache[sig]
    sig = (tuple(sorted(var_real.items())), tuple(sorted(node_real.items())))
    if sig in cache:
        return cache[sig]
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


def _value(q, graph: Graph, match: Match):
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


# ---------------------------------------------------------------------------------------------
# cycles

def reach(graph: Graph) -> dict[int, int]:
    """node id -> bitset (an int, bit k for the k-th node in topological order) of every node it
    reaches.  Built once per graph in one backward sweep; a check is then one AND."""
    r = graph.__dict__.get("_reach")
    if r is None:
        order = graph.topo_order
        bit = {i: 1 << k for k, i in enumerate(order)}
        cons = graph.consumers
        r = {}
        for i in reversed(order):
            acc = 0
            for c in cons[i]:
                acc |= bit[c] | r[c]
            r[i] = acc
        graph.__dict__["_reach"] = r
        graph.__dict__["_bit"] = bit
    return r


def would_create_cycle(graph: Graph, rule: Rule, match: Match) -> bool:
    """Conservative: True when some bound tensor depends on a replaced output.  Only rules with
    several outputs can do this (a single-output pattern is upstream of its only output)."""
    if len(rule.src.outputs) < 2:
        return False
    r = reach(graph)
    bit = graph.__dict__["_bit"]
    targets = 0
    for b in match.bindings.values():
        targets |= bit[b.node]
    return any(r[match.mapping[o.node]] & targets for o in rule.src.outputs)


# ---------------------------------------------------------------------------------------------
# applying

def apply(graph: Graph, rule: Rule, match: Match) -> tuple[Graph, frozenset[int]]:
    """The rewritten graph and the ids of the nodes it created.  Raises RewriteError when the
    target does not fit the shapes or the result would have a cycle."""
    res = resolve(graph, rule, match)
    if res is None:
        raise RewriteError(f"rule {rule.name} does not fit the shapes at this match")
    try:
        return _build(graph, rule, match, res, hash_cons=True)
    except RewriteError:
        # reusing an existing node can close a cycle that fresh nodes would not
        return _build(graph, rule, match, res, hash_cons=False)


def _build(graph: Graph, rule: Rule, match: Match, res: Resolution,
           hash_cons: bool) -> tuple[Graph, frozenset[int]]:
    dst = rule.dst
    nodes = dict(graph.nodes)
    cons = graph.consumers
    next_id = max(graph.nodes) + 1
    matched = set(match.mapping.values())
    ids: dict[int, int] = {}          # dst operator node -> graph node
    created: list[int] = []

    def tensor(r: Ref) -> Ref:
        n = dst.nodes[r.node]
        return match.bindings[n.p["name"]] if n.op in LEAVES else Ref(ids[r.node], r.index)

    for i in _dst_info(rule)[0]:
        n = dst.nodes[i]
        params, shapes = res[i]
        node = Node(n.op, tuple(tensor(r) for r in n.inputs), params, shapes)
        same = _existing(graph, node, created, nodes) if hash_cons else None
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
    changed: set[int] = set()
    for old in replace:
        for c in cons[old.node]:
            if c in matched or c not in nodes:
                continue
            n = nodes[c]
            ins = tuple(replace.get(r, r) for r in n.inputs)
            if ins != n.inputs:
                nodes[c] = Node(n.op, ins, n.params, n.shapes)
                changed.add(c)
    outputs = tuple(replace.get(o, o) for o in graph.outputs)
    _drop_dead(nodes, cons, matched | {b.node for b in match.bindings.values()},
               set(created) | changed, {o.node for o in outputs})
    new = Graph(nodes, outputs)
    try:
        new.topo_order
    except ValueError:
        raise RewriteError(f"rule {rule.name} would create a cycle here") from None
    return new, frozenset(i for i in created if i in nodes)


def _existing(graph: Graph, node: Node, created: list[int], nodes: dict) -> int | None:
    """An existing node computing exactly `node` (hash-consing), or None."""
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


def _drop_dead(nodes: dict, old_cons: dict, start: set[int], touched: set[int],
               keep: set[int]) -> None:
    """Remove nodes in `start` (and then their inputs) that nothing reads any more.
    Graph inputs stay: they are the model's interface."""
    stack = sorted(start)
    while stack:
        d = stack.pop()
        n = nodes.get(d)
        if n is None or d in keep or n.op == "input":
            continue
        readers = itertools.chain(old_cons.get(d, ()), touched)
        if any(c in nodes and any(r.node == d for r in nodes[c].inputs) for c in readers):
            continue
        del nodes[d]
        stack.extend(r.node for r in n.inputs)


__all__ = ["apply", "resolve", "would_create_cycle", "RewriteError", "Resolution"]
