"""Axiom domains: the concrete instances an axiom is validated on.

A domain maps `max_dim` to instances: a shape per tensor variable, a value per parameter, every
tensor dimension in 1..max_dim.  `ew`, `cat`, `mm`, `conv`, `pooled` and `pooled_ew` build the
common families; the functions taking `(inst, m)` refine a `conv` domain (its `more=`), the ones
taking `m` alone are the domains of single axioms.  The keys are the variables' names
(verifier.notation).
"""
from __future__ import annotations

from itertools import product

RANKS = (1, 2, 3, 4)
STRIDES = ((1, 1), (1, 2), (2, 1), (2, 2))
PADS = ("same", "valid")


def all_shapes(rank, m):
    """Every shape of `rank` axes with sizes in 1..m."""
    return product(range(1, m + 1), repeat=rank)


def resized(shape, axis, k):
    """`shape` with size `k` along `axis`."""
    return shape[:axis] + (k,) + shape[axis + 1:]


def ew(*names, ranks=RANKS, scalars=()):
    """Tensors of one shape (any rank), plus scalar tensors."""
    def dom(m):
        for rank in ranks:
            for sh in all_shapes(rank, m):
                yield {**{n: sh for n in names}, **{c: () for c in scalars}}
    return dom


def cat(pairs, ranks=RANKS, axes=None, scalars=()):
    """Pairs of tensors that concatenate along `ax`: pairs=(("x","y"),("z","w")) gives x,z one
    shape and y,w the same shape but for the axis."""
    def dom(m):
        for rank in ranks:
            for ax in range(rank) if axes is None else [a for a in axes if a < rank]:
                for sh in all_shapes(rank, m):
                    for k in range(1, m + 1):
                        inst = {"ax": ax, **{c: () for c in scalars}}
                        for a, b in pairs:
                            inst[a], inst[b] = sh, resized(sh, ax, k)
                        yield inst
    return dom


def mm(chain, ranks=(2, 3, 4), extra=None, scalars=()):
    """Batched matmul operands: chain=("x","y","z") gives x (b..,n0,n1), y (b..,n1,n2), ..."""
    def dom(m):
        for rank in ranks:
            for batch in all_shapes(rank - 2, m):
                for ns in all_shapes(len(chain) + 1, m):
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
        for n, c, h, wd, co in all_shapes(5, m):
            for kh, kw in product(ks, repeat=2):
                for (sh, sw), pad, act in product(strides, pads, acts):
                    inst = {"x": (n, c, h, wd), "w": (co, c, kh, kw), "sh": sh, "sw": sw,
                            "pad": pad, "act": act, "kh": kh, "kw": kw}
                    if more:
                        yield from more(inst, m)
                    else:
                        yield inst
    return dom



def pooled(axis):
    def dom(m):
        for inst in cat((("x", "y"),), ranks=(4,), axes=(axis,))(m):
            for kh, kw in product(range(1, m + 1), repeat=2):
                for (sh, sw), pad in product(STRIDES, PADS):
                    yield {**inst, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "pad": pad}
    return dom



def grouped(inst, m):      # plain (groups 1) and depthwise (groups = channels) convs
    yield {**inst, "g": 1}
    n, c, h, wd = inst["x"]
    if c > 1 and inst["w"][0] % c == 0:
        yield {**inst, "g": c, "w": (inst["w"][0], 1) + inst["w"][2:]}


def dup_input(inst, m):     # conv over concat(x, x) in 2 groups: w has x's channels
    if inst["w"][0] % 2 == 0:
        yield inst


def channel_split(inst, m):   # x,y inputs and w,v kernels that split the input channels
    n, c, h, wd = inst["x"]
    co, _, kh, kw = inst["w"]
    for c2 in range(1, m + 1):
        yield {**inst, "y": (n, c2, h, wd), "v": (co, c2, kh, kw)}


def twin_groups(inst, m):   # x, y inputs of one shape; w, v kernels of one shape; any groups
    for j in grouped(inst, m):
        yield {**j, "y": j["x"], "v": j["w"]}



def batch_split(inst, m):
    for n2 in range(1, m + 1):
        yield {**inst, "y": resized(inst["x"], 0, n2)}


def out_split(inst, m):
    for co2 in range(1, m + 1):
        yield {**inst, "v": resized(inst["w"], 0, co2)}


def enlarged(inst, m):
    _, _, kh, kw = inst["w"]
    for r0, r1, rh, rw in all_shapes(4, m):
        if rh >= kh and rw >= kw and (rh - kh) % 2 == 0 and (rw - kw) % 2 == 0:
            yield {**inst, "r": (r0, r1, rh, rw)}


