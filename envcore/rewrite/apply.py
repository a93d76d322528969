"""Apply a rule at a match: a new Graph, sharing every untouched node with the old one.

The target side's shape parameters come from `envcore.rewrite.resolve` (a scoped rule's recipes,
or first fit for an unscoped one); the built target must keep every replaced tensor's exact shape,
and a rewrite that would close a cycle is refused.
"""
from __future__ import annotations

import hashlib
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
    except _CycleWithoutReuse:
        raise   # nothing was reused: building without hash-consing is the same graph again
    except RewriteError:
        # reusing an existing node can close a cycle that fresh nodes would not
        return _build(graph, rule, match, res, hash_cons=False)


class _CycleWithoutReuse(RewriteError):
    """A cycle in a rewrite that reused no node: the rewrite without hash-consing is the very
    same graph (the same ids, the same nodes), so it closes the same cycle."""


def _build(graph: Graph, rule: Rule, match: Match, res: Resolution,
           hash_cons: bool) -> tuple[Graph, frozenset[int]]:
    dst = rule.dst
    base = graph.nodes
    # the created and the rewired nodes, kept apart from the old graph's until the result is
    # known to be acyclic (most rewrites refused here are refused for a cycle)
    over: dict[int, Node] = {}
    cons = graph.consumers
    next_id = max(base) + 1
    matched = set(match.mapping.values())
    ids: dict[int, int] = {}          # dst operator node -> graph node
    created: list[int] = []
    reused = False

    def tensor(r: Ref) -> Ref:
        n = dst.nodes[r.node]
        return match.bindings[n.p["name"]] if n.op in LEAVES else Ref(ids[r.node], r.index)

    for i in dst_info(rule)[0]:
        n = dst.nodes[i]
        params, shapes = res[i]
        node = Node(n.op, tuple(tensor(r) for r in n.inputs), params, shapes)
        same = _existing(graph, node, created, over) if hash_cons else None
        if same is None:
            same = next_id
            next_id += 1
            over[same] = node
            created.append(same)
        else:
            reused = True
        ids[i] = same

    replace = {}
    for s, d in zip(rule.src.outputs, dst.outputs):
        old, new = Ref(match.mapping[s.node], s.index), tensor(d)
        if old != new:
            replace[old] = new
    changed: set[int] = set()
    for old in replace:
        for c in cons[old.node]:
            if c in matched:
                continue
            n = over[c] if c in over else base[c]
            ins = tuple(replace.get(r, r) for r in n.inputs)
            if ins != n.inputs:
                over[c] = Node(n.op, ins, n.params, n.shapes, n.origin)  # rewired, same op
                changed.add(c)
    # dropping dead nodes (below) never breaks a cycle: every node on one is read by the next
    if _closes_cycle(graph, over, created, changed):
        error = RewriteError if reused else _CycleWithoutReuse
        raise error(f"rule {rule.name} would create a cycle here")
    nodes = dict(base)
    nodes.update(over)     # rewired nodes keep their place, created ones come last, in order
    outputs = tuple(replace.get(o, o) for o in graph.outputs)
    _drop_dead(nodes, cons, matched | {b.node for b in match.bindings.values()},
               set(created) | changed, {o.node for o in outputs})
    return Graph(nodes, outputs, graph.origin), frozenset(i for i in created if i in nodes)


