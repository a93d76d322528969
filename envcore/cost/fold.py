"""Which nodes fold ahead of time: those computable from weights and constants alone."""
from __future__ import annotations

from envcore.graph import Graph

def folded_nodes(graph: Graph) -> frozenset[int]:
    """Ids of every node whose value depends on no `input` leaf (weights, constants and the ops
    over them only).  Cached on the (immutable) graph."""
    return graph.memo("fold.folded_nodes", _folded_nodes)


def _folded_nodes(graph: Graph) -> frozenset[int]:
    nodes = graph.nodes
    folded: set[int] = set()
    for i in graph.topo_order:
        n = nodes[i]
        if n.op != "input" and all(r.node in folded for r in n.inputs):
            folded.add(i)
    return frozenset(folded)
