"""A rule's identity up to renaming, direction, output order and dimensions, as a 64-bit digest
computed for millions of pairs at once.

`candidates.term_key` spells the identity out: the two sides' *templates* (structure, with every
leaf written as its rank only) and the leaves numbered in order of first appearance, least over
the directions and output orders.  Here the same is hashed instead of written:

* a term's template hash `th` mixes its operator code (op, params without shape params, semantic
  dims) with its inputs' template hashes and its output index; a leaf's is its rank;
* a term's leaves are its pool variables in the order the template meets them (a DAG is read
  as the tree it spells, as the text is);
* a pair's digest chains (output count, the template hashes of its outputs, its leaves numbered
  by first appearance), least over the encodings (directions x output orders).

Two pairs get one digest exactly when their keys are equal (up to 64-bit collisions: a few
million pairs meet one with odds below 1e-6).  Instances (variables of one shape merged,
`candidates.instance_term_keys`) are digests of the merged leaves: the templates do not change.

Everything is splitmix64 chains, in Python ints for single terms and in numpy uint64 for arrays;
the two agree bit for bit (`tests/test_rule_digest.py`).
"""
from __future__ import annotations

import itertools

import numpy as np

from envcore.ops import SHAPE_PARAMS, semantic_dims
from subgen.enumeration.enumerator import POOL
from subgen.enumeration.fingerprint import splitmix64, text_hash

MASK = (1 << 64) - 1
LEAF_NAMES = tuple(sorted(POOL))
LEAF_INDEX = {n: i for i, n in enumerate(LEAF_NAMES)}
_MERGEABLE = [[j for j in range(len(LEAF_NAMES)) if POOL[LEAF_NAMES[j]] == POOL[n]]
              for n in LEAF_NAMES]
_TAG_LEAF, _TAG_NONE = 0x1EAF, 0x7095


def mix(x: int) -> int:
    """splitmix64 of one 64-bit int (the numpy `splitmix64`, bit for bit)."""
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def chain(values) -> int:
    h = 0
    for v in values:
        h = mix(h ^ (int(v) & MASK))
    return h


def chain_columns(columns, valid=None) -> np.ndarray:
    """`chain` row by row over uint64 columns; where `valid[k]` is False column k is skipped."""
    h = np.zeros(len(columns[0]), np.uint64)
    for k, col in enumerate(columns):
        nxt = splitmix64(h ^ np.asarray(col).astype(np.uint64))
        h = nxt if valid is None or valid[k] is None else np.where(valid[k], nxt, h)
    return h


_CODES: dict[tuple, int] = {}


def op_code(op: str, params: tuple, in_shapes) -> int:
    """The template's operator part: op and params less shape params, plus semantic dims
    (`candidates.TermText` writes the same)."""
    key = (op, params, tuple(in_shapes))
    c = _CODES.get(key)
    if c is None:
        skip = SHAPE_PARAMS.get(op, ())
        kept = tuple(kv for kv in params if kv[0] not in skip) + semantic_dims(op, in_shapes)
        c = _CODES[key] = text_hash(f"{op}{kept}")
    return c


def leaf_hash(rank: int) -> int:
    return chain((_TAG_LEAF, rank))


def term_hash(code: int, in_hashes, index: int) -> int:
    """Template hash of output `index` of a node (one or two inputs)."""
    a = in_hashes[0] if in_hashes else _TAG_NONE
    b = in_hashes[1] if len(in_hashes) > 1 else _TAG_NONE
    return chain((code, a, b, index))


# ----------------------------------------------------------------------------------------------
# per term: template hash, leaves, variables, form signature

_LEAF_MULTISET = [mix(0xABCD + i) for i in range(len(LEAF_NAMES))]


