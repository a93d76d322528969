"""The operator axioms, as data.

An `Axiom` is a name, a one-line statement, two patterns (`lhs == rhs`, see verifier.terms), shape
conditions (`where`) and a `domain`: the concrete instances (a shape per tensor variable, a value
per parameter, every tensor dimension in 1..max_dim) on which it is validated against the
catalogue's reference semantics.  The same definition gives the Z3 formula (`builder()`):

    ForAll(vars, Implies(conditions, lhs == rhs), patterns=[the sides that bind every variable])

Shape facts go through `dim(t, k)`: a `Dim(x, k)` inside a trigger side becomes a bound integer
`d` with the condition `d == dim(x, k)`, so a split's sizes or a constant's shape must equal the
tensors' actual sizes for the axiom to fire.  Each side is a trigger (E-matching pattern) when it
binds every variable and holds no arithmetic (`Sum`, `Half`).  Guards (`where`) keep an axiom from
building ill-shaped terms: unguarded, `concat_ewmul` split products at two different seams and
looped.  The sizes of the terms an axiom creates come from the shape axioms (verifier/shapes.py).

The list covers TASO's verifier (its 44 axioms and lemmas, translated to this catalogue: split
takes explicit sizes, conv2d takes a stride tuple, padding and activation names, groups) plus the
facts this catalogue needs on top: fused matmul activation, concat associativity, concat of a
split, explicit groups (TASO infers them from channel counts, so its concat-of-convs-is-a-grouped-
conv fact is implicit; here it is `conv_concat_grouped`), and the facts the depth-3 rule set
needs (avg pooling is linear, split of elementwise ops, products with identity constants,
enlarge composition).  TASO's `pool_avg(identity conv kernel) == pool kernel` has no counterpart:
here the identity kernel is (C, C, kh, kw) and the pool kernel is depthwise (C, 1, kh, kw).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import product
from typing import Callable, Iterator

import z3

from verifier import z3ops
from verifier.terms import Dim, Half, Param, Pat, Sum, Term, Var, dims, has_arith, op, show, \
    to_z3, variables, z3_env, value, to_graph


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


# ---------------------------------------------------------------------------------------------
# variables and domains

x, y, z, w, v, r = (Var(n) for n in "xyzwvr")
s, t = Var("s"), Var("t")                     # scalars, shape ()
AX, KH, KW, SH, SW = (Param(n) for n in ("ax", "kh", "kw", "sh", "sw"))
PAD, ACT, N, S0, S1 = Param("pad"), Param("act"), Param("n"), Param("s0"), Param("s1")
G = Param("g")

RANKS = (1, 2, 3, 4)
STRIDES = ((1, 1), (1, 2), (2, 1), (2, 2))
PADS = ("same", "valid")


def _shapes(rank, m):
    return product(range(1, m + 1), repeat=rank)


def _with(shape, axis, k):
    return shape[:axis] + (k,) + shape[axis + 1:]


def ew(*names, ranks=RANKS, scalars=()):
    """Tensors of one shape (any rank), plus scalar tensors."""
    def dom(m):
        for rank in ranks:
            for sh in _shapes(rank, m):
                yield {**{n: sh for n in names}, **{c: () for c in scalars}}
    return dom


def cat(pairs, ranks=RANKS, axes=None, scalars=()):
    """Pairs of tensors that concatenate along `ax`: pairs=(("x","y"),("z","w")) gives x,z one
    shape and y,w the same shape but for the axis."""
    def dom(m):
        for rank in ranks:
            for ax in range(rank) if axes is None else [a for a in axes if a < rank]:
                for sh in _shapes(rank, m):
                    for k in range(1, m + 1):
                        inst = {"ax": ax, **{c: () for c in scalars}}
                        for a, b in pairs:
                            inst[a], inst[b] = sh, _with(sh, ax, k)
                        yield inst
    return dom


def mm(chain, ranks=(2, 3, 4), extra=None, scalars=()):
    """Batched matmul operands: chain=("x","y","z") gives x (b..,n0,n1), y (b..,n1,n2), ..."""
    def dom(m):
        for rank in ranks:
            for batch in _shapes(rank - 2, m):
                for ns in _shapes(len(chain) + 1, m):
                    inst = {c: () for c in scalars}
                    for i, name in enumerate(chain):
                        inst[name] = batch + (ns[i], ns[i + 1])
                    if extra:
                        extra(inst, batch, ns)
                    yield inst
    return dom


def conv(acts=("none",), kernels=None, pads=PADS, strides=STRIDES, more=None):
    """x (n,c,h,w), w (co,c,kh,kw) and the conv parameters; `more(inst, m)` yields variants."""
    def dom(m):
        ks = kernels or range(1, m + 1)
        for n, c, h, wd, co in _shapes(5, m):
            for kh, kw in product(ks, repeat=2):
                for (sh, sw), pad, act in product(strides, pads, acts):
                    inst = {"x": (n, c, h, wd), "w": (co, c, kh, kw), "sh": sh, "sw": sw,
                            "pad": pad, "act": act, "kh": kh, "kw": kw}
                    if more:
                        yield from more(inst, m)
                    else:
                        yield inst
    return dom


def _conv(a, b, act=ACT, pad=PAD, **kw):
    return op("conv2d", a, b, stride=(SH, SW), padding=pad, activation=act, **kw)


def _pool(kind, a):
    return op(f"pool_{kind}", a, kernel=(KH, KW), stride=(SH, SW), padding=PAD)


def pooled(axis):
    def dom(m):
        for inst in cat((("x", "y"),), ranks=(4,), axes=(axis,))(m):
            for kh, kw in product(range(1, m + 1), repeat=2):
                for (sh, sw), pad in product(STRIDES, PADS):
                    yield {**inst, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "pad": pad}
    return dom


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


# ---------------------------------------------------------------------------------------------
# the axioms

def _grouped(inst, m):      # plain (groups 1) and depthwise (groups = channels) convs
    yield {**inst, "g": 1}
    n, c, h, wd = inst["x"]
    if c > 1 and inst["w"][0] % c == 0:
        yield {**inst, "g": c, "w": (inst["w"][0], 1) + inst["w"][2:]}


def _dup_input(inst, m):     # conv over concat(x, x) in 2 groups: w has x's channels
    if inst["w"][0] % 2 == 0:
        yield inst


def _channel_split(inst, m):   # x,y inputs and w,v kernels that split the input channels
    n, c, h, wd = inst["x"]
    co, _, kh, kw = inst["w"]
    for c2 in range(1, m + 1):
        yield {**inst, "y": (n, c2, h, wd), "v": (co, c2, kh, kw)}


def _twin_groups(inst, m):   # x, y inputs of one shape; w, v kernels of one shape; any groups
    for j in _grouped(inst, m):
        yield {**j, "y": j["x"], "v": j["w"]}


def _same_shape(a, b, rank=4):
    return tuple((Dim(a, k), Dim(b, k)) for k in range(rank))


def _same_axes(a, b, axes):
    """Guards that keep an axiom from equating a typed term with an ill-typed one: the
    trigger side's typing alone would let these sizes differ (two kernels of other windows
    whose strided convs happen to agree in size, two inputs that pool to one size ...).
    `verifier.axiom_typing` finds such gaps; `tests/test_axiom_typing.py` keeps them closed."""
    return tuple((Dim(a, k), Dim(b, k)) for k in axes)


def _batch_split(inst, m):
    for n2 in range(1, m + 1):
        yield {**inst, "y": _with(inst["x"], 0, n2)}


def _out_split(inst, m):
    for co2 in range(1, m + 1):
        yield {**inst, "v": _with(inst["w"], 0, co2)}


def _enlarged(inst, m):
    _, _, kh, kw = inst["w"]
    for r0, r1, rh, rw in _shapes(4, m):
        if rh >= kh and rw >= kw and (rh - kh) % 2 == 0 and (rw - kw) % 2 == 0:
            yield {**inst, "r": (r0, r1, rh, rw)}


def _enlarge_cat(m):
    for inst in cat((("w", "v"),), ranks=(4,), axes=(0, 1))(m):
        for rh, rw in _shapes(2, m):
            kh, kw = inst["w"][2:]
            if rh >= kh and rw >= kw and (rh - kh) % 2 == 0 and (rw - kw) % 2 == 0:
                yield {**inst, "r": (1, 1, rh, rw)}


def _geometry(m):
    for rank in (2, 3, 4):
        for sh in _shapes(rank, m):
            for b, c in _shapes(2, m):
                yield {"x": sh, "y": _with(sh, 1, b), "z": _with(sh, 0, c),
                       "w": _with(_with(sh, 0, c), 1, b)}


def _cat3(m):
    for inst in cat((("x", "y"),))(m):
        for k in range(1, m + 1):
            yield {**inst, "z": _with(inst["x"], inst["ax"], k)}


def _splits(m):
    for rank in RANKS:
        for ax in range(rank):
            for sh in _shapes(rank, m):
                for s0 in range(1, sh[ax]):
                    yield {"x": sh, "ax": ax, "s0": s0, "s1": sh[ax] - s0}


def _split_pairs(m):
    for inst in _splits(m):
        yield {**inst, "y": inst["x"]}


def pooled_ew(*names, scalars=()):
    """Activations of one shape (NCHW) and the pooling parameters."""
    def dom(m):
        for inst in ew(*names, ranks=(4,), scalars=scalars)(m):
            for kh, kw in product(range(1, m + 1), repeat=2):
                for (sh, sw), pad in product(STRIDES, PADS):
                    yield {**inst, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "pad": pad}
    return dom


def _pool_1x1(m):
    for inst in pooled_ew("x")(m):
        for co in range(1, m + 1):
            yield {**inst, "w": (co, inst["x"][1], 1, 1)}


def _square_kernels(m):
    for n in range(1, m + 1):
        for kh, kw in product(range(1, m + 1, 2), repeat=2):
            yield {"n": n, "kh": kh, "kw": kw}


def _square_pair(m):
    for n in range(1, m + 1):
        yield {"n": n, "x": (n, n), "y": (n, n)}


def _enlarged_twice(m):
    for o, i, kh, kw in _shapes(4, m):
        for rh, rw, vh, vw in _shapes(4, m):
            pairs = ((kh, rh), (kw, rw), (rh, vh), (rw, vw))
            if all(a <= b and (b - a) % 2 == 0 for a, b in pairs):
                yield {"w": (o, i, kh, kw), "r": (1, 1, rh, rw), "v": (1, 1, vh, vw)}


def _square(m):
    for n in range(1, m + 1):
        yield {"n": n}


def _mat(m):
    for sh in _shapes(2, m):
        yield {"x": sh}


def _ones(rank):
    def ax(r):
        return Axiom(f"ones_ewmul_r{r}", f"x * ones = x (rank {r})",
                     mul(x, op("ones", shape=tuple(Dim("x", k) for k in range(r)))), x,
                     ew("x", ranks=(r,)))
    return ax(rank)


def _relu_smul_ones(rank):
    shape = tuple(Param(f"d{k}") for k in range(rank))

    def dom(m):
        for sh in _shapes(rank, m):
            yield {**{f"d{k}": d for k, d in enumerate(sh)}, "s": ()}
    return Axiom(f"relu_smul_ones_r{rank}", f"relu(ones * s) = ones * relu(s) (rank {rank})",
                 relu(smul(op("ones", shape=shape), s)), smul(op("ones", shape=shape), relu(s)),
                 dom)


def _split(i):
    return op("split", concat(x, y), axis=AX, sizes=(Dim("x", AX), Dim("y", AX)), out=i)


AXIOMS: list[Axiom] = [
    # ewadd and ewmul: associative, commutative, distributive
    Axiom("ewadd_assoc", "ewadd is associative",
          add(x, add(y, z)), add(add(x, y), z), ew("x", "y", "z")),
    Axiom("ewadd_comm", "ewadd is commutative", add(x, y), add(y, x), ew("x", "y")),
    Axiom("ewmul_assoc", "ewmul is associative",
          mul(x, mul(y, z)), mul(mul(x, y), z), ew("x", "y", "z")),
    Axiom("ewmul_comm", "ewmul is commutative", mul(x, y), mul(y, x), ew("x", "y")),
    Axiom("ewmul_ewadd_distrib", "ewmul distributes over ewadd",
          mul(add(x, y), z), add(mul(x, z), mul(y, z)), ew("x", "y", "z")),
    # scalar mul
    Axiom("smul_assoc", "scalar mul is associative",
          smul(smul(x, s), t), smul(x, smul(s, t)), ew("x", scalars="st")),
    Axiom("smul_ewadd", "scalar mul distributes over ewadd",
          smul(add(x, y), s), add(smul(x, s), smul(y, s)), ew("x", "y", scalars="s")),
    Axiom("smul_ewmul", "scalar mul commutes with ewmul",
          smul(mul(x, y), s), mul(x, smul(y, s)), ew("x", "y", scalars="s")),
    Axiom("smul_transpose", "scalar mul commutes with transpose",
          smul(tr(x), s), tr(smul(x, s)), ew("x", ranks=(2,), scalars="s")),
    Axiom("smul_matmul", "scalar mul commutes with matmul",
          smul(mat(x, y), s), mat(x, smul(y, s)), mm("xy", scalars="s")),
    Axiom("smul_matmul_left", "scalar mul moves into a matmul's first argument",
          smul(mat(x, y), s), mat(smul(x, s), y), mm("xy", scalars="s")),
    Axiom("smul_concat", "scalar mul distributes over concat",
          smul(concat(x, y), s), concat(smul(x, s), smul(y, s)),
          cat((("x", "y"),), scalars="s")),
    Axiom("smul_conv_kernel", "a scalar moves from a conv's input to its kernel",
          _conv(smul(x, s), w, groups=G), _conv(x, smul(w, s), groups=G),
          conv(acts=("none", "relu"), more=lambda i, m: ({**j, "s": ()} for j in _grouped(i, m)))),
    Axiom("smul_conv_out", "a scalar moves from a conv's output to its input",
          smul(_conv(x, w, act="none", groups=G), s), _conv(smul(x, s), w, act="none", groups=G),
          conv(more=lambda i, m: ({**j, "s": ()} for j in _grouped(i, m)))),
    # relu
    Axiom("relu_conv_fuse", "relu after a (grouped) conv is the conv's fused relu",
          relu(_conv(x, w, act="none", groups=G)), _conv(x, w, act="relu", groups=G),
          conv(more=_grouped)),
    Axiom("relu_matmul_fuse", "relu after a matmul is the matmul's fused relu",
          relu(mat(x, y)), mat(x, y, act="relu"), mm("xy")),
    Axiom("relu_idempotent", "relu applied twice is relu (catalogue: IDEMPOTENT)",
          relu(relu(x)), relu(x), ew("x")),
    Axiom("relu_concat", "relu distributes over concat",
          relu(concat(x, y)), concat(relu(x), relu(y)), cat((("x", "y"),))),
    Axiom("relu_transpose", "relu commutes with transpose",
          relu(tr(x)), tr(relu(x)), ew("x", ranks=(2,))),
    # conv
    Axiom("conv_ewadd_kernel", "conv is linear in its kernel",
          _conv(x, add(w, v), act="none", groups=G),
          add(_conv(x, w, act="none", groups=G), _conv(x, v, act="none", groups=G)),
          conv(more=lambda i, m: ({**j, "v": j["w"]} for j in _grouped(i, m))),
          where=_same_shape("w", "v")),
    Axiom("conv_ewadd_input", "conv is linear in its input",
          _conv(add(x, y), w, act="none", groups=G),
          add(_conv(x, w, act="none", groups=G), _conv(y, w, act="none", groups=G)),
          conv(more=lambda i, m: ({**j, "y": j["x"]} for j in _grouped(i, m))),
          where=_same_shape("x", "y")),
    Axiom("conv_concat_sum", "a sum of convs is one conv over concatenated channels",
          add(_conv(x, w, act="none"), _conv(y, v, act="none")),
          _conv(concat(x, y, axis=1), concat(w, v, axis=1), act="none"),
          conv(more=_channel_split),
          # and, read right to left, the channel seams line up
          where=_same_axes("x", "y", (0, 2, 3)) + _same_axes("w", "v", (0, 2, 3))
          + ((Dim("x", 1), Dim("w", 1)),)),
    Axiom("conv_concat_batch", "convs of two inputs with one kernel concat along the batch",
          concat(_conv(x, w), _conv(y, w), axis=0), _conv(concat(x, y, axis=0), w),
          conv(acts=("none", "relu"), more=_batch_split), where=_same_axes("x", "y", (1, 2, 3))),
    Axiom("conv_concat_kernels", "convs of one input with two kernels concat along channels",
          concat(_conv(x, w), _conv(x, v), axis=1), _conv(x, concat(w, v, axis=0)),
          conv(acts=("none", "relu"), more=_out_split), where=_same_axes("w", "v", (1, 2, 3))),
    Axiom("conv_concat_grouped", "convs of two inputs with two kernels concat along channels "
          "into one conv with twice the groups",
          concat(_conv(x, w, groups=G), _conv(y, v, groups=G), axis=1),
          _conv(concat(x, y, axis=1), concat(w, v, axis=0), groups=Sum((G, G))),
          conv(acts=("none", "relu"), more=_twin_groups),
          where=_same_shape("x", "y") + _same_shape("w", "v")),
    Axiom("conv_concat_same_input", "a conv in 2 groups over an input concatenated with itself "
          "is the plain conv",
          _conv(concat(x, x, axis=1), w, groups=2), _conv(x, w, groups=1),
          conv(acts=("none", "relu"), more=_dup_input),
          # read right to left, 2 groups need an even number of output channels
          where=((Dim("w", 0), (Half(Dim("w", 0)), Half(Dim("w", 0)))),)),
    # matmul
    Axiom("matmul_assoc", "matmul is associative",
          mat(x, mat(y, z)), mat(mat(x, y), z), mm("xyz")),
    Axiom("matmul_ewadd", "matmul is linear in its second argument",
          mat(x, add(y, z)), add(mat(x, y), mat(x, z)),
          mm("xy", extra=lambda i, b, n: i.update(z=i["y"]))),
    Axiom("matmul_concat_sum", "a sum of matmuls is one matmul over concatenated operands",
          add(mat(x, y), mat(z, w)), mat(concat(x, z, axis=1), concat(y, w, axis=0)),
          mm("xy", ranks=(2,), extra=lambda i, b, n: [
              i.update(z=(n[0], k), w=(k, n[2])) for k in [max(1, n[1] - 1)]]),
          # read right to left, the seams must line up: typed operands of the one matmul do
          # not make the two products typed (x (2,1), z (2,2) against y (1,1), w (2,1))
          where=((Dim("x", 1), Dim("y", 0)),)),
    Axiom("matmul_concat_cols", "matmul distributes over a concat of columns",
          mat(x, concat(y, z, axis=1)), concat(mat(x, y), mat(x, z), axis=1),
          mm("xy", ranks=(2,), extra=lambda i, b, n: i.update(z=(n[1], n[0])))),
    Axiom("matmul_ewadd_left", "matmul is linear in its first argument",
          mat(add(x, y), z), add(mat(x, z), mat(y, z)),
          mm("xz", extra=lambda i, b, n: i.update(y=i["x"]))),
    Axiom("matmul_concat_rows", "matmul distributes over a concat of rows",
          mat(concat(x, y, axis=0), z), concat(mat(x, z), mat(y, z), axis=0),
          mm("xz", ranks=(2,), extra=lambda i, b, n: i.update(y=(n[2], n[1])))),
    # concat with elementwise ops
    # (the seam guard keeps the right side from splitting a product at two different seams)
    Axiom("concat_ewadd", "concat of sums is the sum of concats",
          concat(add(x, y), add(z, w)), add(concat(x, z), concat(y, w)),
          cat((("x", "z"), ("y", "w"))), where=((Dim("x", AX), Dim("y", AX)),)),
    Axiom("concat_ewmul", "concat of products is the product of concats",
          concat(mul(x, y), mul(z, w)), mul(concat(x, z), concat(y, w)),
          cat((("x", "z"), ("y", "w"))), where=((Dim("x", AX), Dim("y", AX)),)),
    Axiom("concat_assoc", "concat is associative",
          concat(concat(x, y), z), concat(x, concat(y, z)),
          _cat3),
    Axiom("concat3_nest", "a three-way concat is two nested concats",
          concat(x, y, z), concat(concat(x, y), z),
          _cat3),
    # split
    Axiom("split_concat_0", "splitting a concat at its seam gives its first input",
          _split(0), x, cat((("x", "y"),))),
    Axiom("split_concat_1", "splitting a concat at its seam gives its second input",
          _split(1), y, cat((("x", "y"),))),
    Axiom("concat_split", "concatenating a split's pieces gives the split tensor",
          concat(op("split", x, axis=AX, sizes=(S0, S1), out=0),
                 op("split", x, axis=AX, sizes=(S0, S1), out=1)), x, _splits,
          where=(((S0, S1), Dim("x", AX)),)),
    # transpose
    Axiom("transpose_involution", "transposing twice is the identity",
          tr(tr(x)), x, ew("x", ranks=(2,))),
    Axiom("transpose_matmul", "the transpose of a product is the product of transposes",
          tr(mat(x, y)), mat(tr(y), tr(x)), mm("xy", ranks=(2,))),
    Axiom("transpose_concat", "the transpose of a row concat is a column concat",
          tr(concat(x, y, axis=0)), concat(tr(x), tr(y), axis=1),
          cat((("x", "y"),), ranks=(2,), axes=(0,))),
    Axiom("transpose_concat_cols", "the transpose of a column concat is a row concat",
          tr(concat(x, y, axis=1)), concat(tr(x), tr(y), axis=0),
          cat((("x", "y"),), ranks=(2,), axes=(1,))),
    Axiom("transpose_ewadd", "transpose distributes over ewadd",
          tr(add(x, y)), add(tr(x), tr(y)), ew("x", "y", ranks=(2,))),
    Axiom("transpose_ewmul", "transpose distributes over ewmul",
          tr(mul(x, y)), mul(tr(x), tr(y)), ew("x", "y", ranks=(2,))),
    # concat geometry
    Axiom("concat_geometry", "a 2x2 block tensor concats rows-then-columns or columns-then-rows",
          concat(concat(x, y, axis=1), concat(z, w, axis=1), axis=0),
          concat(concat(x, z, axis=0), concat(y, w, axis=0), axis=1), _geometry,
          where=((Dim("x", 1), Dim("z", 1)), (Dim("x", 0), Dim("y", 0)))),
    # pooling with concat
    Axiom("pool_avg_concat_channels", "avg pooling distributes over a channel concat",
          concat(_pool("avg", x), _pool("avg", y), axis=1), _pool("avg", concat(x, y, axis=1)),
          pooled(1), where=_same_axes("x", "y", (0, 2, 3))),
    Axiom("pool_avg_concat_batch", "avg pooling distributes over a batch concat",
          concat(_pool("avg", x), _pool("avg", y), axis=0), _pool("avg", concat(x, y, axis=0)),
          pooled(0), where=_same_axes("x", "y", (1, 2, 3))),
    Axiom("pool_max_concat_channels", "max pooling distributes over a channel concat",
          concat(_pool("max", x), _pool("max", y), axis=1), _pool("max", concat(x, y, axis=1)),
          pooled(1), where=_same_axes("x", "y", (0, 2, 3))),
    Axiom("pool_max_concat_batch", "max pooling distributes over a batch concat",
          concat(_pool("max", x), _pool("max", y), axis=0), _pool("max", concat(x, y, axis=0)),
          pooled(0), where=_same_axes("x", "y", (1, 2, 3))),
    # avg pooling is linear
    Axiom("pool_avg_ewadd", "avg pooling distributes over ewadd",
          _pool("avg", add(x, y)), add(_pool("avg", x), _pool("avg", y)), pooled_ew("x", "y"),
          where=_same_shape("x", "y")),
    Axiom("pool_avg_smul", "avg pooling commutes with scalar mul",
          _pool("avg", smul(x, s)), smul(_pool("avg", x), s), pooled_ew("x", scalars="s")),
    Axiom("pool_avg_conv1x1", "avg pooling commutes with a 1x1 conv (channel mixing)",
          op("conv2d", _pool("avg", x), w), _pool("avg", op("conv2d", x, w)), _pool_1x1,
          where=((Dim("w", 2), 1), (Dim("w", 3), 1))),
    # split of elementwise ops
    *[Axiom(f"split_{o}_{i}", f"piece {i} of a split {o} is the {o} of the pieces",
            op("split", op(o, x, y), axis=AX, sizes=(S0, S1), out=i),
            op(o, op("split", x, axis=AX, sizes=(S0, S1), out=i),
               op("split", y, axis=AX, sizes=(S0, S1), out=i)),
            _split_pairs)
      for o in ("ewadd", "ewmul") for i in (0, 1)],
    # constants
    Axiom("eye_ewmul_idempotent", "the identity matrix times itself (elementwise) is itself",
          mul(op("eye", shape=(N, N)), op("eye", shape=(N, N))), op("eye", shape=(N, N)),
          _square),
    Axiom("eye_conv_ewmul_idempotent", "the identity kernel times itself (elementwise) is itself",
          mul(op("eye_conv", shape=(N, N, KH, KW)), op("eye_conv", shape=(N, N, KH, KW))),
          op("eye_conv", shape=(N, N, KH, KW)), _square_kernels),
    Axiom("diagonal_matmul", "a product of diagonal matrices is their elementwise product",
          mat(mul(x, op("eye", shape=(N, N))), mul(y, op("eye", shape=(N, N)))),
          mul(mul(x, y), op("eye", shape=(N, N))), _square_pair),
    Axiom("diagonal_transpose", "the diagonal of a matrix is the diagonal of its transpose",
          mul(tr(x), op("eye", shape=(N, N))), mul(x, op("eye", shape=(N, N))), _square_pair),
    *[_relu_smul_ones(k) for k in RANKS],
    Axiom("pool_kernel_conv", "a depthwise conv with the pool kernel is avg pooling",
          op("conv2d", x, op("pool_kernel", shape=(Dim("x", 1), 1, KH, KW)), stride=(SH, SW),
             padding=PAD, activation="none", groups=Dim("x", 1)),
          _pool("avg", x), conv()),
    Axiom("eye_conv_identity", "a conv with the identity kernel is the identity",
          op("conv2d", x, op("eye_conv", shape=(Dim("x", 1), Dim("x", 1), KH, KW)),
             stride=(1, 1), padding="same", activation="none"), x,
          conv(kernels=(1, 3), strides=((1, 1),), pads=("same",))),
    Axiom("eye_matmul_right", "x @ I = x",
          mat(x, op("eye", shape=(Dim("x", 1), Dim("x", 1)))), x, _mat),
    Axiom("eye_matmul_left", "I @ x = x",
          mat(op("eye", shape=(Dim("x", 0), Dim("x", 0))), x), x, _mat),
    Axiom("transpose_eye", "the identity matrix is symmetric",
          tr(op("eye", shape=(N, N))), op("eye", shape=(N, N)), _square),
    *[_ones(k) for k in RANKS],
    # enlarge (TASO's commented-out enlarge axioms, for this catalogue's enlarge(w, like))
    Axiom("enlarge_ewadd", "enlarge distributes over ewadd",
          op("enlarge", add(w, v), r), add(op("enlarge", w, r), op("enlarge", v, r)),
          conv(pads=("same",), strides=((1, 1),), more=lambda i, m: (
              {**j, "v": j["w"]} for j in _enlarged(i, m))), where=_same_axes("w", "v", (2, 3))),
    Axiom("enlarge_ewmul", "enlarge distributes over ewmul",
          op("enlarge", mul(w, v), r), mul(op("enlarge", w, r), op("enlarge", v, r)),
          conv(pads=("same",), strides=((1, 1),), more=lambda i, m: (
              {**j, "v": j["w"]} for j in _enlarged(i, m))), where=_same_axes("w", "v", (2, 3))),
    Axiom("enlarge_smul", "enlarge commutes with scalar mul",
          op("enlarge", smul(w, s), r), smul(op("enlarge", w, r), s),
          conv(pads=("same",), strides=((1, 1),), more=lambda i, m: (
              {**j, "s": ()} for j in _enlarged(i, m)))),
    Axiom("enlarge_concat", "enlarge distributes over a concat of kernels (axis 0 or 1)",
          op("enlarge", concat(w, v), r), concat(op("enlarge", w, r), op("enlarge", v, r)),
          _enlarge_cat, where=_same_axes("w", "v", (2, 3))),
    Axiom("enlarge_relu", "enlarge commutes with relu (relu(0) = 0)",
          op("enlarge", relu(w), r), relu(op("enlarge", w, r)),
          conv(pads=("same",), strides=((1, 1),), more=_enlarged)),
    Axiom("enlarge_enlarge", "enlarging twice is enlarging to the final size",
          op("enlarge", op("enlarge", w, r), v), op("enlarge", w, v), _enlarged_twice),
    # enlarge
    Axiom("enlarge_conv", "zero-padding a kernel (centred) does not change a same-padded conv",
          _conv(x, w, pad="same"), _conv(x, op("enlarge", w, r), pad="same"),
          conv(acts=("none", "relu"), pads=("same",), more=_enlarged)),
]


BY_NAME = {a.name: a for a in AXIOMS}
assert len(BY_NAME) == len(AXIOMS), "axiom names must be unique"


def compiled() -> list[tuple[str, z3.BoolRef]]:
    """(name, formula) of every axiom, built once per process (Z3 terms are not picklable)."""
    global _COMPILED
    if _COMPILED is None:
        from verifier.shapes import SHAPE_AXIOMS
        _COMPILED = [(a.name, a.builder()) for a in AXIOMS + SHAPE_AXIOMS]
    return _COMPILED


_COMPILED = None
