"""The IR out to ONNX: `to_onnx` and `save_onnx`.

    save_onnx(graph, "out.onnx", weights)      # weights missing from the dict get seeded random
                                               # values (zoo models have no trained ones)

A graph imported from ONNX is written back as its file: every ONNX node whose IR nodes no
rewrite touched (`envcore.onnx.origin.intact`) as the node it was (name, op_type, attributes,
domain, constant inputs, tensor names), in the original order, under the original opsets,
ir_version, producer and metadata, with the declared inputs and outputs (names, order, element
types) and weights in their own dtypes.  Only what a rewrite made or changed is lowered from
the IR ops, each catalogue op to the standard operators (valid from opset 13, what the importer
converts older models to; `EXPORT_OPSET` for graphs not imported).  An opaque node is written
back as the ONNX node it was imported from.  onnx is imported lazily.
"""
from __future__ import annotations

import heapq
import os
from typing import Mapping

import numpy as np

from envcore.graph import Graph, Ref
from envcore.onnx.opaque import EXPORT_OPSET, FLOAT as _FLOAT, opaque_node_proto
from envcore.onnx.origin import ConstInput, Leaf, ModelOrigin, intact
from envcore.ops import CONSTANTS, LEAVES, OPS, _pads


def to_onnx(graph: Graph, weights: Mapping[str, np.ndarray] | None = None, seed: int = 0,
            name: str = "subgen"):
    """Graph -> onnx.ModelProto.  Weights missing from `weights` get seeded random values
    (float32, or the dtype the imported file had); constants (eye, ones, ...) are written as
    Constant nodes."""
    weights = dict(weights or {})
    missing = [n for n in graph.leaves("weight") if n not in weights]
    if missing:
        from envcore.execute import random_values
        rnd = random_values(graph, seed, leaves=("weight",))
        weights.update({k: rnd[k] for k in missing})
    return _Writer(graph, weights).model(name)


def save_onnx(graph: Graph, path, weights: Mapping[str, np.ndarray] | None = None,
              seed: int = 0) -> None:
    """Writes `to_onnx(graph, weights, seed)` to `path`."""
    import onnx
    onnx.save(to_onnx(graph, weights, seed), os.fspath(path))


