"""Random small graphs drawn from the operator catalogue, for property tests.

Shapes are small and varied (so rules written on 4x4 pool shapes meet other real shapes), inputs
are often reused (so shared-input merges have something to find) and some intermediate tensors
are also graph outputs (so the "internal tensors do not leak" condition is exercised).
"""
from __future__ import annotations

import numpy as np

from envcore.graph import Graph, GraphBuilder, Ref
from envcore.ops import ShapeError

DIMS = (2, 3, 4, 5)
KINDS = ("matmul", "matmul", "ewadd", "ewmul", "unary", "transpose", "concat", "split",
         "conv2d", "conv2d", "pool", "eye", "rejoin")


def random_graph(seed: int, num_ops: int = 8) -> Graph:
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    mats: list[Ref] = [b.input("x", (3, 4))]
    imgs: list[Ref] = [b.input("img", (1, 3, 5, 5))]
    consumed: set[Ref] = set()
    count = [0]

    def pick(pool):
        return pool[int(rng.integers(len(pool)))]

    def weight(shape) -> Ref:
        count[0] += 1
        return b.weight(f"w{count[0]}", tuple(int(d) for d in shape))

    def dim() -> int:
        return int(rng.choice(DIMS))

    def act() -> str:
        return str(rng.choice(["none", "none", "relu"]))

    def add(op, *ins, **params):
        out = b.add(op, *ins, **params)
        consumed.update(ins)
        return out

    ops = 0
    for _ in range(num_ops * 4):
        if ops >= num_ops:
            break
        kind = str(rng.choice(KINDS))
        try:
            if kind == "matmul":
                a = pick(mats)
                n = b.shape(a)
                same_rows = [m for m in mats if b.shape(m)[0] == n[-1]]
                w = pick(same_rows) if same_rows and rng.random() < 0.3 else weight((n[-1], dim()))
                mats.append(add("matmul", a, w, activation=act()))
            elif kind in ("ewadd", "ewmul"):
                pool = pick([mats, imgs])
                a = pick(pool)
                same = [t for t in pool if b.shape(t) == b.shape(a)]
                other = pick(same) if rng.random() < 0.6 else weight(b.shape(a))
                pool.append(add(kind, a, other))
            elif kind == "unary":
                pool = pick([mats, imgs])
                pool.append(add(str(rng.choice(["relu", "relu", "sigmoid", "tanh"])), pick(pool)))
            elif kind == "transpose":
                mats.append(add("transpose", pick(mats), perm=(1, 0)))
            elif kind == "concat":
                a = pick(mats)
                axis = int(rng.integers(2))
                s = list(b.shape(a))
                s[axis] = dim()
                mats.append(add("concat", a, weight(s), axis=axis))
            elif kind == "split":
                a = pick(mats)
                axis = int(rng.integers(2))
                n = b.shape(a)[axis]
                if n < 2:
                    continue
                k = int(rng.integers(1, n))
                mats.extend(add("split", a, axis=axis, sizes=(k, n - k)))
            elif kind == "rejoin":  # split then concat the pieces (sometimes swapped)
                a = pick(mats)
                axis = int(rng.integers(2))
                n = b.shape(a)[axis]
                if n < 2:
                    continue
                k = int(rng.integers(1, n))
                p, q = add("split", a, axis=axis, sizes=(k, n - k))
                mats.append(add("concat", *((q, p) if rng.random() < 0.3 else (p, q)), axis=axis))
            elif kind == "conv2d":
                x = pick(imgs)
                c = b.shape(x)[1]
                k = int(rng.choice([1, 3]))
                y = add("conv2d", x, weight((dim(), c, k, k)), activation=act())
                imgs.append(add("relu", y) if rng.random() < 0.3 else y)
            elif kind == "pool":
                imgs.append(add(str(rng.choice(["pool_avg", "pool_max"])), pick(imgs)))
            elif kind == "eye":
                a = pick(mats)
                mats.append(add("matmul", a, b.add("eye", shape=(b.shape(a)[-1],) * 2)))
            ops += 1
        except ShapeError:
            continue
    produced = [r for r in mats + imgs if b.nodes[r.node].op not in ("input", "weight")]
    if not produced:
        produced = [add("relu", mats[0])]
    sinks = [r for r in produced if r not in consumed]
    extra = [r for r in produced if r in consumed and rng.random() < 0.2]
    return b.build(sinks + extra)
