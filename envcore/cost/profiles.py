"""Device profiles for the analytic cost model: what one kind of hardware does per second.

    v100  the hardware TASO reported on: 15.7 TFLOP/s fp32 for every kernel, 900 GB/s, 5 us a
          kernel launch, and an activation fused into a conv/matmul/pool is free (it runs in the
          kernel's epilogue, saving a launch and a pass over memory).
    cpu   what `subgen optimize --measure` runs on: torch eager on this machine's CPU, one
          thread.  Each kernel class has its own effective rate (a max pool runs ~300x slower
          per operation than a GEMM), and an activation costs what a separate relu costs:
          torch on the CPU runs the conv and then the activation, so fusing saves nothing.
          Every node, a view (reshape, split) too, costs the eager executor's dispatch.

The cpu numbers were measured by `calibrate()` (python -m envcore.cost.calibrate) on the machine
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

from dataclasses import dataclass, field


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
