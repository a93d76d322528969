"""What the measured backends (torch, cupy) share: timing each distinct op signature once, with
warm-up and a median over repeats, remembered in memory and in the shared SQLite cache."""
from __future__ import annotations

import platform
import sqlite3
import statistics
import time
import warnings
from typing import Any, Callable

from envcore.cost import CostModel
from envcore.cost.cache import CostCache


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(fn: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None],
              min_ms: float = 0.2) -> float:
    """Median over `repeats` of the mean time of one call, each repeat lasting >= min_ms."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = max((time.perf_counter() - t0) * 1e3, 1e-4)
    inner = max(1, min(100, int(min_ms / once)))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3 / inner)
    return statistics.median(times)


class MeasuredCostModel(CostModel):
    """Subclasses set `backend`, `device_key` and implement `time_op(op, params, ins, outs)`."""

    backend = "measured"
    version = 1     # bump when the way ops are timed changes: old cache rows stop matching

    def __init__(self, cache_path=None, use_cache: bool = True, warmup: int = 3,
                 repeats: int = 15):
        super().__init__()
        self.warmup, self.repeats = warmup, repeats
        self.cache = None
        self._disk: dict[str, float] = {}
        if use_cache:
            try:
                self.cache = CostCache(cache_path, f"{self.backend}-v{self.version}",
                                       self.device_key)
                self._disk = self.cache.load_all()
            except (sqlite3.Error, OSError) as e:   # unwritable or corrupt: measure anyway
                warnings.warn(f"cost cache unavailable ({e}); timings are kept in memory only")
                self.cache = None
        self.measured = 0   # how many signatures this instance timed itself

    device_key = "unknown"

    def time_op(self, op: str, params: dict, in_shapes: tuple, out_shapes: tuple) -> float:
        raise NotImplementedError

    def measure(self, op, params, in_shapes, out_shapes) -> float:
        key = repr((op, tuple(sorted(params.items())), tuple(in_shapes)))
        ms = self._disk.get(key)
        if ms is None and self.cache is not None:
            ms = self.cache.get(key)          # another process may have measured it meanwhile
        if ms is None:
            ms = self.time_op(op, params, tuple(in_shapes), tuple(out_shapes))
            self.measured += 1
            if self.cache is not None:
                ms = self.cache.put(key, ms)
        self._disk[key] = ms
        return ms
