"""Apply a rule at a match: a new Graph, sharing every untouched node with the old one.

The target side's shape parameters come from `envcore.rewrite.resolve` (a scoped rule's recipes,
or first fit for an unscoped one); the built target must keep every replaced tensor's exact shape,
and a rewrite that would close a cycle is refused.
"""
from __future__ import annotations

import itertools

from envcore.graph import Graph, Node, Ref
from envcore.ops import LEAVES
from envcore.rewrite.match import Match
from envcore.rewrite.resolve import Resolution, dst_info, resolve
from envcore.rewrite.rule import Rule


class RewriteError(ValueError):
    """The rewrite cannot be applied here (it would create a cycle, or shapes do not fit)."""


# ---------------------------------------------------------------------------------------------
# cycles

def reach(graph: Graph) -> dict[int, int]:
    """node id -> bitset (an int, bit k for the k-th node in topological order) of every node it
    reaches.  Built once per graph in one backward sweep; a check is then one AND."""
    return graph.memo("apply.reach", _reach_and_bits)[0]


def _reach_and_bits(graph: Graph) -> tuple[dict[int, int], dict[int, int]]:
    order = graph.topo_order
    bit = {i: 1 << k for k, i in enumerate(order)}
    cons = graph.consumers
    r: dict[int, int] = {}
    for i in reversed(order):
        acc = 0
        for c in cons[i]:
            acc |= bit[c] | r[c]
        r[i] = acc
    return r, bit


def would_create_cycle(graph: Graph, rule: Rule, match: Match) -> bool:
    """Conservative: True when some bound tensor depends on a replaced output.  Only rules with
    several outputs can do this (a single-output pattern is upstream of its only output)."""
    if len(rule.src.outputs) < 2:
        return False
    r, bit = graph.memo("apply.reach", _reach_and_bits)
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

    for i in dst_info(rule)[0]:
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
                nodes[c] = Node(n.op, ins, n.params, n.shapes, n.origin)  # rewired, same op
                changed.add(c)
    outputs = tuple(replace.get(o, o) for o in graph.outputs)
    _drop_dead(nodes, cons, matched | {b.node for b in match.bindings.values()},
               set(created) | changed, {o.node for o in outputs})
    new = Graph(nodes, outputs, graph.origin)
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


__all__ = ["apply", "would_create_cycle", "RewriteError", "reach"]
