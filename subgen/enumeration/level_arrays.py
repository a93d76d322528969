"""The enumeration's last level as arrays: no EnumeratedTerm, no per-node Python.

The last level holds nearly every node (depth 4: 10.5 million of 10.7), and none of its terms
is ever an input, so it needs no `EnumeratedTerm`s: per node, the params, the input term ids and the
output fingerprints.  One section of its input tuples (`Enumerator.sections`) is evaluated as:

1. the tuples, as id arrays in the serial order (`tuple_arrays`: cartesian products of
   representatives, filtered by operator sets with array comparisons);
2. their parameter choices: `Enumerator.params_for` depends only on a few features of the
   inputs (shape, bounds, sameness, first leaf), so it is asked once per distinct feature code
   and its answer is spread over every tuple with that code;
3. evaluation in batches of one params and input shapes (`OpDef.exact_many`) over input values
   gathered from per-shape matrices, and fingerprints (`value_hashes`), also in batches.

The serial order of the nodes (tuples in section order, each tuple's params in order) is kept,
so representatives, buckets and rules are those of the term-by-term enumeration.

This module evaluates; what a level holds (which input tuples, which params, the terms and their
classes) is the enumerator's (`subgen.enumeration.enumerator`), read through `Enumeration`
below: `Enumerator.level` calls `add_level`, and this module never imports the enumerator.
"""
from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from envcore.ops import OPS, ShapeError
from subgen.enumeration.fingerprint import value_hash, value_hashes

MAX_ARITY = MAX_OUTPUTS = 2
BATCH = 8192


class Enumeration(Protocol):
    """What this module reads and calls of an enumerator
    (`subgen.enumeration.enumerator.Enumerator`)."""
    terms: list                          # Terms by id
    nodes: list                          # OpNodes by id
    reps_by_size: dict                   # size -> extended term ids
    extended: set                        # ids of the terms that are inputs of bigger ones
    max_ops: int
    op_names: tuple

    def arity(self, op: str) -> int: ...
    def sections(self, arity: int, level: int, budget: int = ...) -> list: ...
    def op_sections(self, op: str, level: int) -> list: ...
    def instances(self, op: str, level: int, section: tuple | None = None) -> Iterator: ...
    def params_for(self, op: str, ta, tb=None) -> list[dict]: ...
    def is_first_leaf(self, t) -> bool: ...
    def insert(self, op: str, pkey: tuple, ins: list, shapes, values, fps,
               register: bool = True): ...


class TermArrays:
    """Per-term arrays of an enumerator's terms (those present when it was built): shape id,
    bounds id, first-leaf flag, operator ids (padded), and the extended terms' values stacked
    per shape."""

    def __init__(self, en: Enumeration):
        terms = en.terms
        n = len(terms)
        self.n = n
        self.shapes: list[tuple] = []
        sid_of: dict[tuple, int] = {}
        self.bounds: list[dict] = []
        bid_of: dict[tuple, int] = {}
        sid = np.empty(n, np.int64)
        bid = np.empty(n, np.int64)
        first = np.zeros(n, bool)
        width = max(1, en.max_ops - 1)
        opsmat = np.full((n, width), -1, np.int64)
        for t in terms:
            sid[t.id] = sid_of.setdefault(t.shape, len(sid_of))
            bkey = tuple(sorted(t.bounds.items()))
            if bkey not in bid_of:
                bid_of[bkey] = len(bid_of)
                self.bounds.append(t.bounds)
            bid[t.id] = bid_of[bkey]
            first[t.id] = en.is_first_leaf(t)
            if t.ops and len(t.ops) <= width:
                opsmat[t.id, :len(t.ops)] = sorted(t.ops)
        self.shapes = list(sid_of)
        self.sid, self.bid, self.first, self.opsmat = sid, bid, first, opsmat
        self.extended = np.zeros(n, bool)
        self.extended[sorted(en.extended)] = True
        # per operator node: its input and output term ids, padded with -1
        self.node_terms = np.full((max(len(en.nodes), 1), 2 * MAX_ARITY), -1, np.int64)
        for node in en.nodes:
            self.node_terms[node.id, :len(node.inputs)] = node.inputs
            self.node_terms[node.id, MAX_ARITY:MAX_ARITY + len(node.outputs)] = node.outputs
        # values of the terms that can be inputs, one matrix per shape
        self.row = np.full(n, -1, np.int64)
        self.values: list[np.ndarray | None] = [None] * len(self.shapes)
        by_sid: dict[int, list[int]] = {}
        for t in sorted(en.extended):
            by_sid.setdefault(int(sid[t]), []).append(t)
        for s, ids in by_sid.items():
            self.row[ids] = np.arange(len(ids))
            self.values[s] = np.stack([terms[i].value for i in ids])

    def gather(self, ids: np.ndarray, shape_id: int) -> np.ndarray:
        return self.values[shape_id][self.row[ids]]


