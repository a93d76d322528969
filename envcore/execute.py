"""Runs a graph on numpy with the catalogue's reference semantics (float or exact modular)."""
from __future__ import annotations

from typing import Collection, Mapping

import numpy as np

from envcore.graph import Graph, Ref
from envcore.ops import LEAVES, OPS, PRIME


def random_values(graph: Graph, rng: np.random.Generator | int = 0, exact: bool = False,
                  leaves: Collection[str] = LEAVES) -> dict[str, np.ndarray]:
    """Random values for every leaf, by name: floats in [-1, 1), or residues mod PRIME."""
    rng = np.random.default_rng(rng)
    out = {}
    for i in sorted(graph.nodes):
        n = graph.nodes[i]
        if n.op in leaves:
            shape = n.shapes[0]
            out[n.p["name"]] = (rng.integers(0, PRIME, size=shape, dtype=np.int64) if exact
                                else rng.uniform(-1, 1, size=shape))
    return out


def evaluate(graph: Graph, values: Mapping[str, np.ndarray], exact: bool = False,
             outputs: tuple[Ref, ...] | None = None) -> list[np.ndarray]:
    """Values of `outputs` (default: the graph's) given a value for every leaf by name."""
    env: dict[int, list[np.ndarray]] = {}
    for i in graph.topo_order:
        n = graph.nodes[i]
        if n.op in LEAVES:
            v = np.asarray(values[n.p["name"]])
            if v.shape != n.shapes[0]:
                raise ValueError(f"value for {n.p['name']!r} has shape {v.shape}, "
                                 f"expected {n.shapes[0]}")
            env[i] = [v]
            continue
        args = [env[r.node][r.index] for r in n.inputs]
        opdef = OPS[n.op]
        env[i] = list(opdef.exact(args, n.p) if exact else opdef.ref(args, n.p))
    return [env[o.node][o.index] for o in (outputs if outputs is not None else graph.outputs)]


def max_abs_error(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    if len(a) != len(b):
        return float("inf")
    errs = [float(np.max(np.abs(x - y))) if x.size else 0.0 for x, y in zip(a, b)
            if x.shape == y.shape]
    return max(errs, default=0.0) if len(errs) == len(a) else float("inf")


def equivalent(g1: Graph, g2: Graph, trials: int = 2, seed: int = 0, rtol: float = 1e-6,
               atol: float = 1e-8) -> tuple[bool, float]:
    """Numeric check on random float leaves (shared by name): (equal?, max abs error)."""
    worst = 0.0
    for t in range(trials):
        vals = random_values(g1, seed + t)
        vals.update({k: v for k, v in random_values(g2, seed + t).items() if k not in vals})
        a, b = evaluate(g1, vals), evaluate(g2, vals)
        err = max_abs_error(a, b)
        worst = max(worst, err)
        scale = max((float(np.max(np.abs(x))) for x in a if x.size), default=0.0)
        if not err <= atol + rtol * scale:
            return False, worst
    return True, worst


def outputs_close(a: list[np.ndarray], b: list[np.ndarray], rtol: float, atol: float
                  ) -> tuple[bool, float, str]:
    """Per output and per element, in float64: |a - b| <= atol + rtol * max|a| over THAT
    output (its own scale: a large output beside a small one cannot hide the small one's
    error).  Non-finite values must match position for position.  Returns (close?, max abs
    error over all outputs, what failed first or "")."""
    if len(a) != len(b):
        return False, float("inf"), f"{len(b)} outputs, expected {len(a)}"
    worst, bad = 0.0, ""
    for k, (x, y) in enumerate(zip(a, b)):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            return False, float("inf"), f"output {k} has shape {y.shape}, expected {x.shape}"
        if x.size == 0:
            continue
        x, y = x.astype(np.float64), y.astype(np.float64)
        fx, fy = np.isfinite(x), np.isfinite(y)
        if not (np.array_equal(fx, fy) and np.array_equal(x[~fx], y[~fx], equal_nan=True)):
            worst, bad = float("inf"), bad or f"output {k}: non-finite values differ"
            continue
        if not fx.any():
            continue
        scale = float(np.max(np.abs(x[fx])))
        err = float(np.max(np.abs(x[fx] - y[fx])))
        worst = max(worst, err)
        if not err <= atol + rtol * scale:
            bad = bad or (f"output {k}: max abs err {err:.3g} > {atol:g} + {rtol:g} x "
                          f"{scale:.3g} (its largest value)")
    return not bad, worst, bad
