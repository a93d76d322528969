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
import functools
import gc
import time

import numpy as np

from subgen.enumeration.enumerator import Enumerator
from subgen.enumeration.level_arrays import MAX_OUTPUTS, merge_sections, section_arrays

def prefix(ops: tuple[str, ...], max_ops: int, seed: int, spellings: int | None = None
           ) -> Enumerator:
    """Levels 1 .. max_ops-1, cached per process (a worker builds it once for all its shards;
    `prefix_cache_clear` drops it)."""
    from subgen.enumeration.enumerator import default_spellings
    spellings = default_spellings(max_ops) if spellings is None else spellings
    return _prefix(tuple(ops), max_ops, seed, spellings)


@functools.lru_cache(maxsize=1)
def _prefix(ops: tuple[str, ...], max_ops: int, seed: int, spellings: int) -> Enumerator:
    en = Enumerator(ops, max_ops, seed=seed, spellings=spellings)
    for lv in range(1, max_ops):
        en.level(lv)
    # hundreds of thousands of long-lived objects: keep the cyclic collector from walking
    # them again at every collection of the jobs' short-lived ones (most of a job's time there)
    gc.freeze()
    return en


prefix_cache_clear = _prefix.cache_clear


def _private_copy(en: Enumerator, register: bool = True) -> Enumerator:
    """A copy whose containers can grow without touching `en` (terms themselves are shared,
    never mutated).  With `register` False only the term and node lists are copied: terms
    added to it must not be registered (`Enumerator.insert(register=False)`)."""
    c = copy.copy(en)
    for memo in ("_graph_nf", "_term_text", "_term_vars", "_spelling_memo", "_term_arrays",
                 "_term_columns"):
        # memos by term id: the copy's new terms would meet another copy's entries
        c.__dict__.pop(memo, None)
    c.copied_from = en
    c.terms, c.nodes = list(en.terms), list(en.nodes)
    if register:
        c._node_key = dict(en._node_key)
        c.classes = {k: list(v) for k, v in en.classes.items()}
        c.reps_by_size = {k: list(v) for k, v in en.reps_by_size.items()}
    else:
        c._node_key = c.classes = c.reps_by_size = None
    return c


# ----------------------------------------------------------------------------------------------
# The last level, kept only where it can make a rule.
#
# A rule pairs two graphs of one fingerprint, so a last-level node whose outputs all have a
# fingerprint no other term has can never be in one: it is counted, not kept.  At depth 4 that is
# most of ten million nodes, and keeping them (a EnumeratedTerm each) is what ran the driver out of memory.
# Workers walk their own piece of the last level's input tuples (`Enumerator.sections`: no
# instance list is made or shipped), evaluate each node and send back compact arrays: params
# index, input term ids and output fingerprints.  The driver counts fingerprints over all of them
# and the prefix, then builds Terms (values None) only for nodes with a shared fingerprint and for
# multi-output nodes (their outputs form two-output graphs), in the sequential order: the terms
# it keeps get the same classes, representatives and buckets, so the same pairs and rules.

def evaluate_section(job):
    """Worker side: the nodes of one section of the last level as arrays
    (`level_arrays.section_arrays`) and the wall and CPU seconds taken.
    job = (ops, max_ops, seed, spellings, op, section)."""
    ops, max_ops, seed, spellings, op, section = job
    t0, c0 = time.perf_counter(), time.process_time()
    base = prefix(ops, max_ops, seed, spellings)
    pkeys, *arrays, _ = section_arrays(base, op, max_ops, section)
    return pkeys, tuple(arrays), time.perf_counter() - t0, time.process_time() - c0


def enumerate_compact(ops, max_ops: int, seed: int, executor, progress=None,
                      stats: dict | None = None, spellings: int | None = None) -> Enumerator:
    """The sequential enumerator less the last-level nodes that cannot be in any rule (see
    above); `en.unkept_terms` counts the terms left out (each a graph of its own), and
    `en.kept_last_level` holds the kept nodes as arrays, which `subgen.pairing.sharded_stages` hands to
    its workers (no EnumeratedTerm is built for them here)."""
    ops = tuple(ops)
    t0 = time.perf_counter()
    en = _private_copy(prefix(ops, max_ops, seed, spellings))
    t_prefix = time.perf_counter() - t0
    jobs = [(ops, max_ops, seed, spellings, op, sec) for op in en.op_names
            for sec in en.op_sections(op, max_ops)]
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
        n = sum(1 for j in jobs if j[4] == op)
        merged.append((op, merge_sections([results.pop(i) for i in range(start, start + n)])[:5]))
        start += n
    # fingerprints held by two terms or more (the prefix's classes count as one term each)
    columns = [fps[nouts >= k + 1, k] for _, (_, _, _, fps, nouts) in merged
               for k in range(MAX_OUTPUTS)]
    prefix_fps = np.array(list(en.classes), dtype=np.uint64)
    _, inverse, counts = np.unique(np.concatenate(columns + [prefix_fps]), return_inverse=True,
                                   return_counts=True)
    shared_at = counts[inverse] >= 2
    kept, unkept, made, at = [], 0, 0, 0
    for op, (table, pidx, ins, fps, nouts) in merged:
        n_first = int((nouts >= 1).sum())
        first_shared = shared_at[at:at + n_first]
        at += sum(int((nouts >= k + 1).sum()) for k in range(MAX_OUTPUTS))
        keep = nouts >= 2
        keep[nouts >= 1] |= first_shared
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
