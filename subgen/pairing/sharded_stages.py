"""The candidate stages of `find_candidates` (pair, prune-renaming, refute, prune-instances,
prune-smaller, prune-supergraph) run by an executor's workers on a partition of the fingerprint
space; the driver never builds a last-level term and only merges small results.

At depth 4 the last level keeps five million nodes (commuted operands and the like share their
fingerprint), so neither the driver's memory nor Python objects per node can take them:

* Fingerprint f belongs to part f % nparts; a two-output bucket (keyed by the multiset hash of
  its outputs' fingerprints) to part key % nparts.  Part p gets the kept last-level nodes
  (`subgen.enumeration.shard.enumerate_compact`, as arrays) with an output fingerprint of part p, or of a
  class that a two-output bucket of part p reads: its whole buckets, and nothing else.
* Round 1 (pair, orient, key).  The worker computes its terms' columns (`subgen.pairing.digests`:
  template hash, leaves, variables, size, form signature) from the arrays, without a EnumeratedTerm.  A
  one-output bucket whose only spelling of the representative is the representative itself (no
  other member has its form signature) and that pairs nobody all-with-all pairs the
  representative with every other member: that, the orientation and the key digests are array
  operations.  The other buckets (spellings to compare by normal form) and the two-output ones
  run the reference code (`candidates.pairs`, `orient`) on Terms rebuilt for their nodes only.
  Per key the worker keeps its first pair, tagged with its place in the serial order (bucket
  place, pair number); term positions in the full enumeration order travel with it.
* The driver keeps, per key, the pair first in the serial order: exactly the pair the serial
  `keys.setdefault` keeps.
* Round 2 (refute, instances): each part gets its winners back and rebuilds only their nodes;
  float check and instance digests.  Round 3 (prune-smaller, prune-supergraph, Rules): the
  survivors of the instance pruning, the same way; Rules are built for the final ones only.

So the rules, their order and the stage counts are the serial path's (`tests/
test_sharded_generation.py`).  The bucket order assumed (`_bucket_place`) is
`candidates.buckets`': one-output classes in class order, then two-output buckets in the order
of their first multi-output node.
"""
from __future__ import annotations

import functools
import gc
import itertools
import operator
import time

import numpy as np

from subgen.pairing import pairs as C
from subgen.enumeration.fingerprint import multiset_hash
from subgen.enumeration.level_arrays import is_in, lookup
from subgen.pairing.digests import (ColumnArrays, chain, chain_columns, columns, encodings,
                                instance_encodings, least_digests, node_columns,
                                oriented_digests, single_digests)

# ----------------------------------------------------------------------------------------------
# driver: cut the kept last level into parts


def _flatten(kept: list, op_names: tuple) -> dict:
    """The kept last level (per operator arrays) as one set of arrays in serial order."""
    ix = {op: i for i, op in enumerate(op_names)}
    parts = [k for k in kept if len(k[2])]
    if not parts:
        return {"op": np.zeros(0, np.int16), "pidx": np.zeros(0, np.int64),
                "ins": np.zeros((0, 2), np.int64), "fps": np.zeros((0, 2), np.uint64),
                "nouts": np.zeros(0, np.int8), "tables": {}}
    return {"op": np.concatenate([np.full(len(k[2]), ix[k[0]], np.int16) for k in parts]),
            "pidx": np.concatenate([k[2] for k in parts]),
            "ins": np.concatenate([k[3] for k in parts]),
            "fps": np.concatenate([k[4] for k in parts]),
            "nouts": np.concatenate([k[5] for k in parts]),
            "tables": {ix[k[0]]: k[1] for k in parts}}


