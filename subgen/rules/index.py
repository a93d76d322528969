"""The compiled index of a rule DB: the rules `load` builds from it, kept in a file beside it so
that the next load reads them back in a fraction of the time.

Building the TASO-only DB's 12,496 rule directions (15,164 now, with the real op set) from its
rows parses 6,356 rows of JSON, re-infers the shapes of 70,715 nodes, checks every rule and
hashes its sides for the de-duplication: seconds.  The index holds the result as plain data, a
pickle of tuples, lists, dicts, strings and numbers only (read by an unpickler that refuses every class, so reading a file
never runs its code): the distinct nodes (1,144 of the 70,715), each graph as node ids over them
with its canonical hash and topological order (what the search and the matcher ask of every rule
first), each rule as (name, source, target, meta), and the two orders `load` hands out, "both"
(every direction) and "forward".  Rules rebuilt from it are not checked again: they passed the
checks when the index was built.

Where: `.<db name>.idx` beside the DB (a reader never writes the DB itself); where that folder
cannot be written (a read-only install), `<user cache>/subgen/rule-index/`, the file named by the
DB's absolute path.  `$SUBGEN_RULE_INDEX` names another folder for every index, or is `off`: no
index.  No writable place: the rules are built from the DB at every load, silently.

Identity: the file starts with a key, a digest of the DB's proved rows (every column, as stored:
what the loaded rules are made of), of the source of the modules that turn rows into rules
(`_CODE`), of the Python version and of this format; a changed DB or changed code computes
another key and rebuilds.  The payload after the key carries its own digest, so a truncated,
garbled or foreign file is ignored and replaced, never read as rules.
"""
from __future__ import annotations

import gc
import hashlib
import importlib.util
import io
import os
import pickle
import sys
from contextlib import contextmanager
from pathlib import Path

from envcore.files import write_atomic
from envcore.graph import Graph, Node, Ref
from envcore.rewrite.rule import Rule

FORMAT = 1
MAGIC = b"subgen-rule-index\n"
ENV = "SUBGEN_RULE_INDEX"
VARIANTS = ("both", "forward")
_DIGEST = 32
# what turns a DB row into a loaded rule: shape inference (ops), graphs, rules, the row reader,
# the loader's choices (scopes, reverses, de-duplication) and this encoding
_CODE = ("envcore.frozen", "envcore.ops", "envcore.graph", "envcore.rewrite.rule",
         "subgen.rules.db", "subgen.rules.load", "subgen.rules.index")
_code_digest: bytes | None = None


def key(rows: list[tuple]) -> bytes | None:
    """The index key of a DB whose proved rows (`RuleDB.rows("proved")`) are `rows`; None where
    the loader's source cannot be read (no index then)."""
    code = _code()
    if code is None:
        return None
    h = hashlib.blake2b(digest_size=_DIGEST)
    h.update(b"%d|%d.%d|" % (FORMAT, *sys.version_info[:2]) + code)
    h.update(repr(rows).encode("utf-8", "backslashreplace"))   # repr: exact for str/int/float/None
    return h.digest()


def read(db_path: Path, index_key: bytes | None, variant: str) -> list[Rule] | None:
    """The rules of `variant` from the DB's index, or None where there is no current one."""
    if index_key is None:
        return None
    for place in locations(db_path):
        try:
            data = place.read_bytes()
        except OSError:
            continue
        rules = decode(data, index_key, variant)
        if rules is not None:
            return rules
    return None


def write(db_path: Path, index_key: bytes | None, sets: dict[str, list[Rule]],
          variant: str) -> list[Rule] | None:
    """Writes the index of `sets` (every variant's rules) in the first writable place, and
    returns `variant`'s rules read back from it: the same rules, as every later load gets them
    (their graphs sharing equal nodes: a third of the memory).  None where there is no index
    (off, or rules that are not plain data); a place that cannot be written is skipped."""
    places = locations(db_path)
    if index_key is None or not places:
        return None
    try:
        payload = encode(sets)
    except Exception:                 # noqa: BLE001 -- an index is an optimization: never fatal
        return None
    blob = MAGIC + index_key + hashlib.blake2b(payload, digest_size=_DIGEST).digest() + payload
    rules = decode(blob, index_key, variant)     # what is written must read back
    if rules is None:
        return None
    for place in places:
        try:
            if place.parent != db_path.parent:
                place.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(place, lambda tmp: tmp.write_bytes(blob))
            break
        except OSError:
            continue
    return rules


