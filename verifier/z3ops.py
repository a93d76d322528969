"""Z3 function symbols for the operator catalogue, read from `OpDef.z3`.

Tensors live in one uninterpreted sort `T`.  Every operator becomes one uninterpreted function
`params..., inputs... -> T`, named by its `OpDef.z3`.  Parameters are Z3 integers, flattened in
the order of `OpDef.params` (defaults filled in):

- an int is itself; a string (padding, activation) is its index in `CODES[param]`;
- a tuple (stride, kernel, perm, split sizes, a constant's shape) is one integer per element.

Where the catalogue admits more than one signature (variadic concat, split into k pieces, a
transpose of rank r, a constant of rank r) the symbol's name gets a suffix, so that every name has
exactly one signature: `concat_in2`, `split_2_o1` (2 sizes, output 1), `ones_3`, `conv2d_2`...

`dim(t, k)` is the size of tensor `t` along axis `k`; the prover asserts it for every tensor of a
rule, and axioms use it for shape facts (split sizes, constant shapes, concat geometry).
"""
from __future__ import annotations

from functools import lru_cache

import z3

from envcore.ops import LEAVES, MULTI_OUTPUT, OPS, get

# Z3 answers Ctrl-C itself by default (a check in progress is cancelled and returns "unknown",
# and Python never sees the KeyboardInterrupt): a long run then shrugs a Ctrl-C off.  Off, the
# driver's one handler applies everywhere (one line, exit 130, committed work kept).
z3.set_param("ctrl_c", False)

T = z3.DeclareSort("T")
DIM = z3.Function("dim", T, z3.IntSort(), z3.IntSort())

# string-valued parameters: value -> integer code (the code is only a name; order is arbitrary)
CODES = {
    "padding": ("same", "valid"),
    "activation": ("none", "relu", "sigmoid", "tanh"),
}


class NotEncodable(ValueError):
    """An operator or parameter value that has no Z3 encoding (e.g. an opaque ONNX op)."""


def _flat(name: str, value) -> list:
    """One parameter value -> a list of Z3 ints (or Python ints), plus nothing else."""
    if isinstance(value, z3.ExprRef):
        return [value]
    if isinstance(value, bool):
        return [int(value)]
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        if name not in CODES or value not in CODES[name]:
            raise NotEncodable(f"parameter {name}={value!r} has no Z3 code")
        return [CODES[name].index(value)]
    if isinstance(value, (tuple, list)):
        out = []
        for v in value:
            out += _flat(name, v)
        return out
    raise NotEncodable(f"parameter {name}={value!r} has no Z3 encoding")


@lru_cache(maxsize=None)
def symbol(op: str, num_params: int, num_inputs: int, suffix: str) -> z3.FuncDeclRef:
    sig = [z3.IntSort()] * num_params + [T] * num_inputs + [T]
    name = get(op).z3 + suffix
    return z3.Function(name, *sig)


def apply(op: str, params: dict, args: list, out: int = 0) -> z3.ExprRef:
    """The Z3 term for output `out` of `op(args)` with `params` (Python values or Z3 ints)."""
    opdef = get(op)
    if op == "opaque":
        raise NotEncodable("opaque operators have no Z3 semantics")
    full = {**opdef.defaults, **params}
    ints, suffix = [], ""
    for p in opdef.params:
        if p == "name":   # leaves are constants, see `leaf`
            continue
        flat = _flat(p, full[p])
        if isinstance(full[p], (tuple, list)):
            suffix += f"_{len(flat)}"
        ints += flat
    if opdef.num_inputs is None:
        suffix += f"_in{len(args)}"
    if op in MULTI_OUTPUT:    # one symbol per output
        suffix += f"_o{out}"
    f = symbol(op, len(ints), len(args), suffix)
    return f(*[z3.IntVal(i) if isinstance(i, int) else i for i in ints], *args)


def leaf(kind: str, name: str) -> z3.ExprRef:
    """A rule variable (an `input` leaf) or a weight, as a constant of sort T."""
    return z3.Const(f"{kind}:{name}", T)


def graph_terms(graph) -> dict:
    """Every tensor of an envcore Graph as a Z3 term: {Ref: term}."""
    from envcore.graph import Ref
    terms: dict = {}
    for i in graph.topo_order:
        n = graph.nodes[i]
        if n.op in LEAVES:
            terms[Ref(i, 0)] = leaf(n.op, n.p["name"])
            continue
        args = [terms[r] for r in n.inputs]
        params = {k: v for k, v in n.p.items()}
        for k in range(n.num_outputs):
            terms[Ref(i, k)] = apply(n.op, params, args, k)
    return terms


def dim_facts(graph, terms: dict, seen: set | None = None) -> list:
    """`dim(t, k) == size` for every tensor t of the graph, and the rank marker
    `dim(t, rank) == 0`; once per term (pass one `seen` set for both sides of a rule).  Built
    through Z3's C API: the Python wrappers' sort checks cost more than the solver does."""
    seen = set() if seen is None else seen
    ctx = DIM.ctx
    c, f = ctx.ref(), DIM.ast
    args = (z3.Ast * 2)()
    facts = []
    for ref, t in terms.items():
        key = t.get_id()
        if key in seen:
            continue
        seen.add(key)
        args[0] = t.as_ast()
        shape = graph.shape(ref)
        for k, d in enumerate(shape + (0,)):     # (0: the rank marker, no axis past the last)
            args[1] = _int(k).as_ast()
            app = z3.ArithRef(z3.Z3_mk_app(c, f, 2, args), ctx)   # wrapped: ref-counted
            facts.append(z3.BoolRef(z3.Z3_mk_eq(c, app.as_ast(), _int(d).as_ast()), ctx))
    return facts


@lru_cache(maxsize=None)
def _int(i: int) -> z3.IntNumRef:
    return z3.IntVal(i)


assert all(o.z3 for o in OPS.values())
