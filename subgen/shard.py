"""The enumeration's last level, sharded across workers (an executor: local processes or Ray).

Almost all of the enumeration's time goes into its last level: every operator applied to the
representatives of the levels below, each new node evaluated exactly and fingerprinted (at depth
3, 174k of 180k nodes).  The levels below are cheap, identical everywhere, and so are computed
by the driver and by each worker process (once per process, cached).  The driver lists the last
level's instances (operator, params, input term ids) in the sequential order, cuts them into
shards of `shard_size`, and each worker builds its shard's nodes on a private copy of the prefix
and sends back only what the later stages read: op, params, input ids, and per output its shape,
fingerprint and split boundary (never the values).

Merging the shards in instance order, skipping a node already made (the sequential `_make`'s
deduplication), gives exactly the sequential enumerator: the same term and node ids, the same
classes in the same order, so the same representatives, buckets, pairs and rules.  Term values
of the last level stay None on the driver; the later stages read only fingerprints and
structure (`FloatValues` evaluates floats from the structure).
"""
from __future__ import annotations

import copy
import time

from subgen.enumerate import Enumerator, Term, OpNode

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


def build_shard(job) -> tuple[list[tuple], float, float]:
    """Worker side: the nodes of one shard of instances, as plain tuples, and the wall and CPU
    seconds taken.  job = (ops, max_ops, seed, op, [(params, input term ids), ...])."""
    ops, max_ops, seed, op, instances = job
    t0, c0 = time.perf_counter(), time.process_time()
    base = prefix(ops, max_ops, seed)
    en = _private_copy(base)
    out = []
    for params, in_ids in instances:
        node = en._make(op, params, [en.terms[i] for i in in_ids])
        if node is None:
            continue
        outs = [en.terms[o] for o in node.outputs]
        out.append((node.op, node.params, node.inputs,
                    tuple((t.shape, t.fp, t.bounds) for t in outs)))
    return out, time.perf_counter() - t0, time.process_time() - c0


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


def enumerate_sharded(ops, max_ops: int, seed: int, executor, progress=None,
                      shard_size: int = 4000, stats: dict | None = None) -> Enumerator:
    """The same Enumerator as `Enumerator(ops, max_ops, seed).run()`, its last level built by
    `executor` (see the module doc).  `stats` receives per-shard sizes and seconds."""
    ops = tuple(ops)
    t0 = time.perf_counter()
    en = _private_copy(prefix(ops, max_ops, seed))
    t_prefix = time.perf_counter() - t0
    jobs = []
    for op in en.op_names:
        inst = [(params, tuple(t.id for t in ins)) for params, ins in en._instances(op, max_ops)]
        for start in range(0, len(inst), shard_size):
            jobs.append((ops, max_ops, seed, op, inst[start:start + shard_size]))
    if progress is not None:
        progress.start(f"enumerate: {max_ops} ops ({len(jobs)} shards, {executor.kind})",
                       sum(len(j[4]) for j in jobs))
    results: dict[int, list] = {}
    shard_seconds, shard_cpu = [0.0] * len(jobs), [0.0] * len(jobs)
    for i, (nodes, seconds, cpu) in executor.map_unordered(build_shard, jobs):
        results[i] = nodes
        shard_seconds[i], shard_cpu[i] = seconds, cpu
        if progress is not None:
            progress.advance(len(jobs[i][4]))
    t_merge, c_merge = time.perf_counter(), time.process_time()
    for i in range(len(jobs)):
        for op, pkey, inputs, outputs in results.pop(i):
            _insert(en, op, pkey, inputs, outputs)
    if stats is not None:
        stats.update(prefix_s=t_prefix, shards=len(jobs), shard_s=shard_seconds,
                     shard_cpu_s=shard_cpu,
                     shard_instances=[len(j[4]) for j in jobs],
                     merge_s=time.perf_counter() - t_merge,
                     merge_cpu_s=time.process_time() - c_merge,
                     last_level_nodes=len(en.nodes) - len(prefix(ops, max_ops, seed).nodes))
    return en