def locations(db_path: Path) -> list[Path]:
    """Where the DB's index is looked for, and written to, in order (see the module doc)."""
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in ("off", "0", "no", "false"):
        return []
    name = hashlib.blake2b(str(Path(db_path).resolve()).encode("utf-8", "backslashreplace"),
                           digest_size=10).hexdigest()
    elsewhere = f"{Path(db_path).name}-{name}.idx"
    if setting:
        return [Path(setting) / elsewhere]
    beside = Path(db_path).parent / f".{Path(db_path).name}.idx"
    try:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:              # no home folder to be found: beside the DB only
        return [beside]
    return [beside, cache / "subgen" / "rule-index" / elsewhere]


# -- the encoding ---------------------------------------------------------------------------------
def encode(sets: dict[str, list[Rule]]) -> bytes:
    """The payload: plain data, shared structure kept (a rule in both variants, a graph in a rule
    and its reverse are stored once and come back as one object)."""
    refs: dict[tuple, int] = {}
    nodes: dict[tuple, int] = {}
    node_rows: list[tuple] = []
    graphs: dict[int, int] = {}
    graph_rows: list[tuple] = []
    rules: dict[int, int] = {}
    rule_rows: list[tuple] = []

    def ref(r: Ref) -> int:
        return refs.setdefault((r.node, r.index), len(refs))

    def node(n: Node) -> int:
        # equal values are not enough (True == 1 == 1.0, (1,) == [1]): their reprs tell them apart
        k = (repr((n.op, n.params, n.shapes)), n.inputs)
        if k not in nodes:
            nodes[k] = len(node_rows)
            node_rows.append((n.op, tuple(ref(r) for r in n.inputs), n.params, n.shapes))
        return nodes[k]

    def graph(g: Graph) -> int:
        if id(g) not in graphs:
            graphs[id(g)] = len(graph_rows)
            graph_rows.append((tuple(g.nodes), tuple(node(n) for n in g.nodes.values()),
                               tuple(ref(o) for o in g.outputs), g.canonical_hash,
                               g.topo_order))
        return graphs[id(g)]

    def rule(r: Rule) -> int:
        if id(r) not in rules:
            rules[id(r)] = len(rule_rows)
            rule_rows.append((r.name, graph(r.src), graph(r.dst), r.meta))
        return rules[id(r)]

    order = {v: [rule(r) for r in sets[v]] for v in VARIANTS}
    plain = {"format": FORMAT, "refs": list(refs), "nodes": node_rows, "graphs": graph_rows,
             "rules": rule_rows, "sets": order}
    return pickle.dumps(plain, protocol=5)


def decode(data: bytes, index_key: bytes, variant: str) -> list[Rule] | None:
    """The rules of `variant` from an index file's bytes, or None where the file is not the
    current index of this key (another key, truncated, garbled, foreign)."""
    head = len(MAGIC)
    body = head + 2 * _DIGEST
    if (len(data) <= body or data[:head] != MAGIC or data[head:head + _DIGEST] != index_key):
        return None
    payload = memoryview(data)[body:]
    if hashlib.blake2b(payload, digest_size=_DIGEST).digest() != data[head + _DIGEST:body]:
        return None
    with collector_paused():
        try:
            return _rules(_load_plain(payload), variant)
        except Exception:     # noqa: BLE001 -- a foreign file with a valid digest: not our index
            return None