def enlarge_cat(m):
    for inst in cat((("w", "v"),), ranks=(4,), axes=(0, 1))(m):
        for rh, rw in all_shapes(2, m):
            kh, kw = inst["w"][2:]
            if rh >= kh and rw >= kw and (rh - kh) % 2 == 0 and (rw - kw) % 2 == 0:
                yield {**inst, "r": (1, 1, rh, rw)}


def geometry(m):
    for rank in (2, 3, 4):
        for sh in all_shapes(rank, m):
            for b, c in all_shapes(2, m):
                yield {"x": sh, "y": resized(sh, 1, b), "z": resized(sh, 0, c),
                       "w": resized(resized(sh, 0, c), 1, b)}


def cat3(m):
    for inst in cat((("x", "y"),))(m):
        for k in range(1, m + 1):
            yield {**inst, "z": resized(inst["x"], inst["ax"], k)}


def splits(m):
    for rank in RANKS:
        for ax in range(rank):
            for sh in all_shapes(rank, m):
                for s0 in range(1, sh[ax]):
                    yield {"x": sh, "ax": ax, "s0": s0, "s1": sh[ax] - s0}


def split_pairs(m):
    for inst in splits(m):
        yield {**inst, "y": inst["x"]}


def pooled_ew(*names, scalars=()):
    """Activations of one shape (NCHW) and the pooling parameters."""
    def dom(m):
        for inst in ew(*names, ranks=(4,), scalars=scalars)(m):
            for kh, kw in product(range(1, m + 1), repeat=2):
                for (sh, sw), pad in product(STRIDES, PADS):
                    yield {**inst, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "pad": pad}
    return dom


def pooled_1x1(m):
    for inst in pooled_ew("x")(m):
        for co in range(1, m + 1):
            yield {**inst, "w": (co, inst["x"][1], 1, 1)}


def square_kernels(m):
    for n in range(1, m + 1):
        for kh, kw in product(range(1, m + 1, 2), repeat=2):
            yield {"n": n, "kh": kh, "kw": kw}


def square_pairs(m):
    for n in range(1, m + 1):
        yield {"n": n, "x": (n, n), "y": (n, n)}


def enlarged_twice(m):
    for o, i, kh, kw in all_shapes(4, m):
        for rh, rw, vh, vw in all_shapes(4, m):
            pairs = ((kh, rh), (kw, rw), (rh, vh), (rw, vw))
            if all(a <= b and (b - a) % 2 == 0 for a, b in pairs):
                yield {"w": (o, i, kh, kw), "r": (1, 1, rh, rw), "v": (1, 1, vh, vw)}


def square_sizes(m):
    for n in range(1, m + 1):
        yield {"n": n}


def matrices(m):
    for sh in all_shapes(2, m):
        yield {"x": sh}



def biased(tensors=("x",), biases=("b",), ranks=RANKS, acts=("none",), scalars=()):
    """Tensors of one shape, and bias vectors along axis `bx` (that axis's size)."""
    def dom(m):
        for rank in ranks:
            for bx, sh in product(range(rank), all_shapes(rank, m)):
                for act in acts:
                    yield {"bx": bx, "act": act, **{n: sh for n in tensors},
                           **{b: (sh[bx],) for b in biases}, **{c: () for c in scalars}}
    return dom


def biased_cat(along: bool, acts=("none", "relu")):
    """x and y that concatenate along `ax`, with biases along `bx`: along the seam (b fits x and
    c fits y) when `along`, else across it (one bias b fits both)."""
    def dom(m):
        for inst in cat((("x", "y"),))(m):
            rank = len(inst["x"])
            for bx in range(rank):
                if (bx == inst["ax"]) != along:
                    continue
                for act in acts:
                    yield {**inst, "bx": bx, "act": act, "b": (inst["x"][bx],),
                           **({"c": (inst["y"][bx],)} if along else {})}
    return dom


def global_pooled(*names, scalars=(), axes=None, bias=False):
    """NCHW activations of one shape (or concatenating along `ax` in `axes`); with `bias`, a
    channel bias b."""
    def dom(m):
        insts = (ew(*names, ranks=(4,), scalars=scalars)(m) if axes is None
                 else cat((("x", "y"),), ranks=(4,), axes=axes)(m))
        for inst in insts:
            yield {**inst, **({"b": (inst["x"][1],)} if bias else {})}
    return dom


def global_pooled_1x1(m):
    for inst in ew("x", ranks=(4,))(m):
        for co in range(1, m + 1):
            yield {**inst, "w": (co, inst["x"][1], 1, 1), "pad": "same"}
            yield {**inst, "w": (co, inst["x"][1], 1, 1), "pad": "valid"}
