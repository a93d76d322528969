"""The IR out to ONNX: `to_onnx` and `save_onnx`.

    save_onnx(graph, "out.onnx", weights)      # weights missing from the dict get seeded random
                                               # values (zoo models have no trained ones)

Each catalogue op maps to the standard operators at opset 17 (`EXPORT_OPSET`); an opaque node
is written back as the ONNX node it was imported from.  onnx is imported lazily.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from envcore.graph import Graph, Ref
from envcore.onnx.opaque import EXPORT_OPSET, FLOAT as _FLOAT, opaque_node_proto
from envcore.ops import CONSTANTS, LEAVES, OPS, _pads


def to_onnx(graph: Graph, weights: Mapping[str, np.ndarray] | None = None, seed: int = 0,
            name: str = "subgen"):
    """Graph -> onnx.ModelProto (float32).  Weights missing from `weights` get seeded random
    values; constants (eye, ones, ...) are written as Constant nodes."""
    from onnx import helper, numpy_helper
    weights = dict(weights or {})
    missing = [n for n in graph.leaves("weight") if n not in weights]
    if missing:
        from envcore.execute import random_values
        rnd = random_values(graph, seed, leaves=("weight",))
        weights.update({k: rnd[k] for k in missing})
    nodes, inits, inputs = [], [], []
    tname: dict[Ref, str] = {}
    elem: dict[Ref, int] = {}
    opsets = {"": EXPORT_OPSET}

    def t(r: Ref) -> str:
        return tname[Ref(*r)]

    def const(base: str, value: np.ndarray) -> str:
        nm = f"{base}_const{len(inits)}"
        inits.append(numpy_helper.from_array(np.asarray(value), nm))
        return nm

    for i in graph.topo_order:
        n = graph.nodes[i]
        p = n.p
        outs = [f"t{i}" if n.num_outputs == 1 else f"t{i}_{k}" for k in range(n.num_outputs)]
        if n.op in LEAVES:
            outs = [p["name"]]
        for k, o in enumerate(outs):
            tname[Ref(i, k)] = o
            elem[Ref(i, k)] = _FLOAT
        ins = [t(r) for r in n.inputs]
        if n.op == "input":
            inputs.append(helper.make_tensor_value_info(p["name"], _FLOAT, n.shapes[0]))
        elif n.op == "weight":
            v = np.asarray(weights[p["name"]])
            if v.dtype.kind == "f":
                v = v.astype(np.float32)
            elem[Ref(i, 0)] = helper.np_dtype_to_tensor_dtype(v.dtype)
            inits.append(numpy_helper.from_array(v, p["name"]))
        elif n.op == "opaque":
            node, consts = opaque_node_proto(p, ins, outs, f"t{i}")
            nodes.append(node)
            inits.extend(consts)
            attrs = dict(p["attrs"])
            for k, ty in enumerate(attrs.get("@out_types") or ()):
                elem[Ref(i, k)] = ty
            dom = attrs.get("@domain", "")
            if dom in ("", "ai.onnx"):
                opsets[""] = max(opsets[""], attrs.get("@opset", EXPORT_OPSET))
            else:
                opsets[dom] = attrs.get("@opset", 1)
        else:
            nodes.extend(_EXPORTERS[n.op](n, p, ins, outs, const, graph))
            if n.inputs and n.op not in CONSTANTS:
                for k in range(n.num_outputs):
                    elem[Ref(i, k)] = elem[n.inputs[0]]
    outputs = []
    for k, o in enumerate(graph.outputs):
        nm = f"output_{k}"
        nodes.append(helper.make_node("Identity", [t(o)], [nm]))
        outputs.append(helper.make_tensor_value_info(nm, elem[Ref(*o)], graph.shape(o)))
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v)
                                                for d, v in opsets.items()],
                              producer_name="subgen")
    model.ir_version = min(model.ir_version, 9)
    return model


def save_onnx(graph: Graph, path, weights: Mapping[str, np.ndarray] | None = None,
              seed: int = 0) -> None:
    """Writes `to_onnx(graph, weights, seed)` to `path`."""
    import onnx
    onnx.save(to_onnx(graph, weights, seed), os.fspath(path))


def _with_act(node, act: str, outs, make):
    from onnx import helper
    if act == "none":
        return [make(outs)]
    mid = [outs[0] + "_pre"]
    return [make(mid), helper.make_node(act.capitalize(), mid, outs)]


def _export_conv(n, p, ins, outs, const, graph):
    from onnx import helper
    ws = graph.shape(n.inputs[1])
    t, b, l, r = _pads(ws[2], ws[3], p["padding"], tuple(p["stride"]))
    return _with_act(n, p["activation"], outs, lambda o: helper.make_node(
        "Conv", ins, o, strides=list(p["stride"]), pads=[t, l, b, r], group=p["groups"],
        kernel_shape=list(ws[2:])))


def _export_pool(n, p, ins, outs, const, graph):
    from onnx import helper
    kh, kw = p["kernel"]
    t, b, l, r = _pads(kh, kw, p["padding"], tuple(p["stride"]))
    kw_ = dict(kernel_shape=[kh, kw], strides=list(p["stride"]), pads=[t, l, b, r])
    if n.op == "pool_avg":
        kw_["count_include_pad"] = 1
    op = "MaxPool" if n.op == "pool_max" else "AveragePool"
    return _with_act(n, p["activation"], outs, lambda o: helper.make_node(op, ins, o, **kw_))


def _export_matmul(n, p, ins, outs, const, graph):
    from onnx import helper
    return _with_act(n, p["activation"], outs, lambda o: helper.make_node("MatMul", ins, o))


def _export_bias(n, p, ins, outs, const, graph):
    from onnx import helper
    rank = len(n.shapes[0])
    if p["axis"] % rank == rank - 1:  # ONNX broadcasting aligns trailing dims already
        return [helper.make_node("Add", ins, outs)]
    shape = [1] * rank
    shape[p["axis"] % rank] = -1
    mid = outs[0] + "_b"
    return [helper.make_node("Reshape", [ins[1], const(mid, np.array(shape, np.int64))], [mid]),
            helper.make_node("Add", [ins[0], mid], outs)]


def _simple(op_type, **fixed):
    def export(n, p, ins, outs, const, graph):
        from onnx import helper
        return [helper.make_node(op_type, ins, outs, **{k: f(p) for k, f in fixed.items()})]
    return export


def _export_split(n, p, ins, outs, const, graph):
    from onnx import helper
    sizes = const(outs[0], np.array(p["sizes"], np.int64))
    return [helper.make_node("Split", [ins[0], sizes], outs, axis=p["axis"])]


def _export_reshape(n, p, ins, outs, const, graph):
    from onnx import helper
    return [helper.make_node("Reshape", [ins[0], const(outs[0], np.array(p["shape"], np.int64))],
                             outs)]


def _export_enlarge(n, p, ins, outs, const, graph):
    from onnx import helper
    w, r = (graph.shape(x) for x in n.inputs)
    dh, dw = (r[2] - w[2]) // 2, (r[3] - w[3]) // 2
    pads = np.array([0, 0, dh, dw, 0, 0, dh, dw], np.int64)
    return [helper.make_node("Pad", [ins[0], const(outs[0], pads)], outs)]


def _export_const(n, p, ins, outs, const, graph):
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
    "batchnorm": _simple("BatchNormalization", epsilon=lambda p: p["eps"]),
    "split": _export_split, "reshape": _export_reshape, "enlarge": _export_enlarge,
    "eye": _export_const, "eye_conv": _export_const, "ones": _export_const,
    "pool_kernel": _export_const,
}
