"""The ONNX round trip is lossless: import then export writes the file that was read.

Every test builds a small model with onnx.helper, imports it, exports it, loads the written file
back in onnxruntime and compares its outputs with the original's there, and checks what the
file declares and spells: input/output names, order and element types, node names, op types,
domains and attributes, opsets, ir_version, producer and metadata.  A rewrite then changes
only what it touches.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

from envcore.graph import Graph, GraphBuilder  # noqa: E402
from envcore.onnx import importer  # noqa: E402
from envcore.onnx.exporter import save_onnx, to_onnx  # noqa: E402
from envcore.onnx.importer import load_onnx  # noqa: E402
from envcore.rewrite.apply import apply  # noqa: E402
from envcore.rewrite.match import find_matches  # noqa: E402
from envcore.rewrite.rule import Rule  # noqa: E402

FIXTURE = HealthCheck.function_scoped_fixture   # tmp_path: each example overwrites its file


# -- helpers ---------------------------------------------------------------------------------------

def make_model(nodes, inputs, outputs, inits=(), opset=17, **fields):
    g = h.make_graph(nodes, "roundtrip", inputs, outputs, initializer=list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)], **fields)
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def session(model):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def feeds_for(model, shapes, rng, high=None):
    """Random inputs of the declared element types (integers in [0, high[name]))."""
    out = {}
    for vi in model.graph.input:
        dt = h.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        shape = shapes.get(vi.name) or [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if dt.kind == "f":
            out[vi.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            out[vi.name] = rng.random(shape) < 0.5
        else:
            out[vi.name] = rng.integers(0, (high or {}).get(vi.name, 4), shape).astype(dt)
    return out


def round_trip(model, tmp_path, shapes=None, high=None, seed=0):
    """Imports `model`, writes it back, checks the written file in onnxruntime against the
    original on random inputs and returns (graph, weights, written model)."""
    shapes = shapes or {}
    graph, weights = load_onnx(model, input_shapes=shapes or None)
    path = tmp_path / "written.onnx"
    save_onnx(graph, path, weights)
    back = onnx.load(path)
    onnx.checker.check_model(back, full_check=True)
    assert_same_outputs(model, back, feeds_for(model, shapes, np.random.default_rng(seed), high))
    return graph, weights, back


def assert_same_outputs(original, written, feeds):
    want = session(original).run(None, feeds)
    got = session(written).run(None, feeds)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.shape == g.shape
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64),
                                       rtol=2e-3 if w.dtype == np.float16 else 1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, w)


def interface(model):
    inits = {t.name for t in model.graph.initializer}
    return ([(vi.name, vi.type.tensor_type.elem_type) for vi in model.graph.input
             if vi.name not in inits],
            [(vi.name, vi.type.tensor_type.elem_type) for vi in model.graph.output])


def spelling(model):
    """What the file spells, node by node: (name, op_type, domain, attributes)."""
    return [(n.name, n.op_type, n.domain,
             sorted(a.SerializeToString() for a in n.attribute)) for n in model.graph.node]


def assert_lossless(original, written):
    assert interface(written) == interface(original)
    assert spelling(written) == spelling(original)
    assert [(o.domain, o.version) for o in written.opset_import] == \
        [(o.domain, o.version) for o in original.opset_import]
    assert written.ir_version == original.ir_version
    assert (written.producer_name, written.producer_version, written.domain,
            written.model_version, written.doc_string, written.graph.name) == \
        (original.producer_name, original.producer_version, original.domain,
         original.model_version, original.doc_string, original.graph.name)
    assert [(p.key, p.value) for p in written.metadata_props] == \
        [(p.key, p.value) for p in original.metadata_props]
    # every tensor a node reads or writes keeps its name, initializers included
    tensors = lambda m: [list(n.input) + list(n.output) for n in m.graph.node]  # noqa: E731
    assert tensors(written) == tensors(original)


def vi(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


# -- dtypes ----------------------------------------------------------------------------------------

def dtype_model(rng, batch=2, seq=5, vocab=7, dim=4):
    """int64 ids, an int32 intermediate, a bool mask and a float16 matmul, all in and out."""
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    nodes = [
        h.make_node("Gather", ["emb", "input_ids"], ["tok"], axis=0, name="embed"),
        h.make_node("Equal", ["input_ids", "pad_id"], ["is_pad"], name="pad_mask"),
        h.make_node("Not", ["is_pad"], ["keep"], name="keep_mask"),
        h.make_node("Cast", ["keep"], ["keep_i32"], to=T.INT32, name="keep_as_int"),
        h.make_node("ReduceSum", ["keep_i32", "axis1"], ["count"], keepdims=0, name="count"),
        h.make_node("Unsqueeze", ["keep", "axis2"], ["keep3"], name="keep_3d"),
        h.make_node("Where", ["keep3", "tok", "zero"], ["masked"], name="apply_mask"),
        h.make_node("MatMul", ["masked", "proj"], ["logits"], name="project"),
        h.make_node("MatMul", ["half_in", "w16"], ["half_mm"], name="half_matmul"),
        h.make_node("Relu", ["half_mm"], ["half_out"], name="half_relu"),
    ]
    inits = [nh.from_array(f32(vocab, dim), "emb"), nh.from_array(np.array(0, np.int64), "pad_id"),
             nh.from_array(np.array([1], np.int64), "axis1"),
             nh.from_array(np.array([2], np.int64), "axis2"),
             nh.from_array(np.array(0, np.float32), "zero"), nh.from_array(f32(dim, 3), "proj"),
             nh.from_array(f32(dim, dim).astype(np.float16), "w16")]
    return make_model(
        nodes, [vi("input_ids", T.INT64, [batch, seq]), vi("half_in", T.FLOAT16, [batch, dim])],
        [vi("logits", T.FLOAT, [batch, seq, 3]), vi("keep", T.BOOL, [batch, seq]),
         vi("count", T.INT32, [batch]), vi("half_out", T.FLOAT16, [batch, dim])], inits)


def test_integer_bool_and_float16_values_keep_their_dtypes(tmp_path):
    model = dtype_model(np.random.default_rng(0))
    graph, weights, back = round_trip(model, tmp_path, high={"input_ids": 7})
    assert_lossless(model, back)
    assert weights["w16"].dtype == np.float16
    # the float16 matmul is an IR matmul (rules see it), and it is still written as float16
    assert "matmul" in {n.op for n in graph.nodes.values()}
    written = {t.name: t.data_type for t in back.graph.initializer}
    assert written["w16"] == T.FLOAT16 and written["pad_id"] == T.INT64


@settings(max_examples=6, deadline=None, suppress_health_check=[FIXTURE])
@given(batch=st.integers(1, 3), seq=st.integers(1, 6), vocab=st.integers(2, 9),
       dim=st.integers(1, 5), seed=st.integers(0, 2 ** 16))
def test_dtype_round_trip_at_random_shapes(tmp_path, batch, seq, vocab, dim, seed):
    model = dtype_model(np.random.default_rng(seed), batch, seq, vocab, dim)
    _, _, back = round_trip(model, tmp_path, high={"input_ids": vocab}, seed=seed)
    assert_lossless(model, back)


# -- op spellings, names, opsets, metadata ---------------------------------------------------------

def spelling_model(rng, opset=17):
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    nodes = [
        h.make_node("Conv", ["image", "conv.w", "conv.b"], ["conv_out"], pads=[1, 1, 1, 1],
                    kernel_shape=[3, 3], name="/features/conv/Conv"),
        h.make_node("Relu", ["conv_out"], ["relu_out"], name="/features/relu/Relu"),
        h.make_node("GlobalAveragePool", ["relu_out"], ["gap"], name="/pool/GlobalAveragePool"),
        h.make_node("Constant", [], ["flat_shape"], value=nh.from_array(np.array([2, 6], np.int64)),
                    name="/head/Constant"),
        h.make_node("Reshape", ["gap", "flat_shape"], ["flat"], name="/head/Reshape"),
        h.make_node("Identity", ["fc.w"], ["fc.w.tied"], name="/head/tied_weight"),
        h.make_node("Gemm", ["flat", "fc.w.tied", "fc.b"], ["fc_out"], transB=1,
                    name="/head/fc/Gemm"),
        h.make_node("Gemm", ["flat", "fc2.w", "fc2.b"], ["fc2_out"], name="/head/fc2/Gemm"),
        h.make_node("Add", ["fc_out", "fc2_out"], ["sum"], name="/head/Add"),
        h.make_node("Softmax", ["sum"], ["probs"], axis=1, name="/head/Softmax"),
        h.make_node("Identity", ["probs"], ["output"], name="/output/Identity"),
    ]
    inits = {"conv.w": f(6, 3, 3, 3), "conv.b": f(6), "fc.w": f(5, 6), "fc.b": f(5),
             "fc2.w": f(6, 5), "fc2.b": f(1, 5)}
    m = make_model(nodes, [vi("image", T.FLOAT, [2, 3, 8, 8])], [vi("output", T.FLOAT, [2, 5])],
                   [nh.from_array(v, k) for k, v in inits.items()], opset=opset,
                   producer_name="pytorch", producer_version="2.13.0", doc_string="a test model",
                   model_version=3, domain="org.example")
    m.graph.doc_string = "graph doc"
    h.set_model_props(m, {"author": "subgen tests", "license": "MIT"})
    return m


@pytest.mark.parametrize("opset", [13, 17, 18])
def test_gemm_conv_bias_and_global_pool_keep_their_spelling(tmp_path, opset):
    model = spelling_model(np.random.default_rng(1), opset)
    graph, weights, back = round_trip(model, tmp_path)
    assert_lossless(model, back)
    # ... while inside, the IR has them in its own terms, which is what rules match
    ops = sorted(n.op for n in graph.nodes.values() if n.op not in ("input", "weight"))
    assert ops.count("bias_add") == 3 and "conv2d" in ops and "pool_global_avg" in ops
    assert "opaque" not in ops
    # without its origins the same graph is lowered from its IR ops, which spell a bias and a
    # global pool as ONNX does: Conv(x, w, b), Gemm(x, w, b), GlobalAveragePool
    lowered = to_onnx(_stripped(graph), weights)
    kinds = [n.op_type for n in lowered.graph.node]
    assert {"Gemm", "GlobalAveragePool"} <= set(kinds) and kinds.count("Add") == 1
    assert all(len(n.input) == 3 for n in lowered.graph.node if n.op_type == "Conv")
    assert_same_outputs(model, lowered, feeds_for(model, {}, np.random.default_rng(0)))


def _stripped(graph):
    """The same graph with no origins: what a graph not imported from ONNX exports as."""
    return Graph({i: dataclasses.replace(n, origin=None) for i, n in graph.nodes.items()},
                 graph.outputs)


def relu_twice():
    """relu(x) -> relu(relu(x)): equal, and it makes a new node (the inner relu is the old)."""
    sides = []
    for depth in (1, 2):
        b = GraphBuilder()
        y = b.input("x", (2, 6, 8, 8))
        for _ in range(depth):
            y = b.add("relu", y)
        sides.append(b.build([y]))
    return Rule("relu_twice", *sides)


def rewritten(model, rule, tmp_path):
    """Imports `model`, applies `rule` at its one match, writes the result and reads it back."""
    graph, weights = load_onnx(model)
    (m,) = find_matches(graph, rule)
    new, created = apply(graph, rule, m)
    assert created and new.origin is graph.origin
    path = tmp_path / "rewritten.onnx"
    save_onnx(new, path, weights)
    back = onnx.load(path)
    onnx.checker.check_model(back, full_check=True)
    assert_same_outputs(model, back, feeds_for(model, {}, np.random.default_rng(4)))
    assert interface(back) == interface(model)
    return back


def test_new_tensors_never_take_a_name_the_file_uses(tmp_path):
    """New nodes get fresh names (t<id>): a file that names its own tensors so keeps them."""
    rng = np.random.default_rng(2)
    nodes = [h.make_node("Conv", ["t0", "t1"], ["t2"], kernel_shape=[1, 1], name="t3"),
             h.make_node("Relu", ["t2"], ["t5"], name="t4"),
             h.make_node("Tanh", ["t5"], ["t6"], name="t7")]
    model = make_model(nodes, [vi("t0", T.FLOAT, [2, 6, 8, 8])], [vi("t6", T.FLOAT, [2, 6, 8, 8])],
                       [nh.from_array(rng.standard_normal((6, 6, 1, 1)).astype(np.float32), "t1")])
    back = rewritten(model, relu_twice(), tmp_path)
    written = [o for n in back.graph.node for o in n.output]
    assert len(written) == len(set(written)) == 4
    assert [n.name for n in back.graph.node] == ["t3", "t4", "", "t7"]   # the old ones kept
    assert written[:2] == ["t2", "t5"]


def test_a_rewrite_lowers_only_what_it_touched(tmp_path):
    """relu(x) -> relu(relu(x)): the rewrite reuses the original Relu for the inner one and
    adds an outer one, written from the IR (no name); every other node is as the file had it,
    the GlobalAveragePool reading the new Relu's output included."""
    model = spelling_model(np.random.default_rng(3))
    back = rewritten(model, relu_twice(), tmp_path)
    kept = [s for s in spelling(model) if s[1] != "Relu"]
    assert [s for s in spelling(back) if s[1] != "Relu"] == kept
    assert [n.name for n in back.graph.node if n.op_type == "Relu"] == ["/features/relu/Relu", ""]
    pool = next(n for n in back.graph.node if n.op_type == "GlobalAveragePool")
    assert pool.input[0] != "relu_out"


