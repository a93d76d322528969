"""Do the axioms keep terms well typed?  The check that makes symbolic-dimension proofs sound.

Z3's tensors are one untyped sort: an axiom instance can equate a typed term with an ill-typed
one (a block matmul read right to left, with seams that do not line up, builds products of
operands that do not fit).  At the generator's shapes (every size 4) that never shows; at
symbolic sizes it would prove false rules.  E-matching fires an axiom on a trigger side that it
found among the terms already there; by induction every term is typed when, for every trigger
side T and the other side O of every axiom,

    where  and  typed(T)   implies   typed(O)  and  shape(O) == shape(T)

at every size.  `typing_gaps` checks that with Z3 on each rank combination of the axiom's
domain: every dim of a variable and every size-like parameter (split sizes, groups) is a Z3
integer, and `typed` is the catalogue's own shape rules run on them (`envcore.ops.assuming`).
"""
from __future__ import annotations

import z3

from envcore.ops import OPS, ShapeError, assuming
from verifier.terms import Dim, Half, Param, Sum, Term, Var, has_arith, variables

# parameters that stand for sizes (E-matching binds them to whatever a term holds, symbolic
# sizes included); the others (axes, kernel windows, strides, padding, activation) are choices
SIZE_PARAMS = frozenset({"s0", "s1", "g", "n"})


class _Reader:
    """The symbolic reading of one axiom instance: shapes of sub-terms, and their conditions."""

    def __init__(self, inst: dict):
        self.inst = inst
        self.dims: dict[str, tuple] = {}
        self.params: dict[str, z3.ArithRef] = {}
        self.conds: list = []

    def var(self, name: str) -> tuple:
        if name not in self.dims:
            self.dims[name] = tuple(z3.Int(f"{name}:{k}") for k in range(len(self.inst[name])))
        return self.dims[name]

    def value(self, v):
        if isinstance(v, Param):
            if v.name in SIZE_PARAMS and isinstance(self.inst[v.name], int):
                return self.params.setdefault(v.name, z3.Int(f"param:{v.name}"))
            return self.inst[v.name]
        if isinstance(v, Dim):
            axis = self.value(v.axis)
            return self.var(v.var)[axis]
        if isinstance(v, Sum):
            return sum(self.value(p) for p in v.parts)
        if isinstance(v, Half):
            part = self.value(v.part)
            return part // 2 if isinstance(part, int) else part / 2
        if isinstance(v, (tuple, list)):
            return tuple(self.value(p) for p in v)
        return v

    def shape(self, p) -> tuple:
        """Output shape of a pattern, collecting its typing conditions in `self.conds`."""
        if isinstance(p, Var):
            return self.var(p.name)
        ins = [self.shape(a) for a in p.args]
        opdef = OPS[p.op]
        params = {**opdef.defaults, **{k: self.value(v) for k, v in p.params}}
        with assuming() as conds:
            outs = opdef.shape(ins, params)
        self.conds += conds
        return tuple(outs[p.out])

    def positive(self) -> list:
        return [d >= 1 for t in self.dims.values() for d in t if isinstance(d, z3.ExprRef)] + \
               [q >= 1 for q in self.params.values()]


def _as_bool(c):
    return c if isinstance(c, z3.BoolRef) else z3.BoolVal(bool(c))


def _eq(a, b):
    return _as_bool(a == b) if isinstance(a, int) and isinstance(b, int) else \
        (z3.IntVal(a) if isinstance(a, int) else a) == (z3.IntVal(b) if isinstance(b, int) else b)


def _triggers(axiom) -> list[str]:
    names = variables((axiom.lhs, axiom.rhs, axiom.where))
    out = []
    for side, p in (("lhs", axiom.lhs), ("rhs", axiom.rhs)):
        if isinstance(p, Term) and not has_arith(p) and set(names) <= set(variables(p)):
            out.append(side)
    return out


def typing_gaps(axiom, max_dim: int = 3, limit: int = 16, seed: int = 0) -> list[dict]:
    """Instances (one per rank combination tried) at which a trigger side's typing does not
    give the other side's: [{"direction", "instance", "sizes"}], empty when the axiom keeps
    terms typed."""
    gaps, seen_ranks = [], set()
    for inst in axiom.instances(max_dim, limit, seed):
        ranks = tuple(sorted((k, len(v)) for k, v in inst.items() if isinstance(v, tuple)))
        others = tuple(sorted((k, v) for k, v in inst.items()
                              if not isinstance(v, tuple) and k not in SIZE_PARAMS))
        if (ranks, others) in seen_ranks:
            continue
        seen_ranks.add((ranks, others))
        reader = _Reader(inst)
        try:
            sides = {}
            for side, p in (("lhs", axiom.lhs), ("rhs", axiom.rhs)):
                start = len(reader.conds)
                sh = reader.shape(p)
                sides[side] = (sh, reader.conds[start:])
        except (ShapeError, TypeError, z3.Z3Exception, IndexError, KeyError):
            continue
        where = [_eq(reader.value(a) if not isinstance(a, tuple) else
                     sum(reader.value(v) for v in a),
                     reader.value(b) if not isinstance(b, tuple) else
                     sum(reader.value(v) for v in b)) for a, b in axiom.where]
        for t in _triggers(axiom):
            o = "rhs" if t == "lhs" else "lhs"
            (ts, tc), (os_, oc) = sides[t], sides[o]
            goal = [_as_bool(c) for c in oc] + [_eq(a, b) for a, b in zip(ts, os_)]
            if len(ts) != len(os_):
                goal = [z3.BoolVal(False)]
            s = z3.Solver()
            # symbolic groups times channels is nonlinear: a short try, then the sizes as given
            s.set("timeout", 300 if reader.params else 2000)
            s.add(*reader.positive(), *where, *[_as_bool(c) for c in tc])
            s.add(z3.Not(z3.And(goal)) if goal else z3.BoolVal(False))
            r = s.check()
            if r == z3.unknown and reader.params:
                # nonlinear (groups times channels): decide it with the sizes as given
                s.add(*[q == self_v for q, self_v in
                        ((reader.params[n], inst[n]) for n in reader.params)])
                s.set("timeout", 2000)
                r = s.check()
            if r != z3.unsat:
                sizes = {}
                if r == z3.sat:
                    m = s.model()
                    sizes = {str(d): m.eval(d, model_completion=True).as_long()
                             for t_ in reader.dims.values() for d in t_
                             if isinstance(d, z3.ExprRef)}
                gaps.append({"direction": f"{t} -> {o}", "instance": inst, "sizes": sizes,
                             "result": str(r)})
    return gaps
