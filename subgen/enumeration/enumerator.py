"""Bottom-up enumeration of small graphs over a fixed input pool, evaluated exactly, op by op.

Every tensor is a *term*: a leaf of the pool or an output of an operator node whose inputs are
earlier terms.  Nodes are hash-consed (an identical op on identical inputs is the same node), so a
term's size is the number of distinct operator nodes under it and shared subterms are counted
once.  Each new node is evaluated once, from its inputs' stored values, with the catalogue's EXACT
modular semantics (`OpDef.exact`): every graph extends its parent by one operator.

Quartz's RepGen idea: terms are grouped into classes by their value's fingerprint, and only the
first term of a class (its *representative*, the smallest because levels grow by size) is used as
an input to bigger terms.  Any bigger term built on a non-representative is redundant: a rule
between the two class members already rewrites that part.  One exception (`_extends`): a member
of at most `spellings` operators that is the representative respelled (the same normal
form: operands commuted or regrouped, scalars moved, a fused activation spelled apart) is
extended too.  Compound rules that such spellings make are free to keep (they follow from the
base rules, no proof needed), and rule sets such as TASO's are full of them; without the
spellings they could never be paired.  Respellings of one operator (b+a beside a+b) cost little;
those of two operators, (a+b)+c beside a+(b+c), make the last level and the pairs much bigger,
so only shallow enumerations grow them (`default_spellings`; the figures are in
benchmarks/results/history.md).

TASO's split has no sizes: it cuts at the boundary of the concat that produced the tensor.  Terms
carry that boundary as metadata (`bounds`: axis -> sizes), propagated through the ops in between.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envcore.ops import PRIME, UNARY_ELEMENTWISE
from subgen.enumeration.fingerprint import value_hash
from subgen.enumeration.level_arrays import add_level
from subgen.pairing.normal_form import NormalForms, term_describer

Shape = tuple[int, ...]

# The input pool (variable name -> shape): TASO's roles at sizes within 4x4x4x4.
POOL: dict[str, Shape] = {
    "x0": (2, 4), "x1": (2, 4), "x2": (2, 4),                      # 2-D activations
    "m0": (4, 4), "m1": (4, 4), "m2": (4, 4),                      # matrices
    "a0": (2, 4, 4, 4), "a1": (2, 4, 4, 4), "a2": (2, 4, 4, 4),    # NCHW activations
    "k0": (4, 4, 3, 3), "k1": (4, 4, 3, 3), "k2": (4, 4, 3, 3),    # 3x3 conv kernels
    "u0": (4, 4, 1, 1),                                            # 1x1 conv kernel
    "v0": (4, 4, 1, 3),                                            # 1x3 conv kernel
    "s": (),                                                       # scalar
    "b0": (4,), "b1": (4,),                                        # bias vectors
}
# leaves only some operators read: the pool of an op set without them leaves them out
LEAVES_FOR = {"b0": "bias_add", "b1": "bias_add"}


def pool_for(ops) -> dict[str, Shape]:
    """The pool (`POOL`) of an enumeration over `ops`: the bias vectors only beside bias_add
    (TASO's operator set enumerates over exactly the pool it always had)."""
    return {k: s for k, s in POOL.items() if LEAVES_FOR.get(k, next(iter(ops), None)) in ops}
# constants are 0-input operators at fixed shapes
CONSTANT_SHAPES: dict[str, tuple[Shape, ...]] = {
    "eye": ((4, 4),), "eye_conv": ((4, 4, 3, 3),), "ones": ((4, 4, 3, 3),),
    "pool_kernel": ((4, 1, 3, 3),),
}


def pool_values(seed: int = 1, exact: bool = True, pool=None) -> dict[str, np.ndarray]:
    """Fixed random values for the pool: residues mod PRIME (exact) or floats in [-1, 1).  The
    values are drawn over the whole `POOL` in its order (a leaf's value does not depend on
    which others an op set leaves out), then narrowed to `pool`."""
    rng = np.random.default_rng(seed)
    values = {k: (rng.integers(0, PRIME, size=s, dtype=np.int64) if exact
                  else rng.uniform(-1, 1, size=s)) for k, s in POOL.items()}
    return values if pool is None else {k: values[k] for k in pool}


@dataclass
class EnumeratedTerm:
    """One tensor: a pool leaf (node is None) or output `index` of operator node `node`."""
    id: int
    node: int | None
    index: int
    shape: Shape
    value: np.ndarray
    fp: int                       # fingerprint of the value
    ops: frozenset                # ids of the operator nodes under this term (itself included)
    bounds: dict = field(default_factory=dict)   # axis -> (sizes,) of a tracked concat boundary
    name: str | None = None       # leaf name

    @property
    def size(self) -> int:
        return len(self.ops)


@dataclass
class OpNode:
    id: int
    op: str
    params: tuple                 # sorted (name, value) pairs, full (defaults filled)
    inputs: tuple[int, ...]       # term ids
    outputs: tuple[int, ...] = ()  # term ids


# ----------------------------------------------------------------------------------------------
# which operator instances to try (`Enumerator.instances`, `Enumerator.params_for`): the params
# are those TASO's generator tried.

def _propagate_bounds(op: str, p: dict, ins: list[EnumeratedTerm], out_shapes) -> list[dict]:
    """TASO's split boundary, carried through the operators in between."""
    if op == "concat":
        ax = p["axis"]
        return [{ax: tuple(t.shape[ax] for t in ins)}]
    if op in ("ewadd", "ewmul"):
        b = dict(ins[1].bounds)
        b.update(ins[0].bounds)
        return [b]
    if op in ("relu", "scalar_mul", "pool_avg", "pool_max", "sigmoid", "tanh", "erf", "gelu"):
        return [dict(ins[0].bounds)]
    if op == "pool_global_avg":
        return [{a: s for a, s in ins[0].bounds.items() if a in (0, 1)}]
    if op == "bias_add":      # a seam in the bias vector is one along the axis it is added on
        b = dict(ins[0].bounds)
        if 0 in ins[1].bounds:
            b.setdefault(1, ins[1].bounds[0])
        return [b]
    if op == "conv2d":  # batch boundary from the input; kernel out-channels -> output channels
        b = {}
        if 0 in ins[0].bounds:
            b[0] = ins[0].bounds[0]
        if 0 in ins[1].bounds:
            b[1] = ins[1].bounds[0]
        return [b]
    if op == "matmul":
        b = {}
        if 0 in ins[0].bounds:
            b[0] = ins[0].bounds[0]
        if 1 in ins[1].bounds:
            b[1] = ins[1].bounds[1]
        return [b]
    if op == "transpose":
        return [{1 - a: s for a, s in ins[0].bounds.items() if a in (0, 1)}]
    return [{} for _ in out_shapes]


def default_spellings(max_ops: int) -> int:
    """Respellings of terms of at most this many operators grow like representatives
    (`_extends`).  Two-operator respellings give depth 3 more of TASO's compound rules for a
    few seconds; at depth 4 they cost far more time and nearly double the rules, so depth 4
    keeps one-operator ones (benchmarks/results/history.md)."""
    return 2 if max_ops <= 3 else 1

# the operators `instances` knows how to instantiate (the rest of the catalogue is IR-only)
ENUMERABLE = frozenset({"relu", "sigmoid", "tanh", "erf", "gelu", "transpose", "pool_avg",
                        "pool_max", "pool_global_avg", "split", "ewadd", "ewmul", "scalar_mul",
                        "matmul", "conv2d", "bias_add", "concat", "enlarge", *CONSTANT_SHAPES})


# the enumerable operators of one input (the others take two, constants none)
UNARY_ENUMERATED = ("relu", "sigmoid", "tanh", "erf", "gelu", "transpose", "pool_avg",
                    "pool_max", "pool_global_avg", "split")


def _is_activation(shape: Shape) -> bool:
    """NCHW activations have 4x4 images; kernels are 3x3, 1x1 or 1x3."""
    return len(shape) == 4 and shape[2:] == (4, 4)


def _conv_operands(x: EnumeratedTerm, w: EnumeratedTerm) -> bool:
    """An activation convolved with a kernel; and, as in TASO's rule file, one kernel-shaped
    tensor convolved with itself, conv(T, T).  TASO's generator fed kernels to conv as images in
    general; all of its rules that do so are of the diagonal form (e.g. channels permuted the
    same way in image and kernel), and the general case would double the conv terms."""
    if len(w.shape) != 4 or _is_activation(w.shape):
        return False
    return _is_activation(x.shape) or (x is w and x.shape[1] == w.shape[1])


class Enumerator:
    """Enumerates terms of up to `max_ops` operators over `ops` (names from the catalogue)."""

    def __init__(self, ops: tuple[str, ...], max_ops: int, seed: int = 1,
                 max_outputs: int = 2, spellings: int | None = None):
        self.op_names = tuple(ops)
        self.max_ops = max_ops
        self.spellings = default_spellings(max_ops) if spellings is None else spellings
        self.max_outputs = max_outputs
        self.terms: list[EnumeratedTerm] = []
        self.nodes: list[OpNode] = []
        self._node_key: dict[tuple, int] = {}
        self.classes: dict[int, list[int]] = {}       # fingerprint -> term ids (first = rep)
        self.reps_by_size: dict[int, list[int]] = {}  # size -> extended term ids (see _extends)
        self.extended: set[int] = set()
        self._nf = NormalForms(term_describer(self))
        pool = pool_for(self.op_names)
        self.pool = pool_values(seed, pool=pool)
        self._first_leaf = {}
        for name in sorted(pool):
            self._first_leaf.setdefault(POOL[name], name)
        for name in sorted(pool):
            v = self.pool[name]
            self._add_term(None, 0, v.shape, v, frozenset(), {}, name)

    # -- bookkeeping -----------------------------------------------------------------------
    def _add_term(self, node, index, shape, value, ops, bounds, name=None, fp=None,
                  register: bool = True) -> EnumeratedTerm:
        fp = value_hash(value) if fp is None else fp
        t = EnumeratedTerm(len(self.terms), node, index, tuple(shape), value, fp, ops, bounds, name)
        self.terms.append(t)
        if not register:
            return t
        members = self.classes.setdefault(fp, [])
        members.append(t.id)
        if len(members) == 1 or self._extends(t, members[0]):
            self.reps_by_size.setdefault(t.size, []).append(t.id)
            self.extended.add(t.id)
        return t

    def _extends(self, t: EnumeratedTerm, rep: int) -> bool:
        """A non-representative grows when it is its representative respelled (module doc).
        Terms of the last level never grow, so theirs is not even computed."""
        return (t.size <= self.spellings and t.size < self.max_ops
                and self._nf.of(t.id) == self._nf.of(rep))

    def is_rep(self, t: EnumeratedTerm) -> bool:
        return self.classes[t.fp][0] == t.id

    def insert(self, op: str, pkey: tuple, ins: list[EnumeratedTerm], shapes, values, fps,
                register: bool = True) -> OpNode:
        """A new node whose outputs were evaluated and fingerprinted (by
        `subgen.enumeration.level_arrays`, or a worker's); values are None on the last level.  Unregistered terms join no class and no lookup
        (a worker that only reads a few terms' structure and values)."""
        node = OpNode(len(self.nodes), op, pkey, tuple(t.id for t in ins))
        self.nodes.append(node)
        if register:
            self._node_key[(op, pkey, node.inputs)] = node.id
        ops = frozenset().union(*(t.ops for t in ins)) | {node.id}
        bounds = _propagate_bounds(op, dict(pkey), ins, shapes)
        node.outputs = tuple(self._add_term(node.id, k, s, v, ops, b, fp=f, register=register).id
                             for k, (s, v, b, f) in enumerate(zip(shapes, values, bounds, fps)))
        return node

    # -- candidate inputs ------------------------------------------------------------------
    @staticmethod
    def arity(op: str) -> int:
        """How many inputs the enumeration gives `op`: 0 (a constant), 1 or 2."""
        return 0 if op in CONSTANT_SHAPES else 1 if op in UNARY_ENUMERATED else 2

    def op_sections(self, op: str, level: int) -> list:
        """The pieces (`sections`) of one operator's input tuples at `level`; a constant has
        one piece, None, at level 1 and none above."""
        if op in CONSTANT_SHAPES:
            return [None] if level == 1 else []
        return self.sections(self.arity(op), level)

    def sections(self, arity: int, level: int, budget: int = 100_000) -> list[tuple]:
        """`_input_tuples(arity, level)` cut into contiguous pieces, in its order, each with
        about `budget` tuples to look at: the last level's shards are these pieces, so a worker
        walks only its own (subgen.enumeration.shard), and the pieces chained are the whole walk."""
        want = level - 1
        reps = self.reps_by_size
        n = len(reps.get(want, ()))
        if arity == 1:
            step = max(1, budget // 4)
            return [("unary", lo, lo + step) for lo in range(0, n, step)]
        out = []
        for s1 in range(want + 1):
            na, nb = len(reps.get(s1, ())), len(reps.get(want - s1, ()))
            if na and nb:
                step = max(1, budget // nb)
                out += [("disjoint", s1, lo, lo + step) for lo in range(0, na, step)]
        step = max(1, budget // 64)     # a term has a few dozen terms inside it
        return out + [("inner", lo, lo + step) for lo in range(0, n, step)]

    def _input_tuples(self, arity: int, level: int, section: tuple | None = None):
        """Tuples of representative terms whose operator sets together hold level-1 nodes
        (only those of one piece of `sections` when `section` is given)."""
        if section is None:
            for part in self.sections(arity, level, budget=1 << 62):
                yield from self._input_tuples(arity, level, part)
            return
        want = level - 1
        reps = self.reps_by_size
        kind = section[0]
        if kind == "unary":
            for t in reps.get(want, [])[section[1]:section[2]]:
                yield (self.terms[t],)
            return
        # disjoint pairs whose sizes add up, plus pairs where one term lies inside the other
        if kind == "disjoint":
            s1 = section[1]
            for a in reps.get(s1, [])[section[2]:section[3]]:
                ta = self.terms[a]
                for b in reps.get(want - s1, ()):
                    tb = self.terms[b]
                    if not (ta.ops & tb.ops):
                        yield (ta, tb)
            return
        for b in reps.get(want, [])[section[1]:section[2]]:
            tb = self.terms[b]
            inner = {tb.id} | {o for n in tb.ops for o in self.nodes[n].inputs}
            inner |= {o for n in tb.ops for o in self.nodes[n].outputs}
            for a in sorted(inner):
                ta = self.terms[a]
                if ta.node is None or ta.id not in self.extended:
                    continue  # leaves are covered by the disjoint case
                if ta.ops | tb.ops != tb.ops:
                    continue
                yield (ta, tb)
                if ta.id != tb.id:
                    yield (tb, ta)

    def instances(self, op: str, level: int, section: tuple | None = None):
        """(params, inputs) choices for one operator at one level (of one piece of its input
        tuples: `sections`)."""
        if op in CONSTANT_SHAPES:
            if level == 1:
                for s in CONSTANT_SHAPES[op]:
                    yield {"shape": s}, []
            return
        for ins in self._input_tuples(self.arity(op), level, section):
            for params in self.params_for(op, *ins):
                yield params, list(ins)

    def params_for(self, op: str, ta: EnumeratedTerm, tb: EnumeratedTerm | None = None) -> list[dict]:
        """The parameter choices of `op` on these inputs (none: the op does not apply).  They
        depend on the inputs' shapes, their `bounds`, whether they are one term and whether tb
        is the first leaf of its shape, nothing else: `subgen.enumeration.level_arrays` asks once
        per combination of these and shares the answer."""
        if op in UNARY_ELEMENTWISE:
            return [{}]
        if op == "transpose":
            return [{"perm": (1, 0)}] if len(ta.shape) == 2 else []
        if op == "pool_global_avg":
            return [{}] if len(ta.shape) == 4 else []
        if op == "bias_add":   # a bias along the channels (NCHW) or features (2-D)
            return ([{"axis": 1, "activation": act} for act in ("none", "relu")]
                    if len(ta.shape) in (2, 4) and tb.shape == (ta.shape[1],) else [])
        if op in ("pool_avg", "pool_max"):
            return ([{"kernel": (3, 3), "stride": (1, 1), "padding": "same"}]
                    if _is_activation(ta.shape) else [])
        if op == "split":
            return [{"axis": ax, "sizes": sizes} for ax, sizes in sorted(ta.bounds.items())
                    if ax in (0, 1)]
        if op in ("ewadd", "ewmul"):
            return [{}] if ta.shape == tb.shape and ta.shape != () else []
        if op == "scalar_mul":
            return [{}] if tb.shape == () and ta.shape != () else []
        if op == "matmul":
            return ([{"activation": "none"}] if len(ta.shape) == 2 and len(tb.shape) == 2
                    and ta.shape[1] == tb.shape[0] else [])
        if op == "conv2d":
            x, w = ta.shape, tb.shape
            if _conv_operands(ta, tb) and x[1] % w[1] == 0:
                g = x[1] // w[1]
                if w[0] % g == 0 and w[2] <= x[2] and w[3] <= x[3]:
                    return [{"stride": (1, 1), "padding": "same", "activation": act,
                             "groups": g} for act in ("none", "relu")]
            return []
        if op == "concat":
            if len(ta.shape) in (1, 2, 4) and len(ta.shape) == len(tb.shape):
                return [{"axis": ax} for ax in (0, 1)
                        if ta.shape[:ax] + ta.shape[ax + 1:] == tb.shape[:ax] + tb.shape[ax + 1:]]
            return []
        if op == "enlarge":
            # the reference kernel only lends its shape: one leaf per shape is enough
            return ([{}] if len(ta.shape) == 4 and self.is_first_leaf(tb)
                    and ta.shape != tb.shape and not _is_activation(tb.shape) else [])
        raise ValueError(f"{op} is not enumerable")

    def is_first_leaf(self, t: EnumeratedTerm) -> bool:
        return t.node is None and t.name == self._first_leaf[t.shape]

    # -- the levels -------------------------------------------------------------------------
    def level(self, level: int, progress=None) -> int:
        """Adds every term with `level` operators (evaluated as arrays:
        `subgen.enumeration.level_arrays`); returns how many nodes were made."""
        return add_level(self, level, progress)

    def run(self, progress=None) -> "Enumerator":
        for lv in range(1, self.max_ops + 1):
            self.level(lv, progress)
        return self

    # -- views ------------------------------------------------------------------------------
    def graphs(self):
        """Every enumerated graph as a tuple of output term ids: single terms, and the pairs of
        outputs of multi-output nodes (TASO's outputs are the tensors nothing consumes)."""
        for t in self.terms:
            if t.node is not None:
                yield (t.id,)
        if self.max_outputs >= 2:
            for n in self.nodes:
                if len(n.outputs) >= 2:
                    yield tuple(n.outputs)

    def op_count(self, outs: tuple[int, ...]) -> int:
        return len(frozenset().union(*(self.terms[o].ops for o in outs)))
