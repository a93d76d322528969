"""A rule's source graph compiled for matching: the Pattern noun.

A pattern node mirrors a graph node (op, params, inputs) except that parameters listed in
`envcore.ops.SHAPE_PARAMS` are left out (they are wildcards: their values follow from shapes) and
each input is either a rule variable ("var", name) or another pattern node ("node", id, index).

Matching grows a mapping from one anchor node outwards.  `Pattern.plan(anchor)` fixes, once per
anchor, the order in which the other pattern nodes are matched and where each one's graph
candidates come from, so that the matcher itself is a short backtracking loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from envcore.graph import Graph
from envcore.ops import LEAVES, SHAPE_PARAMS, Shape, semantic_dims

VAR, NODE = "var", "node"


@dataclass(frozen=True, slots=True)
class PNode:
    id: int
    op: str
    params: tuple                     # (name, value) pairs without shape params, sorted
    inputs: tuple[tuple, ...]         # ("var", name) | ("node", pattern id, output index)
    shapes: tuple[Shape, ...]         # the rule's (pool-sized) output shapes
    ranks: tuple[int, ...]            # their ranks (a match keeps them)
    fixed: tuple = ()                 # (input position, axis, size) a match must keep (SEMANTIC_DIMS)


class Step(NamedTuple):
    """Match pattern node `pid` next, taking graph candidates from `source`:
    ("input", parent pid, k)  the node feeding input k of an already-matched node;
    ("consumer", parent pid)  a consumer of an already-matched node;
    ("var_consumer", name)    a consumer of the tensor a variable is bound to;
    ("any",)                  every graph node with the right op (disconnected patterns only)."""
    pid: int
    source: tuple


def non_shape_params(op: str, params: tuple) -> tuple:
    wild = SHAPE_PARAMS.get(op, ())
    return tuple(kv for kv in params if kv[0] not in wild) if wild else params


class Pattern:
    def __init__(self, src: Graph):
        self.graph = src
        self.var_shapes: dict[str, Shape] = {}
        self.var_ranks: dict[str, int] = {}
        leaf_name: dict[int, str] = {}
        for i, n in src.nodes.items():
            if n.op in LEAVES:
                leaf_name[i] = n.p["name"]
                self.var_shapes[n.p["name"]] = n.shapes[0]
                self.var_ranks[n.p["name"]] = len(n.shapes[0])
        self.nodes: dict[int, PNode] = {}
        for i in src.topo_order:
            n = src.nodes[i]
            if n.op in LEAVES:
                continue
            ins = tuple((VAR, leaf_name[r.node]) if r.node in leaf_name else (NODE, r.node, r.index)
                        for r in n.inputs)
            self.nodes[i] = PNode(i, n.op, non_shape_params(n.op, n.params), ins, n.shapes,
                                  tuple(len(s) for s in n.shapes),
                                  semantic_dims(n.op, [src.shape(r) for r in n.inputs]))
        self.order = tuple(sorted(self.nodes))
        # (pattern consumer id, input position, output index) for every pattern edge into a node
        self.consumers: dict[int, list[tuple[int, int, int]]] = {i: [] for i in self.nodes}
        for c in self.order:
            for k, src_in in enumerate(self.nodes[c].inputs):
                if src_in[0] == NODE:
                    self.consumers[src_in[1]].append((c, k, src_in[2]))
        # outputs that are plain variables cannot be "replaced" in a target graph
        self.supported = all(o.node in self.nodes for o in src.outputs)
        self.output_tensors = frozenset((o.node, o.index) for o in src.outputs)
        self.anchor = self._default_anchor()
        self.key = src.to_json()          # rules with equal keys have the same source
        self._plans: dict[int, tuple[Step, ...]] = {}
        self.radius = self._radius()
        self.reach = self._reach()

    def _radius(self) -> int | None:
        """Hops from the anchor to the farthest operator node, walking pattern edges both ways
        (a variable counts as one node: it stands for the producer of the tensor it binds).
        A match's nodes lie within this many hops of its anchor in the target graph too.
        None when some operator node is unreachable (a disconnected pattern)."""
        adj: dict[tuple, set[tuple]] = {}
        for pid, pn in self.nodes.items():
            for s in pn.inputs:
                other = (VAR, s[1]) if s[0] == VAR else (NODE, s[1])
                adj.setdefault((NODE, pid), set()).add(other)
                adj.setdefault(other, set()).add((NODE, pid))
        dist = {(NODE, self.anchor): 0}
        frontier = [(NODE, self.anchor)]
        while frontier:
            nxt = []
            for v in frontier:
                for w in adj.get(v, ()):
                    if w not in dist:
                        dist[w] = dist[v] + 1
                        nxt.append(w)
            frontier = nxt
        ops = [dist.get((NODE, pid)) for pid in self.nodes]
        return None if any(d is None for d in ops) else max(ops)

    def _reach(self) -> int | None:
        """Hops from the farthest operator node down to the anchor along pattern edges (inputs
        to consumers), or None when some node does not feed the anchor (a multi-output pattern).
        Where it is set, a match's nodes lie upstream of its anchor within this many hops, so a
        change can only make matches anchored downstream of it: a far smaller region than the
        `radius` around it once the graph fans in (weights, branches)."""
        dist = {self.anchor: 0}
        frontier = [self.anchor]
        while frontier:
            nxt = []
            for v in frontier:
                for s in self.nodes[v].inputs:
                    if s[0] == NODE and s[1] not in dist:
                        dist[s[1]] = dist[v] + 1
                        nxt.append(s[1])
            frontier = nxt
        return None if len(dist) < len(self.nodes) else max(dist.values())

    def _default_anchor(self) -> int:
        """The first output's producer: usually the most constrained place to start."""
        for o in self.graph.outputs:
            if o.node in self.nodes:
                return o.node
        return self.order[0]

    def vars_of(self, pid: int) -> set[str]:
        return {s[1] for s in self.nodes[pid].inputs if s[0] == VAR}

    def plan(self, anchor: int) -> tuple[Step, ...]:
        """The matching order from `anchor`: inputs of matched nodes first (one candidate each),
        then consumers of matched nodes or bound variables, then anything."""
        if anchor in self._plans:
            return self._plans[anchor]
        steps = [Step(anchor, ("anchor",))]
        done, bound = {anchor}, self.vars_of(anchor)
        while len(done) < len(self.nodes):
            step = self._next_step(done, bound)
            steps.append(step)
            done.add(step.pid)
            bound |= self.vars_of(step.pid)
        self._plans[anchor] = tuple(steps)
        return self._plans[anchor]

    def _next_step(self, done: set[int], bound: set[str]) -> Step:
        todo = [p for p in self.order if p not in done]
        for parent in sorted(done):
            for k, s in enumerate(self.nodes[parent].inputs):
                if s[0] == NODE and s[1] not in done:
                    return Step(s[1], ("input", parent, k))
        for p in todo:
            for s in self.nodes[p].inputs:
                if s[0] == NODE and s[1] in done:
                    return Step(p, ("consumer", s[1]))
        for p in todo:
            for s in self.nodes[p].inputs:
                if s[0] == VAR and s[1] in bound:
                    return Step(p, ("var_consumer", s[1]))
        return Step(todo[0], ("any",))


    # -- a plain form, for the compiled-pattern cache (subgen/rules/index.py) -------------
    def to_plain(self) -> tuple:
        """The pattern as plain data (tuples, strings, numbers): what `from_plain` rebuilds the
        very same pattern from, given the same source graph."""
        return (FORMAT, tuple(self.var_shapes.items()),
                tuple((pn.id, pn.op, pn.params, pn.inputs, pn.shapes, pn.ranks, pn.fixed)
                      for pn in self.nodes.values()),
                self.supported, tuple(sorted(self.output_tensors)), self.anchor, self.key,
                self.radius, self.reach)

    @classmethod
    def from_plain(cls, src: Graph, plain: tuple | list) -> "Pattern":
        """The pattern `to_plain` describes, for `src` (the graph it was compiled from),
        without compiling it again: what made compiling slow (the source's JSON key, the
        semantic dims, the radius and reach) is read, the rest follows from it."""
        fmt, var_shapes, rows, supported, outs, anchor, key, radius, reach = plain
        if fmt != FORMAT:
            raise ValueError("another pattern format")
        pat = cls.__new__(cls)
        pat.graph = src
        pat.var_shapes = dict(var_shapes)
        pat.var_ranks = {v: len(s) for v, s in var_shapes}
        # a row is a PNode's fields, or the PNode itself (frozen: patterns may share one)
        made = [row if type(row) is PNode else PNode(*row) for row in rows]
        pat.nodes = {pn.id: pn for pn in made}
        pat.order = tuple(sorted(pat.nodes))
        consumers: dict[int, list[tuple[int, int, int]]] = {i: [] for i in pat.nodes}
        for c in pat.order:
            for k, src_in in enumerate(pat.nodes[c].inputs):
                if src_in[0] == NODE:
                    consumers[src_in[1]].append((c, k, src_in[2]))
        pat.consumers = consumers
        pat.supported = supported
        pat.output_tensors = frozenset(outs)
        pat.anchor = anchor
        pat.key = key
        pat._plans = {}
        pat.radius = radius
        pat.reach = reach
        return pat


FORMAT = 1      # of `Pattern.to_plain`
PLAIN = "pattern.plain"   # where a graph may carry its pattern's plain form (see pattern_of)


def _compile(src: Graph) -> Pattern:
    plain = src.__dict__.pop(PLAIN, None)
    if plain is not None:
        try:
            return Pattern.from_plain(src, plain)
        except (ValueError, TypeError, KeyError, IndexError):
            pass                       # not a pattern of this code: compiled afresh
    return Pattern(src)


def pattern_of(src: Graph) -> Pattern:
    """The compiled pattern of a rule's source graph, built once and kept on the (immutable)
    graph object, so it lives exactly as long as the rule does.  A graph read back from a rule
    index may carry the pattern's plain form (`PLAIN`, put there by the compiled-pattern cache
    of subgen/rules/index.py): it is then rebuilt from that rather than compiled."""
    return src.memo("pattern.pattern", _compile)
