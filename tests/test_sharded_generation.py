"""The generator's sharded path (compact last level, stages run on fingerprint partitions) gives
exactly the serial path's rules, in the same order, with the same stage counts."""
import pytest

from envcore.ops import TASO_GENERATOR_OPS
from subgen.pipelines.executors import make_executor
from subgen.pipelines.generate import Settings, Summary, find_candidates
from subgen.enumeration.shard import enumerate_compact
from subgen.pairing.sharded_stages import candidate_stages


def _serial(settings):
    rules, summary = find_candidates(settings)
    return [r.to_dict() for r in rules], summary.stages


@pytest.fixture(scope="module")
def depth2():
    s = Settings(max_ops=2, ops=TASO_GENERATOR_OPS, verify=False)
    return s, _serial(s)


@pytest.mark.parametrize("nparts", [1, 3, 7])
def test_partitions_give_the_serial_rules(depth2, nparts):
    s, (rules, stages) = depth2
    assert len(rules) > 100 and any(st["name"] == "prune-smaller" and st["in"] > st["out"]
                                    for st in stages)
    with make_executor("local", 1) as ex:
        stats = {}
        en = enumerate_compact(s.ops, s.max_ops, s.seed, ex, stats=stats)
        # the last level really was thinned, and the thinned nodes never reach a worker
        assert 0 < stats["unkept_terms"] and stats["kept_nodes"] < stats["last_level_nodes"]
        summary = Summary()
        got = candidate_stages(en, s, ex, summary, _NoProgress(), nparts=nparts)
    assert summary.stages == stages
    assert [r.to_dict() for r in got] == rules


def test_process_pool_gives_the_serial_rules_with_splits():
    """Two worker processes, an operator set with split (two-output buckets) at depth 3."""
    s = Settings(max_ops=3, ops=("concat", "split", "ewadd", "relu"), verify=False)
    rules, stages = _serial(s)
    assert any(len(r["src"]["outputs"]) > 1 for r in rules)
    with make_executor("local", 2) as ex:
        got, summary = find_candidates(s, executor=ex, sharded=True)
    assert summary.stages == stages
    assert [r.to_dict() for r in got] == rules


class _NoProgress:
    def start(self, name, total=None):
        pass

    def advance(self, n=1):
        pass
