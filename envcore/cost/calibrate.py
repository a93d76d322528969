"""Measure a cpu `DeviceProfile` on this machine: `python -m envcore.cost.calibrate`.

Each rate comes from one representative shape, timed with the executor's own ops and the torch
cost model's protocol; pass the result as `AnalyticCostModel(profile=...)`.
"""
from __future__ import annotations

from dataclasses import replace

from envcore.cost.profiles import CPU, DeviceProfile


def calibrate(threads: int = 1, repeats: int = 15) -> DeviceProfile:
    """A cpu profile measured here, with the executor's own ops (envcore.torch_exec) and the
    torch cost model's timing protocol: each rate from one representative shape."""
    from envcore.cost.torch_cost import TorchCostModel
    tm = TorchCostModel(device="cpu", threads=threads, use_cache=False, repeats=repeats)

    def ms(op, params, ins, outs):
        return tm.time_op(op, params, ins, outs)

    conv = {"stride": (1, 1), "padding": "same", "groups": 1, "activation": "none"}
    pool = {"kernel": (3, 3), "stride": (2, 2), "padding": "valid", "activation": "none"}
    x, big, pooled = (1, 64, 56, 56), (1, 64, 112, 112), (1, 64, 55, 55)
    tiny = ms("relu", {}, ((1, 8),), ((1, 8),))
    rate = {
        "gemm": 2 * 128 * 1024 * 1024 / ms("matmul", {"activation": "none"},
                                           ((128, 1024), (1024, 1024)), ((128, 1024),)),
        "conv": (2 * 64 * 56 * 56 * 64 * 9 / ms("conv2d", conv, (x, (64, 64, 3, 3)), (x,))
                 + 2 * 64 * 56 * 56 * 256 / ms("conv2d", conv, ((1, 256, 56, 56), (64, 256, 1, 1)),
                                                (x,))) / 2,
        "pool_max": 64 * 55 * 55 * 9 / ms("pool_max", pool, (big,), (pooled,)),
        "pool_avg": 64 * 55 * 55 * 9 / ms("pool_avg", pool, (big,), (pooled,)),
        "reduce": 5 * 64 * 1024 / ms("softmax", {"axis": -1}, ((64, 1024),), ((64, 1024),)),
    }
    n = 64 * 56 * 56
    bandwidth = 3 * 4 * n / ms("ewadd", {}, (x, x), (x,))
    # GEMVs read their 1 MB and 8 MB weights from memory (the torch cost model cycles through
    # copies that overflow the cache, as a forward pass does): a line, latency + bytes / rate
    gemv = [ms("matmul", {"activation": "none"}, ((1, 512), (512, n)), ((1, n),))
            for n in (512, 4096)]
    per_byte = (gemv[1] - gemv[0]) / (4 * 512 * (4096 - 512))
    return replace(CPU, name="cpu-calibrated", launch_ms=tiny,
                   flops={"default": CPU.flops["default"], **{k: v * 1e3 for k, v in rate.items()}},
                   bandwidth=bandwidth * 1e3, weight_bandwidth=1e3 / per_byte,
                   weight_latency_ms=max(0.0, gemv[0] - 4 * 512 * 512 * per_byte))


if __name__ == "__main__":
    p = calibrate()
    print(f"launch_ms={p.launch_ms:.4f} bandwidth={p.bandwidth:.3g} "
          f"weight_bandwidth={p.weight_bandwidth:.3g} weight_latency_ms={p.weight_latency_ms:.3f}")
    for k, v in p.flops.items():
        print(f"  {k}: {v:.3g} FLOP/s")
