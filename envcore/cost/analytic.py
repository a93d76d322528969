"""The analytic cost model: FLOPs and bytes against a roofline, plus a launch overhead per kernel.

    ms = launch + max(flops / peak_flops, bytes / bandwidth)

Defaults describe a V100-class GPU, the hardware TASO reported on: 15.7 TFLOP/s fp32, 900 GB/s,
5 us per kernel launch.  The launch term is what rewards fusing (conv + relu becomes one kernel)
and merging (two convs over one input read it once, in one launch), as real hardware does.
Views cost nothing: reshape, and split, whose pieces are read in place with strides (a GEMM's
leading dimension), as TASO priced it.  Deterministic: this is the default for tests.
"""
from __future__ import annotations

import math

from envcore.cost import CostModel
from envcore.ops import OPS

_BYTES = 4  # float32


def _n(shape) -> int:
    return math.prod(shape)


class AnalyticCostModel(CostModel):
    name = "analytic"

    def __init__(self, peak_flops: float = 15.7e12, bandwidth: float = 900e9,
                 launch_ms: float = 0.005):
        super().__init__()
        self.peak_flops, self.bandwidth, self.launch_ms = peak_flops, bandwidth, launch_ms

    def __repr__(self) -> str:
        return (f"AnalyticCostModel(peak_flops={self.peak_flops:g}, bandwidth={self.bandwidth:g}, "
                f"launch_ms={self.launch_ms:g})")

    def flops(self, op: str, p: dict, ins: tuple, outs: tuple) -> float:
        kernel = OPS[op].kernel
        out = sum(_n(s) for s in outs)
        act = out if p.get("activation", "none") != "none" else 0
        if kernel == "gemm":
            return 2.0 * out * ins[0][-1] + act
        if kernel == "conv":
            _co, cig, kh, kw = ins[1]
            return 2.0 * out * cig * kh * kw + act
        if kernel == "pool":
            kh, kw = p["kernel"]
            return float(out * kh * kw + act)
        if kernel == "reduce":   # softmax: max, sub, exp, sum, div
            return 5.0 * out
        if op == "batchnorm":
            return 2.0 * out
        if kernel in ("ew", "opaque"):
            return float(out)
        return 0.0               # data movement

    def measure(self, op, params, in_shapes, out_shapes) -> float:
        kernel = OPS[op].kernel
        if kernel in ("view", "none", "const") or op == "split":
            return 0.0
        data = sum(_n(s) for s in in_shapes) + sum(_n(s) for s in out_shapes)
        secs = max(self.flops(op, params, in_shapes, out_shapes) / self.peak_flops,
                   data * _BYTES / self.bandwidth)
        return self.launch_ms + secs * 1e3
