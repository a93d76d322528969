"""The operators real models carry: a conv's or Gemm's bias with its fused activation
(`bias_add`), GELU and erf, global average pooling, layer normalisation.

Each is checked the way the TASO operators are: float semantics against torch at random shapes;
rules over them proved at shapes other than the generator's 4x4x4x4 and their mutants refuted
with a counterexample; ONNX spellings imported into them and written back, loaded in
onnxruntime and compared; and a generated, proved rule seeing through a real Conv's bias.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from envcore.ops import OPS
from rulekit import rule
from verifier import verify_rule

torch = pytest.importorskip("torch")


# -- semantics: the catalogue's numpy against torch ------------------------------------------------

def _torch_of(name, xs, p):
    from envcore.torch_exec import TORCH_OPS
    return [t.numpy() for t in TORCH_OPS[name]([torch.tensor(x) for x in xs], p)]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 6), h=st.integers(1, 5), w=st.integers(1, 5),
       act=st.sampled_from(["none", "relu", "sigmoid", "tanh"]), seed=st.integers(0, 2**31))
def test_real_ops_agree_with_torch(n, c, h, w, act, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    cases = [("bias_add", [x, rng.standard_normal(c)], {"axis": 1, "activation": act}),
             ("bias_add", [x, rng.standard_normal(w)], {"axis": 3, "activation": act}),
             ("pool_global_avg", [x], {}), ("gelu", [x], {}), ("erf", [x], {}),
             ("layernorm", [x, rng.standard_normal(w), rng.standard_normal(w)],
              {"axis": -1, "eps": 1e-5})]
    for name, xs, p in cases:
        full = OPS[name].full_params(p)
        (want,) = _torch_of(name, xs, full)
        (got,) = OPS[name].ref(xs, full)
        assert got.shape == tuple(OPS[name].infer([a.shape for a in xs], full)[0])
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=name)


def test_gelu_is_x_times_the_normal_cdf():
    x = np.linspace(-4, 4, 81)
    (g,) = OPS["gelu"].ref([x], {})
    np.testing.assert_allclose(g, x * torch.distributions.Normal(0, 1).cdf(
        torch.tensor(x)).numpy(), atol=1e-12)
    assert g[40] == 0 and np.all(g[41:] > 0) and np.all(g[:40] < 0) and g.min() > -0.2


# -- rules over them: proved at other shapes, mutants refuted ------------------------------------

IMG, KER = (2, 5, 3, 7), (5, 5, 3, 3)      # not the generator's 4x4 sizes
SEAM = (3, 5, 3, 7)


def _bias(b, x, v, act="none", axis=1):
    return b.add("bias_add", x, v, axis=axis, activation=act)


CASES = {
    "relu_into_bias_after_conv": (
        rule("fuse", lambda b, x, w, v: b.add("relu", _bias(b, b.add("conv2d", x, w), v)),
             lambda b, x, w, v: _bias(b, b.add("conv2d", x, w), v, "relu"), x=IMG, w=KER, v=(5,)),
        [rule("relu_before_bias", lambda b, x, w, v: b.add("relu", _bias(b, b.add("conv2d", x, w), v)),
              lambda b, x, w, v: _bias(b, b.add("conv2d", x, w, activation="relu"), v),
              x=IMG, w=KER, v=(5,))]),
    "biases_of_a_channel_concat": (
        rule("cat", lambda b, x, y, u, v: b.add("concat", _bias(b, x, u, "relu"),
                                               _bias(b, y, v, "relu"), axis=1),
             lambda b, x, y, u, v: _bias(b, b.add("concat", x, y, axis=1),
                                         b.add("concat", u, v, axis=0), "relu"),
             x=IMG, y=(2, 3, 3, 7), u=(5,), v=(3,)),
        [rule("biases_swapped", lambda b, x, y, u, v: b.add("concat", _bias(b, x, u), _bias(b, y, v),
                                                            axis=1),
              lambda b, x, y, u, v: _bias(b, b.add("concat", x, y, axis=1),
                                          b.add("concat", v, u, axis=0)),
              x=(2, 3, 3, 7), y=(2, 3, 3, 7), u=(3,), v=(3,))]),
    "two_biases_are_one": (
        rule("bb", lambda b, x, u, v: _bias(b, _bias(b, x, u), v, "relu"),
             lambda b, x, u, v: _bias(b, x, b.add("ewadd", u, v), "relu"), x=IMG, u=(5,), v=(5,)),
        [rule("inner_relu_dropped", lambda b, x, u, v: _bias(b, _bias(b, x, u, "relu"), v),
              lambda b, x, u, v: _bias(b, x, b.add("ewadd", u, v)), x=IMG, u=(5,), v=(5,))]),
    "pooling_commutes_with_a_bias_and_a_1x1_conv": (
        rule("gap", lambda b, x, w, v: b.add("pool_global_avg", _bias(b, b.add("conv2d", x, w), v)),
             lambda b, x, w, v: _bias(b, b.add("conv2d", b.add("pool_global_avg", x), w), v),
             x=IMG, w=(4, 5, 1, 1), v=(4,)),
        [rule("not_through_a_3x3", lambda b, x, w: b.add("pool_global_avg", b.add("conv2d", x, w)),
              lambda b, x, w: b.add("conv2d", b.add("pool_global_avg", x), w, padding="same"),
              x=IMG, w=KER),
         rule("not_through_a_relu", lambda b, x: b.add("pool_global_avg", b.add("relu", x)),
              lambda b, x: b.add("relu", b.add("pool_global_avg", x)), x=IMG)]),
    "gelu_over_concat": (
        rule("gelu_cat", lambda b, x, y: b.add("gelu", b.add("concat", x, y, axis=0)),
             lambda b, x, y: b.add("concat", b.add("gelu", x), b.add("gelu", y), axis=0),
             x=(3, 7), y=(2, 7)),
        [rule("gelu_is_not_relu", lambda b, x: b.add("gelu", x), lambda b, x: b.add("relu", x),
              x=(3, 7)),
         rule("gelu_is_not_erf", lambda b, x: b.add("gelu", x), lambda b, x: b.add("erf", x),
              x=(3, 7))]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_over_real_ops_is_proved_at_other_shapes(case):
    res = verify_rule(CASES[case][0], timeout_ms=5000)
    assert res.status == "proved", res
    assert res.axioms and res.counterexample is None


@pytest.mark.parametrize("mutant", [m for c in CASES.values() for m in c[1]], ids=lambda m: m.name)
def test_mutant_over_real_ops_is_refuted(mutant):
    res = verify_rule(mutant)
    assert res.status == "refuted", res
    assert res.counterexample and res.counterexample["max_abs_err"] > 1e-6


# -- ONNX spellings in and out ---------------------------------------------------------------------

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

from envcore.onnx.exporter import save_onnx, to_onnx  # noqa: E402
from envcore.onnx.importer import load_onnx  # noqa: E402


def _run(model, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"]).run(None, feeds)


def _stripped(graph):
    import dataclasses
    from envcore.graph import Graph
    return Graph({i: dataclasses.replace(n, origin=None) for i, n in graph.nodes.items()},
                 graph.outputs)


def _transformer_block(opset):
    rng = np.random.default_rng(3)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    gelu = ([h.make_node("Gelu", ["mm"], ["act"])] if opset >= 20 else
            [h.make_node("Div", ["mm", "sqrt2"], ["d"]), h.make_node("Erf", ["d"], ["e"]),
             h.make_node("Add", ["e", "one"], ["e1"]), h.make_node("Mul", ["mm", "e1"], ["m1"]),
             h.make_node("Mul", ["m1", "half"], ["act"])])
    nodes = [h.make_node("LayerNormalization", ["x", "ln.w", "ln.b"], ["ln"], axis=-1,
                         epsilon=1e-5),
             h.make_node("Gemm", ["ln", "fc.w", "fc.b"], ["mm"]), *gelu,
             h.make_node("Relu", ["act"], ["y"])]
    inits = {"ln.w": f(6), "ln.b": f(6), "fc.w": f(6, 8), "fc.b": f(8),
             "sqrt2": np.array(np.sqrt(2), np.float32), "one": np.array(1, np.float32),
             "half": np.array(0.5, np.float32)}
    g = h.make_graph(nodes, "block", [h.make_tensor_value_info("x", T.FLOAT, [3, 6])],
                     [h.make_tensor_value_info("y", T.FLOAT, [3, 8])],
                     [nh.from_array(v, k) for k, v in inits.items()])
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)]), {"x": f(3, 6)}


@pytest.mark.parametrize("opset", [17, 20])
def test_layernorm_gemm_gelu_import_as_catalogue_ops_and_write_back(tmp_path, opset):
    model, feeds = _transformer_block(opset)
    graph, weights = load_onnx(model)
    ops = sorted(n.op for n in graph.nodes.values() if n.op not in ("input", "weight"))
    assert "layernorm" in ops and "matmul" in ops and "bias_add" in ops
    assert ("gelu" if opset >= 20 else "erf") in ops
    # (a division by a constant, and adding a scalar constant, stay ONNX's own nodes)
    assert {n.p["op_type"] for n in graph.nodes.values() if n.op == "opaque"} <= {"Div", "Add"}
    want = _run(model, feeds)
    for g in (graph, _stripped(graph)):   # as the file spelled it, and lowered from the IR
        path = tmp_path / "block.onnx"
        save_onnx(g, path, weights)
        back = onnx.load(path)
        onnx.checker.check_model(back, full_check=True)
        kinds = [n.op_type for n in back.graph.node]
        assert "LayerNormalization" in kinds and "Gemm" in kinds
        np.testing.assert_allclose(_run(back, feeds)[0], want[0], rtol=1e-5, atol=1e-5)


def test_ir_gelu_writes_the_erf_form_onnxruntime_fuses(tmp_path):
    from envcore.graph import GraphBuilder
    b = GraphBuilder()
    x = b.input("x", (4, 5))
    g = b.build([b.add("gelu", x)])
    model = to_onnx(g, {})
    kinds = [n.op_type for n in model.graph.node]
    assert kinds[:5] == ["Div", "Erf", "Add", "Mul", "Mul"] and set(kinds[5:]) <= {"Identity"}
    v = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(_run(model, {"x": v})[0], OPS["gelu"].ref([v], {})[0],
                               rtol=1e-5, atol=1e-6)


def _conv_relu_model():
    rng = np.random.default_rng(5)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    nodes = [h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3],
                         name="conv"),
             h.make_node("Relu", ["c"], ["r"], name="relu"),
             h.make_node("GlobalAveragePool", ["r"], ["y"], name="gap")]
    g = h.make_graph(nodes, "cnn", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 6, 6])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 4, 1, 1])],
                     [nh.from_array(f(4, 3, 3, 3), "w"), nh.from_array(f(4), "b")])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), {"x": f(1, 3, 6, 6)}


def test_a_generated_rule_fuses_relu_through_a_real_convs_bias(tmp_path):
    """The rule comes from the generator over the real-model operator set (depth 1-2), proved;
    applied to a torch-style Conv(x, w, b) + Relu it fuses the relu into the bias, and the
    rewritten node is written back as one Conv(x, w, b) and a Relu (what onnxruntime fuses)."""
    from envcore.rewrite.apply import apply
    from envcore.rewrite.candidate_set import CandidateSet
    from envcore.ops import REAL_MODEL_OPS
    from subgen.pipelines.generate import Settings, generate
    from subgen.pipelines.optimize import load_rule_set
    db = tmp_path / "rules.db"
    generate(Settings(max_ops=2, ops=REAL_MODEL_OPS), db, workers=1)
    rules = load_rule_set(db)
    model, feeds = _conv_relu_model()
    graph, weights = load_onnx(model)
    fusing = [m for m in CandidateSet(rules, graph).applicable()
              if {n.op for n in rules[m.rule_index].src.nodes.values()} >= {"relu", "bias_add"}
              and rules[m.rule_index].dst.num_ops == 1]
    assert fusing, "no proved rule fuses relu(bias_add(..)) on a real Conv's bias"
    fused, _ = apply(graph, rules[fusing[0].rule_index], fusing[0])
    assert "relu" not in {n.op for n in fused.nodes.values()}
    assert [n.p["activation"] for n in fused.nodes.values() if n.op == "bias_add"] == ["relu"]
    path = tmp_path / "fused.onnx"
    save_onnx(fused, path, weights)
    back = onnx.load(path)
    onnx.checker.check_model(back, full_check=True)
    convs = [n for n in back.graph.node if n.op_type == "Conv"]
    assert len(convs) == 1 and len(convs[0].input) == 3
    assert [n.op_type for n in back.graph.node].count("Add") == 0
    assert "GlobalAveragePool" in [n.op_type for n in back.graph.node]
    np.testing.assert_allclose(_run(back, feeds)[0], _run(model, feeds)[0], rtol=1e-5, atol=1e-5)