def _part_masks(en, flat: dict, nparts: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Which kept nodes each part needs (module doc), and the classes each part's two-output
    buckets read (sorted arrays)."""
    fps, nouts = flat["fps"], flat["nouts"]
    p = np.uint64(nparts)
    reads = [set() for _ in range(nparts)]        # classes read by each part's 2-output buckets
    multi_prefix = [[en.terms[o].fp for o in n.outputs] for n in en.nodes if len(n.outputs) > 1]
    multi_kept = [[int(f) for f in fps[i, :nouts[i]]] for i in np.flatnonzero(nouts > 1)]
    flat["key_part"] = np.full(len(nouts), -1, np.int64)
    for i, outs in zip(np.flatnonzero(nouts > 1).tolist(), multi_kept):
        flat["key_part"][i] = multiset_hash(outs) % nparts
    for outs in multi_prefix + multi_kept:
        reads[multiset_hash(outs) % nparts].update(outs)
    read_arrays = [np.array(sorted(r), dtype=np.uint64) for r in reads]
    # one sorted table of the classes read, looked up once for all parts
    read = np.array(sorted(set().union(*reads)), dtype=np.uint64)
    read_by = [is_in(read, r) for r in read_arrays]
    two = nouts > 1
    looked_up = []
    for k in range(2):
        col = fps[:, k]
        ix, hit = lookup(read, col)
        looked_up.append((col % p, ix, hit))
    masks = []
    for part in range(nparts):
        (home0, ix0, hit0), (home1, ix1, hit1) = looked_up
        m = (home0 == part) | (hit0 & read_by[part][ix0] if len(read) else False)
        m |= two & ((home1 == part) | (hit1 & read_by[part][ix1] if len(read) else False))
        masks.append(m)
    return masks, read_arrays


# ----------------------------------------------------------------------------------------------
# worker: one part

@functools.lru_cache(maxsize=1)
def _prefix_columns(ops, max_ops, seed, spellings):
    """(prefix enumerator, its ColumnArrays, shape ids, its form hashes [n, 8]), cached per
    process."""
    from subgen.enumeration.shard import prefix
    en = prefix(ops, max_ops, seed, spellings)
    shapes: dict = {}
    cols, forms = _level_arrays(en, shapes)
    gc.freeze()                     # long-lived: see `shard.prefix`
    return en, cols, shapes, forms


def _level_arrays(en, shapes: dict):
    """ColumnArrays and form hashes of every term of `en`, level by level with the array
    versions (`node_columns`, `node_forms`): a level's inputs are the levels below.  The
    per-term columns (`rule_digest.columns`) are filled from them too."""
    from subgen.pairing.form_hash import leaf_form, op_form
    from subgen.pairing.digests import (_LEAF_MULTISET, LEAF_INDEX, TermColumns, _fused, leaf_hash,
                                    op_code, term_hash)
    terms, n = en.terms, len(en.terms)
    width = 2 ** max(0, en.max_ops - 1)
    size = np.array([t.size for t in terms], np.int64)
    fp = np.array([t.fp for t in terms], np.uint64)
    sid = np.array([shapes.setdefault(t.shape, len(shapes)) for t in terms], np.int64)
    cols = ColumnArrays(np.zeros(n, np.uint64), np.full((n, width), -1, np.int64),
                        np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.uint64),
                        size, fp, sid)
    forms = np.zeros((n, 8), np.uint64)
    # leaves and constants (no inputs) one by one: there are a handful
    for t in terms:
        if t.node is None:
            i = LEAF_INDEX[t.name]
            cols.th[t.id], cols.vmask[t.id] = leaf_hash(len(t.shape)), 1 << i
            cols.lms[t.id] = _LEAF_MULTISET[i]
            cols.leaves[t.id, 0] = i
            forms[t.id] = leaf_form(t.name)
        elif not en.nodes[t.node].inputs:
            nd = en.nodes[t.node]
            cols.th[t.id] = term_hash(op_code(nd.op, nd.params, []), [], t.index)
            cols.expanded[t.id] = 1 + _fused(nd.params, t.index)
            forms[t.id] = op_form(nd.op, nd.params, [], t.index, ())
    op_index = {op: i for i, op in enumerate(en.op_names)}
    tables: dict[int, list] = {}
    by_level: dict[int, list] = {}
    for node in en.nodes:
        if node.inputs:
            by_level.setdefault(terms[node.outputs[0]].size, []).append(node)
    scalar = shapes.get((), -1)
    for level in sorted(by_level):
        nodes = by_level[level]
        op_i = np.array([op_index[nd.op] for nd in nodes], np.int64)
        pidx = []
        for nd in nodes:
            table = tables.setdefault(op_index[nd.op], [])
            if nd.params not in table:
                table.append(nd.params)
            pidx.append(table.index(nd.params))
        pidx = np.array(pidx, np.int64)
        ins = np.array([list(nd.inputs) + [-1] * (2 - len(nd.inputs)) for nd in nodes],
                       np.int64)
        nouts = np.array([len(nd.outputs) for nd in nodes], np.int8)
        outs = np.array([list(nd.outputs) + [-1] * (2 - len(nd.outputs)) for nd in nodes],
                        np.int64)
        for k in (0, 1):
            rows = np.flatnonzero(nouts > k)
            if not len(rows):
                continue
            tid = outs[rows, k]
            got = node_columns(cols, shapes, en.op_names, tables, level, op_i[rows],
                               pidx[rows], ins[rows], fp[tid][:, None].repeat(2, 1),
                               nouts[rows], k)
            cols.th[tid], cols.vmask[tid] = got.th, got.vmask
            cols.expanded[tid], cols.lms[tid] = got.expanded, got.lms
            # leaves to the front of the row (the concatenation leaves a gap), then cut
            order = np.argsort(got.leaves < 0, axis=1, kind="stable")
            cols.leaves[tid] = np.take_along_axis(got.leaves, order, axis=1)[:, :width]
            for sel, got_forms in _forms_by_group(en.op_names, tables, op_i[rows], pidx[rows],
                                                  ins[rows], sid, scalar, forms, k):
                forms[tid[sel]] = got_forms
    # the per-term columns, for copies of `en` (`rule_digest.columns`)
    per_term = TermColumns(en)
    per_term.th, per_term.vmask = cols.th.tolist(), cols.vmask.tolist()
    per_term.expanded, per_term.lms = cols.expanded.tolist(), cols.lms.tolist()
    per_term.leaves = [tuple(x for x in row if x >= 0) for row in cols.leaves.tolist()]
    en._term_columns = per_term
    return cols, forms


def _forms_by_group(op_names, tables, op_i, pidx, ins, sid, scalar, forms, k):
    """(rows, normal forms of output k) for each group of nodes of one op, params and
    scalar-input pattern: `form_hash.node_forms` takes one such group at a time."""
    from subgen.pairing.form_hash import node_forms
    a, b = ins[:, 0], ins[:, 1]
    has_b = b >= 0
    bb = np.maximum(b, 0)
    group = (op_i.astype(np.int64) << 40) | (pidx.astype(np.int64) << 8) | \
        (has_b.astype(np.int64) << 2) | ((sid[a] == scalar).astype(np.int64) << 1) | \
        (has_b & (sid[bb] == scalar)).astype(np.int64)
    for g in np.unique(group).tolist():
        rows = np.flatnonzero(group == g)
        o, p = g >> 40, (g >> 8) & 0xFFFFFFFF
        two = bool(g & 4)
        kids = [forms[a[rows]]] + ([forms[bb[rows]]] if two else [])
        pattern = (bool(g & 2),) + ((bool(g & 1),) if two else ())
        yield rows, node_forms(op_names[o], tables[o][p], kids, k, pattern)


def _node_form_hashes(pcols, forms, shapes, op_names, tables, op_i, pidx, ins, k) -> np.ndarray:
    """The normal-form hash of output k of last-level nodes (`subgen.pairing.form_hash`)."""
    out = np.zeros(len(op_i), np.uint64)
    for rows, got in _forms_by_group(op_names, tables, op_i, pidx, ins, pcols.sid,
                                     shapes.get((), -1), forms, k):
        out[rows] = got[:, 7]
    return out


def _select(nodes: dict, mask: np.ndarray) -> dict:
    return {k: (v[mask] if k != "tables" else v) for k, v in nodes.items()}


def _rebuild(ops, max_ops, seed, spellings, nodes: dict, register: bool = True):
    """The prefix plus the given kept nodes, and each term's position in the full enumeration
    (prefix terms keep their ids; a kept node's outputs come after, in serial order).  Without
    `register` the new terms join no class (cheaper: rounds 2 and 3 only read terms)."""
    from subgen.enumeration.level_arrays import node_shapes
    from subgen.enumeration.shard import _private_copy, prefix
    en = _private_copy(prefix(ops, max_ops, seed, spellings), register)
    base = len(en.terms)
    pos = list(range(base))
    op_names, memo = en.op_names, {}
    for op_i, pidx, ins, fps, nouts, ordinal in zip(
            nodes["op"].tolist(), nodes["pidx"].tolist(), nodes["ins"].tolist(),
            nodes["fps"].tolist(), nodes["nouts"].tolist(), nodes["ordinal"].tolist()):
        op = op_names[op_i]
        pkey = nodes["tables"][op_i][pidx]
        terms = [en.terms[i] for i in ins if i >= 0]
        en.insert(op, pkey, terms, node_shapes(op, pkey, terms, memo), [None] * nouts,
                   fps[:nouts], register)
        pos += [base + 2 * ordinal + k for k in range(nouts)]
    return en, pos


def _bucket_place(en, bucket, pos) -> tuple:
    """Where `candidates.buckets` puts this bucket in the full enumeration (module doc)."""
    if len(bucket[0]) == 1:
        return (0, pos[bucket[0][0]])
    firsts = [pos[g[0]] for g in bucket
              if en.terms[g[0]].node is not None and en.nodes[en.terms[g[0]].node].outputs == g]
    return (1, min(firsts))


def _concat(parts: list[ColumnArrays]) -> ColumnArrays:
    width = max(p.leaves.shape[1] for p in parts)
    leaves = [np.pad(p.leaves, ((0, 0), (0, width - p.leaves.shape[1])), constant_values=-1)
              for p in parts]
    return ColumnArrays(*(np.concatenate([getattr(p, f) for p in parts]) if f != "leaves"
                          else np.concatenate(leaves)
                          for f in ("th", "leaves", "vmask", "expanded", "lms", "size", "fp",
                                    "sid")))


def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal values in a sorted array."""
    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return starts, np.diff(np.r_[starts, len(keys)])


def pair_part(job):
    """Worker side, round 1: (graphs, pairs, records, cpu) for the buckets of one part; a
    record per key, its first pair in the part: (key digest, place, part, src, dst, template
    key, variable count), terms named by their position in the full enumeration."""
    ops, max_ops, seed, spellings, part, nparts, nodes, reads = job
    c0 = time.process_time()
    pre, pcols, shapes, pforms = _prefix_columns(ops, max_ops, seed, spellings)
    base = len(pre.terms)
    op_i, pidx, ins = nodes["op"], nodes["pidx"], nodes["ins"]
    fps, nouts, ordinal = nodes["fps"], nodes["nouts"], nodes["ordinal"]
    two = nouts >= 2
    # every term of the part: the prefix, and the outputs of its last-level nodes
    parts, pos, forms = [pcols], [np.arange(base)], [pforms[:, 7]]
    for k, rows in ((0, np.arange(len(op_i))), (1, np.flatnonzero(two))):
        parts.append(node_columns(pcols, shapes, pre.op_names, nodes["tables"], max_ops,
                                  op_i[rows], pidx[rows], ins[rows], fps[rows], nouts[rows], k))
        pos.append(base + 2 * ordinal[rows] + k)
        forms.append(_node_form_hashes(pcols, pforms, shapes, pre.op_names, nodes["tables"],
                                       op_i[rows], pidx[rows], ins[rows], k))
    T = _concat(parts)
    pos, nf = np.concatenate(pos), np.concatenate(forms)
    order = np.lexsort((pos, T.fp))
    T, pos, nf = T.take(order), pos[order], nf[order]
    starts, sizes = _segments(T.fp)
    seg = np.repeat(np.arange(len(starts)), sizes)
    rep = starts[seg]
    owned = T.fp[starts] % np.uint64(nparts) == part
    graphs = int(((T.size > 0) & owned[seg]).sum())
    # `candidates.pairs` on every owned bucket, from the form hashes
    spelled = nf == nf[rep]
    o2 = np.lexsort((nf, seg))
    new_form = np.r_[True, (seg[o2][1:] != seg[o2][:-1]) | (nf[o2][1:] != nf[o2][:-1])]
    distinct = np.bincount(seg[o2], weights=new_form, minlength=len(starts))
    n_spelled = np.bincount(seg, weights=spelled, minlength=len(starts))
    same = ~spelled & (T.size == T.size[rep])
    n_same = np.bincount(seg, weights=same, minlength=len(starts))
    all_pairs = (distinct <= C.ALL_PAIRS_MAX) & (n_same >= 2)
    busy = owned & (sizes >= 2)
    simple = busy & (n_spelled == 1) & ~all_pairs
    members = np.flatnonzero(simple[seg] & (np.arange(len(seg)) != rep))
    xs, ys, js = [rep[members]], [members], [members - rep[members] - 1]
    px, py, pj = [], [], []
    sp_list, same_list = spelled.tolist(), same.tolist()
    for sg in np.flatnonzero(busy & ~simple).tolist():
        st, n = int(starts[sg]), int(sizes[sg])
        sp = sp_list[st:st + n]
        j = 0
        for i in [i for i in range(n) if sp[i]]:
            for jj in range(n):
                if jj != i and (not sp[jj] or jj > i):
                    px.append(st + i)
                    py.append(st + jj)
                    pj.append(j)
                    j += 1
        if all_pairs[sg]:
            sm = [i for i in range(1, n) if same_list[st + i]]
            for x, y in itertools.combinations(sm, 2):
                px.append(st + x)
                py.append(st + y)
                pj.append(j)
                j += 1
    xs.append(np.array(px, np.int64))
    ys.append(np.array(py, np.int64))
    js.append(np.array(pj, np.int64))
    x, y, j = np.concatenate(xs), np.concatenate(ys), np.concatenate(js)
    pairs = len(x)
    # orientation (`candidates.orient`): the source holds the target's variables, has an op
    vx, vy = T.vmask[x], T.vmask[y]
    fwd = ((vy & ~vx) == 0) & (T.size[x] > 0)
    back = ((vx & ~vy) == 0) & (T.size[y] > 0)
    ok = fwd | back
    src, dst = np.where(fwd, x, y)[ok], np.where(fwd, y, x)[ok]
    place_pos, j = pos[rep[x]][ok], j[ok]
    digests = single_digests(T, src, dst)
    # what prune-instances needs to know (`candidate_stages`): the templates, unordered, and
    # how many variables
    tkeys = chain_columns([np.minimum(T.th[src], T.th[dst]), np.maximum(T.th[src], T.th[dst])])
    nvars = np.bitwise_count(T.vmask[src] | T.vmask[dst])
    first: dict = {}
    o3 = np.lexsort((j, place_pos))
    _, at = np.unique(digests[o3], return_index=True)
    for i in o3[at].tolist():
        first[int(digests[i])] = ((0, int(place_pos[i]), int(j[i])), (int(pos[src[i]]),),
                                  (int(pos[dst[i]]),), int(tkeys[i]), int(nvars[i]))
    c1 = time.process_time()
    # two-output buckets on Terms: the part's splits of an owned key, and the spellings of the
    # classes they read (found above: no EnumeratedTerm for the rest of those classes)
    need = nodes["key_part"] == part
    spell_pos: dict[int, list[int]] = {}
    for sg in np.flatnonzero(is_in(T.fp[starts], reads)).tolist():
        st, n = int(starts[sg]), int(sizes[sg])
        spell_pos[int(T.fp[st])] = [int(pos[i]) for i in range(st, st + n) if spelled[i]]
    last = [q for ps in spell_pos.values() for q in ps if q >= base]
    if last:
        ords = (np.array(last, np.int64) - base) // 2
        need[np.searchsorted(ordinal, ords)] = True
    en, tpos = _rebuild(ops, max_ops, seed, spellings, _select(nodes, need))
    tid_of = {p_: t for t, p_ in enumerate(tpos)}
    spellings = {f: [tid_of[q] for q in ps] for f, ps in spell_pos.items()}
    bks = C.buckets(en, two_output=lambda key: key % nparts == part, one_output=False,
                    spellings=spellings)
    oriented, places = [], []
    for bucket in bks.values():
        graphs += sum(1 for g in bucket if en.op_count(g) > 0)
        place = _bucket_place(en, bucket, tpos)
        for jj, (a, c) in enumerate(C.pairs(en, bucket)):
            pairs += 1
            o = C.orient(en, a, c)
            if o is not None:
                oriented.append(o)
                places.append(place + (jj,))
    cols = columns(en)
    for d, o, place in zip(oriented_digests(en, oriented), oriented, places):
        old = first.get(d)
        if old is None or place < old[0]:
            tkey = chain(sorted(cols.th[t] for t in o[0] + o[1]))
            nv = bin(functools.reduce(operator.or_, (cols.vmask[t] for t in o[0] + o[1]))).count("1")
            first[d] = (place, tuple(tpos[t] for t in o[0]), tuple(tpos[t] for t in o[1]),
                        tkey, nv)
    records = [(d, place, part, a, c, tk, nv) for d, (place, a, c, tk, nv) in first.items()]
    cpu = {"one-output buckets (arrays)": c1 - c0,
           "two-output buckets (terms)": time.process_time() - c1}
    return graphs, pairs, records, cpu


def _winner_nodes(nodes_all: dict, base: int, pairs: list[tuple]) -> dict:
    """The kept nodes the given pairs' last-level terms belong to."""
    used = np.zeros(len(nodes_all["op"]), dtype=bool)
    last = [q - base for a, c in pairs for q in a + c if q >= base]
    used[np.array(last, dtype=np.int64) // 2] = True
    return _select(nodes_all, used)


@functools.lru_cache(maxsize=1)
def _prefix_floats(ops, max_ops, seed, spellings) -> C.FloatValues:
    """Float values of the prefix's terms, computed on demand and kept per process."""
    from subgen.enumeration.shard import prefix
    return C.FloatValues(prefix(ops, max_ops, seed, spellings))


def check_part(job):
    """Worker side, round 2: for winning pairs (terms by position), (agrees, instance digests)
    each, and the CPU seconds; instance digests only where `wanted`.  Only the last-level nodes
    the winners use are rebuilt: a term's value and text depend on its subterms alone."""
    ops, max_ops, seed, spellings, nodes, winners, wanted = job
    c0 = time.process_time()
    _prefix_columns(ops, max_ops, seed, spellings)   # the prefix's columns, for every copy
    en, pos = _rebuild(ops, max_ops, seed, spellings, nodes, register=False)
    local = {p: t for t, p in enumerate(pos)}
    c1 = time.process_time()
    shared = _prefix_floats(ops, max_ops, seed, spellings)
    fv = C.FloatValues(en, shared=shared)
    fv.preload(range(fv.shared_nodes, len(en.nodes)))
    pairs = [(tuple(local[p] for p in a), tuple(local[p] for p in c)) for a, c in winners]
    agrees = fv.agree_many(pairs)
    c2 = time.process_time()
    cols = columns(en)
    groups, owner = [], []
    for w, ((a, c), ok, want) in enumerate(zip(pairs, agrees, wanted)):
        if ok and want:
            inst = instance_encodings(encodings(cols, a, c))
            groups.extend(inst)
            owner.extend([w] * len(inst))
    inst = [[] for _ in winners]
    for w, d in zip(owner, least_digests(groups)):
        inst[w].append(d)
    return list(zip(agrees, inst)), {"rebuild": c1 - c0, "refute": c2 - c1,
                                     "instances": time.process_time() - c2}


def prune_part(job):
    """Worker side, round 3: per survivor (terms by position), (an instance of a smaller rule,
    a smaller rule in context, and when neither: its Rule, its `normal_form.rule_class` and
    its DB row (`RuleDB.row`))."""
    from subgen.pairing.normal_form import rule_class
    from subgen.rules.db import RuleDB
    from subgen.pairing.term_prune import ExactValues, Replaced, common_supergraph, generalizes
    ops, max_ops, seed, spellings, nodes, survivors = job
    c0 = time.process_time()
    en, pos = _rebuild(ops, max_ops, seed, spellings, nodes, register=False)
    local = {p: t for t, p in enumerate(pos)}
    replaced, nf = Replaced(en, ExactValues(en)), C._normal_forms(en)
    out = []
    for a, c in survivors:
        a, c = tuple(local[p] for p in a), tuple(local[p] for p in c)
        smaller = generalizes(en, replaced, a, c, lambda t: nf((t,)))
        sup = False if smaller else common_supergraph(en, a, c)
        rule = None if smaller or sup else C.to_rule(en, a, c, C.term_key(en, a, c))
        out.append((smaller, sup, rule) + ((None, None) if rule is None else
                                           (rule_class(rule), RuleDB.row(rule))))
    return out, {"prune": time.process_time() - c0}


# ----------------------------------------------------------------------------------------------
# driver: the stages

def candidate_stages(en, s, executor, summary, progress, stats: dict | None = None,
                     nparts: int | None = None, prepared: dict | None = None) -> list:
    """The stages after `enumerate_compact(...)` on `executor` (module doc);
    returns the kept rules and records the stage counts in `summary` as the serial stages do.
    `stats` receives the workers' CPU seconds per step, summed over parts; `prepared`, when
    given, what the workers computed ahead for each kept rule: "classes"
    (`normal_form.rule_class`) and "rows" (`RuleDB.row`)."""
    flat = _flatten(en.kept_last_level, en.op_names)
    n_kept = len(flat["nouts"])
    nparts = nparts or max(2 * executor.workers, n_kept // 250_000)
    masks, reads = _part_masks(en, flat, nparts)
    flat["ordinal"] = np.arange(n_kept, dtype=np.int64)
    spec = (tuple(s.ops), s.max_ops, s.seed, s.spellings_up_to)   # hashable: cache keys
    jobs = [spec + (p, nparts, _select(flat, m), reads[p])
            for p, m in enumerate(masks)]
    nodes_per_part = [int(m.sum()) for m in masks]
    del masks, reads
    cpu: dict[str, float] = {}

    def add_cpu(part_cpu):
        for k, v in part_cpu.items():
            cpu[k] = cpu.get(k, 0.0) + v
    progress.start(f"pair, prune: renaming ({nparts} parts; last level: {n_kept} nodes kept, "
                   f"{getattr(en, 'unkept_terms', 0)} unpaired terms counted only)", nparts)
    best: dict = {}
    graphs = pairs = 0
    for _, (g, n, records, part_cpu) in executor.map_unordered(pair_part, jobs):
        graphs, pairs = graphs + g, pairs + n
        add_cpu(part_cpu)
        for rec in records:
            old = best.get(rec[0])
            if old is None or rec[1] < old[1]:
                best[rec[0]] = rec
        progress.advance()
    del jobs
    winners = sorted(best.values(), key=lambda r: r[1])
    del best
    base = len(en.terms)
    progress.start("refute (float), prune: instances", len(winners))
    # A rule is an instance of another (variables merged) only if both have the same templates
    # (merging renames leaves, nothing else) and it has fewer variables: only rules with a
    # rule of fewer variables beside them need their instances listed.
    fewest: dict[int, int] = {}
    for w in winners:
        fewest[w[5]] = min(fewest.get(w[5], w[6]), w[6])
    wanted = [w[6] > fewest[w[5]] for w in winners]
    del fewest
    groups: dict[int, list[int]] = {}     # part -> its winners, in winner order
    for i, w in enumerate(winners):
        groups.setdefault(w[2], []).append(i)
    parts_done = sorted(groups)
    jobs2 = (spec + (
              _winner_nodes(flat, base, [(winners[i][3], winners[i][4]) for i in groups[p]]),
              [(winners[i][3], winners[i][4]) for i in groups[p]],
              [wanted[i] for i in groups[p]]) for p in parts_done)
    checks: list = [None] * len(winners)
    for j, (out, part_cpu) in executor.map_unordered(check_part, jobs2):
        add_cpu(part_cpu)
        for i, res in zip(groups[parts_done[j]], out):
            checks[i] = res
        progress.advance(len(out))
    unkept = getattr(en, "unkept_terms", 0)
    graphs += unkept
    summary.enumerated = graphs
    kept_terms = int(sum(k[5].sum() for k in en.kept_last_level))
    summary.stage("enumerate", sum(1 for t in en.terms if t.node is not None) + kept_terms +
                  unkept, graphs)
    summary.candidates = pairs
    summary.stage("pair", graphs, pairs)
    summary.stage("prune-renaming", pairs, len(winners))
    true = [(w, ch) for w, ch in zip(winners, checks) if ch[0]]
    summary.refuted += len(winners) - len(true)
    summary.stage("refute", len(winners), len(true))
    instances = set().union(*(ch[1] for _, ch in true))
    survivors = [w for w, _ in true if w[0] not in instances]
    summary.stage("prune-instances", len(true), len(survivors))
    del winners, checks, true, instances

    progress.start("prune: smaller rules, common supergraph", len(survivors))
    # small jobs, so that two workers share the work evenly and progress moves
    chunk = max(1, min(8192, len(survivors) // (4 * executor.workers) or 1))
    pieces = [list(range(i, min(i + chunk, len(survivors))))
              for i in range(0, len(survivors), chunk)]
    jobs3 = (spec + (
              _winner_nodes(flat, base, [(survivors[i][3], survivors[i][4]) for i in piece]),
              [(survivors[i][3], survivors[i][4]) for i in piece]) for piece in pieces)
    flags: list = [None] * len(survivors)
    for j, (out, part_cpu) in executor.map_unordered(prune_part, jobs3):
        add_cpu(part_cpu)
        for i, res in zip(pieces[j], out):
            flags[i] = res
        progress.advance(len(out))
    if stats is not None:
        stats["partition_cpu_s"] = cpu
        stats["parts"] = nparts
        stats["nodes_per_part"] = nodes_per_part
    general = [f for f in flags if not f[0]]
    summary.stage("prune-smaller", len(flags), len(general))
    kept_rules = [f[2] for f in general if not f[1]]
    if prepared is not None:
        prepared["classes"] = [f[3] for f in general if not f[1]]
        prepared["rows"] = [f[4] for f in general if not f[1]]
    summary.stage("prune-supergraph", len(general), len(kept_rules))
    summary.after_pruning = len(kept_rules)
    return kept_rules
