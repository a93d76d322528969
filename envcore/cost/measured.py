"""What the measured backends (torch, cupy) share: timing each distinct op signature once, with
warm-up and the minimum over repeats, remembered in memory and in the shared SQLite cache.

On the CPU with one thread the clock is the thread's CPU time (time.thread_time): the op runs on
the calling thread, so that is its own work whatever else the machine runs; a 370 ms GEMM timed
by wall clock at load 6 took 3-4x its CPU time, every repeat preempted.
Why the minimum: on a shared machine other processes only ever add time to a measurement (a
preempted run, a cache flushed by a neighbour), never remove it, so the fastest of several short
repeats is the op's own cost, while a median moves with the load at the moment of timing.  And a
timing is cached for good, so a median taken at load 10 once priced squeezenet's max pools at 4x
their quiet cost, and the per-op sum at 62 ms against a 13-20 ms end-to-end run.  Upward-only
noise also tells how to combine two timings of one op: keep the lower (`MeasuredCostModel.retime`).
"""
from __future__ import annotations

import platform
import sqlite3
import statistics
import time
import warnings
from collections import Counter
from typing import Any, Callable

from envcore.cost.model import CostModel, _instances
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


def best_ms(fn: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None],
            min_ms: float = 0.2, stat: Callable = min,
            clock: Callable[[], float] = time.perf_counter, budget_ms: float = 40.0) -> float:
    """`stat` (default the minimum) over `repeats` of the mean time of one call, each repeat
    lasting >= min_ms (short enough that most repeats run without being preempted).  `clock`:
    wall time by default; time.thread_time for the calling thread's CPU time."""
    if warmup > 0:
        fn()    # the first call pays for allocation and kernel selection
        sync()
    t0 = clock()
    fn()
    sync()
    once = max((clock() - t0) * 1e3, 1e-4)
    # a long op settles sooner and costs more per call: cap its warm-up and repeats by time
    # (a search times hundreds of new signatures; nasnet's 7 ms convs made this the search's cost)
    for _ in range(min(warmup - 1, int(budget_ms / 4 / once))):
        fn()
    sync()
    inner = max(1, min(100, int(min_ms / once)))
    times = []
    for _ in range(max(min(repeats, 3), min(repeats, int(budget_ms / once)))):
        t0 = clock()
        for _ in range(inner):
            fn()
        sync()
        times.append((clock() - t0) * 1e3 / inner)
    return float(stat(times))


class MeasuredCostModel(CostModel):
    """Subclasses set `backend`, `device_key` and implement `time_op(op, params, ins, outs)`."""

    backend = "measured"
    version = 2     # bump when the way ops are timed changes: old cache rows stop matching
    # v2: minimum over repeats of thread CPU time on one CPU thread, weights cycled through
    # copies that overflow the cache (v1: median wall time, one copy)

    # 7 repeats, not 15: the minimum settles within a few, and first timings during a search are
    # cheap on purpose, since optimize re-times every op its result rests on (`retime`)
    def __init__(self, cache_path=None, use_cache: bool = True, warmup: int = 3,
                 repeats: int = 7):
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

    def forget(self) -> None:
        """Drops memoised node and graph costs (the per-graph cache moves to a new key)."""
        self._memo.clear()
        self._graph_key = f"cost.{self.name}.{next(_instances)}"

    def time_op(self, op: str, params: dict, in_shapes: tuple, out_shapes: tuple) -> float:
        raise NotImplementedError

    @staticmethod
    def key(op, params, in_shapes) -> str:
        return repr((op, tuple(sorted(params.items())), tuple(in_shapes)))

    def retime(self, op, params, in_shapes, out_shapes, rounds: int = 4) -> float:
        """Times a signature again (`rounds` more times) and believes the median of those
        timings and the first one; the shared cache keeps the lowest timing seen.  For the few
        ops a decision rests on (optimize re-times every op that differs between the original
        and the optimized graph): a timing inflated by a busy moment would otherwise make
        whatever replaces that op look like a gain, and a lucky one (a memory-bound GEMV timed
        while the other core idled: 0.29 against 0.36-0.38 ms) would make it look like a loss,
        or a replacement look like a bigger gain than any whole run shows."""
        key = self.key(op, params, in_shapes)
        times = [self.measure(op, params, in_shapes, out_shapes)]
        times += [self.time_op(op, params, tuple(in_shapes), tuple(out_shapes))
                  for _ in range(rounds)]
        self.measured += rounds
        if self.cache is not None:
            self.cache.lower(key, min(times))
        ms = self._disk[key] = float(statistics.median(times))
        self.forget()           # costs memoised from the older timing
        return ms

    def measure(self, op, params, in_shapes, out_shapes) -> float:
        key = self.key(op, params, in_shapes)
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


def op_signatures(cm: CostModel, graph) -> Counter:
    """How often each priced op signature occurs in `graph` (nodes that fold left out)."""
    from envcore.cost.fold import folded_nodes
    from envcore.ops import CONSTANTS, LEAVES
    folded = folded_nodes(graph)
    return Counter((n.op, n.params, cm.signature(graph, n)[2], n.shapes)
                   for i, n in graph.nodes.items()
                   if i not in folded and n.op not in LEAVES and n.op not in CONSTANTS)


def retime_differences(cm: MeasuredCostModel, before, after, rounds: int = 4) -> int:
    """Re-times every op signature whose count differs between two graphs: exactly the timings
    on which "after is cheaper" rests.  Returns how many signatures were re-timed."""
    a, b = op_signatures(cm, before), op_signatures(cm, after)
    differ = [sig for sig in set(a) | set(b) if a[sig] != b[sig]]
    for op, params, ins, outs in differ:
        cm.retime(op, dict(params), ins, outs, rounds)
    return len(differ)
