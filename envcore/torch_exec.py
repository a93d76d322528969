"""Runs a Graph with torch (CPU or CUDA): numeric checks at speed, and end-to-end timing.

`TORCH_OPS[op](args, params) -> list[Tensor]` is one torch implementation per catalogue op.  The
numpy semantics in envcore/ops.py stay the reference: tests check every op here against them.
Padding amounts come from the catalogue's own rule (`ops._pads`), so "same" means one thing.
Transpose materialises its result (`contiguous`), as a kernel would; reshape and split stay
views (a consumer that needs contiguous data pays for the copy).  Opaque nodes run through `envcore.onnx.opaque.run_opaque` (onnxruntime, one node at a time).
torch is imported lazily: importing this module costs nothing until a graph is run.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable, Mapping

import numpy as np

from envcore.graph import Graph, Ref
from envcore.ops import CONSTANTS, LEAVES, OPS, _pads

TorchOp = Callable[[list, dict], list]
TORCH_OPS: dict[str, TorchOp] = {}


def _torch():
    import torch
    return torch


def _F():
    import torch.nn.functional as F
    return F


def _reg(name: str):
    def deco(fn):
        TORCH_OPS[name] = fn
        return fn
    return deco


def _act(y, act: str):
    torch = _torch()
    return {"none": lambda t: t, "relu": torch.relu, "sigmoid": torch.sigmoid,
            "tanh": torch.tanh}[act](y)


def _spatial_pad(kh: int, kw: int, p) -> tuple[int, int, int, int]:
    return _pads(kh, kw, p["padding"], tuple(p["stride"]))


# -- constants: values come from the catalogue's reference (they fold ahead of time anyway) --
def _const(name):
    def run(_args, p):
        return [_torch().from_numpy(np.ascontiguousarray(v)) for v in OPS[name].ref([], p)]
    return run


for _c in sorted(CONSTANTS):
    TORCH_OPS[_c] = _const(_c)

# -- elementwise --------------------------------------------------------------------------------
_reg("ewadd")(lambda x, p: [x[0] + x[1]])
_reg("ewmul")(lambda x, p: [x[0] * x[1]])
_reg("scalar_mul")(lambda x, p: [x[0] * x[1]])
_reg("relu")(lambda x, p: [_torch().relu(x[0])])
_reg("sigmoid")(lambda x, p: [_torch().sigmoid(x[0])])
_reg("tanh")(lambda x, p: [_torch().tanh(x[0])])
_reg("erf")(lambda x, p: [_torch().erf(x[0])])
_reg("gelu")(lambda x, p: [_F().gelu(x[0])])


@_reg("bias_add")
def _bias_add(x, p):
    a, b = x
    shape = [1] * a.dim()
    shape[p["axis"] % a.dim()] = -1
    return [_act(a + b.reshape(shape), p["activation"])]


# -- linear algebra -----------------------------------------------------------------------------
@_reg("matmul")
def _matmul(x, p):
    return [_act(_torch().matmul(x[0], x[1]), p["activation"])]


@_reg("conv2d")
def _conv2d(x, p):
    F = _F()
    inp, w = x
    t, b, l, r = _spatial_pad(w.shape[2], w.shape[3], p)
    if t == b and l == r:
        y = F.conv2d(inp, w, stride=tuple(p["stride"]), padding=(t, l), groups=p["groups"])
    else:
        y = F.conv2d(F.pad(inp, (l, r, t, b)), w, stride=tuple(p["stride"]), groups=p["groups"])
    # the activation runs after the conv: on the CPU an in-place relu_ and oneDNN's fused
    # conv+relu measured no faster (envcore/cost/profiles.py), so fusing gains nothing here
    return [_act(y, p["activation"])]


def _pool(kind: str):
    def run(x, p):
        F = _F()
        kh, kw = p["kernel"]
        t, b, l, r = _spatial_pad(kh, kw, p)
        s = tuple(p["stride"])
        inp = x[0]
        symmetric = t == b and l == r and t <= kh // 2 and l <= kw // 2
        if kind == "max":
            y = (F.max_pool2d(inp, (kh, kw), s, padding=(t, l)) if symmetric else
                 F.max_pool2d(F.pad(inp, (l, r, t, b), value=-float("inf")), (kh, kw), s))
        else:  # padding counts as zeros in the average, as in the catalogue
            y = (F.avg_pool2d(inp, (kh, kw), s, padding=(t, l), count_include_pad=True)
                 if symmetric else F.avg_pool2d(F.pad(inp, (l, r, t, b)), (kh, kw), s))
        return [_act(y, p["activation"])]
    return run


TORCH_OPS["pool_avg"] = _pool("avg")
TORCH_OPS["pool_max"] = _pool("max")
_reg("pool_global_avg")(lambda x, p: [x[0].mean(dim=(2, 3), keepdim=True)])

# -- data movement ------------------------------------------------------------------------------
_reg("concat")(lambda x, p: [_torch().cat(list(x), dim=p["axis"])])
_reg("split")(lambda x, p: list(_torch().split(x[0], list(p["sizes"]), dim=p["axis"])))
_reg("transpose")(lambda x, p: [x[0].permute(*p["perm"]).contiguous()])
_reg("reshape")(lambda x, p: [x[0].reshape(tuple(p["shape"]))])


@_reg("enlarge")
def _enlarge(x, p):
    w, r = x
    dh, dw = (r.shape[2] - w.shape[2]) // 2, (r.shape[3] - w.shape[3]) // 2
    return [_F().pad(w, (dw, dw, dh, dh))]


# -- what real models carry ----------------------------------------------------------------------
@_reg("batchnorm")
def _batchnorm(x, p):
    a, scale, bias, mean, var = x
    return [_F().batch_norm(a, mean, var, scale, bias, training=False, eps=p["eps"])]


_reg("softmax")(lambda x, p: [_torch().softmax(x[0], dim=p["axis"])])
_reg("layernorm")(lambda x, p: [_F().layer_norm(x[0], x[0].shape[-1:], x[1], x[2], eps=p["eps"])])


@_reg("opaque")
def _opaque(x, p):
    from envcore.onnx.opaque import run_opaque
    torch = _torch()
    outs = run_opaque(p, [t.detach().cpu().numpy() for t in x])
    dev = x[0].device if x else "cpu"
    return [torch.from_numpy(np.ascontiguousarray(o)).to(dev) for o in outs]


# -----------------------------------------------------------------------------------------------
def to_tensors(values: Mapping[str, Any], device: str = "cpu", dtype=None) -> dict:
    """numpy arrays (or tensors) by leaf name -> tensors on `device` (float32 by default)."""
    torch = _torch()
    dtype = dtype or torch.float32
    out = {}
    for k, v in values.items():
        if not isinstance(v, torch.Tensor):
            a = np.ascontiguousarray(v)
            v = torch.from_numpy(a if a.flags.writeable else a.copy())
        t = v
        out[k] = t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
    return out


def run_torch(graph: Graph, values: Mapping[str, Any], device: str = "cpu", dtype=None,
              outputs: tuple[Ref, ...] | None = None, numpy: bool = True) -> list:
    """Values of the graph's outputs given a value (array or tensor) per leaf name.

    Returns numpy arrays (or tensors with numpy=False).  Floating inputs are cast to `dtype`
    (default float32; pass torch.float64 for tight numeric checks)."""
    torch = _torch()
    dtype = dtype or torch.float32
    vals = to_tensors(values, device, dtype)
    with torch.inference_mode():
        env = _run(graph, vals, device, dtype)
        res = [env[o.node][o.index] for o in (outputs if outputs is not None else graph.outputs)]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return [r.cpu().numpy() for r in res] if numpy else res


def _run(graph: Graph, vals: Mapping[str, Any], device: str, dtype,
         env: dict[int, list] | None = None, only=None, free: bool = False) -> dict[int, list]:
    """Runs the nodes of `only` (default all) in topological order; `env` holds values already
    known (node id -> outputs) and is filled in.  With `free`, a tensor is dropped after its last
    consumer ran, as a framework's executor does: memory is reused instead of growing."""
    env = {} if env is None else env
    order = graph.topo_order if only is None else only
    last = _last_uses(graph, tuple(order)) if free else {}
    for k, i in enumerate(order):
        n = graph.nodes[i]
        if n.op in LEAVES:
            env[i] = [vals[n.p["name"]]]
            continue
        res = TORCH_OPS[n.op]([env[r.node][r.index] for r in n.inputs], n.p)
        if n.op in CONSTANTS:
            res = [t.to(device=device, dtype=dtype) for t in res]
        env[i] = res
        for dead in last.get(k, ()):
            env.pop(dead, None)
    return env


