"""A cheap normal form of tensor expressions modulo the algebra every rule set re-derives.

Two expressions with the same normal form are equal by a chain of small rules that the generator
always finds at depth 2 (and keeps):
  * associativity (ops in `ASSOCIATIVE` with equal params; concat is associative on one axis):
    nested chains are flattened, (a+b)+c -> +[a, b, c];
  * commutativity (`COMMUTATIVE`): the flattened operands are sorted;
  * scalars float to the top through ops linear in each input (`LINEAR_IN_EACH_INPUT` without a
    fused activation): matmul(A*s, B) -> s * matmul(A, B), (x*s)*t -> {s, t} * x;
  * a fused activation is the activation's operator applied to the plain op (the catalogue's own
    definition, `envcore.ops._act`): conv2d[relu](x, k) -> relu(conv2d(x, k)).

A rule whose two sides share a normal form says nothing the base rules do not (ewadd chains
reordered, ((xA)B)C -> x(B(C)) ...), and two rules with the same pair of normal forms are each
other's consequences.  Both sides being the same *cost* as well (the same operators, moved
around), such rules do not help an optimizer either.

The form is computed over any expression DAG through a `describe(x)` callback, so it serves the
enumerator's terms (memoized per term, shared by every rule that uses it) and `Graph`s alike:
    describe(x) -> ("leaf", name) | ("op", op, params_tuple, inputs, output_index, input_is_scalar)
"""
from __future__ import annotations

from typing import Callable, Hashable

from envcore.ops import ASSOCIATIVE, COMMUTATIVE, LINEAR_IN_EACH_INPUT, OPS

# operators that multiply a tensor by a 0-d operand (the operand becomes a floating scalar)
SCALING = frozenset({"scalar_mul"})
FLATTENS = ASSOCIATIVE | {"concat"}   # concat: its params hold the axis, so chains agree on it


def _plain(params: tuple) -> bool:
    """No fused activation: a fused relu breaks linearity and associativity."""
    return dict(params).get("activation", "none") == "none"


class NormalForms:
    """Memoized normal forms: `of(x)` is a string, equal for expressions equal modulo AC."""

    def __init__(self, describe: Callable[[Hashable], tuple]):
        self.describe = describe
        self._memo: dict[Hashable, tuple] = {}

    def of(self, x) -> str:
        return _full(self._nf(x))

    def _nf(self, x) -> tuple:
        """(floating scalars: sorted tuple, flat: (op key, operands) | None, core string)."""
        hit = self._memo.get(x)
        if hit is not None:
            return hit
        d = self.describe(x)
        if d[0] == "leaf":
            res = ((), None, d[1])
        else:
            res = self._op(*d[1:])
        self._memo[x] = res
        return res

    def _op(self, op, params, inputs, index, scalar_in) -> tuple:
        act = dict(params).get("activation", "none")
        if act != "none" and act in OPS and index == 0:
            plain = tuple((k, "none" if k == "activation" else v) for k, v in params)
            inner = self._op(op, plain, inputs, index, scalar_in)
            key = f"{act}{tuple(sorted(OPS[act].full_params({}).items()))}"
            return ((), None, f"{key}({_full(inner)}).0")
        kids = [self._nf(i) for i in inputs]
        linear = op in LINEAR_IN_EACH_INPUT and _plain(params) and index == 0
        scalars: tuple = ()
        if linear:
            scalars = tuple(s for k in kids for s in k[0])
            if op in SCALING:   # x * s: s floats, x stays
                tensor = [k for k, sc in zip(kids, scalar_in) if not sc]
                scalars += tuple(_full(k) for k, sc in zip(kids, scalar_in) if sc)
                if len(tensor) == 1:
                    return (tuple(sorted(scalars)), tensor[0][1], tensor[0][2])
            operands = [(k[1], k[2]) for k in kids]
        else:
            # a kid with floating scalars is opaque here: they cannot float through this op
            operands = [(None if k[0] else k[1], _full(k)) for k in kids]
        key = f"{op}{params}"
        if op in FLATTENS and _plain(params) and index == 0:
            args: list[str] = []
            for flat, core in operands:
                if flat is not None and flat[0] == key:
                    args.extend(flat[1])
                else:
                    args.append(core)
            if op in COMMUTATIVE:
                args.sort()
            flat = (key, tuple(args))
            return (tuple(sorted(scalars)), flat, f"{key}[{','.join(args)}]")
        core = f"{key}({','.join(c for _, c in operands)}).{index}"
        return (tuple(sorted(scalars)), None, core)


def _full(nf: tuple) -> str:
    scalars, _, core = nf
    return f"*{{{','.join(scalars)}}}{core}" if scalars else core


