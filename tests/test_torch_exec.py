"""The torch executor agrees with the catalogue's numpy semantics, op by op and on whole models."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")

from envcore.execute import evaluate, random_values  # noqa: E402
from envcore.graph import GraphBuilder  # noqa: E402
from envcore.ops import OPS  # noqa: E402
from envcore.torch_exec import TORCH_OPS, run_torch, time_graph  # noqa: E402
from envcore.zoo import ZOO, build  # noqa: E402

F64 = torch.float64


def check(build_fn, seed=0):
    """Builds a graph with build_fn(GraphBuilder) -> outputs and compares torch with numpy."""
    b = GraphBuilder()
    outs = build_fn(b)
    g = b.build(outs if isinstance(outs, (list, tuple)) and not hasattr(outs, "node") else [outs])
    vals = random_values(g, seed)
    want = evaluate(g, vals)
    got = run_torch(g, vals, dtype=F64)
    assert len(want) == len(got)
    for w, t in zip(want, got):
        assert w.shape == t.shape
        np.testing.assert_allclose(t, w, rtol=1e-10, atol=1e-10)
    return g


def test_every_catalogue_op_has_a_torch_implementation():
    missing = set(OPS) - set(TORCH_OPS) - {"input", "weight"}
    assert not missing


ACTS = st.sampled_from(["none", "relu", "sigmoid", "tanh"])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), g=st.integers(1, 3), cpg=st.integers(1, 2), opg=st.integers(1, 2),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       pad=st.sampled_from(["same", "valid"]), act=ACTS, hw=st.integers(4, 7))
def test_conv2d_matches_numpy(n, g, cpg, opg, kh, kw, sh, sw, pad, act, hw):
    def f(b):
        x = b.input("x", (n, g * cpg, hw, hw + 1))
        w = b.weight("w", (g * opg, cpg, kh, kw))
        return b.add("conv2d", x, w, stride=(sh, sw), padding=pad, groups=g, activation=act)
    check(f)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["pool_avg", "pool_max"]), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), pad=st.sampled_from(["same", "valid"]),
       act=ACTS, hw=st.integers(4, 7))
def test_pools_match_numpy(kind, kh, kw, sh, sw, pad, act, hw):
    check(lambda b: b.add(kind, b.input("x", (2, 3, hw, hw + 2)), kernel=(kh, kw),
                          stride=(sh, sw), padding=pad, activation=act))


@settings(max_examples=20, deadline=None)
@given(batch=st.lists(st.integers(1, 3), max_size=2), m=st.integers(1, 5), k=st.integers(1, 5),
       n=st.integers(1, 5), act=ACTS)
def test_matmul_matches_numpy(batch, m, k, n, act):
    bt = tuple(batch)
    check(lambda b: b.add("matmul", b.input("a", bt + (m, k)), b.weight("b", bt + (k, n)),
                          activation=act))


SHAPE = (2, 3, 4)


@pytest.mark.parametrize("op", ["ewadd", "ewmul"])
def test_binary_elementwise(op):
    check(lambda b: b.add(op, b.input("a", SHAPE), b.input("b", SHAPE)))


@pytest.mark.parametrize("op", ["relu", "sigmoid", "tanh"])
def test_unary(op):
    check(lambda b: b.add(op, b.input("a", SHAPE)))


def test_scalar_mul_bias_add_softmax_batchnorm():
    check(lambda b: b.add("scalar_mul", b.input("a", SHAPE), b.weight("s", ())))
    for axis in (0, 1, 2, -1):
        check(lambda b: b.add("bias_add", b.input("a", SHAPE),
                              b.weight("v", (SHAPE[axis],)), axis=axis))
        check(lambda b: b.add("softmax", b.input("a", SHAPE), axis=axis))

    def bn(b):
        x = b.input("x", (2, 3, 4, 5))
        w = [b.weight(k, (3,)) for k in ("s", "bias", "m")]
        var = b.add("ewmul", b.weight("v", (3,)), b.weight("v", (3,)))  # variance >= 0
        return b.add("batchnorm", x, *w, var, eps=1e-3)
    check(bn)


def test_data_movement():
    check(lambda b: list(b.add("split", b.input("a", SHAPE), axis=2, sizes=(1, 3))))
    check(lambda b: b.add("concat", b.input("a", SHAPE), b.input("b", (2, 5, 4)), axis=1))
    check(lambda b: b.add("transpose", b.input("a", SHAPE), perm=(2, 0, 1)))
    check(lambda b: b.add("reshape", b.input("a", SHAPE), shape=(6, 4)))
    check(lambda b: b.add("enlarge", b.weight("w", (2, 3, 1, 3)), b.weight("r", (2, 3, 5, 5))))


def test_constants():
    check(lambda b: b.add("matmul", b.input("a", (3, 3)), b.add("eye", shape=(3, 3))))
    check(lambda b: b.add("ewmul", b.input("a", SHAPE), b.add("ones", shape=SHAPE)))
    check(lambda b: b.add("conv2d", b.input("x", (1, 2, 4, 4)), b.add("eye_conv",
                                                                       shape=(2, 2, 3, 3))))
    check(lambda b: b.add("conv2d", b.input("x", (1, 2, 4, 4)),
                          b.add("pool_kernel", shape=(2, 1, 3, 3)), groups=2))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_tiny_zoo_models_match_numpy(name):
    g = build(name, "tiny")
    vals = random_values(g, 3)
    want, got = evaluate(g, vals), run_torch(g, vals, dtype=F64)
    for w, t in zip(want, got):
        scale = max(float(np.abs(w).max()), 1.0)
        assert np.abs(w - t).max() <= 1e-9 * scale
    # float32 is the timing dtype: it agrees to float32 precision
    t32 = run_torch(g, vals)[0]
    assert t32.dtype == np.float32
    assert np.abs(t32 - want[0]).max() <= 1e-4 * max(float(np.abs(want[0]).max()), 1.0)


def test_time_graph_is_positive_and_skips_folded_work():
    b = GraphBuilder()
    x = b.input("x", (4, 8))
    w = b.weight("w", (8, 8))
    heavy = b.weight("big", (256, 256))
    for _ in range(20):   # weight-only work folds ahead of time: it must not be timed
        heavy = b.add("matmul", heavy, b.weight("big", (256, 256)))
    y = b.add("matmul", x, w)
    g_light = b.build([y])
    g_folded = b.build([y, b.add("reshape", heavy, shape=(256 * 256,))])
    t_light = time_graph(g_light, repeats=5, threads=1)
    t_folded = time_graph(g_folded, repeats=5, threads=1)
    assert 0 < t_light and 0 < t_folded
    # twenty 256^3 matmuls take ~10 ms; timed, they would dominate
    assert t_folded < t_light + 2.0
