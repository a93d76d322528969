"""A handful of hand-made, obviously correct rules for the matching and rewriting tests.

Each is written on pool shapes (all 4s, like the generator's) so that applying it to real models
exercises the re-derivation of shape parameters.  `load_db_rules()` adds subgen/data/rules.db if present.
"""
from __future__ import annotations

from pathlib import Path

from envcore.graph import GraphBuilder
from envcore.rewrite.rule import Rule

X4 = (1, 4, 4, 4)        # NCHW activation
K3 = (4, 4, 3, 3)        # OIHW kernel
M = (4, 4)               # matrix


def _rule(name, build_src, build_dst):
    s, d = GraphBuilder(), GraphBuilder()
    return Rule(name, s.build(build_src(s)), d.build(build_dst(d)))


def conv_relu_fuse():  # relu(conv(x, w)) -> conv(x, w, act=relu)
    return _rule("conv_relu_fuse",
                 lambda b: [b.add("relu", b.add("conv2d", b.input("x", X4), b.input("w", K3)))],
                 lambda b: [b.add("conv2d", b.input("x", X4), b.input("w", K3),
                                  activation="relu")])


def conv_relu_unfuse():  # conv(x, w, act=relu) -> relu(conv(x, w))
    return conv_relu_fuse().reversed("conv_relu_unfuse")


def matmul_relu_fuse():  # relu(x @ w) -> matmul(x, w, act=relu)
    return _rule("matmul_relu_fuse",
                 lambda b: [b.add("relu", b.add("matmul", b.input("x", M), b.input("w", M)))],
                 lambda b: [b.add("matmul", b.input("x", M), b.input("w", M),
                                  activation="relu")])


def ewadd_commute():  # a + b -> b + a
    return _rule("ewadd_commute",
                 lambda b: [b.add("ewadd", b.input("a", M), b.input("b", M))],
                 lambda b: [b.add("ewadd", b.input("b", M), b.input("a", M))])


def relu_idempotent():  # relu(relu(x)) -> relu(x)
    return _rule("relu_idempotent",
                 lambda b: [b.add("relu", b.add("relu", b.input("x", M)))],
                 lambda b: [b.add("relu", b.input("x", M))])


def double_transpose():  # (x^T)^T -> x
    return _rule("double_transpose",
                 lambda b: [b.add("transpose", b.add("transpose", b.input("x", M), perm=(1, 0)),
                                  perm=(1, 0))],
                 lambda b: [b.input("x", M)])


def matmul_merge():  # (x @ w1, x @ w2) -> split(x @ concat(w1, w2, axis=1))
    def dst(b):
        w = b.add("concat", b.input("w1", M), b.input("w2", M), axis=1)
        return list(b.add("split", b.add("matmul", b.input("x", M), w), axis=1, sizes=(4, 4)))
    def src(b):
        x = b.input("x", M)
        return [b.add("matmul", x, b.input("w1", M)), b.add("matmul", x, b.input("w2", M))]
    return _rule("matmul_merge", src, dst)


def matmul_unmerge():  # split(x @ concat(w1, w2, axis=1)) -> (x @ w1, x @ w2)
    return matmul_merge().reversed("matmul_unmerge")


def conv_merge():  # (conv(x, w1), conv(x, w2)) -> split(conv(x, concat(w1, w2, axis=0)), axis=1)
    def dst(b):
        w = b.add("concat", b.input("w1", K3), b.input("w2", K3), axis=0)
        return list(b.add("split", b.add("conv2d", b.input("x", X4), w), axis=1, sizes=(4, 4)))
    def src(b):
        x = b.input("x", X4)
        return [b.add("conv2d", x, b.input("w1", K3)), b.add("conv2d", x, b.input("w2", K3))]
    return _rule("conv_merge", src, dst)


def concat_transposes():  # concat(x^T, y^T, axis=0) -> concat(x, y, axis=1)^T
    return _rule("concat_transposes",
                 lambda b: [b.add("concat", b.add("transpose", b.input("x", M), perm=(1, 0)),
                                  b.add("transpose", b.input("y", M), perm=(1, 0)), axis=0)],
                 lambda b: [b.add("transpose", b.add("concat", b.input("x", M), b.input("y", M),
                                                     axis=1), perm=(1, 0))])


def matmul_eye():  # x @ I -> x   (a constant in the pattern; its shape is a wildcard)
    return _rule("matmul_eye",
                 lambda b: [b.add("matmul", b.input("x", M), b.add("eye", shape=(4, 4)))],
                 lambda b: [b.input("x", M)])


def split_concat():  # concat(split(x, axis=1)) -> x
    def src(b):
        a, c = b.add("split", b.input("x", (4, 8)), axis=1, sizes=(4, 4))
        return [b.add("concat", a, c, axis=1)]
    return _rule("split_concat", src, lambda b: [b.input("x", (4, 8))])


def hand_rules() -> list[Rule]:
    return [conv_relu_fuse(), conv_relu_unfuse(), matmul_relu_fuse(), ewadd_commute(),
            relu_idempotent(), double_transpose(), matmul_merge(), matmul_unmerge(), conv_merge(),
            concat_transposes(), matmul_eye(), split_concat()]


def load_db_rules(limit: int | None = None) -> list[Rule]:
    """The project's rule DB (proved rules) when it exists and subgen can read it, else []."""
    path = Path(__file__).resolve().parent.parent / "subgen" / "data" / "rules.db"
    if not path.exists():
        return []
    try:
        from subgen.rules.db import RuleDB
        with RuleDB(path, create=False) as db:
            rules = db.proved_rules()
    except Exception:  # noqa: BLE001 - the DB belongs to another part; its absence is not ours
        return []
    return rules[:limit] if limit else rules