class TermColumns:
    """Template hash, leaves (tuple of leaf indices), variable bitmask and form signature of
    an enumerator's terms, memoized (terms only grow).  The signature (operators with fused
    activations counted twice, and the multiset of leaves) is equal for terms with equal normal
    forms (`subgen.pairing.normal_form`), so unequal signatures mean unequal forms without computing
    them."""

    def __init__(self, en):
        self.en = en
        self.th: list[int] = []
        self.leaves: list[tuple] = []
        self.vmask: list[int] = []
        self.expanded: list[int] = []
        self.lms: list[int] = []

    def grow(self) -> "TermColumns":
        en = self.en
        for tid in range(len(self.th), len(en.terms)):
            t = en.terms[tid]
            if t.node is None:
                i = LEAF_INDEX[t.name]
                self.th.append(leaf_hash(len(t.shape)))
                self.leaves.append((i,))
                self.vmask.append(1 << i)
                self.expanded.append(0)
                self.lms.append(_LEAF_MULTISET[i])
                continue
            n = en.nodes[t.node]
            ins = n.inputs
            code = op_code(n.op, n.params, [en.terms[i].shape for i in ins])
            self.th.append(term_hash(code, [self.th[i] for i in ins], t.index))
            self.leaves.append(tuple(x for i in ins for x in self.leaves[i]))
            v = 0
            for i in ins:
                v |= self.vmask[i]
            self.vmask.append(v)
            self.expanded.append(sum(self.expanded[i] for i in ins) + 1 + _fused(n.params, t.index))
            self.lms.append(sum(self.lms[i] for i in ins) & MASK)
        return self

    def sig(self, tid: int) -> tuple:
        return (self.expanded[tid], self.lms[tid])


def _fused(params: tuple, index: int) -> int:
    return int(index == 0 and dict(params).get("activation", "none") != "none")


def columns(en) -> TermColumns:
    """The enumerator's columns, grown to its terms.  A private copy of an enumerator
    (`subgen.enumeration.shard._private_copy`) starts from the original's columns."""
    c = getattr(en, "_term_columns", None)
    if c is None or c.en is not en:
        origin = getattr(en, "copied_from", None)
        old = getattr(origin, "_term_columns", None)
        c = en._term_columns = TermColumns(en)
        if old is not None and old.en is origin:
            for name in ("th", "leaves", "vmask", "expanded", "lms"):
                setattr(c, name, list(getattr(old, name)))
    return c.grow()


# ----------------------------------------------------------------------------------------------
# digests of pairs

def numbered(seq: np.ndarray) -> np.ndarray:
    """Each row's leaf indices renumbered by first appearance (-1 pads stay -1)."""
    b, length = seq.shape
    nl = len(LEAF_NAMES)
    first = np.full((b, nl), length, np.int64)
    rows = np.arange(b)
    for p in range(length - 1, -1, -1):
        v = seq[:, p]
        ok = v >= 0
        first[rows[ok], v[ok]] = p
    rank = np.empty_like(first)
    order = np.argsort(first, axis=1, kind="stable")
    rank[rows[:, None], order] = np.arange(nl)
    out = rank[rows[:, None], np.maximum(seq, 0)]
    return np.where(seq >= 0, out, -1)


