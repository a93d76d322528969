"""Z3 proofs of rules from the axioms.

Both sides of a rule become terms over the uninterpreted operator symbols (`verifier.z3ops`), with
the rule's variables as shared constants and `dim(t, k)` asserted for every tensor of the rule.
Each axiom is asserted under its own tracking Boolean; the negated goal is
`Or(src_out_i != dst_out_i for every i)`.  `unsat` means proved, and the unsat core names the axioms
the proof used.  Anything else (unknown, timeout) is unknown: model-based quantifier instantiation
is off, so Z3 gives up as soon as E-matching saturates instead of searching for a model.

The axioms are asserted once per process, into one solver; each rule is checked inside a
`push`/`pop` scope of it, so nothing a rule adds (its terms, facts, instances) outlives its check.
That halves the time per rule against a fresh solver per rule, with the same answers and cores.
"""
from __future__ import annotations

import time

import z3

from envcore.rule import Rule
from verifier import z3ops
from verifier.axioms import compiled

# Safety net against a matching loop that ignores the timeout (Z3 checks its timer only between
# instantiation rounds); no proof of the TASO or depth-3 rule sets comes near it.
MAX_INSTANCES = 200_000


def goal(rule: Rule):
    """(negated goal, ground shape facts) for a rule."""
    src, dst = z3ops.graph_terms(rule.src), z3ops.graph_terms(rule.dst)
    diffs = [src[a] != dst[b] for a, b in zip(rule.src.outputs, rule.dst.outputs)]
    seen: set = set()
    facts = z3ops.dim_facts(rule.src, src, seen) + z3ops.dim_facts(rule.dst, dst, seen)
    return z3.Or(diffs), facts


def axiom_solver(axioms=None) -> z3.Solver:
    """A solver holding every axiom, each under its tracking Boolean `ax:name`."""
    s = z3.Solver()
    s.set("smt.mbqi", False)
    s.set("core.minimize", True)
    s.set("smt.qi.max_instances", MAX_INSTANCES)
    for name, formula in (axioms if axioms is not None else compiled()):
        s.assert_and_track(formula, z3.Bool(f"ax:{name}"))
    return s


_SOLVER: z3.Solver | None = None
_USES = 0
# A solver's quantifier-instance budget (MAX_INSTANCES) and its caches outlive push/pop, so a
# long-lived solver slowly stops proving: one process verifying 1,363 rules in one solver left
# 625 unknown where fresh solvers leave 90.  Rebuilding every REFRESH checks (and retrying an
# unknown on a fresh solver) keeps a rule's status independent of what was proved before it.
REFRESH = 50
RETRY_BELOW = 0.5     # retry an unknown that came back within this fraction of the time limit


def _shared_solver(fresh: bool = False) -> z3.Solver:
    global _SOLVER, _USES
    if _SOLVER is None or fresh or _USES >= REFRESH:
        _SOLVER, _USES = axiom_solver(), 0
    _USES += 1
    return _SOLVER


def prove(rule: Rule, timeout_ms: int = 2000, axioms=None) -> tuple[str, tuple[str, ...]]:
    """("proved", axioms used) or ("unknown", ())."""
    try:
        negated, facts = goal(rule)
    except z3ops.NotEncodable:
        return "unknown", ()
    if axioms is not None:
        return _check(axiom_solver(axioms), negated, facts, timeout_ms)
    t0 = time.perf_counter()
    status, used = _check(_shared_solver(), negated, facts, timeout_ms)
    # an early "unknown" may be the shared solver's history (its instance budget): retry on a
    # fresh one.  Not after a timeout: of the depth-4 set's 16,740 rules none that timed out
    # was proved on the retry, and the retries of the 58 that did cost 4 CPU-minutes
    early = time.perf_counter() - t0 < RETRY_BELOW * timeout_ms / 1000
    if status == "unknown" and _USES > 1 and early:
        status, used = _check(_shared_solver(fresh=True), negated, facts, timeout_ms)
    return status, used


def _check(s: z3.Solver, negated, facts, timeout_ms: int) -> tuple[str, tuple[str, ...]]:
    s.set("timeout", int(timeout_ms))
    s.push()
    try:
        s.add(*facts)
        s.add(negated)
        if s.check() == z3.unsat:
            return "proved", tuple(sorted(str(b)[3:] for b in s.unsat_core()))
        return "unknown", ()
    finally:
        s.pop()