def _closes_cycle(graph: Graph, over: dict[int, Node], created: list[int],
                  changed: set[int]) -> bool:
    """Whether the rewritten graph (the old graph's nodes, with `over`: the `created` nodes
    added and the `changed` consumers rewired) has a cycle: exactly what sorting it
    topologically would find, found without sorting the whole graph (a rewrite that closes a
    cycle is inherited by every state below the one it was found in, and taso pops it once
    per such state: two whole-graph sorts a try were most of what it spent on DenseNet).

    Order the nodes by the old graph's topological position, each created node just after its
    latest input (created nodes come in the target's topological order).  Every edge of the new
    graph then goes forward but for rewired inputs of `changed` nodes that come from a node at
    or after them: the backward edges.  None: acyclic.  Otherwise a cycle's latest node
    leaves it by a backward edge, so every cycle lies among the nodes ordered no later than
    the latest backward edge's source, reachable from a backward edge's target: a depth-first
    search from those targets through such nodes finds a back edge iff there is a cycle."""
    pos = graph.memo("apply.topo_pos", lambda g: {i: k for k, i in enumerate(g.topo_order)})
    key: dict[int, tuple[int, int]] = {}
    for k, x in enumerate(created):
        latest = -1
        for r in over[x].inputs:
            at = key[r.node][0] if r.node in key else pos[r.node]
            if at > latest:
                latest = at
        key[x] = (latest, k + 1)
    roots, limit = [], (-1, 0)
    for c in changed:
        kc = (pos[c], 0)
        for r in over[c].inputs:
            ku = key.get(r.node) or (pos[r.node], 0)
            if ku >= kc:
                roots.append(c)
                limit = max(limit, ku)
    if not roots:
        return False
    # the new graph's readers of a node: its old readers but the rewired ones, plus the
    # created or rewired nodes that read it now
    extra: dict[int, list[int]] = {}
    for v, n in over.items():
        for r in n.inputs:
            readers = extra.setdefault(r.node, [])
            if v not in readers:
                readers.append(v)
    if _certain_cycle(graph, over, created, changed):
        return True
    old_cons = graph.consumers

    def readers(w: int) -> list[int]:
        out = [c for c in old_cons.get(w, ()) if c not in over]
        out.extend(extra.get(w, ()))
        return out

    state: dict[int, int] = {}          # 1: on the current path, 2: done
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(readers(root)))]
        while stack:
            w, it = stack[-1]
            for c in it:
                s = state.get(c)
                if s == 1:
                    return True
                if s is None and (key.get(c) or (pos[c], 0)) <= limit:
                    state[c] = 1
                    stack.append((c, iter(readers(c))))
                    break
            else:
                state[w] = 2
                stack.pop()
    return False


def _certain_cycle(graph: Graph, over: dict[int, Node], created: list[int],
                   changed: set[int]) -> bool:
    """A quick proof of a cycle, where there is one to be had (False: none found, which
    proves nothing).  A rewired consumer c now reads a tensor computed (through created
    nodes) from old nodes z; if the old graph has a path from c to such a z, and no matched
    node lies between them (so no edge on any such path is one the rewrite removes: removed
    edges leave matched nodes), that path is in the new graph too, and closes the cycle
    c ~> z -> ... -> c.  The common refusal (a merge of two nodes where one feeds the other)
    is proved this way in a few ANDs of the old graph's reach bitsets."""
    base = graph.nodes
    reach, bit = graph.memo("apply.reach", _reach_and_bits)
    made = set(created)
    deps: dict[int, set[int]] = {}     # created node -> the old nodes it is computed from
    for x in created:
        d: set[int] = set()
        for r in over[x].inputs:
            if r.node in made:
                d |= deps[r.node]
            else:
                d.add(r.node)
        deps[x] = d
    matched = None
    for c in changed:
        for r, was in zip(over[c].inputs, base[c].inputs):
            if r == was:
                continue
            for z in (deps[r.node] if r.node in made else (r.node,)):
                if z == c:
                    return True
                if not reach[c] & bit[z]:
                    continue
                if matched is None:    # the nodes the rewire edges came from: matched ones
                    matched = {was.node for c2 in changed
                               for r2, was in zip(over[c2].inputs, base[c2].inputs) if r2 != was}
                if z in matched:
                    continue
                if not any(reach[c] & bit[m] and reach[m] & bit[z] for m in matched):
                    return True
    return False


def _existing(graph: Graph, node: Node, created: list[int], over: dict) -> int | None:
    """An existing node computing exactly `node` (hash-consing), or None."""
    if node.inputs:
        pool = itertools.chain(graph.consumers.get(node.inputs[0].node, ()), created)
    else:
        pool = itertools.chain((i for i, n in graph.nodes.items() if not n.inputs), created)
    nodes = graph.nodes
    for c in pool:
        n = over[c] if c in over else nodes.get(c)
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


# ---------------------------------------------------------------------------------------------
# hashes of a rewritten graph, from its parent's

