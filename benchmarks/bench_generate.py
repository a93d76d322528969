"""Generator timings.  `pytest benchmarks/bench_generate.py --benchmark-only`.

Candidate search (enumerate + pair + prune + refute, no verification) at depth 3, measured in
the same run two ways on the same settings:
  * the reference: everything in this process on the full enumerator (`sharded=False`);
  * the default from depth 3 on: the last enumeration level and the pair / refute / prune
    stages spread over 2 local worker processes (`subgen.pairing.sharded_stages`).
The sharded run reports its speedup over the reference, and both must keep the same rules.
Also: depth 2 (the floor), and instance pruning on 64-bit digests against the same pruning on
built Rules (the baseline it replaced).

SUBGEN_BENCH_DEPTH4=1 adds the whole `generate --max-ops 4 --workers 2` (several minutes), with
verification, reporting its seconds against the 600 s target.  Whole-command timings at depth 3
and 4 are also written by `subgen generate --json` (its `seconds`); see
benchmarks/results/generate.md.
"""
import os
import time

import pytest

from subgen.pipelines.generate import Settings, find_candidates


def _search(depth, sharded, workers=2):
    from subgen.pipelines.executors import make_executor
    with make_executor("local", workers) as ex:
        rules, _ = find_candidates(Settings(max_ops=depth, verify=False), executor=ex,
                                   sharded=sharded)
    return sorted(r.name for r in rules)


@pytest.fixture(scope="module")
def times():
    return {}


def test_depth2(benchmark):
    names = benchmark.pedantic(_search, args=(2, False), rounds=2, iterations=1)
    assert names


def test_depth3_in_one_process(benchmark, times):
    names = benchmark.pedantic(_search, args=(3, False), rounds=1, iterations=1)
    times["serial"] = (benchmark.stats.stats.mean, names)
    benchmark.extra_info["rules"] = len(names)


def test_depth3_sharded_over_2_workers(benchmark, times):
    names = benchmark.pedantic(_search, args=(3, True), rounds=1, iterations=1)
    benchmark.extra_info["rules"] = len(names)
    if "serial" in times:
        serial, serial_names = times["serial"]
        benchmark.extra_info["speedup_vs_one_process"] = serial / benchmark.stats.stats.mean
        assert names == serial_names


def test_instance_pruning_on_digests_vs_rules(benchmark):
    from subgen.pairing import pairs as C
    from subgen.enumeration.enumerator import Enumerator
    from subgen.pairing.prune import canonical_key, instance_keys
    from subgen.pairing.digests import instance_digests, oriented_digests
    en = Enumerator(Settings().ops, 2)
    en.run()
    raw = [p for b in C.buckets(en).values() for p in C.pairs(en, b)]
    oriented = [o for o in (C.orient(en, a, c) for a, c in raw) if o is not None]
    pairs = {}
    for d, o in zip(oriented_digests(en, oriented), oriented):
        pairs.setdefault(d, o)

    def on_digests():
        inst = instance_digests(en, list(pairs.values()))
        return sum(1 for k in pairs if k not in inst)

    t0 = time.perf_counter()
    rules = [C.to_rule(en, a, c, C.term_key(en, a, c)) for a, c in pairs.values()]
    inst = set()
    for r in rules:
        inst |= instance_keys(r, shapes="rank")
    baseline_kept = sum(1 for r in rules if canonical_key(r, shapes="rank") not in inst)
    baseline = time.perf_counter() - t0
    kept = benchmark.pedantic(on_digests, rounds=3, iterations=1)
    benchmark.extra_info["speedup_vs_rule_objects"] = baseline / benchmark.stats.stats.mean
    assert kept == baseline_kept


@pytest.mark.skipif(not os.environ.get("SUBGEN_BENCH_DEPTH4"), reason="minutes; opt in")
def test_depth4_generate_and_verify(benchmark, tmp_path):
    from subgen.pipelines.generate import generate

    def run():
        return generate(Settings(max_ops=4), tmp_path / "d4.db", workers=2, fresh=True)

    summary = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["proved"] = summary.proved
    benchmark.extra_info["ratio_to_600s_target"] = benchmark.stats.stats.mean / 600
    assert summary.proved > 0