def encoding_digests(th: np.ndarray, leaves: np.ndarray) -> np.ndarray:
    """Digest of one encoding per row: th [B, 2k] the template hashes of the k source then k
    target outputs, leaves [B, L] their leaves in that order (-1 pads anywhere)."""
    k2 = th.shape[1]
    num = numbered(leaves)
    cols = [np.full(len(th), k2 // 2, np.uint64)] + [th[:, j] for j in range(k2)]
    valid = [None] * len(cols)
    for p in range(num.shape[1]):
        cols.append(num[:, p])
        valid.append(num[:, p] >= 0)
    return chain_columns(cols, valid)


def _pad(rows: list[tuple], width: int | None = None) -> np.ndarray:
    """Rows of ints as one array, -1 after each row's end."""
    if not rows:
        return np.full((0, width or 1), -1, np.int64)
    out = np.array(list(itertools.zip_longest(*rows, fillvalue=-1)), np.int64).T
    out = out.reshape(len(rows), -1)
    if width and out.shape[1] < width:
        out = np.pad(out, ((0, 0), (0, width - out.shape[1])), constant_values=-1)
    return out if out.shape[1] else np.full((len(rows), 1), -1, np.int64)


def encodings(cols: TermColumns, src: tuple, dst: tuple) -> list[tuple]:
    """(template hashes, leaves) of every direction and output order of a pair (as `_texts`)."""
    out = []
    for a, b in ((src, dst), (dst, src)):
        for perm in itertools.permutations(range(len(a))):
            outs = [a[i] for i in perm] + [b[i] for i in perm]
            out.append((tuple(cols.th[o] for o in outs),
                        tuple(x for o in outs for x in cols.leaves[o])))
    return out


def least_digests(groups: list[list[tuple]]) -> list[int]:
    """For each group of encodings (th tuple, leaves tuple), the least digest: the key."""
    flat = [e for g in groups for e in g]
    if not flat:
        return []
    out = []
    by_width: dict[int, list[int]] = {}
    for i, (th, _) in enumerate(flat):
        by_width.setdefault(len(th), []).append(i)
    d = np.zeros(len(flat), np.uint64)
    for _, idx in by_width.items():
        th = np.array([flat[i][0] for i in idx], np.uint64)
        lv = _pad([flat[i][1] for i in idx])
        d[idx] = encoding_digests(th, lv)
    at = 0
    for g in groups:
        out.append(int(d[at:at + len(g)].min()))
        at += len(g)
    return out


def pair_digests(cols: TermColumns, pairs: list[tuple[tuple, tuple]]) -> list[int]:
    """The key digest of each (src outputs, dst outputs) pair."""
    return least_digests([encodings(cols, s, d) for s, d in pairs])


def variable_merges(sides: list[tuple], can_merge, key) -> list[tuple]:
    """Every rule made from `sides` (a list of (template, leaf names)) by merging two variables
    that `can_merge`, repeatedly: one (key, sides) each, told apart by `key`.  The string keys
    (`candidates.instance_term_keys`) and the digests (`instance_encodings`) both use it."""
    seen, out = set(), []
    frontier = [sides]
    while frontier:
        cur = frontier.pop()
        names = sorted(set(cur[0][1]))
        for a, b in itertools.combinations(names, 2):
            if not can_merge(a, b):
                continue
            merged = [(t, tuple(a if x == b else x for x in leaves)) for t, leaves in cur]
            k = key(merged)
            if k not in seen:
                seen.add(k)
                out.append((k, merged))
                frontier.append(merged)
    return out


def instance_encodings(encs: list[tuple]) -> list[list[tuple]]:
    """Every rule made from this one by merging variables of one shape (repeatedly), each as
    its list of encodings (before the least is taken)."""
    return [m for _, m in variable_merges(encs, lambda a, b: b in _MERGEABLE[a], frozenset)]


# ----------------------------------------------------------------------------------------------
# the same columns as arrays: for a prefix (from `TermColumns`) and for last-level nodes given
# as arrays (computed from their inputs' columns, never from Terms)

class ColumnArrays:
    """Per-term arrays: template hash, leaves [n, width] (-1 pads, possibly between leaves),
    variable mask, expanded operator count, leaf multiset hash, size (distinct operators),
    fingerprint and shape id."""

    def __init__(self, th, leaves, vmask, expanded, lms, size, fp, sid):
        self.th, self.leaves, self.vmask = th, leaves, vmask
        self.expanded, self.lms, self.size, self.fp, self.sid = expanded, lms, size, fp, sid

    @classmethod
    def of_terms(cls, en, shapes: dict) -> "ColumnArrays":
        """`shapes` maps shape -> id (shared with the node columns)."""
        c = columns(en)
        return cls(np.array(c.th, np.uint64), _pad(c.leaves), np.array(c.vmask, np.int64),
                   np.array(c.expanded, np.int64), np.array(c.lms, np.uint64),
                   np.array([t.size for t in en.terms], np.int64),
                   np.array([t.fp for t in en.terms], np.uint64),
                   np.array([shapes.setdefault(t.shape, len(shapes)) for t in en.terms],
                            np.int64))

    def take(self, ix: np.ndarray) -> "ColumnArrays":
        return ColumnArrays(*(a[ix] for a in (self.th, self.leaves, self.vmask, self.expanded,
                                               self.lms, self.size, self.fp, self.sid)))


def node_columns(base: ColumnArrays, shapes: dict, op_names, tables, size: int,
                 op_i: np.ndarray, pidx: np.ndarray, ins: np.ndarray, fps: np.ndarray,
                 nouts: np.ndarray, k: int) -> ColumnArrays:
    """Columns of output k of last-level nodes (arrays as `subgen.enumeration.shard` keeps them), from
    their inputs' columns in `base`.  Rows of nodes with fewer than k+1 outputs are junk."""
    from envcore.ops import OPS
    n = len(op_i)
    a = ins[:, 0]
    has_b = ins[:, 1] >= 0
    b = np.where(has_b, ins[:, 1], 0)
    # operator code and fused activation per (op, params, input shapes)
    sb = np.where(has_b, base.sid[b], -1) + 1
    combo = (op_i.astype(np.int64) << 56) | (pidx.astype(np.int64) << 36) | \
        (base.sid[a] << 18) | sb
    uniq, inverse = np.unique(combo, return_inverse=True)
    by_id = {v: s for s, v in shapes.items()}
    codes = np.zeros(len(uniq), np.uint64)
    fused = np.zeros(len(uniq), np.int64)
    out_sid = np.zeros(len(uniq), np.int64)
    for u, c in enumerate(uniq.tolist()):
        o, p, s0, s1 = c >> 56, (c >> 36) & 0xFFFFF, (c >> 18) & 0x3FFFF, (c & 0x3FFFF) - 1
        op = op_names[o]
        pkey = tables[o][p]
        in_shapes = [by_id[s0]] + ([by_id[s1]] if s1 >= 0 else [])
        codes[u] = op_code(op, pkey, in_shapes)
        fused[u] = _fused(pkey, k)
        outs = OPS[op].infer(in_shapes, dict(pkey))
        out_sid[u] = shapes.setdefault(outs[k], len(shapes)) if k < len(outs) else -1
    th_b = np.where(has_b, base.th[b], np.uint64(_TAG_NONE))
    th = chain_columns([codes[inverse], base.th[a], th_b, np.full(n, k, np.uint64)])
    lb = np.where(has_b[:, None], base.leaves[b], -1)
    leaves = np.concatenate([base.leaves[a], lb], axis=1)
    vmask = base.vmask[a] | np.where(has_b, base.vmask[b], 0)
    expanded = base.expanded[a] + np.where(has_b, base.expanded[b], 0) + 1 + fused[inverse]
    lms = base.lms[a] + np.where(has_b, base.lms[b], np.uint64(0))
    return ColumnArrays(th, leaves, vmask, expanded, lms, np.full(n, size, np.int64),
                        fps[:, k].astype(np.uint64), out_sid[inverse])


def single_digests(cols: ColumnArrays, x: np.ndarray, y: np.ndarray,
                   chunk: int = 1 << 16) -> np.ndarray:
    """Key digests of one-output pairs (x, y) (rows of `cols`): least of the two directions."""
    out = np.zeros(len(x), np.uint64)
    for lo in range(0, len(x), chunk):
        xs, ys = x[lo:lo + chunk], y[lo:lo + chunk]
        lx, ly = cols.leaves[xs], cols.leaves[ys]
        d1 = encoding_digests(np.stack([cols.th[xs], cols.th[ys]], axis=1),
                              np.concatenate([lx, ly], axis=1))
        d2 = encoding_digests(np.stack([cols.th[ys], cols.th[xs]], axis=1),
                              np.concatenate([ly, lx], axis=1))
        out[lo:lo + chunk] = np.minimum(d1, d2)
    return out


# ----------------------------------------------------------------------------------------------
# digests of an enumerator's pairs

def oriented_digests(en, pairs: list[tuple]) -> list[int]:
    """The key digest (`subgen.pairing.digests`) of each oriented pair of the enumerator: one-output
    pairs with arrays, the others one by one."""
    out = [0] * len(pairs)
    one = [i for i, (a, _) in enumerate(pairs) if len(a) == 1]
    if one:
        cols = ColumnArrays.of_terms(en, {})
        x = np.array([pairs[i][0][0] for i in one], np.int64)
        y = np.array([pairs[i][1][0] for i in one], np.int64)
        for i, d in zip(one, single_digests(cols, x, y).tolist()):
            out[i] = d
    many = [i for i, (a, _) in enumerate(pairs) if len(a) != 1]
    for i, d in zip(many, pair_digests(columns(en), [pairs[i] for i in many])):
        out[i] = d
    return out


def instance_digests(en, pairs: list[tuple]) -> set[int]:
    """Digests of every rule made from these by merging variables of one shape."""
    cols = columns(en)
    groups = []
    for a, c in pairs:
        groups.extend(instance_encodings(encodings(cols, a, c)))
    return set(least_digests(groups))