# -- symbolic dims ---------------------------------------------------------------------------------

def symbolic_model(rng):
    """A dim_param batch, and shape arithmetic over it (Shape -> Gather -> Concat -> Reshape)."""
    nodes = [
        h.make_node("MatMul", ["x", "w"], ["xw"], name="mm"),
        h.make_node("Shape", ["xw"], ["xw_shape"], name="shape"),
        h.make_node("Gather", ["xw_shape", "zero"], ["b"], axis=0, name="batch_dim"),
        h.make_node("Unsqueeze", ["b", "axes0"], ["b1"], name="batch_1d"),
        h.make_node("Concat", ["b1", "rest"], ["new_shape"], axis=0, name="new_shape"),
        h.make_node("Reshape", ["xw", "new_shape"], ["y"], name="reshape"),
        h.make_node("Tanh", ["y"], ["out"], name="tanh"),
    ]
    inits = [nh.from_array(rng.standard_normal((6, 8)).astype(np.float32), "w"),
             nh.from_array(np.array(0, np.int64), "zero"),
             nh.from_array(np.array([0], np.int64), "axes0"),
             nh.from_array(np.array([2, -1], np.int64), "rest")]
    return make_model(nodes, [vi("x", T.FLOAT, ["batch", "seq", 6])],
                      [vi("out", T.FLOAT, ["batch", 2, "half_seq_x8"])], inits)


