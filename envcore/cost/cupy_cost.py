"""The cupy cost model: times each distinct op signature as CuPy kernels on a GPU, with CUDA events.

Kernels: matmul through cuBLAS (`cupy.matmul`); conv2d as im2col (a strided window view, copied)
followed by one batched GEMM over the groups (cuBLAS); elementwise ops as fused
`cupy.ElementwiseKernel`s; pools as window reductions; data movement as copies.  Padding amounts
come from the catalogue (`ops._pads`).  Without cupy or a visible GPU, creating the model raises
`CostModelUnavailable` with one line; importing this module never fails.
"""
from __future__ import annotations

import math

from envcore.cost.model import CostModelUnavailable
from envcore.cost.measured import MeasuredCostModel
from envcore.ops import UNARY_ELEMENTWISE, _pads


def _require_gpu():
    try:
        import cupy
    except Exception:  # ImportError, or a CUDA library that fails to load
        raise CostModelUnavailable("the cupy cost model needs a CUDA GPU and cupy "
                                   "(pip install 'subgen[cupy]'); none found") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        count = 0
    if count < 1:
        raise CostModelUnavailable("the cupy cost model needs a CUDA GPU; none is visible")
    return cupy


class CupyCostModel(MeasuredCostModel):
    backend = "cupy"

    def __init__(self, device: int = 0, **kw):
        cp = _require_gpu()
        self.cp, self.gpu = cp, device
        with cp.cuda.Device(device):
            props = cp.cuda.runtime.getDeviceProperties(device)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        self.device_key = f"cuda{device}:{name}:cupy={cp.__version__}"
        self._kernels = _Kernels(cp)
        super().__init__(**kw)

    def __repr__(self) -> str:
        return f"CupyCostModel(device={self.gpu})"

    def time_op(self, op, params, in_shapes, out_shapes) -> float:
        cp = self.cp
        with cp.cuda.Device(self.gpu):
            rs = cp.random.RandomState(0)
            args = [rs.uniform(0.5, 1.5, size=s, dtype=cp.float32) if s else
                    cp.asarray(1.0, dtype=cp.float32) for s in in_shapes]
            fn = self._kernels.get(op, params, in_shapes)
            for _ in range(self.warmup):
                fn(args)
            start, end = cp.cuda.Event(), cp.cuda.Event()
            times = []
            for _ in range(self.repeats):
                start.record()
                fn(args)
                end.record()
                end.synchronize()
                times.append(cp.cuda.get_elapsed_time(start, end))
            times.sort()
            return float(times[len(times) // 2])


class _Kernels:
    """op -> a function of the argument arrays, built once per model (kernels compile once)."""

    def __init__(self, cp):
        self.cp = cp
        ek = cp.ElementwiseKernel
        self.act = {
            "none": None,
            "relu": ek("float32 x", "float32 y", "y = x > 0 ? x : 0", "sg_relu"),
            "sigmoid": ek("float32 x", "float32 y", "y = 1 / (1 + expf(-x))", "sg_sigmoid"),
            "tanh": ek("float32 x", "float32 y", "y = tanhf(x)", "sg_tanh"),
            "erf": ek("float32 x", "float32 y", "y = erff(x)", "sg_erf"),
            "gelu": ek("float32 x", "float32 y", "y = 0.5f * x * (1 + erff(x * 0.70710678f))",
                       "sg_gelu"),
        }
        self.add = ek("float32 a, float32 b", "float32 y", "y = a + b", "sg_add")
        self.mul = ek("float32 a, float32 b", "float32 y", "y = a * b", "sg_mul")
        self.bn = ek("float32 x, float32 s, float32 b, float32 m, float32 v, float32 eps",
                     "float32 y", "y = (x - m) * s * rsqrtf(v + eps) + b", "sg_bn")

    def _with_act(self, act: str, f):
        a = self.act[act]
        return f if a is None else (lambda args: a(f(args)))

    def get(self, op: str, p: dict, ins: tuple):
        cp = self.cp
        if op in ("ewadd", "ewmul", "scalar_mul"):
            k = self.add if op == "ewadd" else self.mul
            return lambda a: k(a[0], a[1])
        if op in UNARY_ELEMENTWISE:
            k = self.act[op]
            return lambda a: k(a[0])
        if op == "bias_add":
            rank = len(ins[0])
            shape = [1] * rank
            shape[p["axis"] % rank] = -1
            return self._with_act(p["activation"],
                                  lambda a: self.add(a[0], a[1].reshape(shape)))
        if op == "batchnorm":
            sh = (1, -1) + (1,) * (len(ins[0]) - 2)
            return lambda a: self.bn(a[0], *(t.reshape(sh) for t in a[1:]),
                                     cp.float32(p["eps"]))
        if op == "matmul":
            return self._with_act(p["activation"], lambda a: cp.matmul(a[0], a[1]))
        if op == "conv2d":
            return self._with_act(p["activation"], self._conv(p, ins))
        if op in ("pool_avg", "pool_max"):
            return self._with_act(p["activation"], self._pool(op, p, ins))
        if op == "pool_global_avg":
            return lambda a: a[0].mean(axis=(2, 3), keepdims=True)
        if op == "layernorm":
            eps = cp.float32(p["eps"])

            def layernorm(a):
                c = a[0] - a[0].mean(axis=-1, keepdims=True)
                return c / cp.sqrt((c * c).mean(axis=-1, keepdims=True) + eps) * a[1] + a[2]
            return layernorm
        if op == "softmax":
            ax = p["axis"]

            def softmax(a):
                e = cp.exp(a[0] - a[0].max(axis=ax, keepdims=True))
                return e / e.sum(axis=ax, keepdims=True)
            return softmax
        if op == "concat":
            return lambda a: cp.concatenate(a, axis=p["axis"])
        if op == "split":
            cuts = list(_cumsum(p["sizes"]))[:-1]
            return lambda a: [cp.ascontiguousarray(t) for t in cp.split(a[0], cuts,
                                                                         axis=p["axis"])]
        if op == "transpose":
            return lambda a: cp.ascontiguousarray(cp.transpose(a[0], p["perm"]))
        if op == "reshape":
            return lambda a: a[0].reshape(p["shape"])
        if op == "enlarge":
            def enlarge(a):
                w, r = a
                dh, dw = (r.shape[2] - w.shape[2]) // 2, (r.shape[3] - w.shape[3]) // 2
                return cp.pad(w, ((0, 0), (0, 0), (dh, dh), (dw, dw)))
            return enlarge
        # opaque and anything unknown: a memory-bound copy of its inputs, a fair stand-in
        return lambda a: [cp.copy(t) for t in a]

    def _windows(self, x, kh, kw, stride, padding, fill=0.0):
        """(N,C,H,W) -> (N,C,OH,OW,kh,kw) strided view of the padded input."""
        cp = self.cp
        t, b, l, r = _pads(kh, kw, padding, stride)
        if t or b or l or r:
            x = cp.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
        n, c, h, w = x.shape
        oh, ow = (h - kh) // stride[0] + 1, (w - kw) // stride[1] + 1
        s = x.strides
        return cp.lib.stride_tricks.as_strided(
            x, (n, c, oh, ow, kh, kw),
            (s[0], s[1], s[2] * stride[0], s[3] * stride[1], s[2], s[3]))

    def _conv(self, p: dict, ins: tuple):
        cp = self.cp
        (n, c, _h, _w), (co, cig, kh, kw) = ins
        g, stride = p["groups"], tuple(p["stride"])

        def conv(a):
            x, w = a
            win = self._windows(x, kh, kw, stride, p["padding"])
            oh, ow = win.shape[2], win.shape[3]
            # im2col: (G, Cin/G*kh*kw, N*OH*OW), then one batched GEMM with (G, Co/G, Cin/G*kh*kw)
            cols = cp.ascontiguousarray(
                win.reshape(n, g, cig, oh, ow, kh, kw).transpose(1, 2, 5, 6, 0, 3, 4)
            ).reshape(g, cig * kh * kw, n * oh * ow)
            y = cp.matmul(w.reshape(g, co // g, cig * kh * kw), cols)
            return cp.ascontiguousarray(y.reshape(co, n, oh, ow).transpose(1, 0, 2, 3))
        return conv

    def _pool(self, op: str, p: dict, ins: tuple):
        kh, kw = p["kernel"]
        stride = tuple(p["stride"])
        mx = op == "pool_max"

        def pool(a):
            win = self._windows(a[0], kh, kw, stride, p["padding"],
                                fill=-math.inf if mx else 0.0)
            return win.max(axis=(4, 5)) if mx else win.mean(axis=(4, 5))
        return pool


def _cumsum(xs):
    total = 0
    for x in xs:
        total += x
        yield total


__all__ = ["CupyCostModel"]
