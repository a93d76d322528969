"""ONNX import/export: round trips through onnxruntime, opaque pass-through, malformed files."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

from envcore.execute import evaluate, random_values  # noqa: E402
from envcore.onnx.importer import OnnxError, load_onnx  # noqa: E402
from envcore.onnx.exporter import save_onnx, to_onnx
from envcore.zoo import ZOO, build  # noqa: E402


def run_ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.astype(np.float32) for k, v in feeds.items()})


def close(a, b, rtol=1e-4):
    scale = max(float(np.abs(a).max()), 1e-3)
    return a.shape == b.shape and float(np.abs(a - b).max()) <= rtol * scale


@pytest.mark.parametrize("name", sorted(ZOO))
def test_exported_zoo_model_runs_in_onnxruntime_like_evaluate(name, tmp_path):
    g = build(name, "tiny")
    vals = random_values(g, 7)
    weights = {k: vals[k] for k in g.leaves("weight")}
    path = tmp_path / f"{name}.onnx"
    save_onnx(g, path, weights)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    want = evaluate(g, vals)
    got = run_ort(model, {k: vals[k] for k in g.inputs})
    assert all(close(w, o) for w, o in zip(want, got))
    # ... and imports back to the same computation, with the same weights
    g2, w2 = load_onnx(path)
    assert g2.num_ops == g.num_ops
    assert set(w2) == set(weights)
    back = evaluate(g2, {**w2, **{k: vals[k] for k in g.inputs}})
    assert all(close(w, o) for w, o in zip(want, back))


def _model(nodes, inputs, outputs, inits, opset=18):
    g = h.make_graph(nodes, "t", inputs, outputs, initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    return m


def _unknown_ops_model(rng):
    nodes = [
        h.make_node("MatMul", ["x", "W"], ["m"]),
        h.make_node("Sin", ["m"], ["e"]),                                   # not in the IR
        h.make_node("Unsqueeze", ["e", "ax"], ["u"]),                      # a reshape
        h.make_node("Squeeze", ["u", "ax"], ["s"]),                        # TASO choked here
        h.make_node("Gather", ["s", "idx"], ["g"], axis=1),                # int indices input
        h.make_node("Relu", ["g"], ["r"]),
        h.make_node("Conv", ["img", "cw"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        h.make_node("Conv", ["img", "cw3"], ["c3"], pads=[2, 2, 2, 2], dilations=[2, 2],
                    kernel_shape=[3, 3]),                                  # dilated: opaque
        h.make_node("Add", ["c", "c3"], ["cc"]),
        h.make_node("ReduceMean", ["cc", "rax"], ["red"], keepdims=0),     # axes as an input
    ]
    inits = [nh.from_array(rng.standard_normal((8, 6)).astype(np.float32), "W"),
             nh.from_array(np.array([0], np.int64), "ax"),
             nh.from_array(np.array([5, 0, 2], np.int64), "idx"),
             nh.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "cw"),
             nh.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "cw3"),
             nh.from_array(np.array([2, 3], np.int64), "rax")]
    return _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, ["N", 8]),
                          h.make_tensor_value_info("img", T.FLOAT, [1, 2, 5, 5])],
                  [h.make_tensor_value_info("r", T.FLOAT, ["N", 3]),
                   h.make_tensor_value_info("red", T.FLOAT, [1, 3])], inits)


def test_unknown_ops_import_as_opaque_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    model = _unknown_ops_model(rng)
    graph, weights = load_onnx(model, input_shapes={"x": (4, 8)})
    opaque = sorted(n.p["op_type"] for n in graph.nodes.values() if n.op == "opaque")
    assert opaque == ["Conv", "Gather", "ReduceMean", "Sin"]
    assert {"matmul", "conv2d", "relu", "ewadd", "reshape"} <= {n.op for n in graph.nodes.values()}
    assert "idx" not in weights and "W" in weights   # int inputs live inside the opaque node
    feeds = {"x": rng.standard_normal((4, 8)), "img": rng.standard_normal((1, 2, 5, 5))}
    want = run_ort(model, feeds)
    # the numpy executor runs opaque nodes too
    got = evaluate(graph, {**weights, **feeds})
    assert all(close(w, o) for w, o in zip(want, got))
    # as does the torch executor
    from envcore.torch_exec import run_torch
    assert all(close(w, o) for w, o in zip(want, run_torch(graph, {**weights, **feeds})))
    # export: the opaque nodes come back out as themselves
    path = tmp_path / "rt.onnx"
    save_onnx(graph, path, weights)
    exported = onnx.load(path)
    onnx.checker.check_model(exported)
    assert {"Sin", "Gather", "ReduceMean"} <= {n.op_type for n in exported.graph.node}
    assert all(close(w, o) for w, o in zip(want, run_ort(exported, feeds)))
    # a second import gives the same graph
    again, _ = load_onnx(path)
    assert sorted(n.op for n in again.nodes.values()) == sorted(n.op for n in graph.nodes.values())


def test_standard_torch_style_ops_map_onto_the_ir():
    rng = np.random.default_rng(1)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    nodes = [
        h.make_node("Conv", ["img", "w1", "b1"], ["c1"], pads=[3, 3, 3, 3], strides=[2, 2],
                    kernel_shape=[7, 7]),
        h.make_node("BatchNormalization", ["c1", "s", "bb", "mu", "var"], ["bn"], epsilon=1e-3),
        h.make_node("Relu", ["bn"], ["r"]),
        h.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        h.make_node("Conv", ["p", "w2"], ["c2"], group=2, kernel_shape=[1, 1]),
        h.make_node("AveragePool", ["c2"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                    count_include_pad=1),
        h.make_node("GlobalAveragePool", ["ap"], ["gap"]),
        h.make_node("Flatten", ["gap"], ["flat"]),
        h.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1),
        h.make_node("Softmax", ["logits"], ["prob"], axis=-1),
        h.make_node("Identity", ["prob"], ["out"]),
    ]
    inits = {"w1": f(4, 3, 7, 7), "b1": f(4), "s": f(4), "bb": f(4), "mu": f(4),
             "var": np.abs(f(4)) + 0.1, "w2": f(6, 2, 1, 1), "fc": f(5, 6), "fcb": f(5)}
    model = _model(nodes, [h.make_tensor_value_info("img", T.FLOAT, [1, 3, 16, 16])],
                   [h.make_tensor_value_info("out", T.FLOAT, [1, 5])],
                   [nh.from_array(v, k) for k, v in inits.items()])
    graph, weights = load_onnx(model)
    kinds = {n.op for n in graph.nodes.values()}
    assert "opaque" not in kinds
    assert {"conv2d", "bias_add", "batchnorm", "relu", "pool_max", "pool_avg", "reshape",
            "matmul", "softmax"} <= kinds
    assert [n.p["groups"] for n in graph.nodes.values() if n.op == "conv2d"].count(2) == 1
    feeds = {"img": rng.standard_normal((1, 3, 16, 16))}
    (want,) = run_ort(model, feeds)
    (got,) = evaluate(graph, {**weights, **feeds})
    assert close(want, got)
    (back,) = run_ort(to_onnx(graph, weights), feeds)
    assert close(want, back)


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all \x00\x01\x02", None])
def test_malformed_files_raise_onnx_error(tmp_path, content):
    path = tmp_path / "bad.onnx"
    if content is None:   # a well-formed protobuf whose graph reads a tensor nobody makes
        g = h.make_graph([h.make_node("Relu", ["nowhere"], ["y"])], "g",
                         [h.make_tensor_value_info("x", T.FLOAT, [2])],
                         [h.make_tensor_value_info("y", T.FLOAT, [2])])
        onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), path)
    else:
        path.write_bytes(content)
    with pytest.raises(OnnxError) as e:
        load_onnx(path)
    assert "\n" not in str(e.value)
    with pytest.raises(OnnxError):
        load_onnx(tmp_path / "missing.onnx")


@pytest.mark.skipif(importlib.util.find_spec("subgen.cli.optimize") is None,
                    reason="the optimize command is not there")
def test_malformed_onnx_on_the_cli_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    res = subprocess.run([sys.executable, "-c", "from subgen.cli import main; main()",
                          "optimize", str(bad)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_a_torch_exported_model_with_shape_arithmetic_imports_and_round_trips():
    """torch's exporter writes Shape->Gather->Concat chains, MHA and GELU (Erf): shapes fold at
    import (input sizes are fixed), the rest maps onto the IR or passes through opaque."""
    torch = pytest.importorskip("torch")
    import io
    import warnings
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=4)
            self.att = nn.MultiheadAttention(8, 2, batch_first=True)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            y = nn.functional.max_pool2d(torch.relu(self.c1(x)), 3, 2, 1)
            y = self.c2(y) + y
            t = y.flatten(2).transpose(1, 2)
            y = self.att(t, t, t)[0].mean(1)
            return torch.softmax(self.fc(nn.functional.gelu(y)), -1)

    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(Net().eval(), (x,), buf, dynamo=False, opset_version=17)
        except Exception as e:  # exporter variants differ between torch builds
            pytest.skip(f"torch.onnx.export unavailable: {e}")
    model = onnx.load_from_string(buf.getvalue())
    graph, weights = load_onnx(model)
    kinds = {n.op for n in graph.nodes.values()}
    assert {"conv2d", "matmul", "softmax", "transpose", "reshape"} <= kinds
    assert not [n for n in graph.nodes.values() if n.op == "opaque" and n.p["op_type"] == "Shape"]
    name = model.graph.input[0].name
    (want,) = run_ort(model, {name: x.numpy()})
    (got,) = evaluate(graph, {**weights, name: x.numpy().astype(np.float64)})
    assert close(want, got)
    (back,) = run_ort(to_onnx(graph, weights), {name: x.numpy()})
    assert close(want, back)
