"""Z3 proofs of rules from the axioms.

Both sides of a rule become terms over the uninterpreted operator symbols (`verifier.z3ops`), with
the rule's variables as shared constants and `dim(t, k)` asserted for every tensor of the rule.
Each axiom is asserted under its own tracking Boolean; the negated goal is
`Or(src_out_i != dst_out_i for every i)`.  `unsat` means proved, and the unsat core names the axioms
the proof used.  Anything else (unknown, timeout) is unknown: model-based quantifier instantiation
is off, so Z3 gives up as soon as E-matching saturates instead of searching for a model.
"""
from __future__ import annotations

import z3

from envcore.rule import Rule
from verifier import z3ops
from verifier.axioms import compiled


def goal(rule: Rule):
    """(negated goal, ground shape facts) for a rule."""
    src, dst = z3ops.graph_terms(rule.src), z3ops.graph_terms(rule.dst)
    diffs = [src[a] != dst[b] for a, b in zip(rule.src.outputs, rule.dst.outputs)]
    facts = z3ops.dim_facts(rule.src, src) + z3ops.dim_facts(rule.dst, dst)
    return z3.Or(diffs), facts


def prove(rule: Rule, timeout_ms: int = 2000, axioms=None) -> tuple[str, tuple[str, ...]]:
    """("proved", axioms used) or ("unknown", ())."""
    try:
        negated, facts = goal(rule)
    except z3ops.NotEncodable:
        return "unknown", ()
    s = z3.Solver()
    s.set("timeout", int(timeout_ms))
    s.set("smt.mbqi", False)
    s.set("core.minimize", True)
    for name, formula in (axioms if axioms is not None else compiled()):
        s.assert_and_track(formula, z3.Bool(f"ax:{name}"))
    s.add(*facts)
    s.add(negated)
    if s.check() == z3.unsat:
        used = sorted(str(b)[3:] for b in s.unsat_core())
        return "proved", tuple(used)
    return "unknown", ()