def _rules(plain: dict, variant: str) -> list[Rule] | None:
    if plain.get("format") != FORMAT:
        return None
    refs = [Ref(a, b) for a, b in plain["refs"]]
    nodes = [Node(op, tuple(refs[k] for k in ins), params, shapes)
             for op, ins, params, shapes in plain["nodes"]]
    rows, built = plain["graphs"], {}

    def graph(k: int) -> Graph:
        g = built.get(k)
        if g is None:
            ids, members, outputs, canonical, order = rows[k]
            g = built[k] = Graph(dict(zip(ids, map(nodes.__getitem__, members), strict=True)),
                                 [refs[o] for o in outputs])
            # cached_property values, stored where they are kept: the hash for the search's
            # visited sets and reverse index, the order for compiling the pattern
            g.__dict__.update(canonical_hash=canonical, topo_order=order)
        return g

    rules = plain["rules"]
    out = []
    for k in plain["sets"][variant]:
        name, src, dst, meta = rules[k]
        out.append(Rule.unchecked(name, graph(src), graph(dst), meta))
    return out


@contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for the block (as it was, after): building tens of
    thousands of long-lived objects, it would walk all of them again and again (half the time of
    building the shipped DB's rules, two thirds of reading them back)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"a rule index holds plain data, not {module}.{name}")


def _load_plain(payload) -> object:
    return _PlainUnpickler(io.BytesIO(payload)).load()


def _code() -> bytes | None:
    global _code_digest
    if _code_digest is None:
        _code_digest = _source_digest(_CODE)
    return _code_digest


def _source_digest(modules) -> bytes | None:
    """A digest of the source of `modules`; None where one cannot be read."""
    h = hashlib.blake2b(digest_size=_DIGEST)
    for name in modules:
        spec = importlib.util.find_spec(name)
        try:
            h.update(name.encode() + b"\0" + Path(spec.origin).read_bytes() + b"\0")
        except (AttributeError, TypeError, OSError):
            return None
    return h.digest()


# -- the compiled-pattern cache -------------------------------------------------------------------
# Matching starts by compiling every rule's source into a pattern (envcore/rewrite/pattern.py):
# 1.4 s for the shipped DB's 12,496 rules, most of optimize's start-up.  The patterns of a DB's
# rules are kept beside its index (`pattern_locations`): a file of the same make (magic,
# key, payload digest, plain data read by the class-refusing unpickler), keyed by the index key,
# the variant, the source of the modules a pattern is compiled by (`_PATTERN_CODE`) and this
# format.  Read back, each rule's source graph carries its pattern's plain form
# (`envcore.rewrite.pattern.PLAIN`) and the pattern is rebuilt from it when first asked for.
# A stale, truncated, garbled or foreign file is ignored and written again, never read as
# patterns; the rules are checked against it too (count, names, source node ids).

PATTERN_MAGIC = b"subgen-pattern-cache\n"
PATTERN_FORMAT = 1
_PATTERN_CODE = ("envcore.frozen", "envcore.ops", "envcore.graph", "envcore.rewrite.pattern",
                 "subgen.rules.index")
_pattern_code_digest: list = []


def pattern_key(index_key: bytes | None, variant: str) -> bytes | None:
    """The key of the pattern cache of the rules `variant` of the index `index_key`."""
    if not _pattern_code_digest:
        _pattern_code_digest.append(_source_digest(_PATTERN_CODE))
    code = _pattern_code_digest[0]
    if index_key is None or code is None:
        return None
    h = hashlib.blake2b(digest_size=_DIGEST)
    h.update(b"%d|%s|" % (PATTERN_FORMAT, variant.encode()) + index_key + code)
    return h.digest()


def pattern_locations(db_path: Path) -> list[Path]:
    """Beside each index place: `.<db name>.patterns.db.idx` beside the DB (what the
    repository's ignore rule for indexes, `.*.db.idx`, covers too), `<index name>.patterns`
    in another folder."""
    out = []
    for p in locations(db_path):
        if p.name.startswith(".") and p.name.endswith(".idx"):
            out.append(p.with_name(p.name[:-len(".idx")] + ".patterns.db.idx"))
        else:
            out.append(p.with_name(p.name + ".patterns"))
    return out


def _fingerprint(rules: list[Rule]) -> list[tuple]:
    return [(r.name, tuple(r.src.nodes), tuple(map(tuple, r.src.outputs))) for r in rules]


def attach_patterns(db_path: Path, index_key: bytes | None, variant: str,
                    rules: list[Rule]) -> str:
    """Gives each rule's source graph its compiled pattern's plain form, from the cache where
    it is current; otherwise compiles every pattern now and writes the cache.  Returns what it
    did: "read", "written", "compiled" (no writable place) or "off" (no key: no cache)."""
    from envcore.rewrite.pattern import PLAIN, pattern_of
    pkey = pattern_key(index_key, variant)
    places = pattern_locations(db_path) if pkey is not None else []
    if not places:
        return "off"
    for place in places:
        try:
            data = place.read_bytes()
        except OSError:
            continue
        plain = decode_patterns(data, pkey, rules)
        if plain is not None:
            for r, row in zip(rules, plain):
                d = r.src.__dict__
                if row is not None and "pattern.pattern" not in d:
                    d.setdefault(PLAIN, row)
            return "read"
    with collector_paused():
        rows, seen, groups, pnodes, pnode_ids = [], {}, {}, [], {}
        for r in rules:
            k = id(r.src)
            if k in seen:
                continue
            seen[k] = len(rows)
            row = list(pattern_of(r.src).to_plain())
            # stored compactly: each distinct PNode once, and for the source's JSON key the
            # number of the first pattern with that key (`_KEY_SLOT`; see `decode_patterns`)
            row[_NODES_SLOT] = [pnode_ids.setdefault(n, len(pnode_ids)) for n in row[_NODES_SLOT]]
            row[_KEY_SLOT] = groups.setdefault(row[_KEY_SLOT], len(groups))
            rows.append(row)
        pnodes = list(pnode_ids)
        refs = [seen[id(r.src)] for r in rules]
    try:
        payload = pickle.dumps({"format": PATTERN_FORMAT, "rows": rows, "refs": refs,
                                "pnodes": pnodes, "rules": _fingerprint(rules)}, protocol=5)
    except Exception:                 # noqa: BLE001 -- a cache is an optimization: never fatal
        return "compiled"
    blob = (PATTERN_MAGIC + pkey + hashlib.blake2b(payload, digest_size=_DIGEST).digest()
            + payload)
    for place in places:
        try:
            if place.parent != Path(db_path).parent:
                place.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(place, lambda tmp: tmp.write_bytes(blob))
            return "written"
        except OSError:
            continue
    return "compiled"


_NODES_SLOT, _KEY_SLOT = 2, 6   # in `Pattern.to_plain`'s tuple


def decode_patterns(data: bytes, pkey: bytes, rules: list[Rule]) -> list | None:
    """Each rule's pattern plain form from a cache file's bytes, or None where the file is not
    the current cache of this key and these rules."""
    from envcore.rewrite.pattern import PNode
    head = len(PATTERN_MAGIC)
    body = head + 2 * _DIGEST
    if (len(data) <= body or data[:head] != PATTERN_MAGIC
            or data[head:head + _DIGEST] != pkey):
        return None
    payload = memoryview(data)[body:]
    if hashlib.blake2b(payload, digest_size=_DIGEST).digest() != data[head + _DIGEST:body]:
        return None
    with collector_paused():
        try:
            plain = _load_plain(payload)
            if (plain.get("format") != PATTERN_FORMAT or len(plain["refs"]) != len(rules)
                    or plain["rules"] != _fingerprint(rules)):
                return None
            made = [PNode(*n) for n in plain["pnodes"]]
            # the key stands for the source's JSON (`Pattern.key`): equal for equal sources
            # within this file, and never equal to a key of another file or of a pattern
            # compiled afresh (those only lose sharing a match, never change one)
            token = ("pattern-cache", bytes(pkey).hex())
            rows = []
            for row in plain["rows"]:
                row = list(row)
                row[_NODES_SLOT] = [made[k] for k in row[_NODES_SLOT]]
                row[_KEY_SLOT] = token + (row[_KEY_SLOT],)
                rows.append(row)
            return [rows[k] for k in plain["refs"]]
        except Exception:     # noqa: BLE001 -- a foreign file with a valid digest: not ours
            return None
