"""Predict what a rewrite does to a graph's cost without building the rewritten graph.

Building a successor (envcore.rewrite.apply.apply, then hashing it) costs milliseconds on a full-size
model; TASO's search looks at tens of thousands of successors and keeps few.  So the search
prices every (rule, match) first, from the match alone, and builds only the ones it keeps:

    cost(G') = cost(G) - cost(matched operators) + cost(target operators)

where an operator costs nothing if it folds (computable from weights and constants alone; for a
target node: all of its inputs fold).  Nodes upstream that die with the match (the target drops
a variable that only the match read) are subtracted too.  This is exact unless
  * a target node already exists outside the match (apply reuses it: hash-consing), or
  * the target drops a variable and reuses a matched node (the dead set is then not simple), or
  * a replaced tensor changes whether it folds (then nodes downstream change cost).
  * the cost model is contextual (an op's price depends on its neighbours, as onnxruntime's
    fused conv or Gemm bias does) and the rewrite touches an op that fuses.
In those cases `predict` says "not exact" and the caller builds the graph and costs it whole.
tests/test_agents.py checks exactness against `graph_cost(apply(...))` on the zoo.

`local_gain` is the cheaper, context-free price the Gym env shows as `cand_delta`: the cost of
the matched operators minus that of the target's, each side costed alone at the match's shapes
(variables as the graph's weight or input leaves), so one value serves every place the same
pattern occurs at the same shapes.
"""
from __future__ import annotations

from envcore.cost import CostModel, folded_nodes
from envcore.graph import Graph, Node, Ref
from envcore.rewrite.match import Match
from envcore.ops import CONSTANTS, LEAVES
from envcore.rewrite.resolve import resolve
from envcore.rewrite.rule import Rule


class Pricer:
    """Prices rewrites for one cost model (memoised per operator signature)."""

    def __init__(self, cost_model):
        self.cm = cost_model
        self.enabled = isinstance(cost_model, CostModel)
        self._memo: dict[tuple, float] = {}
        self._rule_info: dict[int, tuple] = {}

    def sig_cost(self, op: str, params: tuple, in_shapes: tuple, out_shapes: tuple) -> float:
        if op in LEAVES or op in CONSTANTS:
            return 0.0
        key = (op, params, in_shapes)
        ms = self._memo.get(key)
        if ms is None:
            ms = self._memo[key] = float(self.cm.measure(op, dict(params), in_shapes, out_shapes))
        return ms

    def _info(self, rule: Rule) -> tuple:
        """(target operator ids in topological order, whether the target drops a variable)."""
        info = self._rule_info.get(id(rule))
        if info is None or info[0] is not rule:
            dst = rule.dst
            order = tuple(i for i in dst.topo_order if dst.nodes[i].op not in LEAVES)
            drops = bool(set(rule.src.inputs) - set(dst.inputs))
            info = self._rule_info[id(rule)] = (rule, order, drops)
        return info[1], info[2]

    def predict(self, graph: Graph, cost: float, rule: Rule, match: Match
                ) -> tuple[float, bool] | None:
        """(predicted cost of the rewritten graph, exact?), or None if the target does not fit
        the shapes here.  Not exact: the caller must build and cost the graph."""
        if not self.enabled:
            return cost, False
        res = resolve(graph, rule, match)
        if res is None:
            return None
        order, drops = self._info(rule)
        folded = folded_nodes(graph)
        nodes, matched = graph.nodes, set(match.mapping.values())
        removed = sum(self.cm.node_cost(graph, nodes[i]) for i in matched if i not in folded)
        exact = True
        if drops:
            dead = _dead_upstream(graph, rule, match, matched)
            removed += sum(self.cm.node_cost(graph, nodes[i]) for i in dead if i not in folded)
        dst = rule.dst
        fold: dict[int, bool] = {}
        shapes: dict[int, tuple] = {}
        ident: dict[int, object] = {}   # target node -> the graph node it reuses, or ("new", d)
        made: dict[tuple, int] = {}     # target nodes built so far, by what they compute
        added = 0.0
        for d in order:
            n = dst.nodes[d]
            params, outs = res[d]
            in_shapes, in_fold, in_refs = [], True, []
            for r in n.inputs:
                src = dst.nodes[r.node]
                if src.op in LEAVES:
                    t = match.bindings[src.p["name"]]
                    in_shapes.append(graph.shape(t))
                    in_fold = in_fold and t.node in folded
                    in_refs.append(t)
                else:
                    in_shapes.append(shapes[r.node][r.index])
                    in_fold = in_fold and fold[r.node]
                    who = ident[r.node]
                    in_refs.append(Ref(who, r.index) if isinstance(who, int) else (who, r.index))
            fold[d], shapes[d] = in_fold, outs
            key = (n.op, tuple(in_refs), params)
            if key in made:   # the target computes this twice: apply builds it once
                ident[d] = ident[made[key]]
                continue
            made[key] = d
            ident[d] = ("new", d)
            if in_refs and all(isinstance(x, Ref) for x in in_refs):
                same = _existing(graph, n.op, tuple(in_refs), params)
                if same is not None:
                    ident[d] = same
                    if same not in matched:
                        exact = False   # apply reuses a node outside the match
                    elif drops:
                        exact = False   # a matched node survives: the dead set above is off
            if not in_fold:
                added += self.sig_cost(n.op, params, tuple(in_shapes), outs)
        if exact and getattr(self.cm, "contextual", False) and _near_fusion(graph, rule, match):
            exact = False   # what fuses here may change with the rewrite: cost the graph whole
        if exact:
            for s, t in zip(rule.src.outputs, dst.outputs):
                old_fold = match.mapping[s.node] in folded
                tn = dst.nodes[t.node]
                new_fold = (match.bindings[tn.p["name"]].node in folded if tn.op in LEAVES
                            else fold[t.node])
                if old_fold != new_fold:
                    exact = False   # nodes downstream change whether they fold
                    break
        return cost - removed + added, exact


