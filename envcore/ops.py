"""The operator catalogue: every operator is defined exactly once, here.

Each `OpDef` holds, side by side: its arity and parameters, its shape rule, float reference
semantics (numpy), exact modular-integer semantics (for fingerprints), the name of its Z3 symbol
and its cost-model kernel key.  The generator, verifier, executor and cost models all read this.
Each also states its algebraic properties (`commutative=True`, ...); the property sets derived
from them at the end (`COMMUTATIVE`, ...) let callers ask "is ewadd commutative?" instead of
hard-coding it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# A prime below 2**25: products of two residues fit in 50 bits, so int64 sums of up to 2**13
# products never overflow before we reduce.
PRIME = 33554393

Shape = tuple[int, ...]
Params = dict[str, Any]


class ShapeError(ValueError):
    """The inputs' shapes (or the parameters) do not fit the operator."""


def _require(cond, msg) -> None:
    """Raise ShapeError unless `cond` holds.  The shape rules are also run on symbolic dims
    (Z3 integers, by `verifier.scope`, to derive where a proof holds); a condition that is not a
    plain bool is then recorded as an assumption instead of decided (see `assuming`).  `msg` may
    be a function giving the message: formatting symbolic dims costs more than the check."""
    if isinstance(cond, (bool, np.bool_)):
        if not cond:
            raise ShapeError(msg() if callable(msg) else msg)
    elif _ASSUMED:
        _ASSUMED[-1].append(cond)
    else:
        raise ShapeError(f"{msg() if callable(msg) else msg} (undecided)")


def _require_same(a, b, msg) -> None:
    """Two shapes (or shape slices) are equal, element by element (so that symbolic dims are
    compared one by one, not by a tuple comparison that would have to decide them)."""
    _require(len(a) == len(b), msg)
    for p, q in zip(a, b):
        if p is not q:
            _require(p == q, msg)


def _div(a, b):
    """Floor division of a dim by a positive int, for ints and for symbolic dims alike (Z3's
    integer division is Euclidean: the floor for a positive divisor)."""
    return a // b if isinstance(a, (int, np.integer)) else a / b


_ASSUMED: list[list] = []      # the assumption lists of the open `assuming()` blocks


class assuming:
    """`with assuming() as conds:` runs shape rules on symbolic dims, collecting in `conds`
    every condition they require (see `_require`)."""

    def __enter__(self) -> list:
        _ASSUMED.append([])
        return _ASSUMED[-1]

    def __exit__(self, *exc) -> None:
        _ASSUMED.pop()


# ----------------------------------------------------------------------------------------------
# helpers shared by the float and integer semantics (they are written once, generic over dtype)

def _mod(a: np.ndarray) -> np.ndarray:
    return np.mod(a, PRIME)


def _inv(k: int) -> int:
    return pow(k, PRIME - 2, PRIME)


def _pads(kh: int, kw: int, padding: str, stride: tuple[int, int]) -> tuple[int, int, int, int]:
    if padding == "valid":
        return 0, 0, 0, 0
    # "same" (stride 1 keeps the size); odd kernels pad symmetrically, even ones pad more at the end
    ph, pw = kh - 1, kw - 1
    return _div(ph, 2), ph - _div(ph, 2), _div(pw, 2), pw - _div(pw, 2)


def _out_hw(h: int, w: int, kh: int, kw: int, stride, padding) -> tuple[int, int]:
    t, b, l, r = _pads(kh, kw, padding, stride)
    return _div(h + t + b - kh, stride[0]) + 1, _div(w + l + r - kw, stride[1]) + 1


def _windows(x: np.ndarray, kh: int, kw: int, stride, padding, fill=0) -> np.ndarray:
    """(..., H, W) -> (..., OH, OW, kh, kw) view of the padded input's sliding windows (any
    leading dims: (N, C) for one tensor, (B, N, C) for a batch of them)."""
    t, b, l, r = _pads(kh, kw, padding, stride)
    # built by hand: np.pad and sliding_window_view cost 5x more, and the generator runs this
    # millions of times on tiny tensors
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    xp = np.full(lead + (h + t + b, w + l + r), fill, dtype=x.dtype)
    xp[..., t:t + h, l:l + w] = x
    oh, ow = (h + t + b - kh) // stride[0] + 1, (w + l + r - kw) // stride[1] + 1
    s = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, lead + (max(oh, 0), max(ow, 0), kh, kw),
        s[:-2] + (s[-2] * stride[0], s[-1] * stride[1], s[-2], s[-1]), writeable=False)


