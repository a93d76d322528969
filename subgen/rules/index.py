"""The compiled index of a rule DB: the rules `load` builds from it, kept in a file beside it so
that the next load reads them back in a fraction of the time.

Building the shipped DB's 12,496 rule directions from its rows parses 6,356 rows of JSON,
re-infers the shapes of 70,715 nodes, checks every rule and hashes its sides for the
de-duplication: seconds.  The index holds the result as plain data, a pickle of tuples, lists,
dicts, strings and numbers only (read by an unpickler that refuses every class, so reading a file
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
        h = hashlib.blake2b(digest_size=_DIGEST)
        for name in _CODE:
            spec = importlib.util.find_spec(name)
            try:
                h.update(name.encode() + b"\0" + Path(spec.origin).read_bytes() + b"\0")
            except (AttributeError, TypeError, OSError):
                return None
        _code_digest = h.digest()
    return _code_digest
