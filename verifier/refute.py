"""Numeric refutation: run both sides on random floats and compare.

Z3 rarely answers `sat` for a false goal over quantified axioms (it answers unknown or times out),
so a cheap numeric check runs first and turns a false rule into a concrete counterexample: the
seed, the input shapes, the output that differs, the max error and (when small) the input values.

A rule is checked at the shapes its graphs carry and, where cheap, at other shapes: the distinct
dimension sizes of the rule are renamed at random (2 -> 3, 4 -> 1 ...), applied to input shapes and
shape parameters alike, and the variants under which both sides are still well formed are run too.
"""
from __future__ import annotations

import random

import numpy as np

from envcore.execute import evaluate
from envcore.graph import Graph
from envcore.ops import LEAVES, SHAPE_PARAMS, ShapeError, semantic_dims
from envcore.rewrite.rule import MalformedRule, Rule

RTOL, ATOL = 1e-6, 1e-9
MAX_STORED_ELEMENTS = 512    # counterexample input values are stored up to this many numbers


def leaf_shapes(*graphs: Graph) -> dict:
    out = {}
    for g in graphs:
        for name, ref in g.leaves().items():
            out.setdefault(name, g.shape(ref))
    return out


def compare(g1: Graph, g2: Graph, seed: int = 0) -> dict | None:
    """None when both graphs agree on random leaves (shared by name), else a counterexample."""
    shapes = leaf_shapes(g1, g2)
    rng = np.random.default_rng(seed)
    vals = {n: rng.uniform(-1, 1, size=sh) for n, sh in sorted(shapes.items())}
    a, b = evaluate(g1, vals), evaluate(g2, vals)
    for i, (p, q) in enumerate(zip(a, b)):
        p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
        if p.shape != q.shape:
            return _cex(seed, shapes, vals, i, float("inf"), f"shapes {p.shape} vs {q.shape}")
        err = float(np.max(np.abs(p - q))) if p.size else 0.0
        scale = float(np.max(np.abs(p))) if p.size else 0.0
        if not err <= ATOL + RTOL * scale:       # also catches NaN
            return _cex(seed, shapes, vals, i, err)
    return None


def _cex(seed, shapes, vals, output, err, note=None) -> dict:
    cex = {"seed": seed, "shapes": {k: list(v) for k, v in shapes.items()}, "output": output,
           "max_abs_err": err}
    if sum(int(np.prod(v.shape)) for v in vals.values()) <= MAX_STORED_ELEMENTS:
        cex["inputs"] = {k: np.asarray(v).tolist() for k, v in vals.items()}
    if note:
        cex["note"] = note
    return cex


def shape_variants(rule: Rule, count: int = 4, seed: int = 0, max_dim: int = 5):
    """Up to `count` copies of the rule at other shapes (renamed dimension sizes)."""
    fixed = {size for g in (rule.src, rule.dst) for n in g.nodes.values()
             for _k, _a, size in semantic_dims(n.op, [g.shape(r) for r in n.inputs])}
    sizes = sorted({d for g in (rule.src, rule.dst) for n in g.nodes.values()
                    for sh in n.shapes for d in sh} - fixed)   # kernel sizes are not renamed
    rng = random.Random(seed)
    seen = set()
    for _ in range(count * 4):
        ren = {d: rng.randint(1, max_dim) for d in sizes}
        key = tuple(sorted(ren.items()))
        if key in seen or all(k == v for k, v in ren.items()):
            continue
        seen.add(key)
        try:
            yield Rule(rule.name, _renamed(rule.src, ren), _renamed(rule.dst, ren))
        except (ShapeError, MalformedRule, ValueError):
            continue
        count -= 1
        if count == 0:
            return


def _renamed(g: Graph, ren: dict) -> Graph:
    d = g.to_dict()
    for e in d["nodes"]:
        p = e["params"]
        keys = SHAPE_PARAMS.get(e["op"], ()) + (("shape",) if e["op"] in LEAVES else ())
        for k in keys:
            if k in p:
                p[k] = [ren.get(v, v) for v in p[k]]
    return Graph.from_dict(d)


def numeric_check(rule: Rule, trials: int = 2, seed: int = 0, variants: int = 4) -> dict | None:
    """A counterexample dict when the two sides differ on random floats, else None."""
    for t in range(trials):
        cex = compare(rule.src, rule.dst, seed + t)
        if cex:
            return cex
    for k, var in enumerate(shape_variants(rule, variants, seed)):
        cex = compare(var.src, var.dst, seed + 1000 + k)
        if cex:
            cex["note"] = "at renamed shapes"
            return cex
    return None
