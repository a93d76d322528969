"""Cost models: one interface, folding, memoisation, the roofline's incentives, the SQLite cache."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from envcore.cost import CostModelUnavailable, folded_nodes, get_cost_model
from envcore.cost.cache import CostCache
from envcore.graph import GraphBuilder
from envcore.ops import LEAVES
from envcore.zoo import ZOO, build


def conv_graph(fused: bool, merged: bool):
    """Two 3x3 convs (+relu) over one input: separate or merged, relu fused or not."""
    b = GraphBuilder()
    x = b.input("x", (1, 64, 56, 56))
    act = "relu" if fused else "none"
    if merged:
        y = b.add("conv2d", x, b.weight("w", (128, 64, 3, 3)), activation=act)
        if not fused:
            y = b.add("relu", y)
        outs = list(b.add("split", y, axis=1, sizes=(64, 64)))
    else:
        outs = []
        for k in range(2):
            y = b.add("conv2d", x, b.weight(f"w{k}", (64, 64, 3, 3)), activation=act)
            outs.append(y if fused else b.add("relu", y))
    return b.build(outs)


def test_analytic_graph_cost_is_the_sum_of_op_costs_and_deterministic():
    cm = get_cost_model("analytic")
    for name in ZOO:
        g = build(name, "small")
        total = sum(cm.op_cost(g, i) for i in g.nodes)
        assert cm.graph_cost(g) == pytest.approx(total, rel=1e-12)
        assert cm.graph_cost(g) > 0
        assert get_cost_model("analytic").graph_cost(build(name, "small")) == cm.graph_cost(g)
        assert all(cm.op_cost(g, i) == 0 for i, n in g.nodes.items() if n.op in LEAVES)


def test_nodes_computable_from_weights_alone_cost_nothing():
    b = GraphBuilder()
    x = b.input("x", (8, 16))
    w = b.add("matmul", b.weight("a", (16, 16)), b.weight("b", (16, 16)))   # folds
    w = b.add("ewadd", w, b.add("eye", shape=(16, 16)))                        # folds
    y = b.add("matmul", x, w)
    g = b.build([y])
    assert folded_nodes(g) == {i for i, n in g.nodes.items() if n.op != "input"} - {y.node}
    cm = get_cost_model("analytic")
    assert cm.graph_cost(g) == cm.op_cost(g, y.node) > 0


def test_analytic_rewards_fusion_and_merging_like_hardware():
    cm = get_cost_model("analytic")
    cost = {(f, m): cm.graph_cost(conv_graph(f, m)) for f in (False, True) for m in (False, True)}
    assert cost[(True, False)] < cost[(False, False)]      # conv+relu fused: fewer launches
    assert cost[(False, True)] < cost[(False, False)]      # merged convs share the input read
    assert cost[(True, True)] == min(cost.values())


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 512), k=st.integers(1, 512), n=st.integers(1, 512),
       grow=st.integers(1, 512))
def test_analytic_matmul_cost_grows_with_work(m, k, n, grow):
    cm = get_cost_model("analytic")

    def cost(kk):
        b = GraphBuilder()
        y = b.add("matmul", b.input("a", (m, kk)), b.input("b", (kk, n)))
        return cm.graph_cost(b.build([y]))
    assert 0 < cost(k) <= cost(k + grow)


def test_graph_cost_is_memoised_on_the_graph():
    cm = get_cost_model("analytic")
    g = build("bert")
    first = cm.graph_cost(g)
    calls = []
    cm.measure = lambda *a: calls.append(a) or 1.0
    assert cm.graph_cost(g) == first and not calls           # cached on the graph
    g2 = build("bert")                                        # a new graph, same signatures
    assert cm.graph_cost(g2) == first and not calls          # memoised per op signature


def test_unknown_cost_model_name():
    with pytest.raises(ValueError):
        get_cost_model("abacus")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed")
def test_cupy_without_a_gpu_fails_in_one_line_at_creation_not_import():
    import envcore.cost.cupy_cost  # noqa: F401  (importing is always fine)
    with pytest.raises(CostModelUnavailable) as e:
        get_cost_model("cupy")
    assert str(e.value) and "\n" not in str(e.value)


def test_cost_cache_keys_by_backend_and_device(tmp_path):
    db = tmp_path / "c.db"
    a = CostCache(db, "torch-v1", "cpu:A")
    b = CostCache(db, "torch-v1", "cpu:B")
    assert a.put("sig", 1.5) == 1.5
    assert a.put("sig", 9.0) == 1.5           # the first measurement wins
    assert b.get("sig") is None and len(b) == 0
    assert CostCache(db, "cupy-v1", "cpu:A").get("sig") is None
    assert CostCache(db, "torch-v1", "cpu:A").load_all() == {"sig": 1.5}


_WRITER = """
import json, sys
from envcore.cost.cache import CostCache
c = CostCache(sys.argv[1], "torch-v1", "dev")
for k in range(200):
    c.put(f"sig{k % 50}", float(sys.argv[2]))
