"""Cost models behind one interface: cost per operator (ms) and per graph (the sum, as in TASO).

    cm = get_cost_model("analytic")          # or "torch", "cupy", "ort" (onnxruntime)
    cm.op_cost(graph, node_id)  -> ms        # 0 for leaves and nodes that fold ahead of time
    cm.graph_cost(graph)        -> ms        # sum over operator nodes that do not fold

A node folds when it is computable from weights and constants alone (`fold.folded_nodes`).
Every model memoises per operator signature (op, params, input shapes), and `graph_cost` caches
its result on the immutable graph, so agents can call it millions of times.  Measured backends
also keep their timings in a SQLite cache shared by every process (`cache.CostCache`).
Heavy backends (torch, cupy) are imported only when their model is created.
"""
from __future__ import annotations

from envcore.cost.fold import folded_nodes
from envcore.cost.model import CostModel, CostModelUnavailable

COST_MODELS = ("analytic", "torch", "cupy", "ort")


def get_cost_model(name: str, **kw) -> CostModel:
    """A cost model by name; raises CostModelUnavailable when its backend cannot run here and
    ValueError for an unknown name."""
    if name == "analytic":
        from envcore.cost.analytic import AnalyticCostModel
        return AnalyticCostModel(**kw)
    if name == "torch":
        from envcore.cost.torch_cost import TorchCostModel
        return TorchCostModel(**kw)
    if name == "cupy":
        from envcore.cost.cupy_cost import CupyCostModel
        return CupyCostModel(**kw)
    if name == "ort":
        from envcore.cost.ort_cost import OrtCostModel
        return OrtCostModel(**kw)
    raise ValueError(f"unknown cost model {name!r} (known: {', '.join(COST_MODELS)})")


__all__ = ["CostModel", "CostModelUnavailable", "get_cost_model", "folded_nodes", "COST_MODELS"]
