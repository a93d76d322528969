"""The graph IR: an immutable DAG of operator nodes and the tensors between them.

A `Node` is a small frozen record (op, inputs, params, output shapes).  A tensor is a `Ref`:
(node id, output index).  A `Graph` maps stable integer ids to nodes and names its outputs; it is
never mutated: rewriting builds a new Graph that shares the untouched Node objects.  Node ids
survive rewrites, which is what lets matching stay incremental.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Mapping, NamedTuple


from envcore.frozen import freeze  # noqa: F401  (re-exported: envcore.graph.freeze)

from envcore.ops import LEAVES, OPS, Shape, ShapeError, get


class Ref(NamedTuple):
    node: int
    index: int = 0


@dataclass(frozen=True, slots=True)
class Node:
    op: str
    inputs: tuple[Ref, ...]
    params: tuple[tuple[str, Any], ...]   # sorted (name, value) pairs, values frozen
    shapes: tuple[Shape, ...]              # one shape per output
    # Where the node came from (envcore.onnx puts the ONNX node it was imported as here, so
    # that an untouched node is written back as the file spelled it).  Not part of what the
    # node computes: equality, hashing and the canonical hash ignore it.  It stays with the
    # node while the node survives (a rewrite may rewire its inputs); a node a rewrite creates
    # has none.
    origin: Any = field(default=None, compare=False)

    @property
    def p(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def num_outputs(self) -> int:
        return len(self.shapes)


def make_node(op: str, inputs: Iterable[Ref], input_shapes: list[Shape], **params) -> Node:
    """Checks the op, fills default params and infers output shapes (raises ShapeError)."""
    opdef = get(op)
    full = {k: freeze(v) for k, v in opdef.full_params(params).items()}
    shapes = tuple(opdef.infer(list(input_shapes), full))
    return Node(op, tuple(Ref(*r) for r in inputs), tuple(sorted(full.items())), shapes)


class Graph:
    """An immutable DAG.  `nodes` must not be mutated; build new graphs with GraphBuilder or
    envcore.rewrite.apply.

    What is derived from a graph is cached on it, in one place, the instance dict: the graph's
    own derived values as `cached_property`, what other modules derive through `memo(key, fn)`
    (key: a name of the module's own, e.g. "match.ops_index").  Immutability makes both safe."""

    __slots__ = ("nodes", "outputs", "origin", "__dict__")

    def __init__(self, nodes: Mapping[int, Node], outputs: Iterable[Ref], origin: Any = None):
        self.nodes: Mapping[int, Node] = nodes
        self.outputs: tuple[Ref, ...] = tuple(Ref(*o) for o in outputs)
        # where the whole graph came from (envcore.onnx: the model's interface, opsets and
        # metadata); like Node.origin, not part of its identity, and kept by rewrites
        self.origin = origin

    def memo(self, key: str, compute: Callable[[Graph], Any]) -> Any:
        """compute(self), computed once per graph and key."""
        cache = self.__dict__
        try:
            return cache[key]
        except KeyError:
            value = cache[key] = compute(self)
            return value

    # -- structure ---------------------------------------------------------------------------
    def shape(self, ref: Ref) -> Shape:
        return self.nodes[ref.node].shapes[ref.index]

    @cached_property
    def consumers(self) -> dict[int, list[int]]:
        """node id -> ids of nodes that read any of its outputs (graph outputs not included)."""
        out: dict[int, list[int]] = {i: [] for i in self.nodes}
        for i, n in self.nodes.items():
            for r in n.inputs:
                if i not in out[r.node]:
                    out[r.node].append(i)
        return out

    @cached_property
    def topo_order(self) -> tuple[int, ...]:
        """Node ids, every node after its inputs; raises ValueError on a cycle."""
        indeg = {i: len({r.node for r in n.inputs}) for i, n in self.nodes.items()}
        ready = sorted(i for i, d in indeg.items() if d == 0)
        order: list[int] = []
        cons = self.consumers
        while ready:
            i = ready.pop()
            order.append(i)
            for c in cons[i]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
        if len(order) != len(self.nodes):
            raise ValueError("graph has a cycle")
        return tuple(order)

    def is_acyclic(self) -> bool:
        try:
            self.topo_order
            return True
        except ValueError:
            return False

    def leaves(self, kind: str | None = None) -> dict[str, Ref]:
        """name -> ref of every input/weight leaf (of one kind if given)."""
        return {n.p["name"]: Ref(i, 0) for i, n in self.nodes.items()
                if n.op in LEAVES and (kind is None or n.op == kind)}

    @property
    def inputs(self) -> dict[str, Ref]:
        return self.leaves("input")

    @property
    def num_ops(self) -> int:
        return sum(1 for n in self.nodes.values() if n.op not in LEAVES)

    def validate(self) -> None:
        """Re-infers every shape and checks references; raises ShapeError/ValueError."""
        for i, n in self.nodes.items():
            for r in n.inputs:
                if r.node not in self.nodes or r.index >= self.nodes[r.node].num_outputs:
                    raise ValueError(f"node {i} reads missing tensor {r}")
            again = make_node(n.op, n.inputs, [self.shape(r) for r in n.inputs], **n.p)
            if again.shapes != n.shapes:
                raise ShapeError(f"node {i}: stored shapes {n.shapes} != inferred {again.shapes}")
        for o in self.outputs:
            if o.node not in self.nodes:
                raise ValueError(f"output {o} is missing")
        self.topo_order

    # -- canonical hashing -------------------------------------------------------------------
    @cached_property
    def node_hashes(self) -> dict[int, bytes]:
        """Merkle hash per node: op, params and input hashes; independent of node ids/order."""
        h: dict[int, bytes] = {}
        for i in self.topo_order:
            n = self.nodes[i]
            key = repr((n.op, n.params, tuple((h[r.node], r.index) for r in n.inputs)))
            h[i] = hashlib.blake2b(key.encode(), digest_size=16).digest()
        return h

    @cached_property
    def canonical_hash(self) -> str:
        """Equal for graphs that compute the same DAG, whatever their node ids."""
        nh = self.node_hashes
        outs = repr(tuple((nh[o.node], o.index) for o in self.outputs))
        return hashlib.blake2b(outs.encode(), digest_size=16).hexdigest()

    def __eq__(self, other) -> bool:
        return isinstance(other, Graph) and self.canonical_hash == other.canonical_hash

    def __hash__(self) -> int:
        return hash(self.canonical_hash)

    def __repr__(self) -> str:
        return f"Graph({self.num_ops} ops, {len(self.nodes)} nodes, {len(self.outputs)} outputs)"

    def text(self) -> str:
        """The outputs as terms, leaves by name: `relu(conv2d(x, w)) | split{'axis': 1}(y).0`."""
        def term(ref: Ref) -> str:
            n = self.nodes[ref.node]
            if n.op in LEAVES:
                return n.p["name"]
            keep = {k: v for k, v in n.params if k in ("axis", "perm")
                    or (k == "activation" and v != "none") or (k == "groups" and v != 1)}
            s = f"{n.op}{keep if keep else ''}({', '.join(term(r) for r in n.inputs)})"
            return s + (f".{ref.index}" if n.num_outputs > 1 else "")
        return " | ".join(term(o) for o in self.outputs)

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"nodes": [{"id": i, "op": n.op, "inputs": [list(r) for r in n.inputs],
                           "params": {k: _jsonable(v) for k, v in n.params}}
                          for i, n in sorted(self.nodes.items())],
                "outputs": [list(o) for o in self.outputs]}

    @staticmethod
    def from_dict(d: dict) -> "Graph":
        try:
            nodes: dict[int, Node] = {}
            raw = {int(e["id"]): e for e in d["nodes"]}
            building: set[int] = set()

            def build(i: int) -> Node:
                if i in nodes:
                    return nodes[i]
                if i in building:
                    raise ValueError("graph has a cycle")
                building.add(i)
                e = raw[i]
                ins = [Ref(int(a), int(b)) for a, b in e["inputs"]]
                shapes = [build(r.node).shapes[r.index] for r in ins]
                nodes[i] = make_node(e["op"], ins, shapes, **e.get("params", {}))
                return nodes[i]

            for i in raw:
                build(i)
            return Graph(dict(sorted(nodes.items())), [Ref(int(a), int(b)) for a, b in d["outputs"]])
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"malformed graph JSON: {e!r}") from None
        finally:
            # `build` calls itself through its closure: a reference cycle that would keep the
            # parsed JSON and the first nodes alive until the cyclic collector runs (loading
            # the shipped DB's rules spent more than a second in it)
            build = None  # noqa: F841

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @staticmethod
    def from_json(s: str) -> "Graph":
        try:
            return Graph.from_dict(json.loads(s))
        except json.JSONDecodeError as e:
            raise ValueError(f"malformed graph JSON: {e}") from None


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


