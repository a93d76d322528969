"""Rule identity by digest (`subgen.pairing.digests`) is the text key's identity
(`candidates.term_key`), and the array columns of last-level nodes equal the per-term ones."""
import numpy as np
import pytest

from envcore.ops import TASO_GENERATOR_OPS
from subgen.pairing import pairs as C
from subgen.enumeration.enumerator import Enumerator
from subgen.enumeration.fingerprint import splitmix64
from subgen.pairing.digests import (ColumnArrays, columns, encodings, instance_encodings,
                                least_digests, mix, node_columns, oriented_digests)


def test_python_and_numpy_mixes_agree():
    xs = np.array([0, 1, 2**63, 2**64 - 1, 12345678901234567], np.uint64)
    assert [mix(int(x)) for x in xs] == splitmix64(xs).tolist()


def _oriented(en):
    out = []
    for b in C.buckets(en).values():
        for a, c in C.pairs(en, b):
            o = C.orient(en, a, c)
            if o is not None:
                out.append(o)
    return out


@pytest.fixture(scope="module", params=[(TASO_GENERATOR_OPS, 2),
                                        (("concat", "split", "ewadd", "relu", "matmul"), 3)])
def enumerated(request):
    ops, depth = request.param
    en = Enumerator(ops, depth).run()
    return en, _oriented(en)


def test_digests_identify_exactly_the_pairs_the_text_keys_identify(enumerated):
    en, pairs = enumerated
    assert any(len(a) == 2 for a, _ in pairs), "two-output pairs are covered too"
    keys = [C.term_key(en, *p) for p in pairs]
    digests = oriented_digests(en, pairs)
    first_key, first_digest = {}, {}
    by_key = [first_key.setdefault(k, i) for i, k in enumerate(keys)]
    by_digest = [first_digest.setdefault(d, i) for i, d in enumerate(digests)]
    assert by_key == by_digest
    assert 1 < len(first_key) < len(pairs)       # renamings were merged, rules kept apart


def test_instance_digests_name_the_instance_keys(enumerated):
    en, pairs = enumerated
    keys = [C.term_key(en, *p) for p in pairs]
    digests = oriented_digests(en, pairs)
    key_of = dict(zip(digests, keys))
    cols = columns(en)
    known = set(keys)
    rng = np.random.default_rng(0)
    checked = 0
    for i in rng.choice(len(pairs), size=min(400, len(pairs)), replace=False):
        want = {k for k in C.instance_term_keys(en, *pairs[i]) if k in known}
        got = {key_of[d] for d in least_digests(instance_encodings(encodings(cols, *pairs[i])))
               if d in key_of}
        assert got == want
        checked += bool(want)
    assert checked > 0


def test_array_columns_of_last_level_nodes_equal_the_per_term_columns():
    en = Enumerator(("matmul", "ewadd", "conv2d", "concat", "split", "relu", "scalar_mul"), 3)
    en.run()
    cols = columns(en)
    shapes: dict = {}
    base = ColumnArrays.of_terms(en, shapes)
    last = [n for n in en.nodes if en.terms[n.outputs[0]].size == 3]
    tables = {}
    op_i, pidx, ins, fps, nouts = [], [], [], [], []
    for n in last:
        table = tables.setdefault(en.op_names.index(n.op), [])
        if n.params not in table:
            table.append(n.params)
        op_i.append(en.op_names.index(n.op))
        pidx.append(table.index(n.params))
        ins.append(list(n.inputs) + [-1] * (2 - len(n.inputs)))
        fps.append([en.terms[o].fp for o in n.outputs] + [0] * (2 - len(n.outputs)))
        nouts.append(len(n.outputs))
    arrays = [np.array(v, dt) for v, dt in ((op_i, np.int64), (pidx, np.int64),
                                            (ins, np.int64), (fps, np.uint64), (nouts, np.int8))]
    for k in (0, 1):
        rows = np.flatnonzero(arrays[4] > k)
        got = node_columns(base, shapes, en.op_names, tables, 3,
                           *(a[rows] for a in arrays), k)
        tids = [last[r].outputs[k] for r in rows]
        assert len(tids) > 0
        assert got.th.tolist() == [cols.th[t] for t in tids]
        assert got.vmask.tolist() == [cols.vmask[t] for t in tids]
        assert got.expanded.tolist() == [cols.expanded[t] for t in tids]
        leaves = [tuple(x for x in row if x >= 0) for row in got.leaves.tolist()]
        assert leaves == [cols.leaves[t] for t in tids]