def _node_hash(n: Node, h: dict) -> bytes:
    """One node's Merkle hash as `Graph.node_hashes` computes it (checked: `_derivable`)."""
    key = repr((n.op, n.params, tuple((h[r.node], r.index) for r in n.inputs)))
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


_DERIVABLE: list[bool] = []


def _derivable() -> bool:
    """Whether `_node_hash` is still the formula of `Graph.node_hashes` (tried once on a small
    graph): where it is not, hashes are never derived, only computed by the graph."""
    if not _DERIVABLE:
        from envcore.graph import GraphBuilder
        b = GraphBuilder()
        x = b.input("x", (2, 3))
        y = b.add("matmul", x, b.weight("w", (3, 3)))
        g = b.build([b.add("ewadd", b.add("relu", y), y)])
        h: dict = {}
        for i in g.topo_order:
            h[i] = _node_hash(g.nodes[i], h)
        _DERIVABLE.append(h == g.node_hashes)
    return _DERIVABLE[0]


def derive_hashes(parent: Graph, child: Graph) -> bool:
    """Fills in `child.node_hashes` (so `canonical_hash` costs the outputs only) from its
    parent's, where the parent has them: a node keeps its hash unless it, or a node upstream
    of it, is new or rewired, so only those are hashed again.  The values are what the child
    computes itself (tests/test_fast_paths.py); the dict is in another order (it is only ever
    looked up).  Returns whether it did."""
    hp = parent.__dict__.get("node_hashes")
    if hp is None or "node_hashes" in child.__dict__ or not _derivable():
        return False
    pn, cn = parent.nodes, child.nodes
    fresh = [i for i, n in cn.items() if pn.get(i) is not n]
    old_cons = parent.consumers
    dirty = set(fresh)
    stack = list(fresh)
    while stack:                       # everything downstream of a new or rewired node:
        w = stack.pop()                # its unchanged readers read it as before (new or
        for c in old_cons.get(w, ()):  # rewired readers are dirty already)
            if c not in dirty and c in cn and cn[c] is pn[c]:
                dirty.add(c)
                stack.append(c)
    h = {i: hp[i] for i in cn if i not in dirty}
    for start in dirty:                # inputs first: a depth-first walk up the dirty nodes
        if start in h:
            continue
        todo = [start]
        while todo:
            i = todo[-1]
            missing = [r.node for r in cn[i].inputs if r.node not in h]
            if missing:
                todo.extend(missing)
                continue
            todo.pop()
            if i not in h:
                h[i] = _node_hash(cn[i], h)
    child.__dict__["node_hashes"] = h
    return True


def derive_consumers(parent: Graph, child: Graph) -> bool:
    """Fills in `child.consumers` from its parent's, where the parent has them: only the nodes
    that a new, rewired or removed node read (or reads now) get a new list, in the child's node
    order as `Graph.consumers` makes it; every other list is the parent's own (those are never
    changed).  The same dict as the child computes itself (tests/test_fast_paths.py), without
    walking every edge of the graph.  Returns whether it did."""
    pc = parent.__dict__.get("consumers")
    if pc is None or "consumers" in child.__dict__:
        return False
    pn, cn = parent.nodes, child.nodes
    fresh = [i for i, n in cn.items() if pn.get(i) is not n]
    touched: set[int] = set()
    for v in fresh:
        touched.update(r.node for r in cn[v].inputs)
        if v in pn:
            touched.update(r.node for r in pn[v].inputs)
    for v in pn:
        if v not in cn:
            touched.update(r.node for r in pn[v].inputs)
    touched &= cn.keys()
    fresh_readers: dict[int, list[int]] = {}
    for v in fresh:
        for r in cn[v].inputs:
            if r.node in touched:
                fresh_readers.setdefault(r.node, []).append(v)
    at = {i: k for k, i in enumerate(cn)} if touched else {}
    out: dict[int, list[int]] = {}
    for i in cn:
        if i not in touched:
            old = pc.get(i)
            out[i] = old if old is not None else []
            continue
        readers = {c for c in pc.get(i, ()) if c in cn and cn[c] is pn[c]}
        readers.update(fresh_readers.get(i, ()))
        out[i] = sorted(readers, key=at.__getitem__)
    child.__dict__["consumers"] = out
    return True