def _last_uses(graph: Graph, order: tuple[int, ...]) -> dict[int, list[int]]:
    """position in `order` -> ids whose values are not needed after that position."""
    keep = {o.node for o in graph.outputs}
    last: dict[int, int] = {}
    for k, i in enumerate(order):
        for r in graph.nodes[i].inputs:
            last[r.node] = k
    out: dict[int, list[int]] = {}
    for i, k in last.items():
        if i not in keep:
            out.setdefault(k, []).append(i)
    return out



_ALLOCATOR_WARM = False


def warm_allocator() -> None:
    """Keeps freed memory in the process (glibc: no mmap below 32 MB, no trimming), so tensors
    reuse warm pages the way a framework's caching allocator does.  Without it every tensor over
    128 KB is a fresh mmap whose page faults cost more than the op (50x for a 256 KB relu here),
    and timings measure the kernel's page faults, not the op.  Called by the timing paths only;
    a no-op where mallopt is missing."""
    global _ALLOCATOR_WARM
    if _ALLOCATOR_WARM:
        return
    _ALLOCATOR_WARM = True
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)   # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)            # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def num_threads(n: int | None):
    """Temporarily sets torch's intra-op thread count (None: leave it)."""
    torch = _torch()
    old = torch.get_num_threads()
    if n is not None and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None and n != old:
            torch.set_num_threads(old)


