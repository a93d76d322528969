"""prune-smaller and prune-supergraph read off the enumeration (`subgen.pairing.term_prune`) decide as
the Rule-based tests (`subgen.pairing.prune`) do on the same candidate rules."""
import numpy as np
import pytest

from envcore.ops import TASO_GENERATOR_OPS
from subgen.pairing import pairs as C
from subgen.pairing import prune
from subgen.pairing import term_prune as T
from subgen.enumeration.enumerator import Enumerator


@pytest.mark.parametrize("ops,depth", [(TASO_GENERATOR_OPS, 2),
                                       (("concat", "split", "ewadd", "ewmul", "relu",
                                         "matmul", "transpose"), 3)])
def test_term_and_rule_prunes_agree(ops, depth):
    en = Enumerator(ops, depth).run()
    fv = C.FloatValues(en)
    # 600 true pairs, one per rule up to renaming, met in a random order of the candidates (the
    # candidates are checked only until 600 are found: checking all 355,000 took 15 s)
    candidates = [o for b in C.buckets(en).values() for a, c in C.pairs(en, b)
                  if (o := C.orient(en, a, c)) is not None]
    rng = np.random.default_rng(1)
    sample, seen = [], set()
    for i in rng.permutation(len(candidates)):
        o = candidates[i]
        if fv.agree(*o):
            k = C.term_key(en, *o)
            if k not in seen:
                seen.add(k)
                sample.append(o)
                if len(sample) == 600:
                    break
    assert len(sample) > 50
    replaced, nf = T.Replaced(en, T.ExactValues(en)), C._normal_forms(en)
    smaller = supergraph = 0
    for a, c in sample:
        rule = C.to_rule(en, a, c, "k")
        got = T.generalizes(en, replaced, a, c, lambda t: nf((t,)))
        assert got == prune.generalizes(rule), rule
        sup = T.common_supergraph(en, a, c)
        assert sup == prune.common_supergraph(rule), rule
        smaller += got
        supergraph += sup
    assert 0 < smaller < len(sample) and supergraph > 0     # both verdicts were exercised
