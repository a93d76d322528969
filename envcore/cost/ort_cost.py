"""The onnxruntime cost model (`--cost ort`): prices what users deploy.  Each distinct (op,
params, input shapes) is exported as a one-operator ONNX model (`envcore.onnx.exporter`, the
spelling the written file will have) and timed in an onnxruntime session as users run one: CPU
execution provider (CUDA's when onnxruntime has it and `device="cuda"`), ORT_ENABLE_ALL, one
intra-op thread by default.  A conv's or matmul's weights are initializers, as in a real model,
so onnxruntime prepacks them as it would.  The fastest of repeats counts (`measured.best_ms`),
less the fixed cost of a session call (`call_overhead_ms`): a whole model pays that once, not
once per operator, and on the zoo's small models it was most of each op's timing (nasrnn's
per-op sum was 9x its end-to-end time).  What each node costs onnxruntime to dispatch stays in
(about 0.6 us here): fewer nodes do run faster.
Timings go to the shared SQLite cache under backend "ort-v3" and a device key naming the CPU,
the thread count and the onnxruntime version.

Across operators the model knows the fusion every exported CNN and MLP leans on: a bias_add
after a conv2d or 2-D matmul that only it reads is written as one Conv(x, w, b) or
Gemm(x, w, b), and onnxruntime runs it, with the bias's activation, as one kernel; so that
bias_add costs nothing of its own (`fused`; the model is `contextual`, and a rewrite near such a
pair is priced by costing the rewritten graph whole).  A rewrite that moves the bias away from
its conv (through a concat, say) then pays for it, as onnxruntime does.  Likewise a relu,
sigmoid or tanh that alone reads a conv2d, or a conv's or Gemm's bias, is fused into that Conv
or Gemm (ConvActivationFusion, and FusedGemm): it costs nothing, so fusing it into the conv in
our IR gains nothing either, and pulling it away (through a concat) pays a pass of its own.
Other fusions (MatMul+Mul into FusedMatMul, Conv+Add under NCHWc, ...) are not modelled: the per-op sum
over-prices those; `benchmarks/bench_cost_fidelity.py --cost ort` measures how far the sum is
from end-to-end time.
"""
from __future__ import annotations

import time

from envcore.cost.measured import MeasuredCostModel, best_ms, cpu_name
from envcore.cost.model import CostModelUnavailable
from envcore.ops import OPS


