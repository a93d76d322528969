"""Small helpers for building rules in tests: `rule(name, src_fn, dst_fn, x=(2, 4), ...)`."""
from envcore.graph import GraphBuilder
from envcore.rewrite.rule import Rule


def side(fn, shapes):
    b = GraphBuilder()
    ins = {n: b.input(n, s) for n, s in shapes.items()}
    out = fn(b, **ins)
    return b.build(list(out) if isinstance(out, list) else [out])


def rule(name, src_fn, dst_fn, **shapes):
    return Rule(name, side(src_fn, shapes), side(dst_fn, shapes))
