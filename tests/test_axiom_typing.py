"""Every axiom keeps terms typed at every size (`verifier.axiom_typing`), and a proof resting on
an axiom that does not is caught by the in-scope check before any rule is applied."""
from __future__ import annotations

import dataclasses

import pytest

from verifier.axiom_typing import typing_gaps
from verifier.axioms import AXIOMS


@pytest.mark.parametrize("axiom", AXIOMS, ids=[a.name for a in AXIOMS])
def test_axiom_keeps_terms_typed(axiom):
    assert typing_gaps(axiom) == []


def _unguarded_block_matmul():
    ax = next(a for a in AXIOMS if a.name == "matmul_concat_sum")
    assert ax.where, "the block matmul's seam guard is gone"
    return dataclasses.replace(ax, where=())


def test_the_audit_finds_the_block_matmul_without_its_seam_guard():
    gaps = typing_gaps(_unguarded_block_matmul())
    assert gaps and gaps[0]["direction"] == "rhs -> lhs"


def test_an_axiom_that_says_too_much_is_caught_by_the_in_scope_check(monkeypatch):
    """With the seam guard removed, Z3 'proves' the block-matmul swap at any size; the check
    that applies it through the matcher at random sizes in its scope refutes it."""
    import verifier.prove as prove
    from envcore.graph import GraphBuilder
    from envcore.rewrite.rule import Rule
    from verifier import verify_rule

    def side(b, dst):
        m0, m1, m2 = b.input("m0", (4, 4)), b.input("m1", (4, 4)), b.input("m2", (4, 4))
        left, right = ((m1, m0), (m2, m0)) if dst else ((m0, m1), (m0, m2))
        return b.build([b.add("matmul", b.add("concat", *left, axis=1),
                              b.add("concat", *right, axis=0))])
    rule = Rule("swap", side(GraphBuilder(), False), side(GraphBuilder(), True))
    assert verify_rule(rule).status == "proved"
    bad = _unguarded_block_matmul()
    formulas = [(a.name, bad.builder() if a.name == bad.name else f)
                for a, (_, f) in zip(AXIOMS, prove.compiled()[:len(AXIOMS)])]
    formulas += prove.compiled()[len(AXIOMS):]
    import z3
    monkeypatch.setattr(prove, "_TRACKED", [(f, z3.Bool(f"ax:{n}")) for n, f in formulas])
    res = verify_rule(rule)
    assert res.status == "refuted" and "inside its scope" in res.counterexample["note"]
