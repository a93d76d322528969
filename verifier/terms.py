"""Axiom patterns: small terms over tensor variables, parameter variables and shape facts.

One pattern serves two readings, so that an axiom is written once:

- `to_z3`: a Z3 term over the uninterpreted operator symbols of `verifier.z3ops`
  (tensor variables are constants of sort T, parameters are Z3 ints, `Dim(x, k)` is `dim(x, k)`);
- `to_graph`: a concrete envcore Graph, for an *instance* that gives every tensor variable a shape
  and every parameter a value; it runs on the catalogue's reference semantics.

    x, y = Var("x"), Var("y"); AX = Param("ax")
    op("split", op("concat", x, y, axis=AX), axis=AX, sizes=(Dim(x, AX), Dim(y, AX)), out=0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import z3

from envcore.graph import Graph, GraphBuilder, Ref
import verifier.z3ops as z3ops


@dataclass(frozen=True)
class Var:
    """A tensor variable."""
    name: str


@dataclass(frozen=True)
class Param:
    """An operator-parameter variable (an int, a string choice such as padding)."""
    name: str


@dataclass(frozen=True)
class Dim:
    """The size of tensor variable `var` along `axis` (an int or a Param)."""
    var: str
    axis: Union[int, Param]


@dataclass(frozen=True)
class Sum:
    """A parameter value that is the sum of others (e.g. groups=Sum(G, G) for twice G's groups).
    A side holding arithmetic is never an E-matching trigger: Z3 cannot match it."""
    parts: tuple


@dataclass(frozen=True)
class Half:
    """A parameter value that is half of another (the other is even wherever the axiom applies)."""
    part: object


ARITH = (Sum, Half)


@dataclass(frozen=True)
class Term:
    op: str
    args: tuple
    params: tuple          # sorted (name, value) pairs; values may hold Param/Dim
    out: int = 0


Pat = Union[Var, Term]


def op(name: str, *args: Pat, out: int = 0, **params: Any) -> Term:
    return Term(name, tuple(args), tuple(sorted(params.items())), out)


# ---------------------------------------------------------------------------------------------
# structure

def parts(p):
    """Every sub-pattern of a pattern (or a param value), depth first, in order."""
    yield p
    if isinstance(p, Dim):
        yield from parts(p.axis)
    elif isinstance(p, Sum):
        yield from parts(p.parts)
    elif isinstance(p, Half):
        yield from parts(p.part)
    elif isinstance(p, Term):
        yield from parts(p.args)
        for _, v in p.params:
            yield from parts(v)
    elif isinstance(p, (tuple, list)):
        for v in p:
            yield from parts(v)


def variables(p) -> dict:
    """name -> Var/Param of every variable in a pattern (or a param value), in order."""
    acc: dict = {}
    for q in parts(p):
        if isinstance(q, (Var, Param)):
            acc.setdefault(q.name, q)
        elif isinstance(q, Dim):
            acc.setdefault(q.var, Var(q.var))
    return acc


def dims(p) -> list:
    """Every distinct Dim in a pattern, in order."""
    acc: list = []
    for q in parts(p):
        if isinstance(q, Dim) and q not in acc:
            acc.append(q)
    return acc


def has_arith(p) -> bool:
    if isinstance(p, ARITH):
        return True
    if isinstance(p, Term):
        return any(has_arith(a) for a in p.args) or any(has_arith(v) for _, v in p.params)
    if isinstance(p, (tuple, list)):
        return any(has_arith(v) for v in p)
    return False


def show(p) -> str:
    if isinstance(p, (Var, Param)):
        return p.name
    if isinstance(p, Sum):
        return "+".join(show(v) for v in p.parts)
    if isinstance(p, Half):
        return f"{show(p.part)}/2"
    if isinstance(p, Dim):
        return f"|{p.var}|{show(p.axis)}"
    if isinstance(p, (tuple, list)):
        return "(" + ",".join(show(v) for v in p) + ")"
    if isinstance(p, Term):
        ps = [f"{k}={show(v)}" for k, v in p.params]
        s = f"{p.op}(" + ", ".join([show(a) for a in p.args] + ps) + ")"
        return s + (f"[{p.out}]" if p.op == "split" else "")
    return repr(p)


# ---------------------------------------------------------------------------------------------
# the concrete reading

def _value(v, inst: dict):
    if isinstance(v, Param):
        return inst[v.name]
    if isinstance(v, Dim):
        return inst[v.var][_value(v.axis, inst)]
    if isinstance(v, Sum):
        return sum(_value(x, inst) for x in v.parts)
    if isinstance(v, Half):
        return _value(v.part, inst) // 2
    if isinstance(v, (tuple, list)):
        return tuple(_value(x, inst) for x in v)
    return v


def value(v, inst: dict):
    """A parameter value (or condition operand) under an instance."""
    return _value(v, inst)


def _build(b: GraphBuilder, p: Pat, inst: dict, leaves: dict) -> Ref:
    if isinstance(p, Var):
        if p.name not in leaves:
            leaves[p.name] = b.input(p.name, tuple(inst[p.name]))
        return leaves[p.name]
    args = [_build(b, a, inst, leaves) for a in p.args]
    res = b.add(p.op, *args, **{k: _value(v, inst) for k, v in p.params})
    return res if isinstance(res, Ref) else res[p.out]


def to_graph(p: Pat, inst: dict) -> Graph:
    """The pattern as a graph of `input` leaves named by its variables (raises ShapeError when
    the instance's shapes do not fit)."""
    b = GraphBuilder()
    out = _build(b, p, inst, {})
    return b.build([out])


# ---------------------------------------------------------------------------------------------
# the symbolic reading

def to_z3(p, env: dict):
    """env: variable name -> Z3 constant (sort T for Var, Int for Param); Dims in `env` (keyed
    by the Dim itself) are used as they are, others become dim(x, k)."""
    if isinstance(p, (Var, Param)):
        return env[p.name]
    if isinstance(p, Dim):
        if p in env:
            return env[p]
        return z3ops.DIM(env[p.var], to_z3(p.axis, env))
    if isinstance(p, Sum):
        return z3.Sum([z3.IntVal(v) if isinstance(v, int) else v for v in to_z3(p.parts, env)])
    if isinstance(p, Half):
        part = to_z3(p.part, env)
        return part // 2 if isinstance(part, int) else part / 2      # Z3 int division
    if isinstance(p, (tuple, list)):
        return tuple(to_z3(v, env) for v in p)
    if isinstance(p, int) and not isinstance(p, bool):
        return p
    if isinstance(p, str):
        return p
    if isinstance(p, Term):
        args = [to_z3(a, env) for a in p.args]
        params = {k: to_z3(v, env) for k, v in p.params}
        return z3ops.apply(p.op, params, args, p.out)
    raise TypeError(f"not a pattern: {p!r}")


def z3_env(names: dict) -> dict:
    """Fresh Z3 constants for the variables `names` (from `variables`)."""
    return {n: (z3.Const(n, z3ops.T) if isinstance(v, Var) else z3.Int(n))
            for n, v in names.items()}
