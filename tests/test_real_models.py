"""Real models through subgen: the classic CNNs and Hugging Face transformers of
`real_models.SUITE`, exported by torch at test time with random weights, at their small size.

Per model: the export is what torch computes; the import never fails on it; the zero-rewrite round
trip (import, export) writes a valid file that onnxruntime loads, with the original's interface
and outputs.  On a few models (chosen for the rewrites the default rules find in them and for
the op mixes they cover), `optimize` then rewrites the file with the greedy agent and the written
result is compared with the original in onnxruntime.  No timing here: that is
benchmarks/bench_real_models.py.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from real_models import SUITE, build_with_reference  # noqa: E402

from envcore.onnx.exporter import save_onnx  # noqa: E402
from envcore.onnx.importer import load_onnx  # noqa: E402

# T5's relative-position buckets take log(0) (then masked out), folded by the importer
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log")

NAMES = sorted(SUITE)
# optimize on these: squeezenet and shufflenet have relu(concat) patterns the default rules
# rewrite; bert brings the opaque-heavy text path, resnet18 the folded conv + BN path
OPTIMIZED = {"squeezenet1_1": True, "shufflenet_v2": True, "bert": False, "resnet18": False}
BUDGET = 50


@functools.lru_cache(maxsize=None)
def _built(name):
    model, feeds, want = build_with_reference(name, "small")
    return model.SerializeToString(), feeds, want


def built(name):
    """(a fresh ModelProto, feeds, torch's output) of SUITE[name] at its small size."""
    for package in SUITE[name].requires:     # transformers for the Hugging Face models
        pytest.importorskip(package)
    data, feeds, want = _built(name)
    return onnx.load_from_string(data), feeds, want


def session(model):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def interface(model):
    inits = {t.name for t in model.graph.initializer}
    return ([(vi.name, vi.type.tensor_type.elem_type) for vi in model.graph.input
             if vi.name not in inits],
            [(vi.name, vi.type.tensor_type.elem_type) for vi in model.graph.output])


def assert_close(want, got, rtol):
    """Per output, against its own scale: |a - b| <= rtol * (max|a| + 1e-6)."""
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.shape == g.shape, (w.dtype, w.shape, g.dtype, g.shape)
        assert np.isfinite(g).all()
        scale = float(np.abs(w).max()) + 1e-6
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=0,
                                   atol=rtol * scale)


def test_the_suite_names_real_models_with_descriptions():
    assert len(SUITE) >= 16
    assert {"resnet18", "resnet50", "bert", "gpt2", "t5", "vit_b_16", "hf_vit"} <= set(SUITE)
    assert all(m.description and m.family for m in SUITE.values())


@pytest.mark.parametrize("name", NAMES)
def test_export_matches_torch_and_declares_its_inputs(name):
    model, feeds, want = built(name)
    onnx.checker.check_model(model, full_check=True)
    ins, outs = interface(model)
    assert [n for n, _ in ins] == list(feeds) and len(outs) == 1
    for n, elem in ins:
        assert onnx.helper.tensor_dtype_to_np_dtype(elem) == feeds[n].dtype, n
    if SUITE[name].family == "text":
        assert {"input_ids", "attention_mask"} <= set(feeds)
        assert all(v.dtype == np.int64 for v in feeds.values())
    (got,) = session(model).run(None, feeds)
    assert_close([want.astype(np.float32)], [got], 1e-4)
    assert float(np.std(got)) > 1e-3, "a constant output would hide any wrong rewrite"


@pytest.mark.parametrize("name", NAMES)
def test_import_and_zero_rewrite_round_trip(name, tmp_path):
    model, feeds, _ = built(name)
    graph, weights = load_onnx(model, input_shapes={k: v.shape for k, v in feeds.items()})
    assert set(graph.leaves("input")) == set(feeds)
    assert graph.num_ops > 0
    path = tmp_path / f"{name}.onnx"
    save_onnx(graph, path, weights)
    back = onnx.load(path)
    onnx.checker.check_model(back, full_check=True)
    assert interface(back) == interface(model)
    assert_close(session(model).run(None, feeds), session(path).run(None, feeds), 1e-5)


@pytest.mark.parametrize("name", sorted(OPTIMIZED))
def test_optimize_writes_an_equivalent_file(name, tmp_path):
    from subgen.pipelines.optimize import optimize, write_result
    model, feeds, _ = built(name)
    src, out = tmp_path / f"{name}.onnx", tmp_path / f"{name}.opt.onnx"
    onnx.save(model, src)
    res = optimize(str(src), rules=_rules(), agent="greedy", budget=BUDGET, cost="analytic")
    assert res.equivalent, res.check_failure
    if OPTIMIZED[name]:
        assert res.rewrites, f"the default rules used to rewrite {name} (relu over concat)"
        assert res.cost_after < res.cost_before
    write_result(res, out)
    assert res.equivalent and res.checked == "written file", res.check_failure
    back = onnx.load(out)
    onnx.checker.check_model(back, full_check=True)
    assert interface(back) == interface(model)
    if not res.rewrites:        # handed back unchanged: the source itself
        assert out.read_bytes() == src.read_bytes()
    assert_close(session(model).run(None, feeds), session(out).run(None, feeds), 1e-4)


@functools.lru_cache(maxsize=None)
def _rules():
    from subgen.pipelines.optimize import load_rule_set
    return load_rule_set()
