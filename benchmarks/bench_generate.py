"""Generator timings.  `pytest benchmarks/bench_generate.py --benchmark-only`.

Reports depth 2 and depth 3 candidate generation (enumerate + pair + prune + refute + normal
forms) and, measured in the same run:
  * the ratio of depth 3 to depth 2;
  * how much of the verifier's work the normal-form stage saves (rules kept / rules that still
    need their own proof);
  * the instance pruning on term text against the same pruning on built Rules (the baseline it
    replaced), on the depth-2 survivors of the refute stage.
SUBGEN_BENCH_DEPTH4=1 adds depth 4 (many minutes).  Verification time is measured by
`subgen generate --json` (its `seconds`), see benchmarks/results/generate.md.
"""
import os
import time

import pytest

from subgen.generate import Settings, find_candidates, normal_form_stage


def _run(depth):
    rules, summary = find_candidates(Settings(max_ops=depth, verify=False))
    derived = normal_form_stage(rules, summary)
    return summary, len(rules), len(rules) - len(derived)


@pytest.fixture(scope="module")
def times():
    return {}


def test_depth2(benchmark, times):
    s, kept, own = benchmark.pedantic(_run, args=(2,), rounds=2, iterations=1)
    times[2] = benchmark.stats.stats.mean
    assert kept >= own > 0


def test_depth3(benchmark, times):
    s, kept, own = benchmark.pedantic(_run, args=(3,), rounds=1, iterations=1)
    times[3] = benchmark.stats.stats.mean
    benchmark.extra_info["rules_kept"] = kept
    benchmark.extra_info["rules_to_verify"] = own
    benchmark.extra_info["verifier_work_saved_ratio"] = kept / own
    if 2 in times:
        benchmark.extra_info["ratio_depth3_vs_depth2"] = times[3] / times[2]
    assert kept >= own > 0


def test_instance_pruning_on_text_vs_rules(benchmark):
    from subgen import candidates as C
    from subgen.enumerate import Enumerator
    from subgen.prune import canonical_key, instance_keys
    en = Enumerator(Settings().ops, 2)
    en.run()
    pairs = {}
    for b in C.buckets(en).values():
        for a, c in C.pairs(en, b):
            o = C.orient(en, a, c)
            if o is not None:
                pairs.setdefault(C.term_key(en, *o), o)

    def on_text():
        inst = set()
        for a, c in pairs.values():
            inst |= C.instance_term_keys(en, a, c)
        return sum(1 for k in pairs if k not in inst)

    t0 = time.perf_counter()
    rules = [C.to_rule(en, a, c, k) for k, (a, c) in pairs.items()]
    inst = set()
    for r in rules:
        inst |= instance_keys(r, shapes="rank")
    baseline_kept = sum(1 for r in rules if canonical_key(r, shapes="rank") not in inst)
    baseline = time.perf_counter() - t0
    kept = benchmark.pedantic(on_text, rounds=3, iterations=1)
    benchmark.extra_info["speedup_vs_rule_objects"] = baseline / benchmark.stats.stats.mean
    assert kept == baseline_kept


@pytest.mark.skipif(not os.environ.get("SUBGEN_BENCH_DEPTH4"), reason="minutes; opt in")
def test_depth4(benchmark):
    s, kept, own = benchmark.pedantic(_run, args=(4,), rounds=1, iterations=1)
    benchmark.extra_info["rules_kept"] = kept
    benchmark.extra_info["rules_to_verify"] = own
    assert kept >= own > 0
