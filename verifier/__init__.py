"""The verifier: axioms as data, axiom validation, numeric refutation and Z3 proofs of rules.

    from verifier import verify_rule
    verify_rule(rule, timeout_ms=2000)  # RuleResult(status, axioms, counterexample, seconds)

A rule is first run on random floats (a mismatch refutes it, with a counterexample), then proved
from the axioms with Z3 (`unsat` proves it; the unsat core names the axioms used).  Only proved
rules are ever applied by the optimizer.
"""
from __future__ import annotations

from verifier.verify import RuleResult, verify_rule

__all__ = ["RuleResult", "verify_rule"]
