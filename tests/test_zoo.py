"""The model zoo: TASO's dimensions at full size, the patterns TASO exploits, cheap small sizes."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from envcore.execute import evaluate, random_values
from envcore.zoo import SIZES, ZOO, build


def ops(g, name):
    return [n for n in g.nodes.values() if n.op == name]


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("size", SIZES)
def test_every_model_builds_valid_at_every_size(name, size):
    g = build(name, size)
    g.validate()                      # re-infers every shape from the catalogue
    assert g.is_acyclic() and g.num_ops > 0
    assert g.inputs, "a model reads at least one input leaf"
    assert not [n for n in g.nodes.values() if n.op in ("conv2d", "matmul", "pool_avg",
                                                        "pool_max") and n.p.get("activation", "none") != "none"], \
        "builders leave activations unfused: finding fusions is the optimizer's job"


@pytest.mark.parametrize("name", sorted(ZOO))
def test_tiny_variants_evaluate_to_finite_outputs(name):
    g = build(name, "tiny")
    out = evaluate(g, random_values(g, 1))
    assert [o.shape for o in out] == [g.shape(r) for r in g.outputs]
    assert all(np.isfinite(o).all() for o in out)


def test_bert_has_tasos_dimensions_and_shared_qkv_input():
    g = build("bert")
    assert g.shape(g.inputs["x"]) == (16 * 64, 1024)           # batch 16 x seq 64, hidden 1024
    cons = g.consumers
    qkv = [i for i, n in g.nodes.items() if n.op == "matmul"
           and g.shape(n.inputs[1]) == (1024, 1024)
           and sum(1 for c in cons[n.inputs[0].node] if g.nodes[c].op == "matmul") >= 3]
    assert len(qkv) >= 3 * 8, "each of 8 layers projects Q, K and V from one shared input"
    heads = {g.shape(n.inputs[0]) for n in ops(g, "softmax")}
    assert heads == {(16 * 16, 64, 64)}                          # 16 heads x batch, seq x seq
    assert len(ops(g, "softmax")) == 8


def test_nasrnn_has_tasos_dimensions():
    g = build("nasrnn")
    assert len([k for k in g.inputs if k.startswith("x")]) == 5
    mm = ops(g, "matmul")
    assert len(mm) == 16 * 5 and all(n.shapes[0] == (1, 512) for n in mm)
    # eight matmuls read the same x at each step: TASO merges them into one
    assert max(Counter(n.inputs[0] for n in mm).values()) == 8


def test_cnn_layer_counts_match_the_reference_architectures():
    conv = lambda name: len(ops(build(name), "conv2d"))  # noqa: E731
    assert conv("resnet50") == 53 and conv("resnext50") == 53
    assert conv("inception_v3") == 94 and conv("squeezenet") == 26
    groups = Counter(n.p["groups"] for n in ops(build("resnext50"), "conv2d"))
    assert groups[32] == 16, "ResNeXt-50 32x4d: every bottleneck's 3x3 conv has 32 groups"
    r = build("resnet50")
    assert r.shape(r.outputs[0]) == (1, 1000) and r.shape(r.inputs["image"]) == (1, 3, 224, 224)
    assert build("inception_v3").shape(build("inception_v3").inputs["image"]) == (1, 3, 299, 299)


def test_vit_base_dimensions():
    g = build("vit")
    assert len(ops(g, "softmax")) == 12
    assert {g.shape(n.inputs[0]) for n in ops(g, "softmax")} == {(12, 197, 197)}


@pytest.mark.parametrize("name", ["inception_v3", "squeezenet", "nasnet_a", "toy"])
def test_cnns_have_convs_sharing_an_input_and_unfused_relus(name):
    g = build(name, "small")
    cons = g.consumers
    shared = [i for i in g.nodes if sum(g.nodes[c].op == "conv2d" and g.nodes[c].inputs[0].node == i
                                        for c in cons[i]) >= 2]
    assert shared, "merging convs that share an input is TASO's key CNN rewrite"
    conv_then_relu = [c for i, n in g.nodes.items() if n.op == "conv2d"
                      for c in cons[i] if g.nodes[c].op == "relu"]
    assert conv_then_relu


def test_explicit_dims_override_full_and_bad_sizes_are_refused():
    g = build("bert", {"layers": 1, "hidden": 32, "heads": 4, "seq": 8, "batch": 2, "ffn": 64})
    assert g.shape(g.inputs["x"]) == (16, 32) and len(ops(g, "softmax")) == 1
    with pytest.raises(ValueError):
        build("bert", "huge")
    with pytest.raises(ValueError):
        build("bert", {"depth": 3})
    with pytest.raises(KeyError):
        build("alexnet")


@settings(max_examples=15, deadline=None)
@given(hidden_per_head=st.integers(1, 4), heads=st.integers(1, 3), seq=st.integers(1, 4),
       batch=st.integers(1, 2))
def test_bert_any_small_dims_build_and_run(hidden_per_head, heads, seq, batch):
    d = hidden_per_head * heads
    g = build("bert", {"layers": 1, "hidden": d, "heads": heads, "seq": seq, "batch": batch,
                       "ffn": 2 * d})
    (out,) = evaluate(g, random_values(g, 0))
    assert out.shape == (batch * seq, d) and np.isfinite(out).all()


def test_models_cli_lists_every_model_with_node_counts():
    import json
    from click.testing import CliRunner
    from subgen.cli import cli
    res = CliRunner().invoke(cli, ["models", "--size", "tiny", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["model"]: r for r in json.loads(res.output.strip().splitlines()[-1])["models"]}
    assert set(rows) == set(ZOO)
    for name, r in rows.items():
        g = build(name, "tiny")
        assert (r["ops"], r["nodes"]) == (g.num_ops, len(g.nodes))