class _Writer:
    """One export.  Tensor names are fixed first (the original's where a spelling writes
    them, fresh ones that avoid every original name elsewhere), then nodes are written in any
    order and sorted at the end: topologically, untouched nodes in their original order."""

    def __init__(self, graph: Graph, weights: Mapping[str, np.ndarray]):
        from onnx import NodeProto
        self.graph, self.weights = graph, weights
        self.origin = graph.origin if isinstance(graph.origin, ModelOrigin) else None
        self.spelled = intact(graph)
        self.protos = {k: NodeProto.FromString(sp.proto) for k, (sp, _, _) in self.spelled.items()}
        self.group = {i: k for k, (_, ids, _) in self.spelled.items() for i in ids.values()}
        self.out: list[tuple[float | None, object]] = []   # (original position or None, node)
        self.inits: list = []
        self.produced: dict[str, object] = {}  # name written -> the Ref (or constant) it holds
        self.taken = self._original_names()
        self.fresh_names: set[str] = set()
        self.makeable: dict[int, bool] = {}    # folded node's key -> can it be written back
        self.made: set[int] = set()            # ... and those written
        self.tname: dict[Ref, str] = {}
        self.elem: dict[Ref, int] = {}
        self.absorbed = self._absorbed()
        self._name_tensors()

    def _absorbed(self) -> dict[int, int]:
        """{conv2d or 2-D matmul node: the bias_add after it}, for the pairs written as one
        node (`bias_producer`), but where either keeps the file's own spelling."""
        out = {}
        for i, n in self.graph.nodes.items():
            if n.op == "bias_add" and i not in self.group:
                j = bias_producer(self.graph, n)
                if j is not None and j not in self.group:
                    out[j] = i
        return out

    # -- names -----------------------------------------------------------------------------
    def _original_names(self) -> set[str]:
        """Every name some part of the original may be written under: fresh names avoid
        them (a file may well name its own tensors t12)."""
        from onnx import NodeProto
        names = set(self.graph.leaves())
        if self.origin is not None:
            names |= self.origin.names
        for sp, _, _ in self.spelled.values():   # (the names of a graph that lost its origin)
            names.update(NodeProto.FromString(sp.proto).output)
            names.update(c.name for c in sp.inputs if isinstance(c, ConstInput))
        names.discard("")
        return names

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        self.fresh_names.add(name)
        return name

    def _name_tensors(self) -> None:
        g = self.graph
        wanted = {}   # a graph output's original name -> its tensor: nothing else may take it
        if self.origin is not None and len(self.origin.outputs) == len(g.outputs):
            wanted = {o[0]: r for o, r in zip(self.origin.outputs, g.outputs)}
        for key, (sp, ids, _) in self.spelled.items():
            for j, o in enumerate(sp.outputs):
                if o is not None:
                    r, name = Ref(ids[o[0]], o[1]), self.protos[key].output[j]
                    self.tname[r] = name if wanted.get(name, r) == r else self.fresh(name)
        # the names that hold the file's own tensors: what written-back shape arithmetic reads
        self.originals = set(self.graph.leaves()) | (set(self.tname.values()) - self.fresh_names)
        for i in g.topo_order:
            n = g.nodes[i]
            for k in range(n.num_outputs):
                r = Ref(i, k)
                if n.op in LEAVES:
                    self.tname[r] = n.p["name"]
                elif r not in self.tname:
                    self.tname[r] = self.fresh(f"t{i}" if n.num_outputs == 1 else f"t{i}_{k}")

    # -- writing ---------------------------------------------------------------------------
    def emit(self, node, position: float | None = None) -> None:
        self.out.append((position, node))
        for o in node.output:
            self.produced.setdefault(o, "node")

    def const(self, base: str, value: np.ndarray) -> str:
        """A new initializer (for lowered ops' shapes, sizes, pads)."""
        from onnx import numpy_helper
        name = self.fresh(f"{base}_const")
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def const_input(self, c: ConstInput) -> str:
        """An original constant input: the node that computed it (a Constant, shape
        arithmetic) where that can be written back, else an initializer with its value."""
        from onnx import TensorProto, numpy_helper
        if c.name not in self.produced:
            if c.made_by is not None and self.can_make(c.made_by):
                self.make(c.made_by)
            elif c.tensor is not None:
                self.inits.append(TensorProto.FromString(c.tensor))
            else:
                self.inits.append(numpy_helper.from_array(np.asarray(self.weights[c.name]),
                                                          c.name))
            self.produced[c.name] = c
        return c.name

    def can_make(self, sp) -> bool:
        """Whether a node folded at import can be written back: every tensor it reads is
        still written under its original name, every constant it reads has a value, and no
        new tensor took one of its names."""
        from onnx import NodeProto
        if sp.key not in self.makeable:
            self.makeable[sp.key] = False      # (a cycle cannot occur: the file was a DAG)
            ok = all(
                x is None
                or (x in self.originals if isinstance(x, str) else
                    (x.made_by is not None and self.can_make(x.made_by)) or x.tensor is not None
                    or x.name in self.weights)
                for x in sp.inputs)
            outs = NodeProto.FromString(sp.proto).output
            self.makeable[sp.key] = ok and not self.fresh_names.intersection(outs)
        return self.makeable[sp.key]

    def make(self, sp) -> None:
        """Writes a node folded at import as it was (every name it reads is the original's)."""
        from onnx import NodeProto
        if sp.key in self.made:
            return
        self.made.add(sp.key)
        node = NodeProto.FromString(sp.proto)
        for x in sp.inputs:
            if isinstance(x, ConstInput):
                self.const_input(x)
        self.emit(node, sp.key)

    def via(self, chain: tuple, r: Ref) -> str:
        """The name under which the original read tensor `r`: its pass-through nodes
        (Identity, ...) written on the way, each once.  One whose name now holds another
        tensor is skipped, and the reader reads `r` by the name it has."""
        from onnx import NodeProto
        name = self.tname[r]
        for sp in chain:
            node = NodeProto.FromString(sp.proto)
            out = node.output[0]
            if out in self.produced:
                if self.produced[out] != r:
                    return name
            else:
                node.input[:] = [name] + [self.input_name(sp, k, {}) for k in
                                          range(1, len(sp.inputs))]
                self.emit(node, sp.key)
                self.produced[out] = r
            name = out
        return name

    def input_name(self, sp, k: int, reads: Mapping[int, Ref]) -> str:
        src = sp.inputs[k]
        if src is None:
            return ""
        if isinstance(src, ConstInput):
            return self.const_input(src)
        return self.via(sp.via[k], reads[src])

    def spelled_node(self, key: int) -> None:
        """An intact ONNX node as the file had it, reading and writing today's tensors."""
        from onnx import NodeProto
        sp, ids, reads = self.spelled[key]
        node = NodeProto()
        node.CopyFrom(self.protos[key])
        node.input[:] = [self.input_name(sp, k, reads) for k in range(len(sp.inputs))]
        node.output[:] = [self.tname[Ref(ids[o[0]], o[1])] if o is not None else node.output[j]
                          for j, o in enumerate(sp.outputs)]
        self.emit(node, key)
        for j, o in enumerate(sp.outputs):
            if o is not None:
                self.produced[node.output[j]] = Ref(ids[o[0]], o[1])

    def weight_dtype(self, n) -> np.dtype:
        """A weight's dtype as written: the file's (float16 stays float16), float32 for a
        float weight of a graph not imported."""
        from onnx import helper
        if isinstance(n.origin, Leaf):
            return helper.tensor_dtype_to_np_dtype(n.origin.elem)
        v = np.asarray(self.weights[n.p["name"]])
        return np.dtype(np.float32) if v.dtype.kind == "f" else v.dtype

    def weight(self, i: int, n) -> None:
        from onnx import numpy_helper
        leaf = n.origin if isinstance(n.origin, Leaf) else None
        if leaf is not None and leaf.made_by is not None and self.can_make(leaf.made_by):
            self.make(leaf.made_by)    # a Constant, or a Transpose of an initializer, ...
        else:
            v = np.asarray(self.weights[n.p["name"]]).astype(self.weight_dtype(n), copy=False)
            self.inits.append(numpy_helper.from_array(v, n.p["name"]))

    def lowered(self, i: int, n) -> None:
        """A node no original spelling covers, from its IR op."""
        ins = [self.tname[r] for r in n.inputs]
        outs = [self.tname[Ref(i, k)] for k in range(n.num_outputs)]
        if n.op == "opaque":
            node, consts = opaque_node_proto(n.p, ins, outs, self.fresh(f"t{i}"))
            self.emit(node)
            self.inits.extend(consts)
        else:
            for node in _EXPORTERS[n.op](n, n.p, ins, outs, self, self.graph):
                self.emit(node)

    def model(self, name: str):
        from onnx import ModelProto, helper
        g = self.graph
        for r in g.leaves().values():
            self.produced[self.tname[r]] = r
        for i in g.topo_order:
            self._track_elem(i, g.nodes[i])
        outputs = self._outputs()   # first: the outputs' names are theirs before any other's
        for i in g.topo_order:
            n = g.nodes[i]
            if n.op == "weight":
                self.weight(i, n)
            elif n.op == "input" or i in self.absorbed:  # (written with its bias_add)
                continue
            elif i in self.group:
                if i == min(self.spelled[self.group[i]][1].values()):  # once per group
                    self.spelled_node(self.group[i])
            else:
                self.lowered(i, n)
        inputs = self._inputs()
        nodes = _ordered(self.out)
        if self.origin is None:
            opsets = {"": EXPORT_OPSET}
            for n in g.nodes.values():
                if n.op == "opaque":
                    attrs = dict(n.p["attrs"])
                    dom = attrs.get("@domain", "")
                    if dom in ("", "ai.onnx"):
                        opsets[""] = max(opsets[""], attrs.get("@opset", EXPORT_OPSET))
                    else:
                        opsets[dom] = attrs.get("@opset", 1)
            model = helper.make_model(
                helper.make_graph(nodes, name, inputs, outputs, initializer=self.inits),
                opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                producer_name="subgen")
            model.ir_version = min(model.ir_version, 9)
            return model
        model = ModelProto.FromString(self.origin.shell)
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(self.inits)
        model.graph.input.extend(inputs)
        model.graph.output.extend(outputs)
        return model

    def _track_elem(self, i: int, n) -> None:
        """ONNX element types: the IR's ops keep their first input's; opaque nodes say."""
        if n.op == "input":
            self.elem[Ref(i, 0)] = n.origin.elem if isinstance(n.origin, Leaf) else _FLOAT
        elif n.op == "opaque":
            types = dict(n.p["attrs"]).get("@out_types") or ()
            for k in range(n.num_outputs):
                self.elem[Ref(i, k)] = types[k] if k < len(types) else _FLOAT
        elif n.op == "weight":
            from onnx import helper
            self.elem[Ref(i, 0)] = helper.np_dtype_to_tensor_dtype(self.weight_dtype(n))
        else:
            ty = self.elem[n.inputs[0]] if n.inputs and n.op not in CONSTANTS else _FLOAT
            for k in range(n.num_outputs):
                self.elem[Ref(i, k)] = ty

    def _outputs(self) -> list:
        """The declared outputs, under their original names where the graph has them (the
        original's own pass-through nodes first, else an Identity), `output_k` otherwise."""
        from onnx import helper
        g, declared = self.graph, []
        origin = self.origin.outputs if self.origin is not None and \
            len(self.origin.outputs) == len(g.outputs) else None
        for k, r in enumerate(g.outputs):
            want, elem, chain = origin[k] if origin else (f"output_{k}", self.elem[r], ())
            have = self.via(chain, r) if origin else None
            if have != want:
                self.emit(helper.make_node("Identity", [have or self.tname[r]], [want]))
                self.produced[want] = r
            declared.append(helper.make_tensor_value_info(want, elem, g.shape(r)))
        return declared

    def _inputs(self) -> list:
        """The declared inputs: the original's, in its order, with its element types (an
        input the graph no longer reads too: callers feed what they fed); symbolic dims as
        the import pinned them."""
        from onnx import helper
        leaves = {name: r for name, r in self.graph.inputs.items()}
        declared = []
        for name, elem, shape in (self.origin.inputs if self.origin is not None else ()):
            r = leaves.pop(name, None)
            declared.append(helper.make_tensor_value_info(
                name, elem, self.graph.shape(r) if r is not None else shape))
        for name, r in sorted(leaves.items(), key=lambda kv: kv[1]):
            declared.append(helper.make_tensor_value_info(name, self.elem[r], self.graph.shape(r)))
        return declared


