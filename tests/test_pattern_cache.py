"""The compiled-pattern cache beside a rule index (`subgen.rules.index.attach_patterns`): a
pattern rebuilt from it is the pattern compiling gives, field for field; the matches found with
it are those found without it; and a stale (other code, other rules), garbled, truncated or
foreign cache is compiled and written again, never read."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import subgen.rules.index as index
import subgen.rules.load as load
from envcore.rewrite.candidate_set import CandidateSet
from envcore.rewrite.pattern import PLAIN, Pattern, pattern_of
from envcore.zoo import build
from rules_fixture import hand_rules
from subgen.paths import DEFAULT_RULES
from subgen.rules.db import RuleDB

GENERAL = {"requires": [], "resolve": {}, "pinned": False}


@pytest.fixture(autouse=True)
def _places(tmp_path, monkeypatch):
    monkeypatch.delenv(index.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "db" / "small.db"
    with RuleDB(path) as d:
        for r in hand_rules():
            rid = d.add_rules([r])[0]
            d.set_result(rid, "proved", axioms=("test",), seconds=0.1,
                         scope={"forward": GENERAL, "reverse": GENERAL})
    return path


def db_key(db: Path) -> bytes:
    with RuleDB(db, create=False) as d:
        return index.key(d.rows("proved"))


def cache_file(db: Path) -> Path:
    return db.parent / f".{db.name}.patterns.db.idx"


def fields(p: Pattern, plans: bool = True) -> tuple:
    """Everything a pattern is (the matcher's plans included), but its key (a cached pattern's
    key names its file's group of equal sources, not the source's JSON)."""
    return (p.graph, p.var_shapes, list(p.var_shapes), p.var_ranks, list(p.nodes.items()),
            p.order, p.consumers, p.supported, p.output_tensors, p.anchor, p.radius, p.reach,
            [p.plan(a) for a in p.order] if plans else None)


def loaded(path, cache=True):
    saved = os.environ.get(index.ENV)
    if not cache:
        os.environ[index.ENV] = "off"
    try:
        return load.load_rules_for_use(path)
    finally:
        if saved is None:
            os.environ.pop(index.ENV, None)
        else:
            os.environ[index.ENV] = saved


def matches(rules, model="inception_v3") -> list[tuple]:
    g = build(model, size="tiny")
    return [m.key for m in CandidateSet(rules, g).matches]


def test_a_cached_pattern_is_the_compiled_one(db):
    loaded(db)                                   # builds the index, compiles, writes the cache
    assert cache_file(db).is_file()
    rules = loaded(db)                           # reads both back
    assert all(PLAIN in r.src.__dict__ for r in rules)
    for r in rules:
        cached = pattern_of(r.src)
        assert PLAIN not in r.src.__dict__ and isinstance(cached.key, tuple)   # rebuilt, not compiled
        assert fields(cached) == fields(Pattern(r.src))
    # equal sources share a key, other sources do not, as with compiled keys
    keys = [pattern_of(r.src).key for r in rules]
    jsons = [r.src.to_json() for r in rules]
    assert all((a == b) == (c == d) for a, c in zip(keys, jsons) for b, d in zip(keys, jsons))


def test_the_matches_with_the_cache_are_those_without(db):
    loaded(db)
    with_cache = loaded(db)
    without = loaded(db, cache=False)
    assert not any(PLAIN in r.src.__dict__ for r in without)
    assert matches(with_cache) == matches(without) != []


@pytest.mark.parametrize("damage", ["garbled", "truncated", "empty", "foreign", "other code",
                                    "other rules"])
def test_a_stale_or_damaged_cache_is_compiled_and_written_again(db, damage, monkeypatch):
    loaded(db)
    f = cache_file(db)
    good = f.read_bytes()
    if damage == "garbled":
        f.write_bytes(good[:-40] + bytes(b ^ 0xFF for b in good[-40:]))
    elif damage == "truncated":
        f.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        f.write_bytes(b"")
    elif damage == "foreign":
        f.write_bytes(b"not a pattern cache" * 100)
    elif damage == "other code":               # the pattern compiler's source changed
        monkeypatch.setattr(index, "_pattern_code_digest", [b"another compiler".ljust(32)])
    elif damage == "other rules":               # a current key, but not these rules
        rules = loaded(db)
        f.unlink()
        assert index.attach_patterns(db, db_key(db), "both", rules[:-1]) == "written"
    rules_key = db_key(db)
    rules = load.load_rules_for_use(db)     # attaches (or writes) the cache itself
    assert not any(PLAIN in r.src.__dict__ for r in rules)   # nothing read from a bad file
    assert index.attach_patterns(db, rules_key, "both", loaded(db, cache=False)) == "read"
    assert f.read_bytes() != b"" and matches(loaded(db)) == matches(loaded(db, cache=False))


def test_a_plain_form_of_another_format_is_compiled_afresh(db):
    loaded(db)
    rules = loaded(db)
    src = rules[0].src
    row = list(src.__dict__[PLAIN])
    row[0] = -1                                  # another Pattern.to_plain format
    src.__dict__[PLAIN] = tuple(row)
    assert fields(pattern_of(src)) == fields(Pattern(src))
    assert isinstance(pattern_of(src).key, str)  # compiled, not rebuilt


def test_the_shipped_dbs_cached_patterns_are_the_compiled_ones():
    """Every rule of subgen/data/rules.db, read through its index and cache in their usual
    place beside it (written there first where they are not current, as any load does)."""
    if not DEFAULT_RULES.is_file():
        pytest.skip("no shipped rule DB")
    load.load_rules_for_use(DEFAULT_RULES)
    rules = load.load_rules_for_use(DEFAULT_RULES)
    assert all(PLAIN in r.src.__dict__ for r in rules)
    for k, r in enumerate(rules):
        plans = k % 16 == 0                      # the plans (made lazily, slow) of one in 16
        assert fields(pattern_of(r.src), plans) == fields(Pattern(r.src), plans), r.name
