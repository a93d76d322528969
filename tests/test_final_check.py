"""The final check of `subgen optimize` (issue 17): per output, per element, against that
output's own scale; several draws and magnitudes; zero rewrites checked too; an .onnx --out is
read back in onnxruntime (declared inputs/outputs too) before it replaces the target; a failing
result is never written (exit code 3)."""
from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from click.testing import CliRunner  # noqa: E402
from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

import subgen.pipelines.optimize as pipeline  # noqa: E402
from envcore.execute import max_abs_error, outputs_close  # noqa: E402
from envcore.graph import GraphBuilder  # noqa: E402
from envcore.rewrite.rule import Rule  # noqa: E402
from rules_fixture import hand_rules  # noqa: E402
from subgen.cli import cli  # noqa: E402


def _save(nodes, inputs, outputs, inits, path):
    m = h.make_model(h.make_graph(nodes, "t", inputs, outputs, initializer=inits),
                     opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def _big_and_small(tmp_path):
    """y_big = x + 1e5 (~1e5); y_small = relu(x) + relu(x) (~2 at most)."""
    big = np.full((8, 8), 1e5, np.float32)
    return _save([h.make_node("Add", ["x", "B"], ["y_big"]),
                  h.make_node("Relu", ["x"], ["r"]),
                  h.make_node("Add", ["r", "r"], ["y_small"])],
                 [h.make_tensor_value_info("x", T.FLOAT, [8, 8])],
                 [h.make_tensor_value_info("y_big", T.FLOAT, [8, 8]),
                  h.make_tensor_value_info("y_small", T.FLOAT, [8, 8])],
                 [nh.from_array(big, "B")], tmp_path / "two.onnx")


def _drop_relu() -> Rule:
    """relu(x) -> x: false, and applied here as if it were trusted."""
    s, d = GraphBuilder(), GraphBuilder()
    return Rule("drop_relu", s.build([s.add("relu", s.input("x", (8, 8)))]),
                d.build([d.input("x", (8, 8))]))


def _gather_model(tmp_path):
    """ids (int64) -> Gather on an embedding table -> MatMul -> Relu."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((10, 4)).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    return _save([h.make_node("Gather", ["emb", "ids"], ["e"], axis=0),
                  h.make_node("MatMul", ["e", "w"], ["m"]),
                  h.make_node("Relu", ["m"], ["y"])],
                 [h.make_tensor_value_info("ids", T.INT64, [2, 5])],
                 [h.make_tensor_value_info("y", T.FLOAT, [2, 5, 3])],
                 [nh.from_array(emb, "emb"), nh.from_array(w, "w")], tmp_path / "gather.onnx")


def test_the_rule_is_per_output_a_large_output_cannot_hide_a_small_ones_error():
    rng = np.random.default_rng(0)
    big, small = 1e5 + rng.uniform(-1, 1, (8, 8)), rng.uniform(0, 2, (8, 8))
    wrong = small.copy()
    wrong[3, 3] += 1.6
    # the old rule (1e-4 x the largest value over ALL outputs = 10) let 1.6 through
    assert max_abs_error([big, small], [big, wrong]) <= 1e-4 * 1e5
    ok, err, why = outputs_close([big, small], [big, wrong], pipeline.RTOL, pipeline.ATOL)
    assert not ok and err == pytest.approx(1.6) and why.startswith("output 1")
    assert outputs_close([big, small], [big * (1 + 1e-6), small], pipeline.RTOL,
                         pipeline.ATOL)[0]


def test_wrong_small_output_beside_a_huge_one_is_caught_and_nothing_written(tmp_path):
    src = _big_and_small(tmp_path)
    res = pipeline.optimize(str(src), [_drop_relu()], agent="greedy", budget=20)
    assert res.rewrites                     # the wrong rule was applied ...
    assert not res.equivalent               # ... and caught
    assert "output 1" in res.check_failure
    assert 1.0 < res.max_abs_err < 1e-4 * 1e5   # the old global rule passed it
    out = tmp_path / "out" / "opt.onnx"
    with pytest.raises(pipeline.NotEquivalent, match="not writing"):
        pipeline.write_result(res, out)
    assert not out.exists() and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.onnx"]


def test_cli_exits_3_with_one_line_and_writes_nothing(tmp_path, monkeypatch):
    src = _big_and_small(tmp_path)
    monkeypatch.setattr(pipeline, "load_rule_set", lambda *a, **k: [_drop_relu()])
    out = tmp_path / "opt.onnx"
    r = CliRunner().invoke(cli, ["optimize", str(src), "--rules", str(tmp_path / "r.json"),
                                 "--agent", "greedy", "--budget", "20", "--json",
                                 "--out", str(out)])
    assert r.exit_code == 3, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["equivalent"] is False and res["rewrites"] > 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: not writing"), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.onnx"]


def test_zero_rewrites_are_still_checked(monkeypatch):
    seen = []
    real = pipeline.compare_graphs

    def spy(original, optimized, *a, **k):
        r = real(original, optimized, *a, **k)
        seen.append((original, optimized, r))
        return r
    monkeypatch.setattr(pipeline, "compare_graphs", spy)
    res = pipeline.optimize("toy", [], agent="greedy", budget=5, size="tiny")
    assert res.rewrites == [] and len(seen) == 1
    assert seen[0][2].draws == pipeline.GRAPH_DRAWS and res.check_draws == pipeline.GRAPH_DRAWS
    assert res.equivalent and res.max_abs_err == 0.0


def test_identical_graphs_are_run_not_hashed():
    """compare_graphs runs what it is given: a graph that cannot run fails even against
    itself (the old check returned True on equal hashes without running anything)."""
    b = GraphBuilder()
    g = b.build([b.add("relu", b.input("x", (3, 3)))])
    assert pipeline.compare_graphs(g, g).equivalent
    calls = []
    real = pipeline._run_graph

    def counting(graph, vals, float32=False):
        calls.append(graph)
        return real(graph, vals, float32)
    pipeline._run_graph, saved = counting, pipeline._run_graph
    try:
        r = pipeline.compare_graphs(g, g)
    finally:
        pipeline._run_graph = saved
    assert r.equivalent and len(calls) == 2 * pipeline.GRAPH_DRAWS


def test_draws_span_magnitudes_and_respect_integer_dtypes():
    scales = {s for _, s in pipeline.draws(0, pipeline.GRAPH_DRAWS)}
    assert scales == {1.0, 1e-2, 1e2}
    ids = pipeline.draw_input((1000,), 0, 100.0, (np.dtype(np.int64), 10))
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() <= 9 and len(set(ids)) == 10
    x = pipeline.draw_input((1000,), 0, 100.0, (np.dtype(np.float32), None))
    assert x.dtype == np.float32 and 50 < np.abs(x).max() <= 100


def test_int64_gather_model_round_trips_and_the_written_file_is_what_is_checked(tmp_path,
                                                                            monkeypatch):
    src = _gather_model(tmp_path)
    specs = pipeline.onnx_input_specs(onnx.load(str(src)))
    assert specs["ids"][0] == np.int64 and specs["ids"][1] == 10   # the table's rows
    monkeypatch.setattr(pipeline, "load_rule_set", lambda *a, **k: hand_rules())
    out = tmp_path / "out.onnx"
    r = CliRunner().invoke(cli, ["optimize", str(src), "--rules", str(tmp_path / "r.json"),
                                 "--json", "--out", str(out), "--budget", "20"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["equivalent"] is True and res["checked"] == "written file"
    assert res["check_draws"] == pipeline.FILE_DRAWS and res["max_abs_err"] < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gather.onnx", "out.onnx"]
    # the file itself: an int64 input, the original's names, and the original's values
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in got.get_inputs()] == [("ids", "tensor(int64)")]
    assert [o.name for o in got.get_outputs()] == ["y"]
    ids = np.random.default_rng(5).integers(0, 10, (2, 5)).astype(np.int64)
    a, b = want.run(None, {"ids": ids})[0], got.run(None, {"ids": ids})[0]
    assert a.shape == b.shape == (2, 5, 3) and np.abs(a).max() > 0
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_a_written_file_with_a_retyped_input_is_not_equivalent(tmp_path):
    """What the writer produced before the round trip kept dtypes and names: the int64 input
    declared as float, the output renamed.  The read-back check refuses it."""
    from envcore.onnx.importer import load_onnx
    from envcore.onnx.exporter import save_onnx
    src = _gather_model(tmp_path)
    graph, weights = load_onnx(src)
    bad = tmp_path / "retyped.onnx"
    save_onnx(graph, bad, weights)
    m = onnx.load(str(bad))
    assert m.graph.input[0].type.tensor_type.elem_type == T.INT64   # written as it was read
    m.graph.input[0].type.tensor_type.elem_type = T.FLOAT            # ... and retyped here
    for n in m.graph.node:
        n.output[:] = ["output_0" if o == "y" else o for o in n.output]
    m.graph.output[0].name = "output_0"
    onnx.save(m, str(bad))
    r = pipeline.check_onnx_file(src, bad)
    assert not r.equivalent and "inputs" in r.reason and r.max_abs_err == float("inf")
    # and the same file with only the output renamed back still fails on the input's type
    m = onnx.load(str(bad))
    pipeline.conform_signature(m, h.make_model(h.make_graph(
        [], "r", [h.make_tensor_value_info("ids", T.FLOAT, [2, 5])],
        [h.make_tensor_value_info("y", T.FLOAT, [2, 5, 3])])))
    onnx.save(m, str(bad))
    r = pipeline.check_onnx_file(src, bad)
    assert not r.equivalent and "('ids', 1)" in r.reason
    # conformed to the real original, it passes: the types, names and values all agree
    m = onnx.load(str(bad))
    pipeline.conform_signature(m, onnx.load(str(src)))
    onnx.save(m, str(bad))
    assert pipeline.check_onnx_file(src, bad).equivalent


def test_a_written_file_that_computes_something_else_is_caught(tmp_path):
    """Same declared interface, different values: the numeric read-back catches it."""
    src = _gather_model(tmp_path)
    m = onnx.load(str(src))
    for t in m.graph.initializer:
        if t.name == "w":
            t.CopyFrom(nh.from_array(nh.to_array(t) * np.float32(1.01), "w"))
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    r = pipeline.check_onnx_file(src, bad)
    assert not r.equivalent and "written file" in r.reason and 0 < r.max_abs_err < 1


def test_zoo_onnx_out_is_checked_against_the_executor(tmp_path):
    res = pipeline.optimize("toy", hand_rules(), agent="greedy", budget=20, size="tiny",
                            device="v100")
    assert res.rewrites and res.equivalent and res.checked == "graph"
    out = pipeline.write_result(res, tmp_path / "toy.onnx")
    assert res.checked == "written file" and res.equivalent and res.check_draws > 0
    assert [p.name for p in tmp_path.iterdir()] == ["toy.onnx"] and out.is_file()
