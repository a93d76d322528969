"""Correct rules are proved; mutants of them (a wrong concat axis, swapped matmul operands, a
dropped or moved relu, swapped split outputs, a changed conv kernel, a wrongly mapped output) are
refuted, every one with a counterexample."""
import pytest

from rulekit import rule
from verifier import verify_rule

SQ = (3, 3)
IMG, KER = (2, 4, 5, 5), (4, 4, 3, 3)


def geometry(b, x, y, z, w, outer=0, inner=1):
    return b.add("concat", b.add("concat", x, y, axis=inner), b.add("concat", z, w, axis=inner),
                 axis=outer)


def mm_dist(b, x, y, z, swap=False):
    a = b.add("matmul", y, x) if swap else b.add("matmul", x, y)
    return b.add("ewadd", a, b.add("matmul", x, z))


def conv_split(b, x, w, v, swap_out=False, swap_kernels=False):
    k = b.add("concat", *((v, w) if swap_kernels else (w, v)), axis=0)
    p0, p1 = b.add("split", b.add("conv2d", x, k), axis=1, sizes=(4, 4))
    return [p1, p0] if swap_out else [p0, p1]


def two_convs(b, x, w, v):
    return [b.add("conv2d", x, w), b.add("conv2d", x, v)]


def two_mms(b, x, y, z):
    return [b.add("matmul", x, y), b.add("matmul", x, z)]


def mm_split(b, x, y, z, swap_out=False):
    p0, p1 = b.add("split", b.add("matmul", x, b.add("concat", y, z, axis=1)), axis=1,
                   sizes=(3, 3))
    return [p1, p0] if swap_out else [p0, p1]


# name -> (correct rule, mutants of it)
CASES = {
    "concat_geometry": (
        rule("geometry", geometry, lambda b, **k: geometry(b, **{**k, "y": k["z"], "z": k["y"]},
                                                           outer=1, inner=0),
             x=SQ, y=SQ, z=SQ, w=SQ),
        [rule("concat_axis_swapped", geometry,
              lambda b, **k: geometry(b, **{**k, "y": k["z"], "z": k["y"]}), x=SQ, y=SQ, z=SQ,
              w=SQ)]),
    "matmul_linear": (
        rule("mm_linear", lambda b, x, y, z: b.add("matmul", x, b.add("ewadd", y, z)), mm_dist,
             x=SQ, y=SQ, z=SQ),
        [rule("matmul_operands_swapped", lambda b, x, y, z: b.add("matmul", x, b.add("ewadd", y, z)),
              lambda b, **k: mm_dist(b, **k, swap=True), x=SQ, y=SQ, z=SQ)]),
    "relu_fuse": (
        rule("relu_fuse", lambda b, x, w: b.add("relu", b.add("conv2d", x, w)),
             lambda b, x, w: b.add("conv2d", x, w, activation="relu"), x=IMG, w=KER),
        [rule("relu_dropped", lambda b, x, w: b.add("relu", b.add("conv2d", x, w)),
              lambda b, x, w: b.add("conv2d", x, w), x=IMG, w=KER)]),
    "relu_matmul": (
        rule("relu_matmul", lambda b, x, y: b.add("relu", b.add("matmul", x, y)),
             lambda b, x, y: b.add("matmul", x, y, activation="relu"), x=SQ, y=SQ),
        [rule("relu_moved", lambda b, x, y: b.add("relu", b.add("matmul", x, y)),
              lambda b, x, y: b.add("matmul", b.add("relu", x), y), x=SQ, y=SQ)]),
    "conv_split": (
        rule("conv_split", two_convs, conv_split, x=IMG, w=KER, v=KER),
        [rule("split_outputs_swapped", two_convs, lambda b, **k: conv_split(b, **k, swap_out=True),
              x=IMG, w=KER, v=KER),
         rule("conv_kernel_changed", two_convs,
              lambda b, **k: conv_split(b, **k, swap_kernels=True), x=IMG, w=KER, v=KER),
         rule("conv_kernel_transposed", lambda b, x, w: b.add("conv2d", x, w),
              lambda b, x, w: b.add("conv2d", x, b.add("transpose", w, perm=(0, 1, 3, 2))),
              x=IMG, w=KER)]),
    "mm_split": (
        rule("mm_split", two_mms, mm_split, x=SQ, y=SQ, z=SQ),
        [rule("output_mapped_wrong", two_mms, lambda b, **k: mm_split(b, **k, swap_out=True),
              x=SQ, y=SQ, z=SQ)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_correct_rule_is_proved(case):
    res = verify_rule(CASES[case][0], timeout_ms=5000)
    assert res.status == "proved", res
    assert res.axioms and res.counterexample is None


@pytest.mark.parametrize("mutant", [m for c in CASES.values() for m in c[1]], ids=lambda m: m.name)
def test_mutant_is_refuted_with_counterexample(mutant):
    res = verify_rule(mutant)
    assert res.status == "refuted"
    cex = res.counterexample
    assert cex and cex["max_abs_err"] > 1e-6
    assert set(cex["shapes"]) == set(mutant.src.inputs)
    assert res.axioms == ()
