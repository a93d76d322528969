"""Verify many rules, in parallel processes when asked.

Results come back one at a time through `on_result(index, RuleResult)`, as each rule finishes, so
a caller can commit as they come (`subgen verify` commits a batch every half second) and a killed
run loses at most the rules not yet committed.  Workers are the processes of envcore's one local
pool (`envcore.processes.LocalPool`: spawned, since Z3 contexts do not survive a fork safely, and
ended with their driver); each builds the axioms once.  Rules travel as dicts.

A rule's status does not depend on which worker checks it, on the number of workers or on the
order of the rules: every proof runs in a Z3 context of its own under a deterministic work limit
(see `verifier.prove`).  A rule that cannot be checked because its sides cannot be typed or cannot
agree in shape gets the status "malformed" (its reason in `info["reason"]`), and the others go on.
"""
from __future__ import annotations

from typing import Callable, Sequence

from envcore.ops import ShapeError
from envcore.processes import LocalPool
from envcore.rewrite.rule import MalformedRule, Rule
from verifier import RuleResult, verify_rule


def malformed(reason: str) -> RuleResult:
    """The verdict for a rule that cannot be checked: its sides cannot be typed or agree."""
    return RuleResult("malformed", info={"reason": reason})


def _reason(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_one(rule: Rule, timeout_ms: int = 2000) -> RuleResult:
    """verify_rule, with a rule whose shapes cannot be typed turned into a "malformed" verdict."""
    try:
        return verify_rule(rule, timeout_ms)
    except (MalformedRule, ShapeError) as e:
        return malformed(_reason(e))


def _work(job):
    i, d, timeout_ms = job
    try:
        rule = Rule.from_dict(d)
    except (MalformedRule, ShapeError) as e:
        return i, malformed(_reason(e))
    return i, check_one(rule, timeout_ms)


def verify_many(rules: Sequence[Rule], timeout_ms: int = 2000, workers: int = 1,
                on_result: Callable[[int, RuleResult], None] | None = None,
                executor=None) -> list[RuleResult]:
    """RuleResults in the order of `rules`.  `executor` (optional, anything with
    `map_unordered(fn, items, chunksize)` yielding (index, result), e.g. subgen's Ray executor)
    runs the rules instead of `workers` local processes (`LocalPool`)."""
    out: list[RuleResult | None] = [None] * len(rules)

    def done(i, res):
        out[i] = res
        if on_result:
            on_result(i, res)

    if executor is not None:
        jobs = [(i, r.to_dict(), timeout_ms) for i, r in enumerate(rules)]
        chunk = max(1, min(8, len(jobs) // (8 * max(1, getattr(executor, "workers", 1)))))
        for _, (i, res) in executor.map_unordered(_work, jobs, chunksize=chunk):
            done(i, res)
        return out
    if workers <= 1 or len(rules) <= 1:
        for i, r in enumerate(rules):
            done(i, check_one(r, timeout_ms))
        return out
    jobs = [(i, r.to_dict(), timeout_ms) for i, r in enumerate(rules)]
    with LocalPool(min(workers, len(rules))) as pool:
        for _, (i, res) in pool.map_unordered(_work, jobs, chunksize=1):
            done(i, res)
    return out


def summary(results: Sequence[RuleResult], seconds: float) -> dict:
    """Counts plus the median and 95th-percentile time per rule."""
    times = sorted(r.seconds for r in results)

    def pct(p):
        return times[min(len(times) - 1, int(p * len(times)))] if times else 0.0
    return {"rules": len(results),
            "proved": sum(r.status == "proved" for r in results),
            "refuted": sum(r.status == "refuted" for r in results),
            "unknown": sum(r.status == "unknown" for r in results),
            "malformed": sum(r.status == "malformed" for r in results),
            "seconds": round(seconds, 3),
            "median_s": round(pct(0.5), 4), "p95_s": round(pct(0.95), 4)}
