"""Z3 proofs of rules from the axioms.

Both sides of a rule become terms over the uninterpreted operator symbols (`verifier.z3ops`), with
the rule's variables as shared constants and `dim(t, k)` asserted for every tensor of the rule.
Each axiom is asserted under its own tracking Boolean; the negated goal is
`Or(src_out_i != dst_out_i for every i)`.  `unsat` means proved, and the unsat core names the axioms
the proof used.  Anything else (unknown, resource limit) is unknown: model-based quantifier
instantiation is off, so Z3 gives up as soon as E-matching saturates instead of searching for a
model.

Deterministic verdicts
----------------------
A rule's status must not depend on the rules checked before it, on the number of workers or on
the machine's load.  So:

- **A fresh solver per check.**  Every `prove` (and every `axiom_solver()`) is a new `z3.Solver`
  into which the axioms are asserted again, from one list of (formula, tracking Boolean) built
  once per process; asserting them through the C API costs under a millisecond.  Nothing a solver
  learns (instances, the `smt.qi.max_instances` budget, caches, clause activity) is carried to the
  next rule.  The old single solver reused for 50 rules under push/pop, and the retry of an early
  unknown on a fresh one, are gone.
- **A deterministic work limit.**  The check is bounded by Z3's resource limit `rlimit` (counted
  work, relative to the check's start), `RLIMIT_PER_MS * timeout_ms`, not by wall time.  The
  wall-clock `timeout` stays only as a safety net, `SAFETY_FACTOR * timeout_ms` (plus a second),
  for a search that spends its time where the resource counter does not count.

`set_limits(s, timeout_ms)` applies the same two limits to any solver (e.g. one from
`axiom_solver()`), so other callers get the same guarantee.

What nondeterminism remains:

1. The wall-clock safety net.  A check that has not reached its rlimit after
   `SAFETY_FACTOR * timeout_ms + 1 s` of wall time is cut off as unknown, so under extreme load
   (more than about 20x slower than the calibration machine, see `RLIMIT_PER_MS`) a check near its
   work limit could turn unknown.  None of the TASO or depth-3 rules comes near: every proof there
   uses at most ~30k units, under 1% of the default limit.
2. Z3 AST ids.  All terms live in the process's one Z3 context, which hash-conses terms and
   recycles the ids of freed ones, so the ids of a rule's goal terms depend on what the process
   built before.  Z3 orders some things by id (e.g. argument sorting in its rewriters), so in
   principle the search, and the work it counts, can differ with history.  Measured: on the 133
   TASO rules and the 6,480 depth-3 rules, each rule's rlimit count was identical in two orders
   (`tests/test_verdicts.py` checks statuses in two orders and on 1 and 2 workers).  A fresh
   `z3.Context` per rule would remove this too, but costs ~6 ms a rule (more than a proof).
3. The Z3 version: rlimit units and the search are those of the installed z3-solver (5.4.1 at
   calibration); another version may count differently.  Z3's random seed is fixed (the default).
"""
from __future__ import annotations

import z3

from envcore.rule import Rule
from verifier import z3ops
from verifier.axioms import compiled

# Safety net against a matching loop that ignores the limits (Z3 checks them only between
# instantiation rounds); no proof of the TASO or depth-3 rule sets comes near it.  Per solver, so
# per rule: a fresh solver starts with the whole budget.
MAX_INSTANCES = 200_000

# rlimit units per millisecond of `timeout_ms`.  Calibrated on the depth-3 set's rules that run
# out of time (2 vCPUs, z3 5.4.1, one process): Z3 counts about 500 units per ms of search on them,
# so the default 2000 ms gives 1,000,000 units, ~2 s of a quiet core.  Every proof of the TASO
# (133) and depth-3 (6,356 proved) sets takes under 30,000 units.
RLIMIT_PER_MS = 500
# the wall-clock timeout, only a safety net: this many times timeout_ms, plus a second
SAFETY_FACTOR = 10


def goal(rule: Rule):
    """(negated goal, ground shape facts) for a rule."""
    src, dst = z3ops.graph_terms(rule.src), z3ops.graph_terms(rule.dst)
    diffs = [src[a] != dst[b] for a, b in zip(rule.src.outputs, rule.dst.outputs)]
    seen: set = set()
    facts = z3ops.dim_facts(rule.src, src, seen) + z3ops.dim_facts(rule.dst, dst, seen)
    return z3.Or(diffs), facts


_TRACKED: list | None = None       # [(formula, tracking Bool)] of the default axioms


def _tracked(axioms=None) -> list:
    global _TRACKED
    if axioms is not None:
        return [(f, z3.Bool(f"ax:{name}")) for name, f in axioms]
    if _TRACKED is None:
        _TRACKED = [(f, z3.Bool(f"ax:{name}")) for name, f in compiled()]
    return _TRACKED


def axiom_solver(axioms=None) -> z3.Solver:
    """A new solver holding every axiom, each under its tracking Boolean `ax:name`."""
    s = z3.Solver()
    s.set("smt.mbqi", False)
    s.set("core.minimize", True)
    s.set("smt.qi.max_instances", MAX_INSTANCES)
    ref, solver = s.ctx.ref(), s.solver
    for formula, tracker in _tracked(axioms):   # = s.assert_and_track, without the wrappers
        z3.Z3_solver_assert_and_track(ref, solver, formula.as_ast(), tracker.as_ast())
    return s


def rlimit_for(timeout_ms: int) -> int:
    """The deterministic work limit that stands for `timeout_ms`."""
    return max(1, int(timeout_ms)) * RLIMIT_PER_MS


def set_limits(s: z3.Solver, timeout_ms: int) -> z3.Solver:
    """Bound `s`'s checks by the work limit for `timeout_ms` (deterministic), with a wall-clock
    timeout of `SAFETY_FACTOR * timeout_ms + 1 s` only as a safety net."""
    s.set("rlimit", rlimit_for(timeout_ms))
    s.set("timeout", int(timeout_ms) * SAFETY_FACTOR + 1000)
    return s


def prove(rule: Rule, timeout_ms: int = 2000, axioms=None) -> tuple[str, tuple[str, ...]]:
    """("proved", axioms used) or ("unknown", ()), on a fresh solver: the answer depends on the
    rule (and the axioms) only, not on what was proved before it."""
    try:
        negated, facts = goal(rule)
    except z3ops.NotEncodable:
        return "unknown", ()
    return _check(axiom_solver(axioms), negated, facts, timeout_ms)


def _check(s: z3.Solver, negated, facts, timeout_ms: int) -> tuple[str, tuple[str, ...]]:
    set_limits(s, timeout_ms)
    s.add(*facts)
    s.add(negated)
    if s.check() == z3.unsat:
        return "proved", tuple(sorted(str(b)[3:] for b in s.unsat_core()))
    return "unknown", ()
