"""Verifier throughput: the depth-3 rule set (generated here with --no-verify) and TASO's
graph_subst.pb, on 2 workers.  Reports median and p95 time per rule (whole, and the Z3 proof
alone) in `extra_info`, with the load average (the machine may be shared); the
baseline in the same run is the numeric check alone, so the ratio says what the proofs cost."""
import os
import time
from pathlib import Path

import pytest

from verifier.batch import summary, verify_many
from verifier.refute import numeric_check

TASO_PB = Path(__file__).resolve().parents[2] / "shared/anchors/taso/graph_subst.pb"


@pytest.fixture(scope="module")
def depth3_rules(tmp_path_factory):
    from subgen.pipelines.generate import Settings, generate
    from subgen.rules.db import RuleDB
    db = tmp_path_factory.mktemp("bench") / "depth3.db"
    generate(Settings(max_ops=3, verify=False), db, workers=2, fresh=True)
    with RuleDB(db) as d:
        return [s.rule for s in d.rules()]


def _bench(benchmark, rules):
    t0 = time.perf_counter()
    for r in rules:
        numeric_check(r)
    baseline = time.perf_counter() - t0
    box = {}

    def run():
        t = time.perf_counter()
        box["res"] = verify_many(rules, timeout_ms=2000, workers=2)
        box["s"] = time.perf_counter() - t
    benchmark.pedantic(run, rounds=1, iterations=1)
    s = summary(box["res"], box["s"])
    proofs = sorted(r.info.get("proof_s", 0.0) for r in box["res"] if "proof_s" in r.info)
    benchmark.extra_info.update(s, numeric_only_s=round(baseline, 3),
                                ratio_vs_numeric=round(box["s"] / max(baseline, 1e-9), 2),
                                proof_median_s=round(_pct(proofs, 0.5), 4),
                                proof_p95_s=round(_pct(proofs, 0.95), 4),
                                load_avg=round(os.getloadavg()[0], 1), cpus=os.cpu_count())
    return s


def _pct(xs, p):
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


def test_bench_depth3(benchmark, depth3_rules):
    s = _bench(benchmark, depth3_rules)
    assert s["rules"] == len(depth3_rules) and s["proved"] > 0


def test_bench_taso_pb(benchmark):
    ruleio = pytest.importorskip("subgen.rules.io")
    if not TASO_PB.exists():
        pytest.skip("TASO anchor not present")
    s = _bench(benchmark, ruleio.load_rules(TASO_PB))
    assert s["rules"] == 133
