"""Shape axioms: `dim` of the terms an axiom creates, checked against the catalogue's shape rules.

A rule's own tensors get `dim(t, k) == size` asserted directly (`z3ops.dim_facts`), plus the rank
marker `dim(t, rank) == 0` (no axis past the last).  Terms that an axiom instance creates have no
such facts; the shape axioms below give them, so that a guard (a split's seam, a concat's sizes)
can see through ops applied after a concat.  Each is E-matched on `dim(op(..), k)` and fires only
when a guard asks.

They restate the catalogue's shape rules, so they are validated like the operator axioms:
`validate_shape_axiom` runs the catalogue's `OpDef.infer` (through `pattern.to_graph`) on concrete
shapes and has Z3 show that the shape axiom, given only the inputs' sizes and rank markers,
entails exactly those output sizes on every axis it covers (and is consistent with them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import z3

from envcore.ops import ShapeError
import verifier.z3ops as z3ops
from verifier.axiom import Axiom
from verifier.domains import biased, cat, conv, enlarged, ew, grouped, mm
from verifier.notation import ACT, BX, G, PAD, SH, SW, b, concat, relu, tr, x, y, w, r
from verifier.terms import Term, Var, op, to_graph, to_z3, variables, z3_env


@dataclass(frozen=True)
class ShapeAxiom:
    name: str
    statement: str
    lhs: Term                                   # dim(lhs, k) == rhs_of(env, k)
    rhs_of: Callable[[dict, z3.ArithRef], z3.ArithRef]
    domain: Callable[[int], Iterator[dict]]     # max_dim -> instances (as for `Axiom`)
    axes: tuple[int, ...] | None = None         # the axes it determines (None: all, and the marker)

    def builder(self) -> z3.BoolRef:
        names = variables(self.lhs)
        env = z3_env(names)
        k = z3.Int("k")
        d = z3ops.DIM(to_z3(self.lhs, env), k)
        return z3.ForAll([env[n] for n in names] + [k], d == self.rhs_of(env, k),
                         patterns=[d], qid=self.name)

    def instances(self, max_dim: int = 3, limit: int | None = 40, seed: int = 0) -> list:
        probe = Axiom(self.name, self.statement, self.lhs, self.lhs, self.domain)
        return probe.instances(max_dim, limit, seed)


def _D(env, n, k):
    return z3ops.DIM(env[n], k)


def _conv_dim(e, k):   # batch of x, out channels of w; the image size is not restated
    own = z3ops.DIM(z3ops.apply("conv2d", {"stride": (e["sh"], e["sw"]), "padding": e["pad"],
                                           "activation": e["act"], "groups": e["g"]},
                                [e["x"], e["w"]]), k)
    return z3.If(k == 0, _D(e, "x", 0), z3.If(k == 1, _D(e, "w", 0), own))


SHAPE_AXIOMS = [
    *[ShapeAxiom(f"dim_{o}", f"{o} keeps its first input's shape", op(o, x, y),
                 lambda e, k: _D(e, "x", k), ew("x", scalars="y") if o == "scalar_mul"
                 else ew("x", "y"))
      for o in ("ewadd", "ewmul", "scalar_mul")],
    *[ShapeAxiom(f"dim_{o}", f"{o} keeps its input's shape", op(o, x),
                 lambda e, k: _D(e, "x", k), ew("x")) for o in ("relu", "gelu", "erf")],
    ShapeAxiom("dim_bias_add", "a bias keeps its first input's shape",
               op("bias_add", x, b, axis=BX, activation=ACT), lambda e, k: _D(e, "x", k),
               biased(acts=("none", "relu"))),
    ShapeAxiom("dim_pool_global_avg", "global pooling keeps batch and channels, 1x1 images",
               op("pool_global_avg", x),
               lambda e, k: z3.If(z3.Or(k == 2, k == 3), 1, _D(e, "x", k)), ew("x", ranks=(4,))),
    ShapeAxiom("dim_concat", "concat adds sizes along its axis", concat(x, y),
               lambda e, k: z3.If(k == e["ax"], _D(e, "x", k) + _D(e, "y", k), _D(e, "x", k)),
               cat((("x", "y"),))),
    ShapeAxiom("dim_transpose", "a 2-D transpose swaps the sizes", tr(x),
               lambda e, k: z3.If(k == 0, _D(e, "x", 1), z3.If(k == 1, _D(e, "x", 0),
                                                               _D(e, "x", k))),
               ew("x", ranks=(2,))),
    # the last axis is the one whose successor is the rank marker (size 0)
    ShapeAxiom("dim_matmul", "a matmul keeps x's sizes but for the last, which is y's",
               op("matmul", x, y, activation=ACT),
               lambda e, k: z3.If(_D(e, "y", k + 1) == 0, _D(e, "y", k), _D(e, "x", k)),
               lambda m: ({**i, "act": a} for i in mm("xy")(m) for a in ("none", "relu"))),
    ShapeAxiom("dim_enlarge", "enlarge keeps the kernel's channels and takes r's window",
               op("enlarge", w, r), lambda e, k: z3.If(k < 2, _D(e, "w", k), _D(e, "r", k)),
               conv(pads=("same",), strides=((1, 1),), more=enlarged)),
    ShapeAxiom("dim_conv_nc", "a conv's output is (batch of x, out channels of w, ...)",
               op("conv2d", x, w, stride=(SH, SW), padding=PAD, activation=ACT, groups=G),
               _conv_dim, conv(acts=("none", "relu"), more=grouped), axes=(0, 1)),
]


def check_shape_axiom(sa: ShapeAxiom, inst: dict) -> dict | None:
    """None when the shape axiom agrees with the catalogue on this instance, else what differs.
    The axiom is instantiated (ground) at the instance's term on the axes it covers; Z3 checks
    that those instances are consistent with the inputs' sizes and entail the catalogue's output
    sizes.  (Raises ShapeError when the instance does not fit the catalogue.)"""
    g = to_graph(sa.lhs, inst)
    want = g.shape(g.outputs[0]) + (0,)             # and the rank marker
    names = variables(sa.lhs)
    env = z3_env(names)
    facts = []
    for n, v in names.items():
        if isinstance(v, Var):
            facts += [z3ops.DIM(env[n], k) == d for k, d in enumerate(inst[n] + (0,))]
        else:
            env[n] = inst[n]            # parameters take the instance's values
    term = to_z3(sa.lhs, env)
    axes = range(len(want)) if sa.axes is None else sa.axes
    ground = [z3ops.DIM(term, k) == sa.rhs_of(env, z3.IntVal(k)) for k in axes]
    s = z3.Solver()
    s.add(*facts, *ground)
    if s.check() != z3.sat:
        return {"instance": inst, "note": "the shape axiom contradicts the input sizes"}
    s.add(z3.Or([z3ops.DIM(term, k) != want[k] for k in axes]))
    if s.check() != z3.unsat:
        m = s.model()
        return {"instance": inst, "catalogue": list(want[:-1]), "axes": list(axes),
                "shape_axiom": {k: str(m.eval(z3ops.DIM(term, k))) for k in axes}}
    return None


def validate_shape_axiom(sa: ShapeAxiom, max_dim: int = 3, limit: int | None = 40,
                         seed: int = 0) -> tuple[int, dict | None]:
    """(instances checked, first disagreement or None)."""
    n = 0
    for inst in sa.instances(max_dim, limit, seed):
        try:
            bad = check_shape_axiom(sa, inst)
        except ShapeError:
            continue
        n += 1
        if bad:
            return n, bad
    return n, None
