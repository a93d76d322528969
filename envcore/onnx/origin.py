"""What an imported model remembers of its ONNX file, so that export can write it back as it was.

The IR normalises: a Gemm becomes transpose + matmul + bias_add, a Conv's bias a bias_add, a
GlobalAveragePool an avg pool, and the IR has no dtypes, node names or opsets.  That is what the
rules match against.  The file written back should still be the original wherever no rewrite
touched it, so the importer leaves these records behind (plain data: no onnx import here):

- `Node.origin` of each IR node an ONNX node was imported as: `Spelled(spelling, member)`, the
  `Spelling` shared by every IR node of that ONNX node.  The exporter writes the original node
  whenever the whole group is still there and still wired as at import (`intact`), and lowers
  it from the IR ops otherwise.
- `Node.origin` of leaves: `Leaf` (the ONNX element type; for a weight that a node computed
  at import, that node).  Constants the importer folds (Constants, shape arithmetic) are
  `ConstInput`s of the nodes that read them, each with the node that made it.
- `Graph.origin`: `ModelOrigin`, the model around the graph (opsets, ir_version, producer,
  metadata, functions) and its declared inputs and outputs.

Rewrites keep `origin` on the nodes they keep (rewired or not) and give new nodes none, so a
group a rewrite changed fails `intact` and is lowered.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from envcore.graph import Graph, Ref


@dataclass(frozen=True, eq=False)
class ConstInput:
    """An input of an ONNX node that is no IR tensor (a shape, axes, indices), and the node
    that computed it at import (a Constant, the Shape -> Gather -> Concat arithmetic the
    importer folds), if one did: written back as that node when all it reads can be written
    too, else as an initializer holding its value.  `tensor` is that value, a serialized
    TensorProto named `name`; None for a large float initializer, whose value is then the
    weight of that name (so import does not hold a second copy of it)."""
    name: str
    tensor: bytes | None
    made_by: "Spelling | None" = None


@dataclass(frozen=True, eq=False)
class Spelling:
    """One ONNX node as the file spelled it.

    `proto` is its NodeProto (name, op_type, domain, attributes; its tensor names are replaced
    on export by the current ones).  `members` is how many IR nodes it was imported as;
    `wiring[m][j]` says where input j of member m comes from: ("in", k), the tensor of ONNX
    input k, or ("member", m2, index), another member's output.  Per ONNX input, `inputs[k]`
    is None (omitted), an int k2 (an IR tensor: the one ONNX input k2 names, the first with
    the same tensor), a ConstInput, or for a node folded at import (members == 0) a str: the
    original name of the tensor it read (a Shape's input).  `via[k]` holds the pass-through
    nodes (Identity, Dropout) between that tensor and the name the node read, as Spellings of
    their own.  Per ONNX output, `outputs[j]` is the (member, index) that computes it, or
    None."""
    key: int                       # position in the imported graph: identifies and orders it
    proto: bytes
    members: int
    wiring: tuple
    inputs: tuple
    via: tuple
    outputs: tuple


@dataclass(frozen=True)
class Spelled:
    """Node.origin of an IR node that member `member` of `spelling` was imported as."""
    spelling: Spelling
    member: int


@dataclass(frozen=True)
class Leaf:
    """Node.origin of an input or weight leaf: its ONNX element type, and for a weight that a
    node computed at import (a Constant, a Transpose of an initializer), that node."""
    elem: int
    made_by: Spelling | None = None


@dataclass(frozen=True, eq=False)
class ModelOrigin:
    """Graph.origin of an imported graph.  `shell` is the ModelProto with its graph emptied of
    nodes, initializers, value_info, inputs and outputs (what remains: opset imports,
    ir_version, producer, metadata_props, functions, the graph's name and doc string).
    `inputs`: (name, elem type, shape as imported) per real input, in declared order;
    `outputs`: (name, elem type, via) per graph output, `via` the pass-through Spellings
    between the IR tensor and the output's name; `names`: every tensor name of the file
    (new tensors get other names)."""
    shell: bytes
    inputs: tuple
    outputs: tuple
    names: frozenset


def intact(graph: Graph) -> dict[int, tuple[Spelling, dict[int, int], dict[int, Ref]]]:
    """The spellings the graph can still be written as: key -> (spelling, {member: node id},
    {ONNX input k: the tensor it reads now}).  A spelling qualifies when all its members are
    there (they keep their op and params: only the importer sets origins), each is wired to the
    others as at import, the members that read one ONNX input still read one tensor, and no
    node outside the group, nor a graph output, reads an output the ONNX node does not have
    (the Gemm's matmul before its bias, say)."""
    groups: dict[int, tuple[Spelling, dict[int, int]]] = {}
    for i, n in graph.nodes.items():
        if isinstance(n.origin, Spelled):
            sp = n.origin.spelling
            groups.setdefault(sp.key, (sp, {}))[1][n.origin.member] = i
    outputs = set(graph.outputs)
    found = {}
    for key, (sp, ids) in groups.items():
        reads = _reads_if_wired(graph, sp, ids, outputs) if len(ids) == sp.members else None
        if reads is not None:
            found[key] = (sp, ids, reads)
    return found


def _reads_if_wired(graph: Graph, sp: Spelling, ids: Mapping[int, int], outputs: set
                    ) -> dict[int, Ref] | None:
    """{ONNX input k: the tensor it reads now} when the group is wired as at import, else None."""
    reads: dict[int, Ref] = {}
    for m, wiring in enumerate(sp.wiring):
        node = graph.nodes[ids[m]]
        for j, w in enumerate(wiring):
            r = node.inputs[j]
            if w[0] == "member":
                if r != Ref(ids[w[1]], w[2]):
                    return None
            elif reads.setdefault(w[1], r) != r:
                return None
    exposed = {o for o in sp.outputs if o is not None}
    members = set(ids.values())
    for m, i in ids.items():
        for k in range(graph.nodes[i].num_outputs):
            if (m, k) in exposed:
                continue
            r = Ref(i, k)
            if r in outputs or any(c not in members and r in graph.nodes[c].inputs
                                   for c in graph.consumers[i]):
                return None
    return reads
