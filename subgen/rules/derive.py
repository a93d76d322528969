"""Is a rule derivable from a rule set?  A small bidirectional breadth-first search.

The rule's source is rewritten with the set's rules (in either direction, where the reverse is a
rule too), and so is its target; when the two searches meet, a chain of at most `max_steps`
rewrites turns one side into the other.  Graphs are compared by `canonical_hash`, which is
independent of node ids and keeps the variables' names, shared by the two sides.  Each search
keeps at most `max_frontier` graphs per step and skips graphs that grow beyond
`max_extra_ops` operators over the larger side, so a miss means "not within these bounds".
"""
from __future__ import annotations

from envcore.rewrite.rule import MalformedRule, Rule


def both_directions(rules) -> list[Rule]:
    """The rules, and the reverse of each that is itself a rule (the target binds every
    variable and has an operator to match)."""
    out = list(rules)
    for r in rules:
        try:
            out.append(r.reversed())
        except MalformedRule:
            pass
    return out


def _neighbours(rules, g, max_ops: int):
    from envcore.rewrite.candidate_set import CandidateSet
    from envcore.rewrite.apply import RewriteError, apply
    for m in CandidateSet(rules, g).applicable():
        try:
            h, _ = apply(g, rules[m.rule_index], m)
        except (RewriteError, ValueError):
            continue
        if h.num_ops <= max_ops:
            yield h


def derivable(rule: Rule, rules: list[Rule], max_steps: int = 4, max_frontier: int = 400,
              max_extra_ops: int = 2) -> int | None:
    """The number of rewrites that join the rule's two sides (0 when they are equal already),
    or None when none is found within the bounds.  `rules` should hold both directions
    (`both_directions`)."""
    max_ops = max(rule.src.num_ops, rule.dst.num_ops) + max_extra_ops
    seen = [{rule.src.canonical_hash: 0}, {rule.dst.canonical_hash: 0}]
    frontier = [[rule.src], [rule.dst]]
    if rule.src.canonical_hash == rule.dst.canonical_hash:
        return 0
    for step in range(1, max_steps + 1):
        side = (step - 1) % 2           # alternate: src, dst, src, dst ...
        nxt = []
        for g in frontier[side]:
            for h in _neighbours(rules, g, max_ops):
                key = h.canonical_hash
                if key in seen[side]:
                    continue
                seen[side][key] = step
                if key in seen[1 - side]:
                    return step
                if len(nxt) < max_frontier:
                    nxt.append(h)
        frontier[side] = nxt
    return None
