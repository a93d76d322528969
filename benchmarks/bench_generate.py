"""Generator timings.  `pytest benchmarks/bench_generate.py --benchmark-only`.

Reports depth 2 and depth 3 candidate generation (enumerate + pair + prune + refute) and the
ratio of depth 3 to depth 2 measured in the same run; SUBGEN_BENCH_DEPTH4=1 adds depth 4
(minutes).  Verification time is measured by `subgen generate --json` (its `seconds`), see the
README's figures.
"""
import os

import pytest

from subgen.generate import Settings, find_candidates


def _run(depth):
    rules, summary = find_candidates(Settings(max_ops=depth, verify=False))
    return summary


@pytest.fixture(scope="module")
def times():
    return {}


def test_depth2(benchmark, times):
    s = benchmark.pedantic(_run, args=(2,), rounds=2, iterations=1)
    times[2] = benchmark.stats.stats.mean
    assert s.after_pruning > 0


def test_depth3(benchmark, times):
    s = benchmark.pedantic(_run, args=(3,), rounds=1, iterations=1)
    times[3] = benchmark.stats.stats.mean
    benchmark.extra_info["rules_after_pruning"] = s.after_pruning
    if 2 in times:
        benchmark.extra_info["ratio_depth3_vs_depth2"] = times[3] / times[2]
    assert s.after_pruning > 0


@pytest.mark.skipif(not os.environ.get("SUBGEN_BENCH_DEPTH4"), reason="minutes; opt in")
def test_depth4(benchmark):
    s = benchmark.pedantic(_run, args=(4,), rounds=1, iterations=1)
    benchmark.extra_info["rules_after_pruning"] = s.after_pruning
    assert s.after_pruning > 0