def time_graph(graph: Graph, device: str = "cpu", repeats: int = 10, warmup: int = 2,
               seed: int = 0, threads: int | None = None,
               stat: Callable[[list], float] = statistics.median, clock: str = "wall") -> float:
    """End-to-end time of one forward pass in ms, on random float32 leaves: the median over
    `repeats` runs (pass stat=min for the fastest run, the estimate that ignores time other
    processes took; the cost models' per-op timings use it too).  clock="thread" counts the
    calling thread's CPU time instead of wall time (see `time_runs`).

    Nodes computable from weights and constants alone are run once beforehand and not timed:
    they fold ahead of time, exactly as the cost models assume."""
    runs = time_runs(graph, device, repeats, warmup, seed, threads)
    return float(stat([r[1] if clock == "thread" else r[0] for r in runs]))


def time_runs(graph: Graph, device: str = "cpu", repeats: int = 10, warmup: int = 2,
              seed: int = 0, threads: int | None = None) -> list[tuple[float, float]]:
    """(wall ms, thread CPU ms) of each of `repeats` forward passes.

    With one torch thread on the CPU every kernel runs on the calling thread, so its CPU time
    is the pass's own work: what wall time would be on an idle machine, and immune to the
    preemption that on a loaded 2-core machine stretched wall times 2-4x (cache and memory
    bandwidth shared with other processes still show)."""
    from envcore.cost.fold import folded_nodes
    from envcore.execute import random_values
    torch = _torch()
    warm_allocator()
    vals = to_tensors(random_values(graph, seed), device, torch.float32)
    folded = folded_nodes(graph)
    order = graph.topo_order
    timed = [i for i in order if i not in folded]
    cuda = device.startswith("cuda")
    times = []
    with torch.inference_mode(), num_threads(threads):
        pre = _run(graph, vals, device, torch.float32, only=[i for i in order if i in folded])
        # folded values are materialised, as ahead-of-time folding stores them: a split of a
        # weight is otherwise a strided view, and a GEMV on it runs slower than the cost models
        # (which time contiguous operands) assume
        pre = {i: [t.contiguous() for t in ts] for i, ts in pre.items()}
        for k in range(warmup + repeats):
            env = dict(pre)
            if cuda:
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.thread_time()
            _run(graph, vals, device, torch.float32, env, timed, free=True)
            if cuda:
                torch.cuda.synchronize()
            if k >= warmup:
                times.append(((time.perf_counter() - t0) * 1e3, (time.thread_time() - c0) * 1e3))
    return times


__all__ = ["TORCH_OPS", "run_torch", "time_graph", "time_runs", "to_tensors", "num_threads",
           "warm_allocator"]