def _conv(x, w, stride, padding, groups, exact: bool):
    """NCHW x OIHW; leading dims before those are a batch of independent convs (the generator
    evaluates thousands of tiny ones at once)."""
    lead = x.shape[:-4]
    n, c, h, wd = x.shape[-4:]
    co, cig, kh, kw = w.shape[-4:]
    win = _windows(x, kh, kw, stride, padding)  # ...,N,C,OH,OW,kh,kw
    oh, ow = win.shape[-4], win.shape[-3]
    win = win.reshape(lead + (n, groups, c // groups, oh, ow, kh, kw))
    wg = w.reshape(lead + (groups, co // groups, cig, kh, kw))
    if exact and (c // groups) * kh * kw * (PRIME - 1) ** 2 < 2 ** 63:
        # every product and their whole sum fit in int64: one matmul over (channel, kh, kw)
        L = len(lead)
        cols = np.moveaxis(win, L + 2, L + 4).reshape(lead + (n, groups, oh * ow, -1))
        wk = np.swapaxes(wg.reshape(lead + (groups, co // groups, -1)), -1, -2)
        out = _mod(np.matmul(cols, wk[..., None, :, :, :]))
        return np.swapaxes(out, -1, -2).reshape(lead + (n, co, oh, ow))
    if exact:  # reduce the products before summing so int64 never overflows
        out = np.zeros(lead + (n, groups, co // groups, oh, ow), dtype=np.int64)
        for i in range(kh):
            for j in range(kw):
                out = _mod(out + _mod(np.einsum("...ngchw,...goc->...ngohw", win[..., i, j],
                                                wg[..., i, j])))
        return out.reshape(lead + (n, co, oh, ow))
    out = np.einsum("...ngchwij,...gocij->...ngohw", win, wg, optimize=True)
    return out.reshape(lead + (n, co, oh, ow))


def _act(y, act: str, exact: bool):
    if act == "none":
        return y
    if act == "relu":
        return OPS["relu"].exact([y], {})[0] if exact else np.maximum(y, 0)
    if act == "sigmoid":
        return OPS["sigmoid"].exact([y], {})[0] if exact else OPS["sigmoid"].ref([y], {})[0]
    if act == "tanh":
        return OPS["tanh"].exact([y], {})[0] if exact else np.tanh(y)
    raise ShapeError(f"unknown activation {act!r}")


# ----------------------------------------------------------------------------------------------
# the definition record

@dataclass(frozen=True)
class OpDef:
    name: str
    num_inputs: int | None          # None: variadic (at least one)
    params: tuple[str, ...]          # parameter names (all required unless in `defaults`)
    shape: Callable[[list[Shape], Params], list[Shape]]
    ref: Callable[[list[np.ndarray], Params], list[np.ndarray]]
    exact: Callable[[list[np.ndarray], Params], list[np.ndarray]]
    z3: str                          # name of the uninterpreted Z3 function (see verifier/)
    kernel: str                      # cost-model kernel key
    defaults: dict[str, Any] = field(default_factory=dict)
    doc: str = ""
    # how `exact` and `ref` run on a batch (every input with one more leading axis): True when
    # both broadcast over leading axes, else a function of (inputs, params) doing it for both
    # (data movement: the same for floats and residues); None: one call per batch element
    batched: bool | Callable | None = None
    # properties, read through the sets at the end of this file (`LEAVES`, `COMMUTATIVE`, ...)
    leaf: bool = False                  # a graph input or weight: bound to values, no semantics
    constant: bool = False              # a constant tensor made from its parameters alone
    elementwise: bool = False
    commutative: bool = False
    associative: bool = False
    idempotent: bool = False            # op(op(x)) == op(x)
    linear_in_each_input: bool = False
    multi_output: bool = False          # one output per piece (split)

    def infer(self, shapes: list[Shape], params: Params) -> list[Shape]:
        if self.num_inputs is None:
            _require(len(shapes) >= 1, lambda: f"{self.name} needs at least one input")
        else:
            _require(len(shapes) == self.num_inputs,
                     lambda: f"{self.name} takes {self.num_inputs} inputs, got {len(shapes)}")
        return [tuple(int(d) for d in s) for s in self.shape(shapes, params)]

    def full_params(self, params: Params) -> Params:
        unknown = set(params) - set(self.params)
        if unknown:
            raise ShapeError(f"{self.name} has no parameter(s) {sorted(unknown)}")
        out = {**self.defaults, **params}
        missing = [p for p in self.params if p not in out]
        if missing:
            raise ShapeError(f"{self.name} needs parameter(s) {missing}")
        return out

    def exact_many(self, xs: list[np.ndarray], params: Params) -> list[np.ndarray]:
        """`exact` on a batch: xs[i][b] is input i of batch element b; outputs alike."""
        return self._many(self.exact, xs, params)

    def ref_many(self, xs: list[np.ndarray], params: Params) -> list[np.ndarray]:
        """`ref` on a batch, as `exact_many`."""
        return self._many(self.ref, xs, params)

    def _many(self, fn, xs, params):
        if self.batched is True:
            return fn(xs, params)
        if self.batched is not None:
            return self.batched(xs, params)
        outs = [fn([x[b] for x in xs], params) for b in range(len(xs[0]))]
        return [np.stack([o[k] for o in outs]) for k in range(len(outs[0]))]


OPS: dict[str, OpDef] = {}


def op(name: str, *, params, defaults=None, **fields) -> None:
    """Register operator `name`; every other field of `OpDef` is given by its name."""
    OPS[name] = OpDef(name=name, params=tuple(params), defaults=dict(defaults or {}), **fields)


# ----------------------------------------------------------------------------------------------
# leaves and constants

def _leaf_shape(_s, p):
    return [tuple(p["shape"])]


def _leaf_value(_x, _p):
    raise ShapeError("leaves have no semantics: bind them to values")


op("input", num_inputs=0, params=["name", "shape"], shape=_leaf_shape,
   ref=_leaf_value, exact=_leaf_value, z3="input", kernel="none",
   doc="a graph input (activation)", leaf=True)
op("weight", num_inputs=0, params=["name", "shape"], shape=_leaf_shape,
   ref=_leaf_value, exact=_leaf_value, z3="weight", kernel="none",
   doc="a trained parameter; ops over weights alone can be folded ahead of time", leaf=True)


def _eye(_x, p, dtype=np.float64):
    return [np.eye(p["shape"][0], dtype=dtype)]


def _eye_conv(_x, p, dtype=np.float64):
    c, _, kh, kw = p["shape"]
    k = np.zeros(p["shape"], dtype=dtype)
    k[np.arange(c), np.arange(c), kh // 2, kw // 2] = 1
    return [k]


def _square(_s, p):
    s = tuple(p["shape"])
    _require(len(s) == 2, "identity matrix must be square")
    _require(s[0] == s[1], "identity matrix must be square")
    return [s]


def _idconv_shape(_s, p):
    s = tuple(p["shape"])
    _require(len(s) == 4, "identity conv kernel is (C, C, odd, odd)")
    for cond in (s[0] == s[1], s[2] % 2 == 1, s[3] % 2 == 1):
        _require(cond, "identity conv kernel is (C, C, odd, odd)")
    return [s]


def _poolk_shape(_s, p):
    s = tuple(p["shape"])
    _require(len(s) == 4, "pool kernel is (C, 1, KH, KW)")
    _require(s[1] == 1, "pool kernel is (C, 1, KH, KW)")
    return [s]


op("eye", num_inputs=0, params=["shape"], shape=_square,
   ref=_eye, exact=lambda x, p: _eye(x, p, np.int64), z3="eye", kernel="const",
   doc="constant identity matrix (n, n)", constant=True)
op("eye_conv", num_inputs=0, params=["shape"], shape=_idconv_shape,
   ref=_eye_conv, exact=lambda x, p: _eye_conv(x, p, np.int64), z3="eye_conv", kernel="const",
   doc="constant identity conv kernel (C, C, KH, KW)", constant=True)
op("ones", num_inputs=0, params=["shape"], shape=lambda _s, p: [tuple(p["shape"])],
   ref=lambda _x, p: [np.ones(p["shape"])],
   exact=lambda _x, p: [np.ones(p["shape"], np.int64)], z3="ones", kernel="const",
   doc="constant all-ones tensor", constant=True)
op("pool_kernel", num_inputs=0, params=["shape"], shape=_poolk_shape,
   ref=lambda _x, p: [np.full(p["shape"], 1.0 / (p["shape"][2] * p["shape"][3]))],
   exact=lambda _x, p: [np.full(p["shape"], _inv(p["shape"][2] * p["shape"][3]), np.int64)],
   z3="pool_kernel", kernel="const",
   doc="constant depthwise averaging kernel (C, 1, KH, KW)", constant=True)

# ----------------------------------------------------------------------------------------------
# elementwise


def _same(s, _p):
    for x in s[1:]:
        _require_same(x, s[0], lambda: f"elementwise shapes differ: {s}")
    return [s[0]]


op("ewadd", num_inputs=2, params=[], shape=_same,
   ref=lambda x, p: [x[0] + x[1]], exact=lambda x, p: [_mod(x[0] + x[1])],
   z3="ewadd", kernel="ew", doc="a + b", batched=True,
   elementwise=True, commutative=True, associative=True)
op("ewmul", num_inputs=2, params=[], shape=_same,
   ref=lambda x, p: [x[0] * x[1]], exact=lambda x, p: [_mod(x[0] * x[1])],
   z3="ewmul", kernel="ew", doc="a * b", batched=True,
   elementwise=True, commutative=True, associative=True, linear_in_each_input=True)


def _scalar_shape(s, _p):
    _require(s[1] == (), "scalar_mul's second input is a scalar ()")
    return [s[0]]


def _scaled(a, s):
    """a * s, s 0-d (or, in a batch, one scalar per element: its axes line up on the left)."""
    return a * np.reshape(s, np.shape(s) + (1,) * (np.ndim(a) - np.ndim(s)))


op("scalar_mul", num_inputs=2, params=[], shape=_scalar_shape,
   ref=lambda x, p: [_scaled(x[0], x[1])], exact=lambda x, p: [_mod(_scaled(x[0], x[1]))],
   z3="smul", kernel="ew", doc="a * s, s a scalar", batched=True,
   elementwise=True, linear_in_each_input=True)


def _bias_shape(s, p):
    x, b = s
    ax = p["axis"] % max(len(x), 1)
    _require(len(x) >= 1, lambda: f"bias {b} does not fit axis {p['axis']} of {x}")
    _require_same(b, (x[ax],), lambda: f"bias {b} does not fit axis {p['axis']} of {x}")
    return [x]


def _bias(x, p, exact=False):
    a, b = x
    ax = p["axis"] % a.ndim
    shape = [1] * a.ndim
    shape[ax] = -1
    y = a + b.reshape(shape)
    return [_act(_mod(y) if exact else y, p["activation"], exact)]


def _bias_many(x, p):
    """bias_add on a batch (residues or floats): the axis counts after the batch axis."""
    a, b = x
    exact = a.dtype == np.int64
    ax = p["axis"] % (a.ndim - 1)
    shape = [b.shape[0]] + [1] * (a.ndim - 1)
    shape[ax + 1] = -1
    y = a + b.reshape(shape)
    return [_act(_mod(y) if exact else y, p["activation"], exact)]


# A conv's or a Gemm's bias, and the activation fused after it: ONNX's Conv(x, w, b) + Relu is
# conv2d then bias_add(activation="relu"), and Gemm(x, w, b) is matmul then bias_add(axis=1),
# so the rules see through the bias (`relu(bias_add(..))` fuses like `relu(conv2d(..))` does)
op("bias_add", num_inputs=2, params=["axis", "activation"],
   defaults={"axis": 1, "activation": "none"}, shape=_bias_shape,
   ref=_bias, exact=lambda x, p: _bias(x, p, True), z3="bias_add", kernel="ew",
   doc="act(x + b), b broadcast along one axis: a conv's or Gemm's bias and fused activation",
   batched=_bias_many, elementwise=True)

# unary: float semantics and a polynomial stand-in for exact fingerprints (TASO's trick: relu's
# zeros would make spurious matches, so relu is x(x+1)+1; any fixed polynomial keeps equalities
# that hold for every function symbol, which is all the axioms use)
def _unary(f):
    """The semantics of an elementwise op of one input, from the function of one array."""
    return lambda x, p: [f(x[0])]


op("relu", num_inputs=1, params=[], shape=lambda s, p: [s[0]],
   ref=_unary(lambda a: np.maximum(a, 0)), exact=_unary(lambda a: _mod(a * (a + 1) + 1)),
   z3="relu", kernel="ew", doc="elementwise relu", batched=True,
   elementwise=True, idempotent=True)
op("sigmoid", num_inputs=1, params=[], shape=lambda s, p: [s[0]],
   ref=_unary(lambda a: 1 / (1 + np.exp(-a))),
   exact=_unary(lambda a: _mod(_mod(a * a) * a + 3 * a + 7)),
   z3="sigmoid", kernel="ew", doc="elementwise sigmoid", batched=True, elementwise=True)
op("tanh", num_inputs=1, params=[], shape=lambda s, p: [s[0]],
   ref=_unary(np.tanh), exact=_unary(lambda a: _mod(_mod(a * a) * a + 5 * a + 11)),
   z3="tanh", kernel="ew", doc="elementwise tanh", batched=True, elementwise=True)


def _erf(a):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(a) if np.size(a) else np.asarray(a, float)


# GELU as BERT, GPT-2's exporters and ViT spell it in ONNX before opset 20: x/2 (1 + erf(x/√2))
op("erf", num_inputs=1, params=[], shape=lambda s, p: [s[0]],
   ref=_unary(_erf), exact=_unary(lambda a: _mod(_mod(a * a) * a + 13 * a + 2)),
   z3="erf", kernel="ew", doc="elementwise error function", batched=True, elementwise=True)
op("gelu", num_inputs=1, params=[], shape=lambda s, p: [s[0]],
   ref=_unary(lambda a: 0.5 * a * (1 + _erf(a / np.sqrt(2)))),
   exact=_unary(lambda a: _mod(_mod(_mod(a * a) * a + 17) * a + 3)),
   z3="gelu", kernel="ew", doc="elementwise GELU (the exact, erf form)", batched=True,
   elementwise=True)

# ----------------------------------------------------------------------------------------------
# linear algebra


def _matmul_shape(s, p):
    a, b = s
    _require(len(a) >= 2 and len(a) == len(b), lambda: f"matmul needs equal ranks >= 2, got {a} {b}")
    _require_same(a[:-2], b[:-2], lambda: f"matmul batch dims differ: {a} {b}")
    _require_same(a[-1:], b[-2:-1], lambda: f"matmul inner dims differ: {a} {b}")
    _require(p["activation"] in ("none", "relu", "sigmoid", "tanh"), "bad activation")
    return [a[:-1] + b[-1:]]


def _matmul_exact(x, p):
    a, b = x
    # (k ≤ 4096 at fingerprint sizes) residues < 2**25: each product < 2**50, sum < 2**62
    return [_act(_mod(np.matmul(a, b)), p["activation"], True)]


op("matmul", num_inputs=2, params=["activation"], defaults={"activation": "none"},
   shape=_matmul_shape,
   ref=lambda x, p: [_act(np.matmul(x[0], x[1]), p["activation"], False)], exact=_matmul_exact,
   z3="matmul", kernel="gemm", doc="batched a @ b, fused activation", batched=True,
   associative=True, linear_in_each_input=True)


def _conv_shape(s, p):
    x, w = s
    _require(len(x) == 4 and len(w) == 4, lambda: f"conv2d needs NCHW input and OIHW kernel: {x} {w}")
    g = p["groups"]
    for cond in (g >= 1, x[1] % g == 0, w[0] % g == 0):
        _require(cond, lambda: f"groups {g} do not divide channels")
    _require(w[1] * g == x[1], lambda: f"kernel {w} does not fit {x[1]} channels in {g} groups")
    _require(p["padding"] in ("same", "valid"), "padding is same or valid")
    _require(p["activation"] in ("none", "relu", "sigmoid", "tanh"), "bad activation")
    oh, ow = _out_hw(x[2], x[3], w[2], w[3], p["stride"], p["padding"])
    _require(oh >= 1, lambda: f"kernel {w[2:]} larger than input {x[2:]}")
    _require(ow >= 1, lambda: f"kernel {w[2:]} larger than input {x[2:]}")
    return [(x[0], w[0], oh, ow)]


def _conv_ref(x, p, exact=False):
    y = _conv(x[0], x[1], tuple(p["stride"]), p["padding"], p["groups"], exact)
    return [_act(y, p["activation"], exact)]


op("conv2d", num_inputs=2, params=["stride", "padding", "activation", "groups"],
   defaults={"stride": (1, 1), "padding": "same", "activation": "none", "groups": 1},
   shape=_conv_shape, ref=_conv_ref, exact=lambda x, p: _conv_ref(x, p, True),
   z3="conv2d", kernel="conv", doc="2-D convolution, NCHW x OIHW, fused activation",
   batched=True, linear_in_each_input=True)


def _pool_shape(s, p):
    (x,) = s
    _require(len(x) == 4, lambda: f"pooling needs NCHW, got {x}")
    kh, kw = p["kernel"]
    oh, ow = _out_hw(x[2], x[3], kh, kw, p["stride"], p["padding"])
    _require(oh >= 1, "pool kernel larger than input")
    _require(ow >= 1, "pool kernel larger than input")
    return [(x[0], x[1], oh, ow)]


def _pool(x, p, kind, exact=False):
    kh, kw = p["kernel"]
    win = _windows(x[0], kh, kw, tuple(p["stride"]), p["padding"],
                   fill=(-np.inf if kind == "max" and not exact else 0))
    if kind == "avg":  # padding counts as zeros in the average (count_include_pad)
        y = _mod(win.sum(axis=(-1, -2)) * _inv(kh * kw)) if exact else win.mean(axis=(-1, -2))
    elif exact:  # max has no polynomial: sum of squares keeps window structure in the hash
        y = _mod(_mod(win * win).sum(axis=(-1, -2)) + 1)
    else:
        y = win.max(axis=(-1, -2))
    return [_act(y, p["activation"], exact)]


for _kind in ("avg", "max"):
    op(f"pool_{_kind}", num_inputs=1, params=["kernel", "stride", "padding", "activation"],
       defaults={"kernel": (3, 3), "stride": (1, 1), "padding": "same", "activation": "none"},
       shape=_pool_shape,
       ref=lambda x, p, k=_kind: _pool(x, p, k), exact=lambda x, p, k=_kind: _pool(x, p, k, True),
       z3=f"pool_{_kind}", kernel="pool", doc=f"{_kind} pooling, NCHW", batched=True)



def _global_pool_shape(s, p):
    (x,) = s
    _require(len(x) == 4, lambda: f"global pooling needs NCHW, got {x}")
    return [(x[0], x[1], 1, 1)]


def _global_avg(x, p, lead=0):
    a = x[0]
    if a.dtype == np.int64:   # exact: the sum times the inverse of the window size
        return [_mod(_mod(a.sum(axis=(-1, -2), keepdims=True)) * _inv(a.shape[-1] * a.shape[-2]))]
    return [a.mean(axis=(-1, -2), keepdims=True)]


op("pool_global_avg", num_inputs=1, params=[], shape=_global_pool_shape,
   ref=_global_avg, exact=_global_avg, z3="pool_global_avg", kernel="pool",
   doc="global average pooling, NCHW -> NC11 (ONNX GlobalAveragePool)", batched=True,
   idempotent=True, linear_in_each_input=True)

# ----------------------------------------------------------------------------------------------
# data movement


def _concat_shape(s, p):
    ax = p["axis"]
    _require(all(len(x) == len(s[0]) for x in s), lambda: f"concat ranks differ: {s}")
    _require(0 <= ax < len(s[0]), lambda: f"concat axis {ax} out of range for {s[0]}")
    for x in s[1:]:
        _require_same(x[:ax] + x[ax + 1:], s[0][:ax] + s[0][ax + 1:],
                      lambda: f"concat shapes differ off axis {ax}: {s}")
    out = list(s[0])
    out[ax] = sum(x[ax] for x in s)
    return [tuple(out)]


op("concat", num_inputs=None, params=["axis"], shape=_concat_shape,
   ref=lambda x, p: [np.concatenate(x, axis=p["axis"])],
   exact=lambda x, p: [np.concatenate(x, axis=p["axis"])], z3="concat", kernel="copy",
   doc="concatenate along an axis",
   batched=lambda x, p: [np.concatenate(x, axis=p["axis"] + 1)])


def _split_shape(s, p):
    (x,) = s
    ax, sizes = p["axis"], tuple(p["sizes"])
    _require(0 <= ax < len(x), lambda: f"split axis {ax} out of range for {x}")
    _require(len(sizes) >= 2, lambda: f"split sizes {sizes} do not add up to {x[ax]}")
    for cond in [k > 0 for k in sizes] + [sum(sizes) == x[ax]]:
        _require(cond, lambda: f"split sizes {sizes} do not add up to {x[ax]}")
    return [x[:ax] + (k,) + x[ax + 1:] for k in sizes]


def _split(x, p, lead=0):
    cuts = np.cumsum(p["sizes"])[:-1]
    return list(np.split(x[0], cuts, axis=p["axis"] + lead))


op("split", num_inputs=1, params=["axis", "sizes"], shape=_split_shape,
   ref=_split, exact=_split, z3="split", kernel="copy",
   doc="split along an axis into pieces of the given sizes (one output each)",
   batched=lambda x, p: _split(x, p, lead=1), multi_output=True)


def _transpose_shape(s, p):
    (x,) = s
    perm = tuple(p["perm"])
    _require(sorted(perm) == list(range(len(x))), lambda: f"bad permutation {perm} for {x}")
    return [tuple(x[i] for i in perm)]


op("transpose", num_inputs=1, params=["perm"], shape=_transpose_shape,
   ref=lambda x, p: [np.transpose(x[0], p["perm"])],
   exact=lambda x, p: [np.transpose(x[0], p["perm"])], z3="transpose", kernel="copy",
   doc="permute axes",
   batched=lambda x, p: [np.transpose(x[0], (0,) + tuple(a + 1 for a in p["perm"]))])


def _reshape_shape(s, p):
    (x,) = s
    out = tuple(p["shape"])
    _require(int(np.prod(x)) == int(np.prod(out)), lambda: f"cannot reshape {x} to {out}")
    return [out]


op("reshape", num_inputs=1, params=["shape"], shape=_reshape_shape,
   ref=lambda x, p: [x[0].reshape(p["shape"])], exact=lambda x, p: [x[0].reshape(p["shape"])],
   z3="reshape", kernel="view", doc="reshape (row-major)")


def _enlarge_shape(s, p):
    w, r = s
    _require(len(w) == 4 and len(r) == 4, "enlarge takes two OIHW kernels")
    for cond in (w[2] <= r[2], w[3] <= r[3], (r[2] - w[2]) % 2 == 0, (r[3] - w[3]) % 2 == 0):
        _require(cond, lambda: f"cannot centre kernel {w} in {r}")
    return [w[:2] + r[2:]]


def _enlarge(x, p):
    w, r = x
    dh, dw = (r.shape[-2] - w.shape[-2]) // 2, (r.shape[-1] - w.shape[-1]) // 2
    return [np.pad(w, ((0, 0),) * (w.ndim - 2) + ((dh, dh), (dw, dw)))]


op("enlarge", num_inputs=2, params=[], shape=_enlarge_shape,
   ref=_enlarge, exact=_enlarge, z3="enlarge", kernel="copy",
   doc="zero-pad kernel w, centred, to the spatial size of kernel r", batched=True)

# ----------------------------------------------------------------------------------------------
# what real models also carry


def _bn_shape(s, p):
    x = s[0]
    _require(len(x) >= 2, lambda: f"batchnorm params must be ({x[1]},)")
    for t in s[1:]:
        _require_same(t, (x[1],), lambda: f"batchnorm params must be ({x[1]},)")
    return [x]


def _bn(x, p, exact=False):
    a, scale, bias, mean, var = x
    sh = (1, -1) + (1,) * (a.ndim - 2)
    if exact:  # 1/sqrt is not polynomial; an affine stand-in keeps the structure in the hash
        return [_mod(_mod((a - mean.reshape(sh)) * scale.reshape(sh)) * _mod(var.reshape(sh) + 1)
                     + bias.reshape(sh))]
    inv = scale.reshape(sh) / np.sqrt(var.reshape(sh) + p["eps"])
    return [(a - mean.reshape(sh)) * inv + bias.reshape(sh)]


op("batchnorm", num_inputs=5, params=["eps"], defaults={"eps": 1e-5}, shape=_bn_shape,
   ref=_bn, exact=lambda x, p: _bn(x, p, True), z3="batchnorm", kernel="ew",
   doc="inference batchnorm(x, scale, bias, mean, var) over axis 1")


def _softmax(x, p):
    a = x[0] - x[0].max(axis=p["axis"], keepdims=True)
    e = np.exp(a)
    return [e / e.sum(axis=p["axis"], keepdims=True)]


def _softmax_exact(x, p):  # exp has no polynomial: square then normalise-by-sum stand-in
    sq = _mod(x[0] * x[0] + 1)
    return [_mod(sq * _mod(sq.sum(axis=p["axis"], keepdims=True) + 1))]


op("softmax", num_inputs=1, params=["axis"], defaults={"axis": -1}, shape=lambda s, p: [s[0]],
   ref=_softmax, exact=_softmax_exact, z3="softmax", kernel="reduce",
   doc="softmax along an axis")


def _layernorm_shape(s, p):
    x, scale, bias = s
    _require(len(x) >= 1, "layernorm needs a rank >= 1 input")
    _require(p["axis"] == -1, "layernorm normalises the last axis (axis = -1)")
    for t in (scale, bias):
        _require_same(t, x[-1:], lambda: f"layernorm scale and bias must be ({x[-1]},)")
    return [x]


def _layernorm(x, p, exact=False):
    a, scale, bias = x
    if exact:  # 1/sqrt is not polynomial: centring, then an affine stand-in for the scaling
        c = _mod(a - _mod(a.sum(axis=-1, keepdims=True) * _inv(a.shape[-1])))
        return [_mod(_mod(_mod(c * c).sum(axis=-1, keepdims=True) + 1) * _mod(c * scale) + bias)]
    c = a - a.mean(axis=-1, keepdims=True)
    return [c / np.sqrt((c * c).mean(axis=-1, keepdims=True) + p["eps"]) * scale + bias]


op("layernorm", num_inputs=3, params=["axis", "eps"], defaults={"axis": -1, "eps": 1e-5},
   shape=_layernorm_shape, ref=_layernorm, exact=lambda x, p: _layernorm(x, p, True),
   z3="layernorm", kernel="reduce",
   doc="layer normalisation of the last axis, then scale and bias (ONNX LayerNormalization)")


def _opaque_shape(s, p):
    return [tuple(o) for o in p["out_shapes"]]


def _opaque(x, p):  # runs the original ONNX operator (onnx is imported only when one runs)
    from envcore.onnx.opaque import run_opaque
    return run_opaque(p, x)


def _opaque_exact(_x, p):
    raise ShapeError(f"opaque op {p['op_type']!r} has no exact semantics")


op("opaque", num_inputs=None, params=["op_type", "attrs", "out_shapes"], defaults={"attrs": ()},
   shape=_opaque_shape, ref=_opaque, exact=_opaque_exact, z3="opaque", kernel="opaque",
   doc="an operator the IR does not know (from ONNX); it passes through untouched")

# ----------------------------------------------------------------------------------------------
# properties as data: the operators with each property, read off the table above

def _having(prop: str) -> frozenset[str]:
    return frozenset(name for name, d in OPS.items() if getattr(d, prop))


LEAVES = _having("leaf")
CONSTANTS = _having("constant")
UNARY_ELEMENTWISE = frozenset(n for n in _having("elementwise") if OPS[n].num_inputs == 1)
COMMUTATIVE = _having("commutative")
ASSOCIATIVE = _having("associative")
IDEMPOTENT = _having("idempotent")
LINEAR_IN_EACH_INPUT = _having("linear_in_each_input")
MULTI_OUTPUT = _having("multi_output")
# parameters whose value is a shape, not a choice: rule matching treats them as wildcards
SHAPE_PARAMS = {"split": ("sizes",), "reshape": ("shape",), "eye": ("shape",),
                "eye_conv": ("shape",), "ones": ("shape",), "pool_kernel": ("shape",)}

# dims that act as parameters: a conv kernel's spatial size decides what the conv computes, so a
# rule proved for 1x1 kernels says nothing of 3x3 ones.  {op: {input position: axes}}; matching
# keeps these dims equal to the rule's, and the verifier never renames them.
SEMANTIC_DIMS = {"conv2d": {1: (2, 3)}, "enlarge": {0: (2, 3), 1: (2, 3)}}


def semantic_dims(op: str, input_shapes) -> tuple:
    """((input position, axis, size), ...) that a match of this op must reproduce exactly."""
    return tuple((k, a, input_shapes[k][a]) for k, axes in SEMANTIC_DIMS.get(op, {}).items()
                 for a in axes)


# TASO's generator operator set (its paper's substitution generator): the default operators `subgen generate` enumerates over
TASO_GENERATOR_OPS = ("matmul", "ewadd", "ewmul", "conv2d", "pool_avg", "pool_max", "relu",
                      "concat", "split", "transpose", "scalar_mul", "enlarge",
                      "eye", "eye_conv", "ones", "pool_kernel")


# the operators real models are made of (bias, GELU, global pooling beside TASO's matmul and
# conv), enumerated as a second run into the default rule DB: the rules that see through a
# conv's bias, fuse an activation into it, and move biases and pooling
REAL_MODEL_OPS = ("matmul", "conv2d", "bias_add", "relu", "gelu", "ewadd", "scalar_mul", "concat",
                  "split", "transpose", "pool_global_avg")
# the named operator sets of `subgen generate --ops`; the default rule DB holds a run of each
OP_SETS = {"taso": TASO_GENERATOR_OPS, "real": REAL_MODEL_OPS}


def get(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r} (known: {', '.join(sorted(OPS))})") from None
