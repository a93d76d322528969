"""A rule: a named pair of graphs over shared inputs, src -> dst, with outputs mapped by position.

`src.outputs[i]` is replaced by `dst.outputs[i]`.  Leaves are `input` nodes named by the rule's
variables; they are shared by name between the two sides.  A rule checks itself when it is built
(egg's rule: the right side may only use variables the left side binds).
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field

from envcore.graph import Graph


# Rules are written at small sizes (generated at 4x4x4x4 and proved for every size), so a rule
# file with giant tensors is hostile or a mistake, never a rule that needs them.
MAX_RULE_ELEMENTS = 1 << 20


class MalformedRule(ValueError):
    """A rule that is not well formed."""


@dataclass(frozen=True)
class Rule:
    name: str
    src: Graph
    dst: Graph
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        s_in, d_in = self.src.inputs, self.dst.inputs
        if len(self.src.outputs) != len(self.dst.outputs) or not self.src.outputs:
            raise MalformedRule(f"rule {self.name}: {len(self.src.outputs)} source outputs "
                                f"but {len(self.dst.outputs)} target outputs")
        unbound = set(d_in) - set(s_in)
        if unbound:
            raise MalformedRule(f"rule {self.name}: target uses unbound inputs {sorted(unbound)}")
        for k in d_in:
            if self.src.shape(s_in[k]) != self.dst.shape(d_in[k]):
                raise MalformedRule(f"rule {self.name}: input {k} has different shapes")
        for a, b in zip(self.src.outputs, self.dst.outputs):
            if self.src.shape(a) != self.dst.shape(b):
                raise MalformedRule(f"rule {self.name}: mapped outputs differ in shape "
                                    f"{self.src.shape(a)} vs {self.dst.shape(b)}")
        if self.src.num_ops == 0:
            raise MalformedRule(f"rule {self.name}: the source has no operator to match")
        for side in (self.src, self.dst):
            for n in side.nodes.values():
                for s in n.shapes:
                    if math.prod(s) > MAX_RULE_ELEMENTS:
                        # checked here, once, so no verifier or checker ever allocates it
                        raise MalformedRule(f"rule {self.name}: a tensor of shape {tuple(s)}; a "
                                            f"rule's tensors hold at most {MAX_RULE_ELEMENTS:,} "
                                            "elements (rules are proved at any size)")

    def reversed(self, name: str | None = None) -> "Rule":
        if set(self.src.inputs) - set(self.dst.inputs) or self.dst.num_ops == 0:
            raise MalformedRule(f"rule {self.name} cannot be reversed: target drops inputs")
        # a scope belongs to one direction (its slots name the matched side's nodes): the
        # reverse has its own, or none
        meta = {k: v for k, v in self.meta.items() if k != "scope"}
        # the checks are symmetric but for the two just made: this rule passed them, so does its
        # reverse (checking again cost a third of loading the shipped DB's rules)
        return Rule.unchecked(name or f"{self.name}~rev", self.dst, self.src, meta)

    @classmethod
    def unchecked(cls, name: str, src: Graph, dst: Graph, meta: dict) -> "Rule":
        """The rule (name, src, dst, meta) built without `__post_init__`'s checks: only for sides
        known to pass them, those of a checked rule (its reverse, the same sides with other meta)
        or of one rebuilt from a cache of checked rules (`subgen.rules.index`)."""
        rule = object.__new__(cls)
        rule.__dict__.update(name=name, src=src, dst=dst, meta=meta)
        return rule

    def to_dict(self) -> dict:
        return {"name": self.name, "src": self.src.to_dict(), "dst": self.dst.to_dict(),
                "meta": self.meta}

    @staticmethod
    def from_dict(d: dict) -> "Rule":
        try:
            return Rule(str(d["name"]), Graph.from_dict(d["src"]), Graph.from_dict(d["dst"]),
                        dict(d.get("meta", {})))
        except (KeyError, TypeError) as e:
            raise MalformedRule(f"malformed rule: missing {e}") from None
        except ValueError as e:
            raise MalformedRule(f"malformed rule {d.get('name', '?')}: {e}") from None
