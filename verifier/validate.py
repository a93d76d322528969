"""Axiom validation: every axiom is checked against the catalogue's reference semantics.

- **Numeric:** for each instance of the axiom's domain (every tensor shape with dimensions in
  1..max_dim, over the parameter choices it admits; a seeded uniform sample when `limit` is set)
  both sides are built as concrete graphs and run on random floats.  A mismatch is a counterexample.
- **Symbolic:** on small instances, both sides are run by the same reference semantics on numpy
  object arrays of Z3 reals (one unknown per tensor element), and Z3 decides whether they can
  differ.  The difference is first normalised (`som`); if it is not identically zero, Z3 looks
  for inputs in [-1, 1] that make some element differ by more than 1e-6 (float constants such as
  a pool kernel's 1/9 are not exact reals).  Operators whose reference semantics are not
  polynomial (relu's max, max pooling) cannot run on Z3 reals: those axioms are numeric only.
- **Redundancy:** an axiom that Z3 proves from the other axioms (within a timeout) is reported.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import z3

from envcore.execute import evaluate
from envcore.ops import ShapeError
from verifier.axioms import AXIOMS, Axiom
from verifier.prove import MAX_INSTANCES
from verifier.refute import compare, leaf_shapes


@dataclass
class AxiomReport:
    name: str
    statement: str
    instances: int = 0                 # instances run numerically
    ok: bool = True                    # no counterexample, numeric or symbolic
    counterexample: dict | None = None
    symbolic: int = 0                  # instances proved symbolically
    symbolic_note: str = ""
    redundant: bool | None = None      # None: not checked or Z3 gave no answer in time
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def check_numeric(ax: Axiom, max_dim: int = 4, limit: int | None = None, seed: int = 0):
    """(instances run, counterexample or None)."""
    n = 0
    for k, inst in enumerate(ax.instances(max_dim, limit, seed)):
        try:
            g1, g2 = ax.graphs(inst)
        except ShapeError:
            continue          # the instance's shapes do not fit one side: not admitted
        n += 1
        cex = compare(g1, g2, seed + k)
        if cex:
            cex["instance"] = _jsonable(inst)
            return n, cex
    return n, None


def _jsonable(inst: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in inst.items()}


def _symbols(shapes: dict) -> dict:
    out = {}
    for name, sh in shapes.items():
        flat = [z3.Real(f"{name}{list(np.unravel_index(i, sh)) if sh else ''}")
                for i in range(int(np.prod(sh)))]
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        out[name] = arr.reshape(sh)
    return out


def check_symbolic(ax: Axiom, max_dim: int = 2, limit: int = 8, max_elements: int = 48,
                   timeout_ms: int = 5000, seed: int = 0):
    """(instances proved, counterexample or None, note)."""
    n = skipped = 0
    for inst in ax.instances(max_dim, limit, seed):
        try:
            g1, g2 = ax.graphs(inst)
        except ShapeError:
            continue
        shapes = leaf_shapes(g1, g2)
        if sum(int(np.prod(s)) for s in shapes.values()) > max_elements:
            continue
        syms = _symbols(shapes)
        try:
            a, b = evaluate(g1, syms), evaluate(g2, syms)
        except (z3.Z3Exception, TypeError):   # relu / max: not polynomial, numeric only
            skipped += 1
            continue
        pairs = [(p, q) for pa, qa in zip(a, b)
                 for p, q in zip(np.ravel(pa).tolist(), np.ravel(qa).tolist())]
        if np.shape(a[0]) != np.shape(b[0]):
            return n, {"instance": _jsonable(inst), "note": "output shapes differ"}, ""
        diffs = [z3.simplify(_real(p) - _real(q), som=True) for p, q in pairs]
        if all(z3.is_rational_value(d) and d.as_fraction() == 0 for d in diffs):
            n += 1
            continue
        s = z3.Solver()
        s.set("timeout", timeout_ms)
        for v in syms.values():
            for e in np.ravel(v).tolist():
                s.add(e >= -1, e <= 1)
        s.add(z3.Or([z3.Or(d > 1e-6, d < -1e-6) for d in diffs]))
        res = s.check()
        if res == z3.sat:
            m = s.model()
            vals = {str(e): str(m.eval(e, model_completion=True))
                    for v in syms.values() for e in np.ravel(v).tolist()}
            return n, {"instance": _jsonable(inst), "symbolic": True, "inputs": vals}, ""
        if res == z3.unsat:
            n += 1
    note = f"{skipped} instances numeric only (relu/max are not polynomial)" if skipped else ""
    return n, None, note if n or skipped else "no instance small enough"


def _real(e):
    return e if isinstance(e, z3.ExprRef) else z3.RealVal(float(e))


def check_redundant(ax: Axiom, axioms: list[Axiom], timeout_ms: int = 2000) -> bool | None:
    """True when the other axioms imply `ax` (Z3 unsat in time), else None."""
    s = z3.Solver()
    s.set("timeout", timeout_ms)
    s.set("smt.mbqi", False)
    s.set("smt.qi.max_instances", MAX_INSTANCES)   # a matching loop can outlast the timeout
    for other in axioms:
        if other.name != ax.name:
            s.add(other.builder())
    s.add(z3.Not(ax.builder()))
    return True if s.check() == z3.unsat else None


def validate_axiom(ax: Axiom, axioms: list[Axiom] | None = None, max_dim: int = 4,
                   limit: int | None = None, symbolic: bool = True, redundancy: bool = True,
                   timeout_ms: int = 2000, seed: int = 0) -> AxiomReport:
    t0 = time.perf_counter()
    rep = AxiomReport(ax.name, ax.statement)
    rep.instances, cex = check_numeric(ax, max_dim, limit, seed)
    if cex is None and symbolic:
        rep.symbolic, cex, rep.symbolic_note = check_symbolic(ax, seed=seed)
    rep.ok, rep.counterexample = cex is None, cex
    if redundancy:
        rep.redundant = check_redundant(ax, axioms or AXIOMS, timeout_ms)
    rep.seconds = time.perf_counter() - t0
    return rep


def validate_axioms(axioms: list[Axiom] | None = None, progress=None, **kw) -> list[AxiomReport]:
    """Validate every axiom (see `validate_axiom` for the options); `progress(report)` is called
    after each one."""
    axioms = list(axioms or AXIOMS)
    out = []
    for ax in axioms:
        rep = validate_axiom(ax, axioms, **kw)
        out.append(rep)
        if progress:
            progress(rep)
    return out


def validate_shape_axioms(max_dim: int = 3, limit: int | None = 40, seed: int = 0,
                          progress=None) -> list[AxiomReport]:
    """Every shape axiom (verifier.shapes) against the catalogue's shape inference."""
    from verifier.shapes import SHAPE_AXIOMS, validate_shape_axiom
    out = []
    for sa in SHAPE_AXIOMS:
        t0 = time.perf_counter()
        n, bad = validate_shape_axiom(sa, min(max_dim, 3), limit, seed)
        rep = AxiomReport(sa.name, sa.statement, instances=n, ok=bad is None,
                          counterexample=bad, symbolic=n, symbolic_note="shape rule (Z3)",
                          seconds=time.perf_counter() - t0)
        out.append(rep)
        if progress:
            progress(rep)
    return out