# the ops whose price a contextual cost model may take from their neighbours (ort_cost: a
# bias_add after the conv2d or matmul that only it reads costs nothing of its own, nor does an
# activation after either).  The activations need no entry: whether one fuses depends on its
# producer, a conv2d or bias_add, which any rewrite that could change it matches, binds or reads
_FUSING = frozenset(("conv2d", "matmul", "bias_add"))


def _near_fusion(graph: Graph, rule: Rule, match: Match) -> bool:
    """Whether a fusion could start, end or move with this rewrite: a fusing op among the
    matched nodes, the target's, the producers of the bound tensors or the matched nodes'
    readers.  Then the sum of removed and added op costs is not the new graph's cost."""
    if any(n.op in _FUSING for n in rule.dst.nodes.values()):
        return True
    nodes, cons = graph.nodes, graph.consumers
    for g in match.mapping.values():
        if nodes[g].op in _FUSING or any(nodes[c].op in _FUSING for c in cons.get(g, ())):
            return True
    return any(nodes[r.node].op in _FUSING for r in match.bindings.values())


def local_gain(cost_model, graph: Graph, rule: Rule, match: Match, cache: dict | None = None
               ) -> float:
    """ms saved by the rewrite with each side costed alone (see the module docstring); `cache`
    (a dict the caller keeps) memoises it per (rule, leaf kinds, matched operators)."""
    folded = folded_nodes(graph)
    kinds = tuple(sorted((v, "weight" if r.node in folded else "input", graph.shape(r))
                         for v, r in match.bindings.items()))
    src_nodes = tuple(sorted((p, graph.nodes[g]) for p, g in match.mapping.items()))
    key = (match.rule_index, kinds, tuple((p, n.op, n.params, n.shapes) for p, n in src_nodes))
    hit = cache.get(key) if cache is not None else None
    if hit is None:
        res = resolve(graph, rule, match)
        leaves = {v: Node(kind, (), (("name", v), ("shape", s)), (s,)) for v, kind, s in kinds}
        src = _standalone(rule.src, leaves, {p: (n.params, n.shapes) for p, n in src_nodes})
        dst = _standalone(rule.dst, leaves, res)
        hit = float(cost_model.graph_cost(src)) - float(cost_model.graph_cost(dst))
        if cache is not None:
            if len(cache) > 100_000:
                cache.clear()
            cache[key] = hit
    return hit


def _standalone(side: Graph, leaves: dict[str, Node], params_shapes) -> Graph:
    """One side of a rule at real shapes, as a graph of its own."""
    nodes = {}
    for i, n in side.nodes.items():
        if n.op in LEAVES:
            nodes[i] = leaves[n.p["name"]]
        else:
            params, shapes = params_shapes[i]
            nodes[i] = Node(n.op, n.inputs, params, shapes)
    return Graph(nodes, side.outputs)


def _dead_upstream(graph: Graph, rule: Rule, match: Match, matched: set[int]) -> set[int]:
    """Nodes outside the match that die with it because the target drops the variable they
    feed (as envcore.rewrite.apply's dead-code pass removes them): no reader left, not an output, not
    a graph input."""
    dead = set(matched)
    used = {match.bindings[v].node for v in rule.dst.inputs}
    outputs = {o.node for o in graph.outputs}
    cons = graph.consumers
    stack = [match.bindings[v].node for v in set(rule.src.inputs) - set(rule.dst.inputs)]
    while stack:
        i = stack.pop()
        if i in dead or i in used or i in outputs or graph.nodes[i].op == "input":
            continue
        if all(c in dead for c in cons[i]):
            dead.add(i)
            stack.extend(r.node for r in graph.nodes[i].inputs)
    return dead - matched


def _existing(graph: Graph, op: str, inputs: tuple, params: tuple) -> int | None:
    """The id of a node of `graph` computing exactly (op, inputs, params), as apply would reuse."""
    for c in graph.consumers.get(inputs[0].node, ()):
        n = graph.nodes[c]
        if n.op == op and n.inputs == inputs and n.params == params:
            return c
    return None
