"""The enumeration's last level, evaluated by workers (an executor: local processes or Ray).

Almost all of the enumeration's time goes into its last level: every operator applied to the
(extended) terms of the levels below, each new node evaluated exactly and fingerprinted.  The
levels below are cheap, identical everywhere, and so are computed by the driver and by each
worker process (once per process, cached: `prefix`).  The last level's input tuples are cut into
contiguous sections (`Enumerator.sections`); each worker evaluates its sections on the prefix and
sends back compact arrays, never values.  What the driver keeps of them, and why that gives the
serial enumerator's rules, is described above `enumerate_compact`.
"""
from __future__ import annotations

import copy
import time

import numpy as np

from envcore.ops import OPS, ShapeError
from subgen.enumerate import CONSTANT_SHAPES, UNARY_ENUMERATED, Enumerator, OpNode, Term
from subgen.fingerprint import value_hash

_PREFIX_CACHE: dict[tuple, Enumerator] = {}


def prefix(ops: tuple[str, ...], max_ops: int, seed: int) -> Enumerator:
    """Levels 1 .. max_ops-1, cached per process (a worker builds it once for all its shards)."""
    key = (tuple(ops), max_ops, seed)
    if key not in _PREFIX_CACHE:
        _PREFIX_CACHE.clear()
        en = Enumerator(ops, max_ops, seed=seed)
        for lv in range(1, max_ops):
            en.level(lv)
        _PREFIX_CACHE[key] = en
    return _PREFIX_CACHE[key]


def _private_copy(en: Enumerator) -> Enumerator:
    """A copy whose containers can grow without touching `en` (terms themselves are shared,
    never mutated)."""
    c = copy.copy(en)
    c.terms, c.nodes = list(en.terms), list(en.nodes)
    c._node_key = dict(en._node_key)
    c.classes = {k: list(v) for k, v in en.classes.items()}
    c.reps_by_size = {k: list(v) for k, v in en.reps_by_size.items()}
    return c


def _insert(en: Enumerator, op: str, pkey: tuple, inputs: tuple, outputs: tuple) -> bool:
    """Driver side: the sequential `_make` bookkeeping, with the shard's fingerprints."""
    key = (op, pkey, inputs)
    if key in en._node_key:
        return False
    node = OpNode(len(en.nodes), op, pkey, inputs)
    en.nodes.append(node)
    en._node_key[key] = node.id
    ops = frozenset().union(*(en.terms[i].ops for i in inputs)) | {node.id}
    ids = []
    for k, (shape, fp, bounds) in enumerate(outputs):
        t = Term(len(en.terms), node.id, k, tuple(shape), None, fp, ops, bounds)
        en.terms.append(t)
        members = en.classes.setdefault(fp, [])
        members.append(t.id)
        if len(members) == 1:
            en.reps_by_size.setdefault(t.size, []).append(t.id)
        ids.append(t.id)
    node.outputs = tuple(ids)
    return True


# ----------------------------------------------------------------------------------------------
# The last level, kept only where it can make a rule.
#
# A rule pairs two graphs of one fingerprint, so a last-level node whose outputs all have a
# fingerprint no other term has can never be in one: it is counted, not kept.  At depth 4 that is
# most of ten million nodes, and keeping them (a Term each) is what ran the driver out of memory.
# Workers walk their own piece of the last level's input tuples (`Enumerator.sections`: no
# instance list is made or shipped), evaluate each node and send back compact arrays: params
# index, input term ids and output fingerprints.  The driver counts fingerprints over all of them
# and the prefix, then builds Terms (values None) only for nodes with a shared fingerprint and for
# multi-output nodes (their outputs form two-output graphs), in the sequential order: the terms
# it keeps get the same classes, representatives and buckets, so the same pairs and rules.

MAX_ARITY = MAX_OUTPUTS = 2


def _op_sections(en: Enumerator, op: str, level: int) -> list:
    if op in CONSTANT_SHAPES:
        return [None] if level == 1 else []
    return en.sections(1 if op in UNARY_ENUMERATED else 2, level)


def evaluate_section(job):
    """Worker side: the nodes of one section of the last level as arrays (see above) and the
    wall and CPU seconds taken.  job = (ops, max_ops, seed, op, section)."""
    ops, max_ops, seed, op, section = job
    t0, c0 = time.perf_counter(), time.process_time()
    base = prefix(ops, max_ops, seed)
    opdef = OPS[op]
    seen, pkeys = set(), {}
    shape_ok: dict = {}        # (params, input shapes) -> the shape rule accepts them
    pidx, inputs, fps, nouts = [], [], [], []
    for params, ins in base._instances(op, max_ops, section):
        full = opdef.full_params(params)
        pkey = tuple(sorted(full.items()))
        in_ids = tuple(t.id for t in ins)
        if (pkey, in_ids) in seen:
            continue
        seen.add((pkey, in_ids))
        # a few shapes recur millions of times: the shape rule (pure) is asked once per combo
        skey = (pkey, tuple(t.shape for t in ins))
        ok = shape_ok.get(skey)
        if ok is None:
            try:
                opdef.infer([t.shape for t in ins], full)
                ok = True
            except ShapeError:
                ok = False
            shape_ok[skey] = ok
        if not ok:
            continue
        try:
            values = opdef.exact([t.value for t in ins], full)
        except ShapeError:
            continue
        assert len(in_ids) <= MAX_ARITY and len(values) <= MAX_OUTPUTS, (op, len(values))
        pidx.append(pkeys.setdefault(pkey, len(pkeys)))
        inputs.append(in_ids + (-1,) * (MAX_ARITY - len(in_ids)))
        out = [value_hash(np.asarray(v)) for v in values]
        nouts.append(len(out))
        fps.append(out + [0] * (MAX_OUTPUTS - len(out)))
    arrays = (np.array(pidx, dtype=np.int32),
              np.array(inputs, dtype=np.int64).reshape(-1, MAX_ARITY),
              np.array(fps, dtype=np.uint64).reshape(-1, MAX_OUTPUTS),
              np.array(nouts, dtype=np.int8))
    return list(pkeys), arrays, time.perf_counter() - t0, time.process_time() - c0


