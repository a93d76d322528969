"""Every axiom holds on the catalogue's reference semantics; a wrong one is caught."""
import pytest
import z3

from verifier import z3ops
from verifier.axiom import Axiom
from verifier.axioms import AXIOMS, BY_NAME
from verifier.domains import ew, mm
from verifier.notation import mat, tr, x, y
from verifier.shapes import SHAPE_AXIOMS, ShapeAxiom, validate_shape_axiom
from verifier.validate import check_numeric, check_redundant, check_symbolic, validate_axiom

TASO_FAMILIES = ["ewadd_assoc", "ewmul_comm", "ewmul_ewadd_distrib", "smul_conv_kernel",
                 "relu_conv_fuse", "relu_concat", "relu_transpose", "conv_ewadd_kernel",
                 "conv_concat_sum", "conv_concat_kernels", "matmul_assoc", "matmul_concat_sum",
                 "split_concat_0", "transpose_involution", "transpose_matmul",
                 "concat_geometry", "pool_max_concat_batch", "pool_kernel_conv",
                 "eye_conv_identity", "eye_matmul_right", "ones_ewmul_r2", "enlarge_conv",
                 "conv_concat_grouped"]


def test_axioms_cover_taso():
    assert len(AXIOMS) >= 44
    assert set(TASO_FAMILIES) <= set(BY_NAME)
    assert all(a.statement and a.name for a in AXIOMS)


@pytest.mark.parametrize("ax", AXIOMS, ids=lambda a: a.name)
def test_axiom_formula_has_triggers(ax):
    f = ax.builder()
    assert z3.is_quantifier(f) and f.num_patterns() >= 1


@pytest.mark.parametrize("ax", AXIOMS, ids=lambda a: a.name)
def test_axiom_validates(ax):
    rep = validate_axiom(ax, max_dim=3, limit=40, redundancy=False, seed=1)
    assert rep.ok, rep.counterexample
    assert rep.instances > 0
    assert rep.symbolic > 0 or "numeric only" in rep.symbolic_note


def _square_pairs(m):
    for n in range(1, m + 1):
        yield {"x": (n, n), "y": (n, n)}


# true only for 1x1 matrices: the first instance passes, the second must fail
WRONG = Axiom("wrong_transpose_matmul", "(xy)^T = x^T y^T (false)",
              tr(mat(x, y)), mat(tr(x), tr(y)), _square_pairs)


def test_wrong_axiom_fails_numerically_with_counterexample():
    n, cex = check_numeric(WRONG, max_dim=3)
    assert cex is not None and cex["max_abs_err"] > 1e-6
    assert set(cex["instance"]) == {"x", "y"}
    rep = validate_axiom(WRONG, redundancy=False, max_dim=3)
    assert not rep.ok and rep.counterexample


def test_wrong_axiom_fails_symbolically_with_counterexample():
    n, cex, _ = check_symbolic(WRONG)
    assert cex is not None and cex["symbolic"] and cex["inputs"]


def test_wrong_axiom_is_not_provable_from_the_axioms():
    assert check_redundant(WRONG, AXIOMS, timeout_ms=500) is None


def test_derived_axiom_is_reported_redundant():
    derived = Axiom("triple_transpose", "x^TTT = x^T", tr(tr(tr(x))), tr(x), ew("x", ranks=(2,)))
    assert validate_axiom(derived, redundancy=False, max_dim=3).ok
    assert check_redundant(derived, AXIOMS, timeout_ms=2000) is True


# --- shape axioms: each one agrees with the catalogue's shape rules ----------------------------

@pytest.mark.parametrize("sa", SHAPE_AXIOMS, ids=lambda a: a.name)
def test_shape_axiom_agrees_with_catalogue(sa):
    n, bad = validate_shape_axiom(sa, max_dim=3, limit=25, seed=3)
    assert bad is None, bad
    assert n > 0


def test_wrong_shape_axiom_is_caught():
    # "rows of x by columns of y" is right for 2-D matmuls only: a batched one must be caught
    rows_by_cols = ShapeAxiom("dim_matmul_2d", "(wrong for batches)", mat(x, y),
                              lambda e, k: z3.If(k == 0, z3ops.DIM(e["x"], 0),
                                                 z3ops.DIM(e["y"], 1)), mm("xy", ranks=(3,)))
    n, bad = validate_shape_axiom(rows_by_cols, max_dim=2, limit=None)
    assert bad is not None and len(bad["instance"]["x"]) == 3
    want = bad["catalogue"] + [0]                      # sizes, then the rank marker
    assert any(str(want[k]) != v for k, v in bad["shape_axiom"].items())


def test_grouped_conv_axiom_proves_taso_concat_of_convs():
    from pathlib import Path
    from verifier.prove import prove
    pb = Path(__file__).resolve().parents[2] / "shared/anchors/taso/graph_subst.pb"
    if not pb.exists():
        pytest.skip("TASO anchor not present")
    from subgen.rules.io import load_rules
    rules = load_rules(pb)
    for i in (99, 100, 130, 131):   # concat(conv(x, w), conv(y, v)) = conv in 2 groups
        status, used = prove(rules[i])
        assert status == "proved" and "conv_concat_grouped" in used
