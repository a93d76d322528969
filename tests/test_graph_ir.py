"""The graph IR: canonical hash invariant to node ids, JSON round trip, cycle detection."""
import random

import pytest
from hypothesis import given, settings, strategies as st

from envcore.graph import Graph, GraphBuilder, Node, Ref


def _graph():
    b = GraphBuilder()
    x, m = b.input("x", (2, 4)), b.input("m", (4, 4))
    y = b.add("matmul", x, m)
    z = b.add("relu", y)
    w = b.add("ewadd", z, y)
    return b.build([w, z])


def _relabel(g: Graph, seed: int) -> Graph:
    ids = list(g.nodes)
    new = list(range(100, 100 + len(ids)))
    random.Random(seed).shuffle(new)
    m = dict(zip(ids, new))
    nodes = {m[i]: Node(n.op, tuple(Ref(m[r.node], r.index) for r in n.inputs), n.params,
                        n.shapes) for i, n in g.nodes.items()}
    items = list(nodes.items())
    random.Random(seed + 1).shuffle(items)
    return Graph(dict(items), [Ref(m[o.node], o.index) for o in g.outputs])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_canonical_hash_ignores_node_ids(seed):
    g = _graph()
    h = _relabel(g, seed)
    assert h.canonical_hash == g.canonical_hash
    assert h == g


def test_canonical_hash_sees_structure():
    g = _graph()
    other = Graph(g.nodes, list(reversed(g.outputs)))   # outputs are ordered in a Graph
    assert other.canonical_hash != g.canonical_hash
    b = GraphBuilder()
    x, m = b.input("x", (2, 4)), b.input("m", (4, 4))
    y = b.add("matmul", x, m)
    assert b.build([b.add("relu", y)]) != g


def test_json_round_trip():
    g = _graph()
    back = Graph.from_json(g.to_json())
    assert back == g and back.to_dict() == g.to_dict()


def test_cycle_detected():
    d = _graph().to_dict()
    # make the matmul read the relu that reads it
    relu = next(e for e in d["nodes"] if e["op"] == "relu")
    mm = next(e for e in d["nodes"] if e["op"] == "matmul")
    mm["inputs"][0] = [relu["id"], 0]
    with pytest.raises(ValueError):
        Graph.from_dict(d)
    g = _graph()
    nodes = dict(g.nodes)
    rid = next(i for i, n in nodes.items() if n.op == "relu")
    mid = next(i for i, n in nodes.items() if n.op == "matmul")
    n = nodes[mid]
    nodes[mid] = Node(n.op, (Ref(rid, 0), n.inputs[1]), n.params, n.shapes)
    assert not Graph(nodes, g.outputs).is_acyclic()


def test_text_names_ops_params_and_outputs():
    from envcore.graph import GraphBuilder
    b = GraphBuilder()
    x, w = b.input("x", (1, 4, 4, 4)), b.input("w", (4, 4, 3, 3))
    y = b.add("conv2d", x, w, activation="relu")
    s0, s1 = b.add("split", y, axis=1, sizes=(2, 2))
    assert b.build([s1, y]).text() == \
        "split{'axis': 1}(conv2d{'activation': 'relu'}(x, w)).1 | conv2d{'activation': 'relu'}(x, w)"