def _merge_op(parts: list) -> tuple:
    """One operator's sections joined in order, params numbered per operator, and duplicate
    nodes (the same params and inputs reached from two sections) dropped after the first."""
    table: dict = {}
    cols = [[np.zeros(0, np.int64)], [np.zeros((0, MAX_ARITY), np.int64)],
            [np.zeros((0, MAX_OUTPUTS), np.uint64)], [np.zeros(0, np.int8)]]
    for pkeys, (pidx, ins, fps, nouts) in parts:
        remap = np.array([table.setdefault(k, len(table)) for k in pkeys] or [0], dtype=np.int64)
        cols[0].append(remap[pidx] if len(pidx) else pidx.astype(np.int64))
        for c, a in zip(cols[1:], (ins, fps, nouts)):
            c.append(a)
    pidx, ins, fps, nouts = (np.concatenate(c) for c in cols)
    # one int64 per node key: params index, then the two input ids (+1: -1 marks none)
    key = (pidx << 42) | ((ins[:, 0] + 1) << 21) | (ins[:, 1] + 1)
    assert len(table) < 1 << 20 and (ins < (1 << 21) - 1).all(), "too many terms to key"
    first = np.sort(np.unique(key, return_index=True)[1])
    return list(table), pidx[first], ins[first], fps[first], nouts[first]


def enumerate_compact(ops, max_ops: int, seed: int, executor, progress=None,
                      stats: dict | None = None) -> Enumerator:
    """The sequential enumerator less the last-level nodes that cannot be in any rule (see
    above); `en.unkept_terms` counts the terms left out (each a graph of its own), and
    `en.kept_last_level` holds the kept nodes as arrays, which `subgen.sharded_stages` hands to
    its workers (no Term is built for them here)."""
    ops = tuple(ops)
    t0 = time.perf_counter()
    en = _private_copy(prefix(ops, max_ops, seed))
    t_prefix = time.perf_counter() - t0
    jobs = [(ops, max_ops, seed, op, sec) for op in en.op_names
            for sec in _op_sections(en, op, max_ops)]
    if progress is not None:
        progress.start(f"enumerate: {max_ops} ops ({len(jobs)} sections, {executor.kind} x "
                       f"{executor.workers})", len(jobs))
    results: dict[int, tuple] = {}
    shard_seconds, shard_cpu = [0.0] * len(jobs), [0.0] * len(jobs)
    for i, (pkeys, arrays, seconds, cpu) in executor.map_unordered(evaluate_section, jobs):
        results[i] = (pkeys, arrays)
        shard_seconds[i], shard_cpu[i] = seconds, cpu
        if progress is not None:
            progress.advance()
    t_merge, c_merge = time.perf_counter(), time.process_time()
    merged, start = [], 0
    for op in en.op_names:
        n = sum(1 for j in jobs if j[3] == op)
        merged.append((op, _merge_op([results.pop(i) for i in range(start, start + n)])))
        start += n
    # fingerprints held by two terms or more (the prefix's classes count as one term each)
    all_fps = np.concatenate([fps[nouts >= k + 1, k] for _, (_, _, _, fps, nouts) in merged
                              for k in range(MAX_OUTPUTS)] or [np.zeros(0, np.uint64)])
    uniq, counts = np.unique(all_fps, return_counts=True)
    shared = np.union1d(uniq[counts >= 2], np.array(list(en.classes), dtype=np.uint64))
    kept, unkept, made = [], 0, 0
    for op, (table, pidx, ins, fps, nouts) in merged:
        keep = (nouts >= 2) | np.isin(fps[:, 0], shared)
        made += len(nouts)
        unkept += int(nouts[~keep].sum())
        kept.append((op, table, pidx[keep], ins[keep], fps[keep], nouts[keep]))
    del merged
    kept_nodes = sum(len(k[2]) for k in kept)
    en.kept_last_level = kept
    en.unkept_terms = unkept
    if stats is not None:
        stats.update(prefix_s=t_prefix, shards=len(jobs), shard_s=shard_seconds,
                     shard_cpu_s=shard_cpu, merge_s=time.perf_counter() - t_merge,
                     merge_cpu_s=time.process_time() - c_merge, last_level_nodes=made,
                     kept_nodes=kept_nodes, unkept_terms=unkept)
    return en
