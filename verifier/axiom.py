"""The axiom record: one operator fact, as data.

An `Axiom` is a name, a one-line statement, two patterns (`lhs == rhs`, see verifier.terms), shape
conditions (`where`) and a `domain`: the concrete instances (a shape per tensor variable, a value
per parameter, every tensor dimension in 1..max_dim) on which it is validated against the
catalogue's reference semantics.  The same definition gives the Z3 formula (`builder()`):

    ForAll(vars, Implies(conditions, lhs == rhs), patterns=[the sides that bind every variable])

Shape facts go through `dim(t, k)`: a `Dim(x, k)` inside a trigger side becomes a bound integer
`d` with the condition `d == dim(x, k)`, so a split's sizes or a constant's shape must equal the
tensors' actual sizes for the axiom to fire.  Each side is a trigger (E-matching pattern) when it
binds every variable and holds no arithmetic (`Sum`, `Half`).  Guards (`where`) keep an axiom from
building ill-shaped terms.  The domains are in verifier/domains.py, the axioms themselves in
verifier/axioms.py.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterator

import z3

import verifier.z3ops as z3ops
from verifier.terms import Pat, Term, dims, has_arith, show, to_graph, to_z3, value, variables, \
    z3_env


@dataclass(frozen=True)
class Axiom:
    name: str
    statement: str
    lhs: Term
    rhs: Pat
    domain: Callable[[int], Iterator[dict]]   # max_dim -> candidate instances
    where: tuple = ()                          # ((a, b), ...): a == b; a tuple operand is a sum

    def builder(self) -> z3.BoolRef:
        """The axiom as a closed Z3 formula with E-matching patterns."""
        names = variables((self.lhs, self.rhs, self.where))
        env = z3_env(names)
        bound = [env[n] for n in names]
        conds = []
        for i, d in enumerate(dims((self.lhs, self.rhs))):
            env[d] = z3.Int(f"{self.name}.d{i}")
            bound.append(env[d])
            conds.append(env[d] == z3ops.DIM(env[d.var], to_z3(d.axis, env)))
        for a, b in self.where:
            conds.append(_z3_sum(a, env) == _z3_sum(b, env))
        body = to_z3(self.lhs, env) == to_z3(self.rhs, env)
        if conds:
            body = z3.Implies(z3.And(conds), body)
        patterns = [to_z3(side, env) for side in (self.lhs, self.rhs)
                    if isinstance(side, Term) and not has_arith(side)
                    and _binds_all(side, names, self.lhs, self.rhs)]
        return z3.ForAll(bound, body, patterns=patterns, qid=self.name)

    def holds_where(self, inst: dict) -> bool:
        return all(_sum(a, inst) == _sum(b, inst) for a, b in self.where)

    def graphs(self, inst: dict):
        """(lhs graph, rhs graph) for one instance; raises ShapeError if it does not fit."""
        return to_graph(self.lhs, inst), to_graph(self.rhs, inst)

    def instances(self, max_dim: int = 4, limit: int | None = None, seed: int = 0):
        """The domain's instances that meet `where` (a seeded uniform sample of `limit`)."""
        insts = (i for i in self.domain(max_dim) if self.holds_where(i))
        return list(insts) if limit is None else _sample(insts, limit, seed)

    def __str__(self) -> str:
        s = f"{show(self.lhs)} == {show(self.rhs)}"
        if self.where:
            s += " if " + ", ".join(f"{show(a)} == {show(b)}" for a, b in self.where)
        return s


def _binds_all(side, names, lhs, rhs) -> bool:
    have = set(variables(side)) | set(dims(side))
    return set(names) <= have and set(dims((lhs, rhs))) <= have


def _sum(a, inst):
    return sum(value(v, inst) for v in a) if isinstance(a, tuple) else value(a, inst)


def _z3_sum(a, env):
    return z3.Sum([_as_int(to_z3(v, env)) for v in a]) if isinstance(a, tuple) \
        else _as_int(to_z3(a, env))


def _as_int(v):
    return z3.IntVal(v) if isinstance(v, int) else v


def _sample(it, k: int, seed: int) -> list:
    """Reservoir sample (Algorithm R): uniform, one pass, seeded."""
    rng = random.Random(seed)
    out = []
    for n, x in enumerate(it):
        if n < k:
            out.append(x)
        else:
            j = rng.randrange(n + 1)
            if j < k:
                out[j] = x
    return out
