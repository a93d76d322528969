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

- **A Z3 context of its own per rule** (`isolated_check`).  The goal is built in the process's
  main context, then the axioms (compiled once per process) and the goal are translated into a
  new `z3.Context` made for this one check and dropped after it.  A fresh solver is not enough:
  the shared context keeps hash-consed terms, recycled AST ids and fresh-name counters, and Z3
  breaks ties by id.  Measured on the redundancy check of `matmul_ewadd_left`: unsat in 0.04 s
  as the first check of a process, unknown (2 s timeout) as the second, on a fresh solver both
  times.  On the rules it is milder (6,480 depth-3 rules on fresh solvers in one context, in two
  orders: same statuses, but 1,693 rules used up to 1.7% more or less work); in own contexts
  the statuses, cores and work counts are identical in both orders.  The old single solver
  reused for 50 rules under push/pop, and the retry of an early unknown on a fresh one, are gone.
- **A deterministic work limit.**  The check is bounded by Z3's resource limit `rlimit` (counted
  work, relative to the check's start), `RLIMIT_PER_MS * timeout_ms`, not by wall time.  The
  wall-clock `timeout` stays only as a safety net, `SAFETY_FACTOR * timeout_ms` (plus a second),
  for a search that spends its time where the resource counter does not count.

Cost: 9 to 12 ms of proof a rule against ~3 ms with the shared solver (creating a Z3 context is
~5 ms of it): `verify_many` on 2 workers went from 31.1 s to 58.4 s on the 6,480 depth-3 rules
and from 0.84 s to 1.55 s on TASO's 133, with the same verdicts (6,356 and 133 proved).  `axiom_solver()` (a fresh solver in the main context, used by
`verifier.scope`) and `set_limits(s, timeout_ms)` give other callers the work limit; for full
isolation they can pass their formulas to `isolated_check` instead.

What nondeterminism remains (for `prove` and `isolated_check`):

1. The wall-clock safety net.  A check that has not reached its rlimit after
   `SAFETY_FACTOR * timeout_ms + 1 s` of wall time is cut off as unknown, so under extreme load
   (a check running ~10x slower than on the calibration machine) a check near its work limit
   could turn unknown.  No proof of the TASO or depth-3 sets comes near: each uses under 30k
   units, 3% of the default limit, in milliseconds.
2. Z3 itself: hash tables keyed by memory address, if any part of the search uses one, and the
   installed version (rlimit units and the search are z3-solver 5.4.1's; another version may
   count and search differently).  Z3's random seed is fixed (the default).
3. Checks made on `axiom_solver()` solvers in the main context carry that context's history as
   above; `set_limits` removes the load dependence only.  `verifier.scope` proves each rule in a
   context of its own (both directions of a rule share it, so one direction's check can follow
   the other's, the same way every time); its small arithmetic checks (resolving target sizes,
   drawing in-scope sizes) run in the main context under `set_limits`.
"""
from __future__ import annotations

import z3

from envcore.rewrite.rule import Rule
import verifier.z3ops as z3ops
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


def tracked_axioms(axioms=None) -> list:
    """[(formula, tracking Bool `ax:name`)] of `axioms` ((name, formula) pairs; default: every
    axiom, built once per process)."""
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
    for formula, tracker in tracked_axioms(axioms):   # = s.assert_and_track, without the wrappers
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


def isolated_check(assertions, timeout_ms: int = 2000, axioms=None, track: bool = True):
    """Check `assertions` (formulas of the main Z3 context) together with the axioms in a
    Z3 context of their own, made for this one check and dropped after it: ("unsat" | "sat" |
    "unknown", the tracked axioms of the unsat core).  Nothing of what the process built or
    checked before can reach it, so the answer is a function of the formulas alone.
    `axioms`: (name, formula) pairs, default every axiom; `track=False` asserts them untracked
    (no core)."""
    ctx = z3.Context()
    s = z3.Solver(ctx=ctx)
    s.set("smt.mbqi", False)
    s.set("core.minimize", True)
    s.set("smt.qi.max_instances", MAX_INSTANCES)
    set_limits(s, timeout_ms)
    ref, solver = ctx.ref(), s.solver
    pairs = tracked_axioms(axioms) if track else [(f, None) for _, f in
                                            (axioms if axioms is not None else compiled())]
    keep = []                # the translated terms, alive until the check is done
    for formula, tracker in pairs:
        f = formula.translate(ctx)
        keep.append(f)
        if tracker is None:
            z3.Z3_solver_assert(ref, solver, f.as_ast())
        else:
            b = tracker.translate(ctx)
            keep.append(b)
            z3.Z3_solver_assert_and_track(ref, solver, f.as_ast(), b.as_ast())
    for a in assertions:
        s.add(a.translate(ctx))
    res = s.check()
    if res == z3.unsat:
        return "unsat", tuple(sorted(str(b)[3:] for b in s.unsat_core())) if track else ()
    return ("sat" if res == z3.sat else "unknown"), ()


def prove(rule: Rule, timeout_ms: int = 2000, axioms=None) -> tuple[str, tuple[str, ...]]:
    """("proved", axioms used) or ("unknown", ()), checked in a Z3 context of its own
    (`isolated_check`): the answer depends on the rule (and the axioms) only."""
    try:
        negated, facts = goal(rule)
    except z3ops.NotEncodable:
        return "unknown", ()
    res, used = isolated_check([z3.And(facts), negated] if facts else [negated], timeout_ms,
                               axioms)
    return ("proved", used) if res == "unsat" else ("unknown", ())


def _check(s: z3.Solver, negated, facts, timeout_ms: int) -> tuple[str, tuple[str, ...]]:
    """The check on a solver of the main context (e.g. a fresh `axiom_solver()`), under the
    same limits: deterministic for that solver, but see the module docstring (2) on what the
    shared context can still carry from one check to the next."""
    set_limits(s, timeout_ms)
    s.add(*facts)
    s.add(negated)
    if s.check() == z3.unsat:
        return "proved", tuple(sorted(str(b)[3:] for b in s.unsat_core()))
    return "unknown", ()