class GraphBuilder:
    """Builds a Graph op by op:  b = GraphBuilder(); x = b.input("x", (2, 4));
    y = b.add("relu", x); g = b.build([y])."""

    def __init__(self, graph: Graph | None = None):
        self.nodes: dict[int, Node] = dict(graph.nodes) if graph else {}
        self.origin = graph.origin if graph else None
        self._next = max(self.nodes, default=-1) + 1

    def shape(self, ref: Ref) -> Shape:
        return self.nodes[ref.node].shapes[ref.index]

    def add_node(self, node: Node) -> int:
        i = self._next
        self._next += 1
        self.nodes[i] = node
        return i

    def add(self, op: str, *inputs: Ref, **params) -> Ref | tuple[Ref, ...]:
        """Adds an op; returns its output Ref, or a tuple of Refs for multi-output ops."""
        node = make_node(op, inputs, [self.shape(r) for r in inputs], **params)
        i = self.add_node(node)
        if node.num_outputs == 1 and op != "split":
            return Ref(i, 0)
        return tuple(Ref(i, k) for k in range(node.num_outputs))

    def input(self, name: str, shape: Shape) -> Ref:
        return self.add("input", name=name, shape=shape)

    def weight(self, name: str, shape: Shape) -> Ref:
        return self.add("weight", name=name, shape=shape)

    def build(self, outputs: Iterable[Ref]) -> Graph:
        return Graph(dict(self.nodes), outputs, self.origin)


__all__ = ["Graph", "GraphBuilder", "Node", "Ref", "make_node", "freeze", "OPS", "ShapeError"]
