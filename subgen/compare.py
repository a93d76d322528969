"""`subgen rules compare`: how many of THEIRS rules OURS holds, up to renaming and direction.

Rule sets over differently shaped input pools (ours within 4x4x4x4, TASO's with 5x5 images)
are compared on canonical forms without concrete dimensions (`canonical_key(shapes=False)`).
A rule that is not held is reported *derivable* when one step of ours explains it: it is an
instance of one of our rules (variables merged), or both sides end in the same operator and
every pair of differing operands is one of our rules (a smaller rule in context, which our
pruning removes on purpose).
"""
from __future__ import annotations

from envcore.graph import Graph
from envcore.ops import LEAVES
from envcore.rule import Rule
from subgen.prune import _key_of, canonical_key, instance_keys


def _in_context(rule: Rule, keys: set[str]) -> bool:
    if len(rule.src.outputs) != 1:
        return False
    a, b = rule.src.outputs[0], rule.dst.outputs[0]
    na, nb = rule.src.nodes[a.node], rule.dst.nodes[b.node]
    if na.op in LEAVES or (na.op, na.params, a.index) != (nb.op, nb.params, b.index):
        return False
    for ra, rb in zip(na.inputs, nb.inputs):
        ga, gb = Graph(rule.src.nodes, [ra]), Graph(rule.dst.nodes, [rb])
        k = _key_of(ga, gb, False)
        same = _key_of(ga, ga, False) == k
        if not same and k not in keys:
            return False
    return True


def _why(rule: Rule) -> str:
    for g in (rule.src, rule.dst):
        for n in g.nodes.values():
            if n.op == "conv2d":
                x = g.shape(n.inputs[0])
                w = g.shape(n.inputs[1])
                if x[2:] == (3, 3) or x[2:] == w[2:]:
                    return "conv applied to a kernel (not enumerated)"
                if n.p["groups"] != 1:
                    return "grouped conv with a one-channel kernel variable (not in our pool)"
    if len(rule.src.outputs) > 1:
        return "two-output rule that is a union of smaller rules or shares a subgraph"
    return "not generated"


def compare(ours_path, theirs_path) -> dict:
    from subgen.ruleio import load_rules
    ours, theirs = load_rules(ours_path), load_rules(theirs_path)
    keys = {canonical_key(r, shapes=False) for r in ours}
    inst: set[str] = set()
    for r in ours:
        inst |= instance_keys(r, shapes=False)
    from subgen.cli.rules import _fmt
    covered, derivable, missing = 0, 0, []
    for r in theirs:
        k = canonical_key(r, shapes=False)
        if k in keys:
            covered += 1
            continue
        if k in inst or _in_context(r, keys):
            derivable += 1
            why = "derivable: an instance or a smaller rule of ours in context"
        else:
            why = _why(r)
        missing.append({"name": r.name, "src": _fmt(r.src), "dst": _fmt(r.dst), "why": why})
    return {"theirs": len(theirs), "covered": covered, "missing": len(missing),
            "derivable": derivable, "ours": len(ours), "missing_rules": missing}