def bias_producer(graph: Graph, node) -> int | None:
    """The conv2d or 2-D matmul whose bias `node` (a bias_add) is: the op before it, with no
    activation of its own, read by `node` alone and no graph output.  ONNX spells the pair as
    one node, Conv(x, w, b) or Gemm(x, w, b), as exporters write it and onnxruntime runs it
    (with the bias's activation fused in as well): what the exporter writes, and what the
    onnxruntime cost model prices as one op."""
    j = node.inputs[0].node
    m = graph.nodes[j]
    if m.op not in ("conv2d", "matmul") or m.p.get("activation") != "none":
        return None
    rank = len(m.shapes[0])
    if (m.op == "matmul" and rank != 2) or node.p["axis"] % rank != 1:
        return None
    return j if read_by_one(graph, j) else None


def read_by_one(graph: Graph, j: int) -> bool:
    """Whether node `j` has exactly one reader and is no graph output: what a fusion into the
    op after it needs (nothing else sees the unfused value)."""
    return len(graph.consumers.get(j, ())) == 1 and not any(r.node == j for r in graph.outputs)


def _ordered(out: list) -> list:
    """The nodes in a topological order; among those ready, the original's nodes by their
    position in it, and a new node right after the latest node it reads."""
    producer = {o: k for k, (_, node) in enumerate(out) for o in node.output if o}
    deps = [{producer[x] for x in node.input if x in producer} - {k}
            for k, (_, node) in enumerate(out)]
    users: list[list[int]] = [[] for _ in out]
    for k, d in enumerate(deps):
        for j in d:
            users[j].append(k)
    waiting = [len(d) for d in deps]
    rank: dict[int, float] = {}

    def ready(k: int):
        pos = out[k][0]
        rank[k] = pos if pos is not None else max((rank[j] for j in deps[k]), default=-1.0)
        return (rank[k], pos is None, k)

    heap = [ready(k) for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, _, k = heapq.heappop(heap)
        order.append(out[k][1])
        for u in users[k]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(heap, ready(u))
    return order


def _with_act(node, act: str, outs, make, cx):
    from onnx import helper
    if act == "none":
        return [make(outs)]
    mid = [cx.fresh(outs[0] + "_pre")]
    return [make(mid), helper.make_node(act.capitalize(), mid, outs)]


def _export_conv(n, p, ins, outs, cx, graph):
    from onnx import helper
    ws = graph.shape(n.inputs[1])
    t, b, l, r = _pads(ws[2], ws[3], p["padding"], tuple(p["stride"]))
    return _with_act(n, p["activation"], outs, lambda o: helper.make_node(
        "Conv", ins, o, strides=list(p["stride"]), pads=[t, l, b, r], group=p["groups"],
        kernel_shape=list(ws[2:])), cx)


def _export_pool(n, p, ins, outs, cx, graph):
    from onnx import helper
    kh, kw = p["kernel"]
    t, b, l, r = _pads(kh, kw, p["padding"], tuple(p["stride"]))
    kw_ = dict(kernel_shape=[kh, kw], strides=list(p["stride"]), pads=[t, l, b, r])
    if n.op == "pool_avg":
        kw_["count_include_pad"] = 1
    op = "MaxPool" if n.op == "pool_max" else "AveragePool"
    return _with_act(n, p["activation"], outs, lambda o: helper.make_node(op, ins, o, **kw_), cx)


def _export_matmul(n, p, ins, outs, cx, graph):
    from onnx import helper
    return _with_act(n, p["activation"], outs, lambda o: helper.make_node("MatMul", ins, o), cx)


def _export_bias(n, p, ins, outs, cx, graph):
    from onnx import helper
    src = graph.nodes[n.inputs[0].node]
    if n.inputs[0].node in cx.absorbed:     # Conv(x, w, b) or Gemm(x, w, b): one node
        inner = [cx.tname[r] for r in src.inputs] + [ins[1]]
        export = _export_conv if src.op == "conv2d" else _export_gemm
        return _with_act(n, p["activation"], outs,
                         lambda o: export(src, src.p, inner, o, cx, graph)[0], cx)
    rank = len(n.shapes[0])
    if p["axis"] % rank == rank - 1:  # ONNX broadcasting aligns trailing dims already
        return _with_act(n, p["activation"], outs, lambda o: helper.make_node("Add", ins, o), cx)
    shape = [1] * rank
    shape[p["axis"] % rank] = -1
    mid = cx.fresh(outs[0] + "_b")
    return [helper.make_node("Reshape", [ins[1], cx.const(mid, np.array(shape, np.int64))], [mid]),
            *_with_act(n, p["activation"], outs,
                       lambda o: helper.make_node("Add", [ins[0], mid], o), cx)]


def _export_gemm(n, p, ins, outs, cx, graph):
    from onnx import helper
    return [helper.make_node("Gemm", ins, outs)]


def _export_gelu(n, p, ins, outs, cx, graph):
    """x/2 (1 + erf(x/√2)), as torch writes it before opset 20 (onnxruntime fuses it back)."""
    from onnx import helper
    dt = helper.tensor_dtype_to_np_dtype(cx.elem.get(n.inputs[0], 1))
    t = [cx.fresh(f"{outs[0]}_{k}") for k in ("div", "erf", "add", "mul")]
    return [helper.make_node("Div", [ins[0], cx.const(t[0], np.array(np.sqrt(2.0), dt))], [t[0]]),
            helper.make_node("Erf", [t[0]], [t[1]]),
            helper.make_node("Add", [t[1], cx.const(t[2], np.array(1.0, dt))], [t[2]]),
            helper.make_node("Mul", [ins[0], t[2]], [t[3]]),
            helper.make_node("Mul", [t[3], cx.const(outs[0], np.array(0.5, dt))], outs)]


def _simple(op_type, **fixed):
    def export(n, p, ins, outs, cx, graph):
        from onnx import helper
        return [helper.make_node(op_type, ins, outs, **{k: f(p) for k, f in fixed.items()})]
    return export


def _export_split(n, p, ins, outs, cx, graph):
    from onnx import helper
    sizes = cx.const(outs[0], np.array(p["sizes"], np.int64))
    return [helper.make_node("Split", [ins[0], sizes], outs, axis=p["axis"])]


def _export_reshape(n, p, ins, outs, cx, graph):
    from onnx import helper
    return [helper.make_node("Reshape", [ins[0], cx.const(outs[0], np.array(p["shape"], np.int64))],
                             outs)]


def _export_enlarge(n, p, ins, outs, cx, graph):
    from onnx import helper
    w, r = (graph.shape(x) for x in n.inputs)
    dh, dw = (r[2] - w[2]) // 2, (r[3] - w[3]) // 2
    pads = np.array([0, 0, dh, dw, 0, 0, dh, dw], np.int64)
    return [helper.make_node("Pad", [ins[0], cx.const(outs[0], pads)], outs)]


def _export_const(n, p, ins, outs, cx, graph):
    from onnx import helper, numpy_helper
    v = OPS[n.op].ref([], p)[0].astype(np.float32)
    return [helper.make_node("Constant", [], outs, value=numpy_helper.from_array(v))]


_EXPORTERS = {
    "conv2d": _export_conv, "pool_avg": _export_pool, "pool_max": _export_pool,
    "matmul": _export_matmul, "bias_add": _export_bias,
    "ewadd": _simple("Add"), "ewmul": _simple("Mul"), "scalar_mul": _simple("Mul"),
    "relu": _simple("Relu"), "sigmoid": _simple("Sigmoid"), "tanh": _simple("Tanh"),
    "concat": _simple("Concat", axis=lambda p: p["axis"]),
    "transpose": _simple("Transpose", perm=lambda p: list(p["perm"])),
    "softmax": _simple("Softmax", axis=lambda p: p["axis"]),
    "erf": _simple("Erf"), "gelu": _export_gelu, "pool_global_avg": _simple("GlobalAveragePool"),
    "layernorm": _simple("LayerNormalization", axis=lambda p: p["axis"],
                         epsilon=lambda p: p["eps"]),
    "batchnorm": _simple("BatchNormalization", epsilon=lambda p: p["eps"]),
    "split": _export_split, "reshape": _export_reshape, "enlarge": _export_enlarge,
    "eye": _export_const, "eye_conv": _export_const, "ones": _export_const,
    "pool_kernel": _export_const,
}