def graph_describer(g) -> Callable:
    """`describe` for an envcore Graph: expressions are its Refs."""
    from envcore.ops import LEAVES

    def describe(ref):
        n = g.nodes[ref.node]
        if n.op in LEAVES:
            return ("leaf", n.p["name"])
        return ("op", n.op, n.params, n.inputs, ref.index,
                tuple(g.shape(r) == () for r in n.inputs))
    return describe


def term_describer(en) -> Callable:
    """`describe` for a `subgen.enumeration.enumerator.Enumerator`: expressions are its term ids."""
    terms, nodes = en.terms, en.nodes

    def describe(tid):
        t = terms[tid]
        if t.node is None:
            return ("leaf", t.name)
        n = nodes[t.node]
        return ("op", n.op, n.params, n.inputs, t.index,
                tuple(terms[i].shape == () for i in n.inputs))
    return describe


def rule_is_trivial(rule) -> bool:
    """Both sides of the rule have the same normal forms, output by output."""
    a, b = NormalForms(graph_describer(rule.src)), NormalForms(graph_describer(rule.dst))
    return all(a.of(x) == b.of(y) for x, y in zip(rule.src.outputs, rule.dst.outputs))


# ----------------------------------------------------------------------------------------------
# rules sorted into normal-form classes: only one rule per class needs a proof

BASE_OPS = 2        # rules with at most this many operators a side are the base rules: proved
MAX_RENAMINGS = 120  # renamings tried by brute force (variables of one rank permuted)


def rule_form(rule, renaming: dict | None = None) -> str:
    """The rule's pair of normal forms, leaves renamed and tagged with their rank."""
    sides = []
    for g in (rule.src, rule.dst):
        base = graph_describer(g)

        def describe(ref, base=base, g=g):
            d = base(ref)
            if d[0] != "leaf":
                return d
            name = renaming.get(d[1], d[1]) if renaming else d[1]
            return ("leaf", f"{name}:{len(g.shape(ref))}")
        nf = NormalForms(describe)
        sides.append([nf.of(o) for o in g.outputs])
    # output order and direction do not matter
    pairs = sorted(zip(*sides))
    a = "|".join(p[0] for p in pairs) + "=>" + "|".join(p[1] for p in pairs)
    b = "|".join(p[1] for p in pairs) + "=>" + "|".join(p[0] for p in pairs)
    return min(a, b)


def class_key(rule) -> str | None:
    """`rule_form` up to renaming (the least over renamings); None with too many renamings.
    Only variables of one rank can trade names (the form tags every leaf with its rank, so a
    renaming that equates two rules' forms keeps ranks), so the renamings tried are the
    permutations within each rank: 3! x 2! for three 4-D tensors and two matrices, not 5!."""
    import itertools
    import math
    by_rank: dict[int, list[str]] = {}
    for name, ref in sorted(rule.src.inputs.items()):
        by_rank.setdefault(len(rule.src.shape(ref)), []).append(name)
    groups = sorted(by_rank.items())
    if math.prod(math.factorial(len(g)) for _, g in groups) > MAX_RENAMINGS:
        return None
    choices = [[{n: f"v{rank}_{k}" for n, k in zip(names, perm)}
                for perm in itertools.permutations(range(len(names)))] for rank, names in groups]
    return min(rule_form(rule, {k: v for part in combo for k, v in part.items()})
               for combo in itertools.product(*choices))


def rule_class(rule) -> tuple[bool, str | None] | None:
    """What `derivations` asks of one rule: None for a base rule, else (its sides share a
    normal form, its `class_key`).  Pure, so workers can answer it for many rules."""
    if max(rule.src.num_ops, rule.dst.num_ops) <= BASE_OPS:
        return None
    if rule_is_trivial(rule):
        return (True, None)
    return (False, class_key(rule))


def derivations(rules, classes: list | None = None) -> dict[int, int | None]:
    """index -> how the rule follows without its own proof: None when its two sides share a
    normal form (it follows from the base rules), or the index of the class's leader whose
    proof it inherits.  Rules not in the result need their own proof (the base rules and one
    leader per class).  Leaders are the smallest rules of their class.  `classes` gives
    `rule_class` of each rule when it was computed elsewhere."""
    out: dict[int, int | None] = {}
    leaders: dict[str, int] = {}
    order = sorted(range(len(rules)), key=lambda i: rules[i].src.num_ops + rules[i].dst.num_ops)
    for i in order:
        c = rule_class(rules[i]) if classes is None else classes[i]
        if c is None:
            continue
        trivial, key = c
        if trivial:
            out[i] = None
            continue
        if key is None:
            continue
        if key in leaders:
            out[i] = leaders[key]
        else:
            leaders[key] = i
    return out