@settings(max_examples=5, deadline=None, suppress_health_check=[FIXTURE])
@given(batch=st.integers(1, 4), seq=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_symbolic_dims_import_at_the_sizes_given(tmp_path, batch, seq, seed):
    model = symbolic_model(np.random.default_rng(seed))
    graph, _, back = round_trip(model, tmp_path, shapes={"x": (batch, seq, 6)}, seed=seed)
    assert interface(back) == interface(model)
    # the file is specialised to the sizes imported at: it says so in its declared shapes
    dims = [d.dim_value for d in back.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [batch, seq, 6]
    # the shape arithmetic folded at import is written back as it was
    assert spelling(back) == spelling(model)


def test_symbolic_dims_default_to_one(tmp_path):
    model = symbolic_model(np.random.default_rng(5))
    graph, _, back = round_trip(model, tmp_path, shapes={"x": (1, 1, 6)})
    again, _ = load_onnx(model)
    assert again == graph


# -- constant folding that fails -------------------------------------------------------------------

def gather_elements_model(n=64):
    """GatherElements over n constant positions: onnx's reference evaluator fails on it for
    n >= 64 (BERT's position ids); it must stay a node, run by onnxruntime."""
    pos = np.arange(n, dtype=np.int64).reshape(1, n)
    nodes = [h.make_node("GatherElements", ["positions", "order"], ["picked"], axis=1,
                         name="pick_positions"),
             h.make_node("Gather", ["table", "picked"], ["pos_emb"], axis=0, name="pos_embed"),
             h.make_node("Add", ["x", "pos_emb"], ["y"], name="add_pos")]
    inits = [nh.from_array(pos, "positions"), nh.from_array(pos[:, ::-1].copy(), "order"),
             nh.from_array(np.random.default_rng(6).standard_normal((n, 3)).astype(np.float32),
                           "table")]
    return make_model(nodes, [vi("x", T.FLOAT, [1, n, 3])], [vi("y", T.FLOAT, [1, n, 3])], inits)


def test_a_node_whose_folding_fails_stays_a_node(tmp_path):
    model = gather_elements_model(64)
    graph, weights, back = round_trip(model, tmp_path)
    opaque = sorted(n.p["op_type"] for n in graph.nodes.values() if n.op == "opaque")
    assert opaque == ["Gather", "GatherElements"]
    assert weights["positions"].dtype == np.int64
    assert_lossless(model, back)


def test_any_folding_failure_keeps_the_node(tmp_path, monkeypatch):
    """Whatever the evaluator breaks on (here: everything Gather), the node stays."""
    real = importer._eval_node

    def broken(node, feeds, opset=17):
        if node.op_type == "Gather":
            raise RuntimeError("evaluator bug")
        return real(node, feeds, opset)

    monkeypatch.setattr(importer, "_eval_node", broken)
    model = gather_elements_model(8)          # GatherElements folds when nothing breaks
    graph, weights, back = round_trip(model, tmp_path)
    assert [n.p["op_type"] for n in graph.nodes.values() if n.op == "opaque"] == ["Gather"]
    assert_lossless(model, back)    # the GatherElements folded, and is written back as it was


# -- real exporters --------------------------------------------------------------------------------

def _hf_model(kind):
    """A tiny random-weight transformers model, exported by torch (TorchScript, opset 17) with
    dynamic batch and sequence: int64 ids and mask in, shape arithmetic over them inside."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import io
    import warnings
    torch.manual_seed(0)
    if kind == "bert":
        net = transformers.BertModel(transformers.BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=512))
    else:
        net = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64, use_cache=False))

    class Wrapped(torch.nn.Module):       # keyword arguments: forward()'s order varies
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            return self.net(input_ids=input_ids, attention_mask=attention_mask)[0]

    ids = torch.randint(0, 100, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[1, 10:] = 0
    names = ["input_ids", "attention_mask"]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(Wrapped().eval(), (ids, mask), buf, input_names=names,
                              opset_version=17, dynamo=False,
                              dynamic_axes={n: {0: "batch", 1: "seq"} for n in names})
        except Exception as e:  # exporter variants differ between torch/transformers builds
            pytest.skip(f"torch.onnx.export of {kind} failed: {e}")
    return onnx.load_from_string(buf.getvalue()), {"input_ids": ids.numpy(),
                                                   "attention_mask": mask.numpy()}


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_a_torch_exported_transformer_round_trips_as_it_was(tmp_path, kind):
    model, feeds = _hf_model(kind)
    graph, weights = load_onnx(model, input_shapes={k: v.shape for k, v in feeds.items()})
    assert {"matmul", "softmax"} <= {n.op for n in graph.nodes.values()}
    path = tmp_path / f"{kind}.onnx"
    save_onnx(graph, path, weights)
    back = onnx.load(path)
    onnx.checker.check_model(back, full_check=True)
    assert_same_outputs(model, back, feeds)
    assert_lossless(model, back)
