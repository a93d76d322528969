"""Opaque nodes: operators the IR does not know, kept as ONNX and run by onnxruntime.

An opaque node's params hold what is needed to run and re-export it (see `envcore.onnx`).  The
catalogue's `opaque` op executes through `run_opaque`: a cached one-node onnxruntime session per
signature, or onnx's reference evaluator when onnxruntime is absent.  This module imports nothing
of envcore but `frozen`, so the catalogue can call it without a cycle.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from envcore.frozen import freeze

EXPORT_OPSET = 17
FLOAT = 1  # onnx.TensorProto.FLOAT


def opaque_node_proto(params, in_names: list[str], out_names: list[str], const_prefix: str
                      ) -> tuple[Any, list]:
    """The ONNX NodeProto for an opaque node, plus TensorProtos of its constant inputs."""
    import onnx
    from onnx import helper
    attrs = dict(params["attrs"])
    slots = attrs.get("@slots") or tuple(range(len(in_names)))
    inputs, consts = [], []
    for k, s in enumerate(slots):
        if isinstance(s, int):
            inputs.append(in_names[s])
        elif s == "":
            inputs.append("")
        else:
            t = onnx.TensorProto()
            t.ParseFromString(bytes.fromhex(s))
            t.name = f"{const_prefix}_c{k}"
            consts.append(t)
            inputs.append(t.name)
    node = helper.make_node(params["op_type"], inputs, out_names, domain=attrs.get("@domain", ""))
    for name, v in params["attrs"]:
        if name.startswith("@"):
            continue
        if isinstance(v, tuple) and len(v) == 2 and v[0] == "@proto":
            ap = onnx.AttributeProto()
            ap.ParseFromString(bytes.fromhex(v[1]))
            node.attribute.append(ap)
        else:
            node.attribute.append(helper.make_attribute(name, list(v) if isinstance(v, tuple)
                                                        else v))
    return node, consts


def run_opaque(params, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Runs one opaque node on numpy inputs (one cached onnxruntime session per signature).

    Float inputs run as float32 (the types ONNX models carry; onnxruntime implements few ops in
    double) and float outputs come back in the callers' float dtype."""
    inputs = [np.asarray(a) for a in inputs]
    back = next((a.dtype for a in inputs if a.dtype.kind == "f"), np.dtype(np.float32))
    inputs = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in inputs]
    items = freeze(tuple(params.items())) if isinstance(params, dict) else params
    run = _opaque_session(items, tuple((a.dtype.str, a.shape) for a in inputs))
    return [o.astype(back) if o.dtype.kind == "f" else o for o in run(inputs)]


@functools.lru_cache(maxsize=256)
def _opaque_session(params_items: tuple, sig: tuple):
    from onnx import helper
    params = dict(params_items)
    attrs = dict(params["attrs"])
    in_names = [f"in{k}" for k in range(len(sig))]
    out_names = [f"out{k}" for k in range(len(params["out_shapes"]))]
    node, consts = opaque_node_proto(params, in_names, out_names, "k")
    types = attrs.get("@out_types") or (FLOAT,) * len(out_names)
    g = helper.make_graph(
        [node], "opaque",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), shape)
         for n, (dt, shape) in zip(in_names, sig)],
        [helper.make_tensor_value_info(n, t, s)
         for n, t, s in zip(out_names, types, params["out_shapes"])],
        initializer=consts)
    domain = attrs.get("@domain", "")
    opsets = [helper.make_opsetid("", attrs.get("@opset", EXPORT_OPSET) if domain in ("", "ai.onnx")
                                  else EXPORT_OPSET)]
    if domain not in ("", "ai.onnx"):
        opsets.append(helper.make_opsetid(domain, attrs.get("@opset", 1)))
    model = helper.make_model(g, opset_imports=opsets)
    model.ir_version = min(model.ir_version, 9)
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        return lambda xs: sess.run(None, dict(zip(in_names, xs)))
    except ImportError:
        from onnx.reference import ReferenceEvaluator
        ref = ReferenceEvaluator(model)
        return lambda xs: ref.run(None, dict(zip(in_names, xs)))
