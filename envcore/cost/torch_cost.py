"""The torch cost model: times each distinct (op, params, input shapes) with envcore.torch_exec's
own implementation of the op, on CPU or CUDA, with warm-up and the minimum over repeats of the
thread's CPU time on one CPU thread, else of wall time (envcore/cost/measured.py says why).

Timings live in the shared SQLite cache under backend "torch-v2" and a device key naming the CPU
model and thread count (or the GPU), so machines never mix their numbers.  On CPU ops are timed
with `threads` intra-op threads (default 1: on a loaded machine OpenMP barriers make multi-thread
timings of small ops swing by 100x); end-to-end runs use the same count
(`torch_exec.time_graph(..., threads=1)`, as `subgen optimize --measure` does).
"""
from __future__ import annotations


import itertools
import math
import time

from envcore.cost.model import CostModelUnavailable
from envcore.cost.measured import MeasuredCostModel, best_ms, cpu_name
from envcore.ops import OPS
from envcore.torch_exec import num_threads, warm_allocator


# Eight times a server CPU's last-level cache (32 MB here).  Cycling weights through twice the
# cache still left part of them resident: a 512x4096 GEMV then timed anywhere in 0.21-0.44 ms
# (0.38-0.50 with this pool), and whichever low timing a search met made nasrnn's fused matmuls
# look 2.6x faster than the graph runs.
_COLD_BYTES = 256 << 20
_MAX_COPIES = 1024


_POOLS: dict = {}


class TorchCostModel(MeasuredCostModel):
    backend = "torch"

    def __init__(self, device: str | None = None, threads: int | None = 1, cold: bool = True,
                 **kw):
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
        self.device, self.cold = device, cold
        self.threads = threads if threads is not None else torch.get_num_threads()
        if device.startswith("cuda"):
            self.device_key = f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
        else:
            self.device_key = (f"cpu:{cpu_name()}:threads={self.threads}:"
                               f"cold-weights={'256MB' if cold else 0}")
        self.device_key += f":torch={torch.__version__}"
        warm_allocator()
        super().__init__(**kw)

    def __repr__(self) -> str:
        return f"TorchCostModel(device={self.device!r})"

    def _cold_pool(self):
        """_COLD_BYTES of float32, made once per process and device."""
        pool = _POOLS.get(self.device)
        if pool is None:
            pool = _POOLS[self.device] = self.torch.full((_COLD_BYTES // 4,), 0.75,
                                                         device=self.device)
        return pool

    def _clock(self):
        """The thread's CPU time where the op runs on this thread alone (CPU, one thread)."""
        if self.device == "cpu" and self.threads == 1:
            return time.thread_time
        return time.perf_counter

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def time_op(self, op, params, in_shapes, out_shapes) -> float:
        from envcore.torch_exec import TORCH_OPS
        torch = self.torch
        gen = torch.Generator().manual_seed(0)
        # A conv's or matmul's weight (input 1) is read once per forward pass, from memory, while
        # activations arrive warm from the op that just wrote them.  So those ops cycle through
        # copies of their weight that together overflow the CPU's last-level cache.  Timing one
        # copy over and over kept a GEMV's 1 MB weight in cache and priced nasrnn's 80 GEMVs at
        # a fifth of their time in the model (2 ms against 9 ms end to end).
        # positive values keep batchnorm's variance and the like valid
        args = [(torch.rand(s, generator=gen) + 0.5).to(self.device) for s in in_shapes]
        sets = [args]
        if self.cold and OPS[op].kernel in ("conv", "gemm") and len(in_shapes) > 1:
            # the weights' copies are views into one pool filled once: only distinct memory
            # matters, and filling 256 MB for every new signature would cost more than timing it
            pool = self._cold_pool()
            sizes = [math.prod(s) for s in in_shapes[1:]]
            step = max(sum(sizes), 1)
            # more copies than a timing makes calls would go unused
            for start in range(0, min(pool.numel() - step, _MAX_COPIES * step) + 1, step):
                views, at = [], start
                for shape, n in zip(in_shapes[1:], sizes):
                    views.append(pool[at:at + n].view(shape))
                    at += n
                sets.append(args[:1] + views)
        turn = itertools.cycle(sets)
        fn = TORCH_OPS[op]
        with torch.inference_mode(), num_threads(self.threads):
            try:
                return best_ms(lambda: fn(next(turn), params), self.warmup, self.repeats,
                               self._sync, clock=self._clock())
            except Exception:
                if op != "opaque":
                    raise
                # an opaque op that rejects random floats (integer inputs): roofline estimate
                from envcore.cost.analytic import AnalyticCostModel
                return AnalyticCostModel(peak_flops=5e10, bandwidth=1e10, launch_ms=0.01
                                         ).measure(op, params, in_shapes, out_shapes)


__all__ = ["TorchCostModel"]
