"""The cost model's base class: per-operator memo, per-graph sum over the nodes that do not fold."""
from __future__ import annotations

import itertools
from typing import Any

from envcore.cost.fold import folded_nodes
from envcore.graph import Graph, Node
from envcore.ops import CONSTANTS, LEAVES

Signature = tuple  # (op, params, input shapes)
_instances = itertools.count()


class CostModelUnavailable(RuntimeError):
    """The backend cannot run here (no GPU, a missing package); the message is one line."""


class CostModel:
    """Base class: subclasses implement `measure(op, params, in_shapes, out_shapes) -> ms`."""

    name = "base"
    # True where an op's price depends on its neighbours (`fused`): a rewrite's price is then
    # not the sum of what it removes and adds, and `envcore.rewrite.price` says "not exact"
    contextual = False

    def __init__(self):
        self._memo: dict[Signature, float] = {}
        self._graph_key = f"cost.{self.name}.{next(_instances)}"   # unique per instance

    def measure(self, op: str, params: dict[str, Any], in_shapes: tuple, out_shapes: tuple
                ) -> float:
        raise NotImplementedError

    @staticmethod
    def signature(graph: Graph, node: Node) -> Signature:
        nodes = graph.nodes
        return (node.op, node.params, tuple(nodes[r.node].shapes[r.index] for r in node.inputs))

    def fused(self, graph: Graph, node: Node) -> bool:
        """Whether the runtime fuses `node` into the op before it, so that it costs nothing of
        its own (only `contextual` models say so)."""
        return False

    def node_cost(self, graph: Graph, node: Node) -> float:
        """Cost of `node` as an operator, whether or not it folds in this graph."""
        if node.op in LEAVES or node.op in CONSTANTS:
            return 0.0
        if self.contextual and self.fused(graph, node):
            return 0.0
        sig = self.signature(graph, node)
        ms = self._memo.get(sig)
        if ms is None:
            ms = self._memo[sig] = float(self.measure(node.op, dict(node.params), sig[2],
                                                      node.shapes))
        return ms

    def op_cost(self, graph: Graph, node_id: int) -> float:
        if node_id in folded_nodes(graph):
            return 0.0
        return self.node_cost(graph, graph.nodes[node_id])

    def graph_cost(self, graph: Graph) -> float:
        return graph.memo(self._graph_key, self._graph_cost)

    def _graph_cost(self, graph: Graph) -> float:
        folded = folded_nodes(graph)
        return sum(self.node_cost(graph, n) for i, n in graph.nodes.items() if i not in folded)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
