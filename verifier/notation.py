"""The names the axioms are written in: tensor and parameter variables, and shorthands for the
common operators (`add(x, y)` is `op("ewadd", x, y)`).  Shared by the operator axioms
(verifier/axioms.py) and the shape axioms (verifier/shapes.py).
"""
from __future__ import annotations

from verifier.terms import Param, Var, op

x, y, z, w, v, r = (Var(n) for n in "xyzwvr")
s, t = Var("s"), Var("t")                     # scalars, shape ()
AX, KH, KW, SH, SW = (Param(n) for n in ("ax", "kh", "kw", "sh", "sw"))
PAD, ACT, N, S0, S1 = Param("pad"), Param("act"), Param("n"), Param("s0"), Param("s1")
G = Param("g")
b, c = Var("b"), Var("c")                     # bias vectors
BX = Param("bx")                              # the axis a bias is added along


def bias(a, vec, act="none", axis=BX):
    return op("bias_add", a, vec, axis=axis, activation=act)


def gap(a):
    return op("pool_global_avg", a)


def smul(a, b):
    return op("scalar_mul", a, b)


def add(a, b):
    return op("ewadd", a, b)


def mul(a, b):
    return op("ewmul", a, b)


def concat(*xs, axis=AX):
    return op("concat", *xs, axis=axis)


def mat(a, b, act="none"):
    return op("matmul", a, b, activation=act)


def tr(a):
    return op("transpose", a, perm=(1, 0))


def relu(a):
    return op("relu", a)
