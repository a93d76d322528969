"""Sizes a *matcher* admits for a rule, and the check that every candidate it lists is sound.

`admitted_sizes` draws sizes for a rule's source that satisfy only the source's own typing and
the dims the matcher pins (a kernel's window): the shapes of a real graph in which the pattern
occurs, not the shapes its proof was made at.  `check_listed_candidates` builds the source at
those sizes, lets the project's matcher list candidates (the scope is checked there), applies each
with the project's rewriter and compares both graphs on random floats in float64.
"""
from __future__ import annotations

import random

import numpy as np
import z3

from envcore.execute import evaluate
from envcore.rewrite.match import find_matches
from envcore.ops import LEAVES, ShapeError
from envcore.rewrite.apply import apply
from verifier.scope import NotSymbolic, Setup, instantiate, random_model


def admitted_sizes(rule, seed: int, max_dim: int = 6) -> dict | None:
    try:
        setup = Setup(rule)
    except (NotSymbolic, ShapeError):
        return None
    s = z3.Solver()
    s.set("timeout", 1000)
    s.add(*setup.src.conds, *[sym >= 1 for sym, _ in setup.slots.values()])
    s.add(*[sym <= max(max_dim, v) for sym, v in setup.slots.values()])
    return random_model(s, setup.slots, random.Random(seed), max_dim)


def _close(a, b) -> float:
    """Worst error relative to each output's own scale (inf on a shape mismatch)."""
    worst = 0.0
    for p, q in zip(a, b):
        p, q = np.asarray(p, float), np.asarray(q, float)
        if p.shape != q.shape:
            return float("inf")
        if p.size:
            scale = max(1.0, float(np.max(np.abs(p))))
            worst = max(worst, float(np.max(np.abs(p - q))) / scale)
    return worst


def check_listed_candidates(rule, seed: int) -> tuple[int, float]:
    """(candidates applied, worst relative error) for the rule's source at admitted sizes."""
    sizes = admitted_sizes(rule, seed)
    if sizes is None:
        return 0, 0.0
    try:
        g = instantiate(rule.src, sizes)
    except (ShapeError, ValueError):
        return 0, 0.0
    rng = np.random.default_rng(seed)
    vals = {n.p["name"]: rng.uniform(-1, 1, size=n.shapes[0]) for n in g.nodes.values()
            if n.op in LEAVES}
    before = evaluate(g, vals)
    applied, worst = 0, 0.0
    for m in find_matches(g, rule):
        new, _ = apply(g, rule, m)
        applied += 1
        worst = max(worst, _close(before, evaluate(new, vals)))
    return applied, worst
