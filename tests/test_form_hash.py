"""Normal-form hashes (`subgen.pairing.form_hash`) split terms exactly as normal-form strings do, and the
array version for many nodes equals the per-term one."""
import pytest

from envcore.ops import TASO_GENERATOR_OPS
from subgen.enumeration.enumerator import Enumerator
from subgen.pairing.form_hash import FormHashes, form_arrays, node_forms
from subgen.pairing.normal_form import NormalForms, term_describer


@pytest.fixture(scope="module", params=[(TASO_GENERATOR_OPS, 2),
                                        (("concat", "ewadd", "ewmul", "relu", "matmul",
                                          "scalar_mul", "conv2d"), 3)])
def forms(request):
    ops, depth = request.param
    en = Enumerator(ops, depth).run()
    return en, NormalForms(term_describer(en)), FormHashes(term_describer(en))


def test_hashes_partition_terms_as_the_normal_form_strings_do(forms):
    en, nf, fh = forms
    strings = [nf.of(t.id) for t in en.terms]
    hashes = [fh.of(t.id) for t in en.terms]
    first_s, first_h = {}, {}
    assert [first_s.setdefault(s, i) for i, s in enumerate(strings)] == \
        [first_h.setdefault(h, i) for i, h in enumerate(hashes)]
    # the forms really merge spellings (a+b and b+a), and keep most terms apart
    assert len(en.terms) // 2 < len(first_s) < len(en.terms)


def test_array_forms_equal_the_per_term_forms(forms):
    en, _, fh = forms
    top = max(t.size for t in en.terms)
    groups = {}
    for n in en.nodes:
        if en.terms[n.outputs[0]].size != top:
            continue
        scalar = tuple(en.terms[i].shape == () for i in n.inputs)
        for k, o in enumerate(n.outputs):
            groups.setdefault((n.op, n.params, k, scalar), []).append((n, o))
    assert len(groups) > 5
    for (op, params, k, scalar), items in groups.items():
        kids = [form_arrays([fh.form(n.inputs[j]) for n, _ in items]) for j in range(len(scalar))]
        got = node_forms(op, params, kids, k, scalar)[:, 7].tolist()
        assert got == [fh.of(o) for _, o in items]