def ort_session(model, threads: int = 1, device: str = "cpu"):
    """An onnxruntime session as users deploy one, of a ModelProto, bytes or a path:
    ORT_ENABLE_ALL, `threads` intra-op threads (1 by default: on a shared 2-core machine more
    threads time the neighbours; 0 is onnxruntime's own default)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    providers = ["CUDAExecutionProvider"] if device.startswith("cuda") else []
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else \
        model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(data, so, providers=providers + ["CPUExecutionProvider"])


def call_overhead_ms(threads: int = 1, device: str = "cpu", warmup: int = 3,
                     repeats: int = 9) -> float:
    """The fixed cost of one `session.run`, without its nodes': from chains of 1 and 9 Relus of
    one element, t1 - (t9 - t1) / 8."""
    import numpy as np
    from onnx import TensorProto, helper

    def chain(k):
        nodes = [helper.make_node("Relu", [f"h{i}"], [f"h{i + 1}"]) for i in range(k)]
        g = helper.make_graph(nodes, "chain",
                              [helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(f"h{k}", TensorProto.FLOAT, [1])])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"h0": np.ones(1, np.float32)}
    clock = time.thread_time if threads == 1 and device == "cpu" else time.perf_counter
    t1, t9 = (best_ms(lambda s=ort_session(chain(k), threads, device): s.run(None, feeds),
                      warmup, repeats, lambda: None, clock=clock) for k in (1, 9))
    return max(t1 - max(t9 - t1, 0.0) / 8, 0.0)


# the activations onnxruntime's CPU provider folds into the Conv or Gemm they alone read (seen in
# its optimized graphs, 1.32: Conv + each runs as one Conv, Gemm + each as one FusedGemm, while
# MatMul + Relu stays two nodes; tests/test_cost.py checks this against onnxruntime itself)
FUSED_ACTIVATIONS = frozenset(("relu", "sigmoid", "tanh"))


class OrtCostModel(MeasuredCostModel):
    backend = "ort"
    # 3: net of one per-call overhead shared through the cache (2: each process estimated its
    # own; 1: net of a whole one-node call)
    version = 3
    contextual = True

    def fused(self, graph, node) -> bool:
        from envcore.onnx.exporter import bias_producer, read_by_one
        if node.op == "bias_add":
            return bias_producer(graph, node) is not None
        if node.op not in FUSED_ACTIVATIONS:
            return False
        j = node.inputs[0].node
        m = graph.nodes[j]
        if not read_by_one(graph, j):
            return False
        if m.op == "conv2d":
            return m.p.get("activation") == "none"
        return (m.op == "bias_add" and m.p.get("activation") == "none"
                and bias_producer(graph, m) is not None)

    def __init__(self, device: str = "cpu", threads: int = 1, **kw):
        try:
            import onnx  # noqa: F401
            import onnxruntime as ort
        except ImportError:
            raise CostModelUnavailable("the ort cost model needs onnx and onnxruntime: pip "
                                       "install 'subgen[onnx]'") from None
        if device.startswith("cuda") and "CUDAExecutionProvider" not in \
                ort.get_available_providers():
            raise CostModelUnavailable("ort cost model: CUDA requested but this onnxruntime "
                                       "has no CUDA execution provider")
        self.device, self.threads = device, threads
        where = device if device.startswith("cuda") else f"cpu:{cpu_name()}:threads={threads}"
        self.device_key = f"{where}:onnxruntime={ort.__version__}"
        self._overhead: float | None = None
        super().__init__(**kw)

    def __repr__(self) -> str:
        return f"OrtCostModel(device={self.device!r}, threads={self.threads})"

    OVERHEAD_KEY = "@session_call_overhead"

    def call_overhead(self) -> float:
        """The fixed cost of a session call, estimated once per cache (device, thread count,
        onnxruntime version) and shared through it: separate estimates ranged 4.3-10.6 us here
        while most small ops cost 0.2-3 us net, so processes that each estimated it priced the
        same graph up to 14x apart.  The lowest of three estimates (a busy moment only ever
        adds time), kept in the cache like an op's timing."""
        ms = self._disk.get(self.OVERHEAD_KEY)
        if ms is None and self.cache is not None:
            ms = self.cache.get(self.OVERHEAD_KEY)
        if ms is None:
            ms = min(call_overhead_ms(self.threads, self.device, self.warmup,
                                      max(self.repeats, 15)) for _ in range(3))
            if self.cache is not None:
                ms = self.cache.put(self.OVERHEAD_KEY, ms)
        self._disk[self.OVERHEAD_KEY] = ms
        return ms

    def time_op(self, op, params, in_shapes, out_shapes) -> float:
        import numpy as np

        from envcore.graph import GraphBuilder, Ref
        from envcore.onnx.exporter import to_onnx
        if op == "opaque":        # an imported node: its own inputs' dtypes are not known here
            from envcore.cost.analytic import AnalyticCostModel
            return AnalyticCostModel(peak_flops=5e10, bandwidth=1e10, launch_ms=0.01
                                     ).measure(op, params, in_shapes, out_shapes)
        if self._overhead is None:
            self._overhead = self.call_overhead()
        b = GraphBuilder()
        weights_from = 1 if OPS[op].kernel in ("conv", "gemm") else len(in_shapes)
        refs = [b.input(f"x{i}", s) if i < weights_from else b.weight(f"w{i}", s)
                for i, s in enumerate(in_shapes)]
        out = b.add(op, *refs, **params)
        graph = b.build([out] if isinstance(out, Ref) else list(out))
        sess = ort_session(to_onnx(graph, seed=0), self.threads, self.device)
        rng = np.random.default_rng(0)
        # positive values keep logs, square roots and variances valid
        feeds = {i.name: np.asarray(rng.random([d if isinstance(d, int) else 1 for d in i.shape])
                                    + 0.5, dtype=np.float32) for i in sess.get_inputs()}
        clock = time.thread_time if self.threads == 1 and self.device == "cpu" else \
            time.perf_counter
        ms = best_ms(lambda: sess.run(None, feeds), self.warmup, self.repeats, lambda: None,
                     clock=clock)
        return max(ms - self._overhead, 1e-4)


__all__ = ["OrtCostModel", "ort_session"]
