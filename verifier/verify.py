"""`verify_rule`: a rule's verdict (`RuleResult`), from numeric refutation and Z3 proofs.

Re-exported by the package (`from verifier import verify_rule`); modules inside `verifier`
import it from here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from envcore.ops import ShapeError
from envcore.rewrite.rule import MalformedRule, Rule


@dataclass(frozen=True)
class RuleResult:
    status: str                        # "proved" | "refuted" | "unknown"
    axioms: tuple[str, ...] = ()       # the axioms the proof used (proved only)
    counterexample: dict | None = None  # refuted only
    seconds: float = 0.0
    info: dict = field(default_factory=dict, compare=False)
    # proved only: where the proof holds, per direction ({"forward": Scope dict, "reverse": ...});
    # see `verifier.scope`.  A rule is applied only inside the scope of its direction.
    scope: dict | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        return {"status": self.status, "axioms": list(self.axioms),
                "counterexample": self.counterexample, "seconds": self.seconds,
                **({"scope": self.scope} if self.scope is not None else {}), **self.info}


def verify_rule(rule: Rule, timeout_ms: int = 2000) -> RuleResult:
    """Numeric refutation first, then a Z3 proof with symbolic dims, once per direction
    (`verifier.scope`): a proved rule carries the scope each direction holds in."""
    from verifier.prove import prove
    from verifier.refute import numeric_check
    from verifier.scope import check_in_scope, pinned_scope, prove_scoped
    t0 = time.perf_counter()
    try:
        cex = numeric_check(rule)
    except ShapeError as e:          # an operator without float semantics (opaque)
        cex, note = None, f"numeric check skipped: {e}"
    else:
        note = None
    t1 = time.perf_counter()
    if cex is not None:
        return RuleResult("refuted", (), cex, t1 - t0, {"numeric_s": t1 - t0})
    directions = {"forward": rule}
    try:
        directions["reverse"] = rule.reversed()
    except MalformedRule:
        pass
    scope, used, status = {}, set(), "proved"
    import z3
    symmetric = _symmetric(rule)
    ctx = z3.Context()        # the rule's own: its verdict depends on it alone
    for name, r in directions.items():
        if name == "reverse" and symmetric:
            # no pins, shape parameters or resolved parameters on either side: the reverse
            # direction's proof obligation is the forward one's, fact for fact
            scope[name] = scope["forward"]
            continue
        st, ax, sc = prove_scoped(r, timeout_ms, ctx=ctx)
        if st == "pinned":           # shapes not symbolic: the proof at the generated sizes
            st, ax = prove(r, timeout_ms)
            sc = pinned_scope(r) if st == "proved" else None
        if st == "proved" and not sc.get("pinned"):
            # the proof's last check: the rule applied through the matcher and rewriter at
            # random sizes inside its scope must agree numerically (an axiom that says too
            # much at some sizes is caught here, not in a user's model)
            cex = check_in_scope(r, sc)
            if cex is not None:
                t2 = time.perf_counter()
                return RuleResult("refuted", (), {**cex, "direction": name}, t2 - t0,
                                  {"numeric_s": t1 - t0, "proof_s": t2 - t1})
        if st != "proved":
            if name == "forward":
                status = st
                break
            continue                 # the reverse direction is simply not offered
        scope[name], used = sc, used | set(ax)
    t2 = time.perf_counter()
    info = {"numeric_s": t1 - t0, "proof_s": t2 - t1}
    if note:
        info["note"] = note
    if status != "proved":
        return RuleResult("unknown" if status != "malformed" else "malformed", (), None,
                          t2 - t0, info)
    return RuleResult("proved", tuple(sorted(used)), None, t2 - t0, info, scope)


def _symmetric(rule: Rule) -> bool:
    from envcore.ops import SEMANTIC_DIMS, SHAPE_PARAMS
    from verifier.scope import RESOLVED_PARAMS
    special = set(SEMANTIC_DIMS) | set(SHAPE_PARAMS) | set(RESOLVED_PARAMS)
    return not any(n.op in special for g in (rule.src, rule.dst) for n in g.nodes.values())

