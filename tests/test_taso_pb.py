"""TASO's protobuf format: wire-level round trip, all 133 rules load, export round-trips."""
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from envcore.execute import equivalent
from subgen.errors import BadInput
from subgen.pairing.prune import canonical_key
from subgen.rules.taso_pb import (PbOp, PbRule, _read_varint, _varint, decode, encode, read_rules,
                            write_rules)

TASO = Path("/work/shared/anchors/taso/graph_subst.pb")
if not TASO.exists():
    TASO = Path(__file__).resolve().parents[1] / "data" / "taso_graph_subst.pb"
needs_taso = pytest.mark.skipif(not TASO.exists(), reason="TASO's rule file is not here")


@settings(max_examples=200, deadline=None)
@given(v=st.integers(-2**31, 2**31 - 1))
def test_varint_round_trip_and_negative_length(v):
    enc = _varint(v)
    got, pos = _read_varint(enc, 0)
    assert pos == len(enc)
    assert (got - (1 << 64) if got >= 1 << 63 else got) == v
    if v < 0:
        assert len(enc) == 10


def test_message_round_trip():
    rec = PbRule([PbOp(16, [(-1, 0), (-2, 0)], [])],
                 [PbOp(16, [(-2, 0), (-1, 0)], [(9, 0)])], [(0, 0, 0, 0)])
    again = decode(encode([rec]))[0]
    assert again == rec


@needs_taso
def test_taso_file_loads_and_reencodes_byte_identically(tmp_path):
    data = TASO.read_bytes()
    recs = decode(data)
    assert len(recs) == 133
    assert encode(recs) == data
    rules = read_rules(TASO)
    assert len(rules) == 133
    assert sum(len(r.src.outputs) == 2 for r in rules) == 13
    for r in rules[::7]:
        assert equivalent(r.src, r.dst)[0], r.name
    out = tmp_path / "again.pb"
    n, skipped = write_rules(rules, out)
    assert n == 133 and not skipped
    assert out.read_bytes() == data


def test_our_rules_round_trip(tmp_path):
    from subgen.pipelines.generate import Settings, find_candidates
    rules, _ = find_candidates(Settings(max_ops=2, ops=("ewadd", "matmul", "concat", "split",
                                                        "conv2d", "relu")))
    out = tmp_path / "ours.pb"
    n, skipped = write_rules(rules, out)
    assert n > 20
    back = read_rules(out)
    written = [r for r in rules if not any(s.startswith(r.name + ":") for s in skipped)]
    assert [canonical_key(a, shapes=False) for a in written] == \
           [canonical_key(b, shapes=False) for b in back]


def test_garbage_is_bad_input(tmp_path):
    p = tmp_path / "x.pb"
    p.write_bytes(b"\x0a\xff\xff\xff\x0f garbage")
    with pytest.raises(BadInput):
        read_rules(p)
