"""Device profiles for the analytic cost model: what one kind of hardware does per second.

    v100  the hardware TASO reported on: 15.7 TFLOP/s fp32 for every kernel, 900 GB/s, 5 us a
          kernel launch, and an activation fused into a conv/matmul/pool is free (it runs in the
          kernel's epilogue, saving a launch and a pass over memory).
    cpu   what `subgen optimize --measure` runs on: torch eager on this machine's CPU, one
          thread.  Each kernel class has its own effective rate (a max pool runs ~300x slower
          per operation than a GEMM), and an activation costs what a separate relu costs:
          torch on the CPU runs the conv and then the activation, so fusing saves nothing.
          Every node, a view (reshape, split) too, costs the eager executor's dispatch.

The cpu numbers were measured by `calibrate()` (python -m envcore.cost.profiles) on the machine
the README's benchmarks ran on: an AMD EPYC, 2 cores, torch 2.13 CPU, one thread, minimum over
repeats, load average about 1.5; launch_ms is set above the bare 1.3 us dispatch of a tiny relu
to include the executor's own ~2.3 us a node (measured on a chain of 200 relus).  A later run of
calibrate() (thread CPU clock, load 6) gave gemm 86, conv 92 GFLOP/s, max pool 0.29, avg pool
1.0, softmax 8.3; 88 GB/s; weights 24 GB/s after 0.045 ms.  Calibrate on yours with
`calibrate()` and pass the result as `AnalyticCostModel(profile=...)`.
Fusion was checked there too: conv 64->64 3x3 on 56x56 took 2.13 ms, the same conv then relu 2.12 ms, with an in-place relu_ 2.12 ms, and oneDNN's fused
conv+relu (torch.ops.mkldnn._convolution_pointwise) 2.18 ms; a relu on its output alone 0.019 ms.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    flops: dict = field(default_factory=dict)   # kernel class -> effective FLOP/s; "default"
    bandwidth: float = 900e9                    # bytes/s for data-bound ops
    weight_bandwidth: float = 900e9             # bytes/s for a conv/matmul's weight (input 1)
    weight_latency_ms: float = 0.0              # before a weight streams in from memory
    launch_ms: float = 0.005                    # per-op overhead: launch, dispatch
    fused_activation: bool = True               # an op's own activation is free
    free_views: bool = True                     # reshape and split cost nothing (no kernel)

    def peak(self, kernel_class: str) -> float:
        return self.flops.get(kernel_class, self.flops["default"])

    def __repr__(self) -> str:
        return f"DeviceProfile({self.name!r})"


V100 = DeviceProfile("v100", {"default": 15.7e12}, 900e9, 900e9, 0.0, 0.005, True, True)

# calibrate() on the benchmark machine (see the module docstring), rounded to 2 digits
CPU = DeviceProfile(
    "cpu",
    {"default": 20e9, "gemm": 90e9, "conv": 100e9, "pool_max": 0.30e9, "pool_avg": 1.0e9,
     "reduce": 8e9},
    bandwidth=60e9, weight_bandwidth=25e9, weight_latency_ms=0.045, launch_ms=0.004,
    fused_activation=False, free_views=False)

PROFILES = {"v100": V100, "cpu": CPU}


def get_profile(profile) -> DeviceProfile:
    if isinstance(profile, DeviceProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown device profile {profile!r} (known: "
                         f"{', '.join(PROFILES)})") from None


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