def term_arrays(en: Enumeration) -> TermArrays:
    """`TermArrays` of the enumerator as it is now (cached on it until it grows)."""
    ta = getattr(en, "_term_arrays", None)
    if ta is None or ta.n != len(en.terms):
        ta = en._term_arrays = TermArrays(en)
    return ta


def _disjoint(opsmat: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows where the operator sets of terms a and b share no operator (-1 pads a row)."""
    oa, ob = opsmat[a], opsmat[b]
    ok = np.ones(len(a), bool)
    for i in range(oa.shape[1]):
        for j in range(ob.shape[1]):
            ok &= (oa[:, i] != ob[:, j]) | (oa[:, i] < 0)
    return ok


def tuple_arrays(en: Enumeration, arity: int, level: int, section: tuple):
    """The enumerator's input tuples of one section (`Enumerator.sections`) as id arrays (a, b),
    in its order (`Enumerator._input_tuples`, the reference); b is None for arity 1."""
    want = level - 1
    reps = en.reps_by_size
    kind = section[0]
    if kind == "unary":
        return np.array(reps.get(want, [])[section[1]:section[2]], np.int64), None
    if kind == "disjoint":
        s1 = section[1]
        a0 = np.array(reps.get(s1, [])[section[2]:section[3]], np.int64)
        b0 = np.array(reps.get(want - s1, []), np.int64)
        a, b = np.repeat(a0, len(b0)), np.tile(b0, len(a0))
        if s1 and want - s1:         # leaves have no operators: every pair with one is disjoint
            keep = _disjoint(term_arrays(en).opsmat, a, b)
            a, b = a[keep], b[keep]
        return a, b
    return _inner_pairs(en, want, section[1], section[2])


def _inner_pairs(en: Enumeration, want: int, lo: int, hi: int):
    """The "inner" tuples of the enumerator's input tuples for representatives lo:hi of size
    `want`: for each b in order, each extended non-leaf term a inside b (b itself, or an input
    or output of one of b's operators) in id order, as (a, b), then (b, a) unless a is b."""
    ta = term_arrays(en)
    b = np.array(en.reps_by_size.get(want, [])[lo:hi], np.int64)
    if not len(b):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nodes = ta.opsmat[b]                                        # [n, width], -1 pads
    around = np.where(nodes[..., None] >= 0, ta.node_terms[np.maximum(nodes, 0)], -1)
    cand = np.concatenate([b[:, None], around.reshape(len(b), -1)], axis=1)
    cand = np.sort(cand, axis=1)
    dup = np.zeros(cand.shape, bool)
    dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
    ok = (cand >= 0) & ~dup
    safe = np.maximum(cand, 0)
    ok &= ta.extended[safe] & (ta.opsmat[safe, 0] >= 0)       # extended, not a leaf
    # a's operators all among b's
    a_ops = ta.opsmat[safe]                                     # [n, k, width]
    inside = (a_ops[..., :, None] == nodes[:, None, None, :]).any(-1) | (a_ops < 0)
    ok &= inside.all(-1)
    rows, cols = np.nonzero(ok)                                 # row-major: b order, then a
    a_ids, b_ids = cand[rows, cols], b[rows]
    twice = a_ids != b_ids
    first = np.stack([a_ids, b_ids], axis=1)
    second = np.stack([b_ids, a_ids], axis=1)
    out = np.stack([first, second], axis=1).reshape(-1, 2)      # (a, b), (b, a) interleaved
    keep = np.stack([np.ones(len(a_ids), bool), twice], axis=1).reshape(-1)
    out = out[keep]
    return out[:, 0], out[:, 1]


def section_arrays(en: Enumeration, op: str, level: int, section: tuple | None,
                   values: bool = False):
    """The nodes of one section of `level` for one operator (module doc): (params keys,
    params index, input ids [N, 2], output fingerprints [N, 2], output count, output values
    per node or None), serial order.  Values are kept only when asked for (the levels below
    the last: their terms are inputs)."""
    opdef = OPS[op]
    arity = en.arity(op)
    empty = ([], np.zeros(0, np.int32), np.zeros((0, MAX_ARITY), np.int64),
             np.zeros((0, MAX_OUTPUTS), np.uint64), np.zeros(0, np.int8), None)
    if arity == 0:                  # constants: level 1 only, a handful: one at a time
        if level != 1:
            return empty
        out = empty[0], [], [], [], [], []
        for params, _ in en.instances(op, level, section):
            full = opdef.full_params(params)
            vals = opdef.exact([], full)
            out[0].append(tuple(sorted(full.items())))
            out[1].append(len(out[0]) - 1)
            out[2].append((-1, -1))
            out[3].append([value_hash(v) for v in vals] + [0])
            out[4].append(len(vals))
            out[5].append([np.asarray(v) for v in vals])
        return (out[0], np.array(out[1], np.int32), np.array(out[2], np.int64).reshape(-1, 2),
                np.array(out[3], np.uint64).reshape(-1, 2), np.array(out[4], np.int8),
                out[5] if values else None)
    ta = term_arrays(en)
    a, b = tuple_arrays(en, arity, level, section)
    if not len(a):
        return empty
    # features `params_for` reads, one code per tuple
    ns, nb = len(ta.shapes), len(ta.bounds)
    if arity == 1:
        code = ta.sid[a] * nb + ta.bid[a]
    else:
        code = ((ta.sid[a] * ns + ta.sid[b]) * 2 + (a == b)) * 2 + ta.first[b]
    codes, first_at, inverse = np.unique(code, return_index=True, return_inverse=True)
    pkeys: list[tuple] = []
    pkey_ix: dict[tuple, int] = {}
    choices = []                      # per code: [(params index, full params), ...]
    for i in first_at:
        ins = [en.terms[int(a[i])]] + ([en.terms[int(b[i])]] if arity == 2 else [])
        row = []
        for params in en.params_for(op, *ins):
            full = opdef.full_params(params)
            key = tuple(sorted(full.items()))
            if key not in pkey_ix:
                pkey_ix[key] = len(pkeys)
                pkeys.append(key)
            row.append(pkey_ix[key])
        choices.append(row)
    counts = np.array([len(c) for c in choices], np.int64)[inverse]
    if not counts.sum():
        return empty
    # tuple-major, params in order: the serial order
    tix = np.repeat(np.arange(len(a)), counts)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(tix)) - np.repeat(starts, counts)
    width = max(len(c) for c in choices)
    table = np.full((len(choices), width), -1, np.int64)
    for k, c in enumerate(choices):
        table[k, :len(c)] = c
    pidx = table[inverse[tix], rank]
    a_n = a[tix]
    b_n = b[tix] if arity == 2 else np.full(len(tix), -1, np.int64)
    # evaluate per (params, input shapes)
    fps = np.zeros((len(tix), MAX_OUTPUTS), np.uint64)
    nouts = np.zeros(len(tix), np.int8)
    keep = np.ones(len(tix), bool)
    vals: list | None = [None] * len(tix) if values else None
    sa = ta.sid[a_n]
    sb = ta.sid[b_n] if arity == 2 else np.zeros(len(tix), np.int64)
    group = (pidx * ns + sa) * ns + sb
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    for members in np.split(order, bounds):
        p = pkeys[int(pidx[members[0]])]
        full = dict(p)
        in_sids = [int(sa[members[0]])] + ([int(sb[members[0]])] if arity == 2 else [])
        try:
            opdef.infer([ta.shapes[s] for s in in_sids], full)
        except ShapeError:
            keep[members] = False
            continue
        for lo in range(0, len(members), BATCH):
            m = members[lo:lo + BATCH]
            xs = [ta.gather(a_n[m], in_sids[0])]
            if arity == 2:
                xs.append(ta.gather(b_n[m], in_sids[1]))
            outs = opdef.exact_many(xs, full)
            assert len(outs) <= MAX_OUTPUTS, (op, len(outs))
            nouts[m] = len(outs)
            for k, o in enumerate(outs):
                fps[m, k] = value_hashes(o)
            if vals is not None:
                for j, i in enumerate(m.tolist()):
                    vals[i] = [o[j] for o in outs]
    ins = np.stack([a_n, b_n], axis=1)
    if vals is not None:
        vals = [v for v, k in zip(vals, keep.tolist()) if k]
    return pkeys, pidx[keep].astype(np.int32), ins[keep], fps[keep], nouts[keep], vals


def lookup(sorted_set: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each value in a sorted, unique array.  The values are sorted first:
    binary searches in random order miss the cache on every step, and np.isin, which hashes,
    is slower still (benchmarks/results/history.md)."""
    if not len(sorted_set) or not len(values):
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    order = np.argsort(values, kind="stable")
    ix = np.empty(len(values), np.int64)
    ix[order] = np.minimum(np.searchsorted(sorted_set, values[order]), len(sorted_set) - 1)
    return ix, sorted_set[ix] == values


def is_in(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    return lookup(sorted_set, values)[1]


def merge_sections(parts: list) -> tuple:
    """One operator's sections joined in order, params numbered per operator, and duplicate
    nodes (the same params and inputs reached from two sections) dropped after the first.
    Returns (params keys, params index, inputs, fingerprints, output counts, positions kept
    in the joined order)."""
    table: dict = {}
    cols = [[np.zeros(0, np.int64)], [np.zeros((0, MAX_ARITY), np.int64)],
            [np.zeros((0, MAX_OUTPUTS), np.uint64)], [np.zeros(0, np.int8)]]
    for pkeys, (pidx, ins, fps, nouts) in parts:
        remap = np.array([table.setdefault(k, len(table)) for k in pkeys] or [0], dtype=np.int64)
        cols[0].append(remap[pidx] if len(pidx) else pidx.astype(np.int64))
        for c, arr in zip(cols[1:], (ins, fps, nouts)):
            c.append(arr)
    pidx, ins, fps, nouts = (np.concatenate(c) for c in cols)
    # one int64 per node key: params index, then the two input ids (+1: -1 marks none)
    key = (pidx << 42) | ((ins[:, 0] + 1) << 21) | (ins[:, 1] + 1)
    assert len(table) < 1 << 20 and (ins < (1 << 21) - 1).all(), "too many terms to key"
    first = np.sort(np.unique(key, return_index=True)[1])
    return list(table), pidx[first], ins[first], fps[first], nouts[first], first


def add_level(en: Enumeration, level: int, progress=None) -> int:
    """Every node of `level` operators, evaluated as arrays section by section, added to `en`
    as Terms in the serial order.  Below the last level the terms keep their values (they are
    inputs of the next level); last-level terms get none (nothing reads them).  Returns the
    number of nodes."""
    keep_values = level < en.max_ops
    merged = []
    for op in en.op_names:        # all evaluated before any is added: inputs are smaller
        parts, vals = [], []
        for sec in en.op_sections(op, level):
            pkeys, *arrays, v = section_arrays(en, op, level, sec, values=keep_values)
            parts.append((pkeys, tuple(arrays)))
            vals.extend(v or [])
        table, pidx, ins, fps, nouts, chosen = merge_sections(parts)
        node_vals = [vals[i] for i in chosen.tolist()] if keep_values else None
        merged.append((op, table, pidx, ins, fps, nouts, node_vals))
    made, shapes = 0, {}
    for op, table, pidx, ins, fps, nouts, node_vals in merged:
        for j, (p, i2, f2, k) in enumerate(zip(pidx.tolist(), ins.tolist(), fps.tolist(),
                                               nouts.tolist())):
            ins_t = [en.terms[i] for i in i2 if i >= 0]
            out_shapes = node_shapes(op, table[p], ins_t, shapes)
            en.insert(op, table[p], ins_t, out_shapes,
                       node_vals[j] if keep_values else [None] * k, f2[:k])
            made += 1
        if progress:
            progress(len(pidx))
    return made


def node_shapes(op: str, pkey: tuple, ins: list, memo: dict) -> list:
    """The output shapes of a node (the shape rule, asked once per params and input shapes)."""
    key = (op, pkey, tuple(t.shape for t in ins))
    out = memo.get(key)
    if out is None:
        out = memo[key] = OPS[op].infer([t.shape for t in ins], dict(pkey))
    return out
