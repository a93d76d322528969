"""A stand-in cost model for the env tests: FLOPs plus a fixed launch overhead per operator.
Deterministic, and it rewards what the real models reward (fusing, merging).  Nodes computable
from weights alone cost 0, as in the contract (they fold ahead of time)."""
from __future__ import annotations

import math

from envcore.graph import Graph
from envcore.ops import CONSTANTS, LEAVES

LAUNCH = 1000.0


def _folded(graph: Graph) -> set[int]:
    folded: set[int] = set()
    for i in graph.topo_order:
        n = graph.nodes[i]
        if n.op != "input" and all(r.node in folded for r in n.inputs):
            folded.add(i)
    return folded


class FlopsCost:
    name = "flops"

    def op_cost(self, graph: Graph, node_id: int) -> float:
        n = graph.nodes[node_id]
        if n.op in LEAVES or n.op in CONSTANTS or node_id in _folded(graph):
            return 0.0
        out = sum(math.prod(s) for s in n.shapes)
        if n.op == "matmul":
            work = 2 * out * graph.shape(n.inputs[0])[-1]
        elif n.op == "conv2d":
            w = graph.shape(n.inputs[1])
            work = 2 * out * w[1] * w[2] * w[3]
        else:
            work = out
        return (LAUNCH + work) / 1e6

    def graph_cost(self, graph: Graph) -> float:
        return sum(self.op_cost(graph, i) for i in graph.nodes)
