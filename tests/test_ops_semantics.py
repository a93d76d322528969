"""The catalogue's exact (modular) semantics agree with its float semantics on small integers,
for the operators whose exact form is not a stand-in (linear algebra and data movement)."""
import numpy as np
from hypothesis import given, settings, strategies as st

from envcore.ops import OPS, PRIME

# (op, params, input shapes): every linear or data-movement op of the generator set
CASES = [
    ("ewadd", {}, [(2, 4), (2, 4)]),
    ("ewmul", {}, [(2, 4), (2, 4)]),
    ("scalar_mul", {}, [(2, 4, 4, 4), ()]),
    ("matmul", {"activation": "none"}, [(2, 4), (4, 4)]),
    ("conv2d", {}, [(2, 4, 4, 4), (4, 4, 3, 3)]),
    ("conv2d", {}, [(2, 4, 4, 4), (4, 4, 1, 3)]),
    ("conv2d", {"groups": 4}, [(2, 4, 4, 4), (4, 1, 3, 3)]),
    ("concat", {"axis": 0}, [(2, 4), (4, 4)]),
    ("concat", {"axis": 1}, [(2, 4, 4, 4), (2, 4, 4, 4)]),
    ("split", {"axis": 1, "sizes": (1, 3)}, [(2, 4)]),
    ("transpose", {"perm": (1, 0)}, [(2, 4)]),
    ("enlarge", {}, [(4, 4, 1, 3), (4, 4, 3, 3)]),
    ("bias_add", {"axis": 1}, [(2, 4), (4,)]),
    ("bias_add", {"axis": 1}, [(2, 4, 4, 4), (4,)]),
    ("bias_add", {"axis": 0}, [(3, 2, 4), (3,)]),
]


@settings(max_examples=25, deadline=None)
@given(case=st.sampled_from(CASES), seed=st.integers(0, 2**31))
def test_exact_matches_float_on_small_ints(case, seed):
    name, params, shapes = case
    opdef = OPS[name]
    full = opdef.full_params(params)
    rng = np.random.default_rng(seed)
    ints = [rng.integers(-5, 6, size=s) for s in shapes]
    floats = opdef.ref([x.astype(np.float64) for x in ints], full)
    exact = opdef.exact([np.mod(x, PRIME).astype(np.int64) for x in ints], full)
    assert len(floats) == len(exact) == len(opdef.infer(shapes, full))
    for f, e, s in zip(floats, exact, opdef.infer(shapes, full)):
        assert f.shape == e.shape == s
        # small integers never wrap: the float result is the residue, read back signed
        signed = np.where(e > PRIME // 2, e - PRIME, e)
        np.testing.assert_array_equal(signed, np.rint(f).astype(np.int64))


def test_relu_stand_in_has_no_spurious_zeros():
    """Exact relu is the polynomial x(x+1)+1: it never maps two of 0..100 to one value twice
    the way max(x, 0) maps every negative number to 0."""
    x = np.mod(np.arange(-50, 51), PRIME).astype(np.int64)
    y = OPS["relu"].exact([x], {})[0]
    assert len(set(y.tolist())) > 50


BATCH_CASES = CASES + [
    ("relu", {}, [(2, 4, 4, 4)]),
    ("sigmoid", {}, [(2, 4)]),
    ("pool_avg", {}, [(2, 4, 4, 4)]),
    ("pool_max", {}, [(2, 4, 4, 4)]),
    ("conv2d", {"activation": "relu"}, [(2, 4, 4, 4), (4, 4, 3, 3)]),
    ("conv2d", {"groups": 2}, [(2, 4, 4, 4), (4, 2, 3, 3)]),
    ("conv2d", {}, [(4, 4, 3, 3), (4, 4, 3, 3)]),
    ("matmul", {"activation": "relu"}, [(4, 4), (4, 4)]),
    ("split", {"axis": 0, "sizes": (2, 2)}, [(4, 4, 3, 3)]),
    ("transpose", {"perm": (1, 0)}, [(4, 2)]),
    ("bias_add", {"axis": 1, "activation": "relu"}, [(2, 4, 4, 4), (4,)]),
    ("bias_add", {"axis": 2, "activation": "relu"}, [(2, 3, 5), (5,)]),
    ("pool_global_avg", {}, [(2, 4, 4, 4)]),
    ("pool_global_avg", {}, [(1, 3, 2, 5)]),
    ("gelu", {}, [(2, 4)]),
    ("erf", {}, [(2, 4, 4, 4)]),
    ("layernorm", {}, [(2, 3, 4), (4,), (4,)]),
]


@settings(max_examples=40, deadline=None)
@given(case=st.sampled_from(BATCH_CASES), batch=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_exact_on_a_batch_is_exact_on_each_element(case, batch, seed):
    """The generator evaluates thousands of nodes of one operator in one call (`exact_many`,
    `ref_many`); element b of the batched result must be the op on element b of the inputs."""
    name, params, shapes = case
    opdef = OPS[name]
    full = opdef.full_params(params)
    rng = np.random.default_rng(seed)
    xs = [rng.integers(0, PRIME, size=(batch,) + tuple(s), dtype=np.int64) for s in shapes]
    many = opdef.exact_many(xs, full)
    for b in range(batch):
        one = opdef.exact([x[b] for x in xs], full)
        assert len(one) == len(many)
        for o, m in zip(one, many):
            np.testing.assert_array_equal(m[b], o)
    floats = [rng.uniform(-1, 1, size=x.shape) for x in xs]
    many = opdef.ref_many(floats, full)
    for b in range(batch):
        for o, m in zip(opdef.ref([x[b] for x in floats], full), many):
            np.testing.assert_allclose(m[b], o, rtol=1e-12, atol=1e-12)
