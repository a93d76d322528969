"""`subgen rules compare`: how many of THEIRS rules OURS covers.

Rule sets over differently shaped input pools (ours within 4x4x4x4, TASO's with 5x5 images)
are compared on canonical forms without concrete dimensions (`canonical_key(shapes=False)`).
Each of THEIRS rules is one of
  held        OURS holds it, up to input renaming, direction and dimensions;
  subsumed    one application of one of OURS's *proved* rules turns its source into its
              target: THEIRS rule is an instance of a more general rule of ours (variables
              merged) or a rule of ours inside a common context.  Generation prunes exactly
              these on purpose (`subgen.pairing.prune`), since the general rule does the same rewrite;
  derivable   a chain of 2 to `max_steps` rewrites with OURS's proved rules joins its two sides
              (`subgen.rules.derive`, a bidirectional search over both rule directions);
  missing     none of these; `why` says what kind of rule it is.
`covered` is held + subsumed: the rewrites OURS performs in a single rule application.
"""
from __future__ import annotations

from envcore.graph import Graph
from envcore.ops import LEAVES
from envcore.rewrite.rule import Rule
from subgen.pairing.prune import _key_of, canonical_key, instance_keys
from subgen.rules.io import is_rule_db


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
    """What kind of rule a missing one is (the README explains each kind)."""
    from collections import Counter

    from subgen.enumeration.enumerator import POOL
    for g in (rule.src, rule.dst):
        for n in g.nodes.values():
            if n.op == "conv2d":
                x = g.shape(n.inputs[0])
                w = g.shape(n.inputs[1])
                if n.inputs[0] != n.inputs[1] and (x[2:] == (3, 3) or x[2:] == w[2:]):
                    return "conv applied to a kernel other than itself (not enumerated)"
                if n.p["groups"] != 1:
                    return "grouped conv with a one-channel kernel variable (not in our pool)"
    if len(rule.src.outputs) > 1:
        return ("two-output rule whose outputs share an operator: each output alone is a rule "
                "of ours, but the matcher does not rewrite a shared operator for one output")
    same_shape = Counter(rule.src.shape(r) for r in rule.src.inputs.values())
    pool_most = max(Counter(POOL.values()).values())
    if max(same_shape.values()) > pool_most:
        return (f"needs {max(same_shape.values())} distinct variables of one shape; the pool "
                f"has at most {pool_most}")
    return "not generated"


def compare(ours_path, theirs_path, max_steps: int = 4) -> dict:
    from subgen.rules.derive import both_directions, derivable
    from subgen.rules.io import load_rules
    ours, theirs = load_rules(ours_path), load_rules(theirs_path)
    keys = {canonical_key(r, shapes=False) for r in ours}
    proved = _proved(ours_path, ours)
    rewriting = _rewriting(ours_path, proved, both_directions)
    inst: set[str] | None = None
    held, subsumed, derived, missing = 0, [], [], []
    for r in theirs:
        k = canonical_key(r, shapes=False)
        if k in keys:
            held += 1
            continue
        entry = {"name": r.name, "src": r.src.text(), "dst": r.dst.text()}
        steps = derivable(r, rewriting, max_steps=max_steps)
        if steps == 1:
            subsumed.append({**entry, "steps": 1,
                             "why": "subsumed: one application of a rule of ours"})
            continue
        if steps is not None:
            derived.append({**entry, "steps": steps, "why": f"derivable in {steps} rewrite steps"})
            continue
        if inst is None:
            inst = set()
            for p in proved:
                inst |= instance_keys(p, shapes=False)
        if k in inst or _in_context(r, {canonical_key(p, shapes=False) for p in proved}):
            subsumed.append({**entry, "steps": 1, "why": "subsumed: an instance of a rule of "
                                                         "ours, or one in context"})
            continue
        missing.append({**entry, "why": _why(r)})
    return {"theirs": len(theirs), "covered": held + len(subsumed), "held": held,
            "subsumed": len(subsumed), "derivable": len(derived), "missing": len(missing),
            "ours": len(ours), "ours_proved": len(proved), "subsumed_rules": subsumed,
            "derivable_rules": derived, "missing_rules": missing}


def _rewriting(path, proved, both_directions):
    """The rules to derive with: a DB's proved rules in both directions, each inside its scope
    (what `optimize` applies); a file's rules both ways as they are."""
    if is_rule_db(path):
        from subgen.rules.load import load_rules_for_use
        return load_rules_for_use(path)
    return both_directions(proved)


def _proved(path, rules):
    """The proved rules of a rule DB; every rule of a JSON or .pb file (they carry no status)."""
    if is_rule_db(path):
        from subgen.rules.db import RuleDB
        with RuleDB(path, create=False) as db:
            return db.proved_rules()
    return list(rules)
