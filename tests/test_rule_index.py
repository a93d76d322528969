"""The compiled rule index (`subgen.rules.index`): what `load_rules_for_use` reads back from it is
exactly what it builds from the DB without it (order, numbering, graphs, scopes, names,
directions), on the shipped DB and on a small one; a changed DB or changed code, and a garbled,
truncated, empty or foreign index, are rebuilt; a read-only DB folder still loads; and the rules
read back rewrite a zoo model to a graph with the same outputs.  Speed is measured in
benchmarks/bench_rule_load.py, not here."""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sqlite3
from pathlib import Path

import pytest

import subgen.rules.index as index
import subgen.rules.load as load
from envcore.execute import equivalent
from envcore.graph import Graph
from envcore.rewrite.apply import apply
from envcore.rewrite.candidate_set import CandidateSet
from envcore.zoo import build
from rules_fixture import hand_rules, matmul_relu_fuse, relu_idempotent
from subgen.paths import DEFAULT_RULES
from subgen.rules.db import RuleDB

GENERAL = {"requires": [], "resolve": {}, "pinned": False}
PINNED = {"requires": [[["var", "x", 0], 1]], "resolve": {}, "pinned": True, "fixed": [1.0, True]}


@pytest.fixture(autouse=True)
def _index_places(tmp_path, monkeypatch):
    """Indexes beside the test's DBs, and a user cache inside the test's folder: nothing is
    written to the real ~/.cache."""
    monkeypatch.delenv(index.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def loaded(path, both_directions=True, use_index=True):
    """load_rules_for_use with the index in its default places, or with none at all."""
    saved = os.environ.get(index.ENV)
    if not use_index:
        os.environ[index.ENV] = "off"
    try:
        return load.load_rules_for_use(path, both_directions=both_directions)
    finally:
        if saved is None:
            os.environ.pop(index.ENV, None)
        else:
            os.environ[index.ENV] = saved


def described(rules) -> list[tuple]:
    """Everything a loaded rule is, exactly (reprs tell True from 1 and tuples from lists, and
    keep dict and node order), and which graphs are one object (a rule and its reverse)."""
    first: dict[int, int] = {}
    nodes: dict[int, str] = {}

    def node(n) -> str:
        text = nodes.get(id(n))
        if text is None:
            text = nodes[id(n)] = repr((type(n).__name__, n.op, tuple(map(tuple, n.inputs)),
                                        [type(r).__name__ for r in n.inputs], n.params,
                                        n.shapes))
        return text

    out = []
    for r in rules:
        sides = []
        for g in (r.src, r.dst):
            sides += [[(i, node(n)) for i, n in g.nodes.items()], repr(tuple(map(tuple, g.outputs))),
                      g.canonical_hash, first.setdefault(id(g), len(first))]
        out.append((type(r).__name__, r.name, repr(r.meta), *sides))
    return out


def same(a, b) -> bool:
    return len(a) == len(b) and described(a) == described(b) and a == b


class Builds:
    """Counts the loader's builds from DB rows (a load that read its index builds nothing)."""

    def __init__(self, monkeypatch):
        self.count, real = 0, load._db_rule_sets

        def counted(*args):
            self.count += 1
            return real(*args)
        monkeypatch.setattr(load, "_db_rule_sets", counted)


def index_file(db: Path) -> Path:
    return db.parent / f".{db.name}.idx"


# -- a small DB --------------------------------------------------------------------------------
def _prove(db: RuleDB, rule, forward=GENERAL, reverse=GENERAL) -> int:
    rid = db.add_rules([rule])[0]
    scope = {"forward": forward} if reverse is None else {"forward": forward, "reverse": reverse}
    db.set_result(rid, "proved", axioms=("test",), seconds=0.1, scope=scope)
    return rid


@pytest.fixture
def small_db(tmp_path) -> Path:
    """Hand rules with scopes both ways or one way (an irreversible rule among them, scoped
    both ways), a proved row without a scope and a refuted one."""
    path = tmp_path / "db" / "small.db"
    with RuleDB(path) as db:
        for r in hand_rules():
            if r.name in ("double_transpose", "matmul_eye", "split_concat"):
                _prove(db, r, reverse=GENERAL if r.name == "double_transpose" else None)
            elif r.name == "ewadd_commute":
                _prove(db, r, forward=PINNED, reverse=PINNED)
            elif r.name != "matmul_relu_fuse":
                _prove(db, r)
        db.set_result(db.add_rules([matmul_relu_fuse()])[0], "proved")      # predates scopes
        db.set_result(db.add_rules([relu_idempotent().reversed("dup")])[0], "refuted")
    return path


@pytest.mark.parametrize("both_directions", [True, False])
def test_small_db_reads_back_what_it_builds(small_db, monkeypatch, both_directions):
    builds = Builds(monkeypatch)
    fresh = loaded(small_db, both_directions, use_index=False)
    assert builds.count == 1 and not index_file(small_db).exists()     # off: nothing written
    cold = loaded(small_db, both_directions)
    assert builds.count == 2 and index_file(small_db).is_file()
    warm = loaded(small_db, both_directions)
    other = loaded(small_db, not both_directions)        # one index serves both variants
    assert builds.count == 2
    assert same(fresh, cold) and same(fresh, warm)
    assert same(other, loaded(small_db, not both_directions, use_index=False))
    names = [r.name for r in warm]
    assert "matmul_relu_fuse" not in names and "dup" not in names      # unscoped, refuted
    assert ("matmul_merge~rev" in names) == both_directions
    assert [r.meta["scope"] for r in warm if r.name.startswith("ewadd_commute")] \
        == [PINNED] * (1 + both_directions)


def test_a_reverse_with_no_operator_to_match_is_left_out(small_db):
    names = [r.name for r in loaded(small_db)]
    assert "conv_relu_fuse~rev" in names and "double_transpose" in names
    assert "double_transpose~rev" not in names     # its target is a bare input: no reverse


# -- the shipped DB ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The shipped DB (a copy: its own index is left alone) loaded without an index, built with
    one (cold) and read back from it (warm)."""
    if not DEFAULT_RULES.is_file():
        pytest.skip("no shipped rule DB")
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("shipped")
    mp.delenv(index.ENV, raising=False)
    mp.setenv("XDG_CACHE_HOME", str(base / "user-cache"))
    path = base / "rules.db"
    shutil.copyfile(DEFAULT_RULES, path)
    try:
        fresh = loaded(path, use_index=False)
        cold = loaded(path)
        assert index_file(path).is_file()
        warm = loaded(path)
        forward = loaded(path, both_directions=False)
    finally:
        mp.undo()
    return {"path": path, "fresh": fresh, "cold": cold, "warm": warm, "forward": forward}


def test_shipped_db_reads_back_what_it_builds(shipped):
    fresh = shipped["fresh"]
    # every proved row loads forward once; both directions add the reverses that are not already
    # a forward rule (counted from the DB, not pinned: the shipped DB grows with new op sets)
    with sqlite3.connect(shipped["path"]) as con:
        proved = con.execute("SELECT COUNT(*) FROM rules WHERE status = 'proved'").fetchone()[0]
    assert proved > 6000
    assert len(shipped["forward"]) == proved
    assert proved < len(fresh) <= 2 * proved
    want = described(fresh)
    for got in (shipped["cold"], shipped["warm"]):
        assert got == fresh and described(got) == want
    # forward only: the same rules as the forward part of both directions (de-duplication keeps
    # the first of a pair, and the forward rules come first)
    fwd = shipped["forward"]
    assert same(fwd, fresh[:len(fwd)])
    # what the index stores of a graph's derived values is what the graph derives
    for r in shipped["warm"][::25]:
        for g in (r.src, r.dst):
            plain = Graph(g.nodes, g.outputs)
            assert (g.topo_order, g.canonical_hash) == (plain.topo_order, plain.canonical_hash)
    assert not any(r.name.endswith("~rev") for r in fwd)
    assert all(r.name.endswith("~rev") for r in fresh[len(fwd):])


def test_rules_read_back_rewrite_a_zoo_model_correctly(shipped):
    fresh, warm = shipped["fresh"], shipped["warm"]
    g = build("toy", size="tiny")
    cands = CandidateSet(warm, g).applicable()
    assert cands
    done = set()
    for m in cands:
        if m.rule_index in done:
            continue
        done.add(m.rule_index)
        new, _ = apply(g, warm[m.rule_index], m)
        again, _ = apply(g, fresh[m.rule_index], m)     # the same rule, numbered the same
        assert new.canonical_hash == again.canonical_hash
        ok, err = equivalent(g, new)
        assert ok, (warm[m.rule_index].name, err)
        if len(done) == 8:
            break
    assert len(done) >= 3


# -- invalidation ------------------------------------------------------------------------------
def _changed_db_reloads(path, monkeypatch, change) -> list:
    builds = Builds(monkeypatch)
    loaded(path)
    before = index_file(path).read_bytes()
    change()
    got = loaded(path)
    assert builds.count == 2, "a changed DB read a stale index"
    assert index_file(path).read_bytes() != before
    assert same(got, loaded(path, use_index=False))
    loaded(path)
    assert builds.count == 3      # the rebuilt index is current again (the off load built one)
    return got


def test_a_new_proved_rule_invalidates(small_db, monkeypatch):
    def add():
        with RuleDB(small_db) as db:
            _prove(db, _spare_rule(), reverse=None)
    got = _changed_db_reloads(small_db, monkeypatch, add)
    assert "spare" in [r.name for r in got]


def test_a_deleted_rule_invalidates(small_db, monkeypatch):
    def delete():
        con = sqlite3.connect(small_db)
        with con:
            con.execute("DELETE FROM rules WHERE name = 'conv_merge'")
        con.close()
    got = _changed_db_reloads(small_db, monkeypatch, delete)
    assert "conv_merge" not in [r.name for r in got]


def test_a_changed_status_invalidates(small_db, monkeypatch):
    def refute():
        with RuleDB(small_db) as db:
            rid = next(s.id for s in db.rules() if s.rule.name == "concat_transposes")
            db.set_result(rid, "refuted", counterexample={"x": [1.0]})
    got = _changed_db_reloads(small_db, monkeypatch, refute)
    assert "concat_transposes" not in [r.name for r in got]


def test_a_changed_scope_invalidates(small_db, monkeypatch):
    narrower = {**GENERAL, "pinned": True}
    def rescope():
        with RuleDB(small_db) as db:
            rid = next(s.id for s in db.rules() if s.rule.name == "conv_merge")
            db.set_result(rid, "proved", scope={"forward": narrower})
    got = _changed_db_reloads(small_db, monkeypatch, rescope)
    assert [r.meta["scope"] for r in got if r.name == "conv_merge"] == [narrower]
    assert "conv_merge~rev" not in [r.name for r in got]


def test_changed_code_or_format_invalidates(small_db, monkeypatch):
    builds = Builds(monkeypatch)
    want = loaded(small_db)
    monkeypatch.setattr(index, "_code_digest", hashlib.blake2b(b"other code").digest())
    assert same(loaded(small_db), want) and builds.count == 2
    monkeypatch.setattr(index, "FORMAT", index.FORMAT + 1)
    assert same(loaded(small_db), want) and builds.count == 3
    assert same(loaded(small_db), want) and builds.count == 3


def _spare_rule():
    from envcore.graph import GraphBuilder
    from envcore.rewrite.rule import Rule
    s, d = GraphBuilder(), GraphBuilder()
    x = s.input("x", (4, 4))
    return Rule("spare", s.build([s.add("relu", s.add("transpose", x, perm=(1, 0)))]),
                d.build([d.add("transpose", d.add("relu", d.input("x", (4, 4))), perm=(1, 0))]))


# -- bad index files ---------------------------------------------------------------------------
TRAPPED = []


def _trap():
    TRAPPED.append(True)
    return []


class _Trap:
    def __reduce__(self):
        return (_trap, ())


def _with_digest(good: bytes, payload: bytes) -> bytes:
    """An index file with the current key and a valid digest, over another payload."""
    head = len(index.MAGIC) + 32
    return good[:head] + hashlib.blake2b(payload, digest_size=32).digest() + payload


BAD = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "header only": lambda good: good[: len(index.MAGIC) + 64],
    "one byte flipped": lambda good: good[:-100] + bytes([good[-100] ^ 1]) + good[-99:],
    "another key": lambda good: good[:len(index.MAGIC)] + bytes(32) + good[len(index.MAGIC) + 32:],
    "garbage": lambda good: os.urandom(5000),
    "foreign magic": lambda good: b"PK\x03\x04" + good[4:],
    "foreign plain data": lambda good: _with_digest(good, pickle.dumps({"format": 1, "x": 2})),
    "wrong shapes": lambda good: _with_digest(good, pickle.dumps(
        {"format": index.FORMAT, "refs": [], "nodes": [("relu", (7,), (), ())],
         "graphs": [], "rules": [], "sets": {"both": [0], "forward": [0]}})),
    "code inside": lambda good: _with_digest(good, pickle.dumps(_Trap())),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_index_is_ignored_and_rebuilt(small_db, monkeypatch, kind):
    want = loaded(small_db, use_index=False)
    loaded(small_db)
    good = index_file(small_db).read_bytes()
    index_file(small_db).write_bytes(BAD[kind](good))
    builds = Builds(monkeypatch)
    assert same(loaded(small_db), want) and builds.count == 1
    assert not TRAPPED                                   # nothing in the file ran
    assert index_file(small_db).read_bytes() == good     # replaced by the current index
    assert same(loaded(small_db), want) and builds.count == 1


def test_an_index_place_taken_by_a_folder_falls_back_to_the_user_cache(small_db, tmp_path,
                                                                       monkeypatch):
    index_file(small_db).mkdir()
    builds = Builds(monkeypatch)
    want = loaded(small_db, use_index=False)
    assert same(loaded(small_db), want) and same(loaded(small_db), want)
    assert builds.count == 2                      # the off load, then one build: the cache's
    assert list((tmp_path / "user-cache" / "subgen" / "rule-index").glob("small.db-*.idx"))


# -- read-only places --------------------------------------------------------------------------
def _read_only(folder: Path, monkeypatch):
    """`folder` read-only; as root (whom permissions do not stop) writing there fails too."""
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real = index.write_atomic

        def refused(path, write):
            if Path(path).resolve().is_relative_to(folder.resolve()):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, write)
        monkeypatch.setattr(index, "write_atomic", refused)


def test_a_read_only_db_folder_still_loads(small_db, tmp_path, monkeypatch):
    want = loaded(small_db, use_index=False)
    folder = small_db.parent
    before = (small_db.read_bytes(), small_db.stat().st_mtime_ns, sorted(os.listdir(folder)))
    _read_only(folder, monkeypatch)
    builds = Builds(monkeypatch)
    try:
        assert same(loaded(small_db), want)       # built; the index goes to the user cache
        assert same(loaded(small_db), want)       # and is read from there
        assert builds.count == 1
        assert list((tmp_path / "user-cache" / "subgen" / "rule-index").glob("*.idx"))
        # no writable place at all: every load builds, silently
        (tmp_path / "a-file").write_text("")
        monkeypatch.setenv(index.ENV, str(tmp_path / "a-file" / "indexes"))
        assert same(loaded(small_db), want) and same(loaded(small_db), want)
        assert builds.count == 3
    finally:
        folder.chmod(0o755)
    # a reader never writes the DB (nor anything else beside it here)
    assert (small_db.read_bytes(), small_db.stat().st_mtime_ns, sorted(os.listdir(folder))) \
        == before


def test_a_named_index_folder_is_used_alone(small_db, tmp_path, monkeypatch):
    monkeypatch.setenv(index.ENV, str(tmp_path / "idx"))
    builds = Builds(monkeypatch)
    first, again = loaded(small_db), loaded(small_db)
    assert same(first, again) and builds.count == 1
    assert not index_file(small_db).exists()
    assert len(list((tmp_path / "idx").glob("small.db-*.idx"))) == 1


def test_the_index_holds_plain_data_only(small_db):
    loaded(small_db)
    data = index_file(small_db).read_bytes()
    payload = data[len(index.MAGIC) + 64:]
    import pickletools
    ops = {op.name for op, _, _ in pickletools.genops(payload)}
    assert not ops & {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX",
                      "BUILD", "EXT1", "EXT2", "EXT4"}
    assert index.decode(data, index.key(_proved_rows(small_db)), "both") is not None


def _proved_rows(path):
    with RuleDB(path, create=False) as db:
        return db.rows("proved")
