"""The torch cost model: times each distinct (op, params, input shapes) with envcore.torch_exec's
own implementation of the op, on CPU or CUDA, with warm-up and a median over repeats.

Timings live in the shared SQLite cache under backend "torch-v1" and a device key naming the CPU
model and thread count (or the GPU), so machines never mix their numbers.  On CPU ops are timed
with `threads` intra-op threads (default 1: on a loaded machine OpenMP barriers make multi-thread
timings of small ops swing by 100x); time end-to-end runs with the same count
(`torch_exec.time_graph(..., threads=1)`) when comparing.
"""
from __future__ import annotations


from envcore.cost import CostModelUnavailable
from envcore.cost.measured import MeasuredCostModel, cpu_name, median_ms
from envcore.torch_exec import num_threads, warm_allocator


class TorchCostModel(MeasuredCostModel):
    backend = "torch"

    def __init__(self, device: str | None = None, threads: int | None = 1, **kw):
        try:
            import torch
        except ImportError:
            raise CostModelUnavailable("the torch cost model needs torch: pip install "
                                       "'subgen[torch]'") from None
        self.torch = torch
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CostModelUnavailable("torch cost model: CUDA requested but no GPU is visible")
        self.device = device
        self.threads = threads if threads is not None else torch.get_num_threads()
        if device.startswith("cuda"):
            self.device_key = f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
        else:
            self.device_key = f"cpu:{cpu_name()}:threads={self.threads}"
        self.device_key += f":torch={torch.__version__}"
        warm_allocator()
        super().__init__(**kw)

    def __repr__(self) -> str:
        return f"TorchCostModel(device={self.device!r})"

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def time_op(self, op, params, in_shapes, out_shapes) -> float:
        from envcore.torch_exec import TORCH_OPS
        torch = self.torch
        gen = torch.Generator().manual_seed(0)
        # positive values keep batchnorm's variance and the like valid
        args = [(torch.rand(s, generator=gen) + 0.5).to(self.device) for s in in_shapes]
        fn = TORCH_OPS[op]
        with torch.inference_mode(), num_threads(self.threads):
            try:
                return median_ms(lambda: fn(args, params), self.warmup, self.repeats, self._sync)
            except Exception:
                if op != "opaque":
                    raise
                # an opaque op that rejects random floats (integer inputs): roofline estimate
                from envcore.cost.analytic import AnalyticCostModel
                return AnalyticCostModel(peak_flops=5e10, bandwidth=1e10, launch_ms=0.01
                                         ).measure(op, params, in_shapes, out_shapes)


__all__ = ["TorchCostModel"]