print(json.dumps(c.load_all()))
"""


def test_cost_cache_is_safe_under_concurrent_processes(tmp_path):
    db = str(tmp_path / "shared.db")
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, db, str(w)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    views = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        views.append(json.loads(out))
    final = CostCache(db, "torch-v1", "dev").load_all()
    assert len(final) == 50
    assert all(v == final for v in views)     # every process sees one value per signature


torch = pytest.importorskip("torch")


def test_torch_cost_model_measures_once_and_reuses_the_shared_cache(tmp_path):
    db = tmp_path / "costs.db"
    g = build("toy", "small")
    cm = get_cost_model("torch", cache_path=db, repeats=3, warmup=1)
    total = cm.graph_cost(g)
    ops = [i for i in g.nodes if i not in folded_nodes(g)]
    assert total > 0 and all(cm.op_cost(g, i) >= 0 for i in ops)
    assert cm.measured > 0
    again = get_cost_model("torch", cache_path=db, repeats=3, warmup=1)
    assert again.graph_cost(build("toy", "small")) == pytest.approx(total)
    assert again.measured == 0                 # every signature came from the SQLite cache


def test_torch_cost_model_orders_tiny_and_large_work(tmp_path):
    cm = get_cost_model("torch", cache_path=tmp_path / "c.db", repeats=5)

    def mm(n):
        b = GraphBuilder()
        return b.build([b.add("matmul", b.input("a", (n, n)), b.weight("b", (n, n)))])
    assert cm.graph_cost(mm(8)) < cm.graph_cost(mm(384))


def test_torch_cost_model_survives_a_corrupt_cache_file(tmp_path):
    bad = tmp_path / "costs.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.warns(UserWarning, match="cost cache unavailable"):
        cm = get_cost_model("torch", cache_path=bad, repeats=2, warmup=1)
    assert cm.cache is None and cm.graph_cost(build("toy", "tiny")) > 0


# -- onnxruntime ----------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["squeezenet", "bert"])   # convs and pools; transformer ops
def test_ort_cost_model_prices_every_op_of_a_zoo_model_and_reuses_the_shared_cache(tmp_path,
                                                                                   model):
    pytest.importorskip("onnxruntime")
    db = tmp_path / "costs.db"
    g = build(model, "tiny")
    cm = get_cost_model("ort", cache_path=db, repeats=3, warmup=1)
    total = cm.graph_cost(g)
    ops = [i for i in g.nodes if i not in folded_nodes(g) and g.nodes[i].op not in LEAVES]
    # a bias_add written into its conv's or Gemm's node, and an activation after either, are
    # onnxruntime's one kernel: free
    from envcore.cost.ort_cost import FUSED_ACTIVATIONS
    fused = [i for i in ops if cm.fused(g, g.nodes[i])]
    assert fused and all(g.nodes[i].op in {"bias_add", *FUSED_ACTIVATIONS} for i in fused)
    assert total > 0 and all(cm.op_cost(g, i) > 0 for i in ops if i not in fused)
    assert all(cm.op_cost(g, i) == 0 for i in fused)
    assert cm.measured > 0
    again = get_cost_model("ort", cache_path=db, repeats=3, warmup=1)
    assert again.graph_cost(build(model, "tiny")) == pytest.approx(total)
    assert again.measured == 0                 # every signature came from the SQLite cache
    # another backend's timings never stand in for onnxruntime's
    assert get_cost_model("torch", cache_path=db, repeats=1, warmup=0).graph_cost(g) > 0


def _activation_graphs():
    """Small graphs where an activation may or may not fold into the op before it."""
    def g(producer, act="relu", readers=1, bias=False):
        b = GraphBuilder()
        if producer == "conv2d":
            y = b.add("conv2d", b.input("x", (1, 4, 8, 8)), b.weight("w", (8, 4, 3, 3)),
                      stride=(1, 1), padding="same", activation="none")
        else:
            y = b.add("matmul", b.input("x", (2, 4)), b.weight("w", (4, 8)))
        if bias:
            y = b.add("bias_add", y, b.weight("b", (8,)), axis=1)
        outs = [b.add(act, y)]
        if readers == 2:
            outs.append(b.add("erf", y))
        return b.build(outs)
    yield "conv+relu", g("conv2d")
    yield "conv+bias+sigmoid", g("conv2d", "sigmoid", bias=True)
    yield "conv(2 readers)+relu", g("conv2d", readers=2)
    yield "gemm+tanh", g("matmul", "tanh", bias=True)
    yield "gemm(2 readers)+relu", g("matmul", bias=True, readers=2)
    yield "matmul+relu", g("matmul")


def test_ort_cost_model_frees_the_activations_onnxruntime_itself_fuses(tmp_path):
    """The oracle is onnxruntime: an activation the cost model calls fused is gone from the
    graph onnxruntime optimizes (ORT_ENABLE_ALL), and one it prices is still there."""
    ort = pytest.importorskip("onnxruntime")
    import onnx

    from envcore.cost.ort_cost import FUSED_ACTIVATIONS
    from envcore.onnx.exporter import to_onnx
    cm = get_cost_model("ort", cache_path=tmp_path / "c.db", repeats=2, warmup=1)
    seen = set()
    for k, (name, g) in enumerate(_activation_graphs()):
        acts = [i for i, n in g.nodes.items() if n.op in FUSED_ACTIVATIONS]
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.optimized_model_filepath = str(tmp_path / f"optimized{k}.onnx")
        ort.InferenceSession(to_onnx(g, seed=0).SerializeToString(), so,
                             providers=["CPUExecutionProvider"])
        left = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node
                if n.op_type in ("Relu", "Sigmoid", "Tanh")]
        free = [i for i in acts if cm.fused(g, g.nodes[i])]
        assert len(left) == len(acts) - len(free), (name, left, free)
        assert all(cm.op_cost(g, i) == 0 for i in free)
        seen.add(bool(free))
    assert seen == {True, False}


def test_ort_cost_model_orders_tiny_and_large_work(tmp_path):
    pytest.importorskip("onnxruntime")
    cm = get_cost_model("ort", cache_path=tmp_path / "c.db", repeats=5)

    def conv(c):
        b = GraphBuilder()
        return b.build([b.add("conv2d", b.input("x", (1, c, 16, 16)), b.weight("w", (c, c, 3, 3)),
                              stride=(1, 1), padding="same", activation="none")])
    assert cm.graph_cost(conv(4)) < cm.graph_cost(conv(128))


def test_optimize_under_the_ort_cost_model_is_equivalent(tmp_path):
    pytest.importorskip("onnxruntime")
    out = subprocess.run([sys.executable, "-c", "from subgen.cli import main; main()",
                          "optimize", "toy", "--model-size", "tiny", "--cost", "ort", "--agent",
                          "greedy", "--json"], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ,
                              "SUBGEN_COST_CACHE": str(tmp_path / "c.db")})
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["cost"] == "ort" and res["equivalent"] and res["cost_after"] <= res["cost_before"]


def test_ort_call_overhead_is_estimated_once_per_cache_and_shared(tmp_path, monkeypatch):
    """Every process sharing a cache nets its op timings of the same call overhead, so that
    prices made in different processes add up (separate estimates ranged 4.3-10.6 us)."""
    pytest.importorskip("onnxruntime")
    from envcore.cost import ort_cost
    db = tmp_path / "costs.db"
    first = get_cost_model("ort", cache_path=db, repeats=3, warmup=1).call_overhead()
    assert first >= 0
    calls = []
    monkeypatch.setattr(ort_cost, "call_overhead_ms", lambda *a, **k: calls.append(a) or 1.0)
    again = get_cost_model("ort", cache_path=db, repeats=3, warmup=1)
    assert again.call_overhead() == pytest.approx(first) and calls == []
    fresh = get_cost_model("ort", cache_path=tmp_path / "other.db", repeats=3, warmup=1)
    assert fresh.call_overhead() == 1.0 and len(calls) == 3
