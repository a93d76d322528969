"""The candidate stages of `find_candidates` (pair, prune-renaming, refute, prune-instances,
prune-smaller, prune-supergraph) run by an executor's workers on a partition of the fingerprint
space; the driver never builds a last-level term and only merges small results.

At depth 4 the last level keeps most of its ten million nodes (commuted operands and the like
share their fingerprint), and every pair costs tens of microseconds of Python in every stage,
so neither the driver's memory nor its one core can take them.  Instead:

* Fingerprint f belongs to part f % nparts; a two-output bucket (keyed by the multiset hash of
  its outputs' fingerprints) to part key % nparts.  Part p gets the kept last-level nodes
  (`subgen.shard.enumerate_compact`, as arrays) with an output fingerprint of part p, or of a
  class that a two-output bucket of part p reads: its whole buckets, and nothing else.
* A worker rebuilds the prefix (cached per process) plus its nodes, makes the buckets, and for
  the buckets of its part computes what the serial stages compute: pairs, orientation, the key
  up to renaming and, per key, its first pair, tagged with that pair's place in the serial order
  (bucket place, pair number): term positions in the full enumeration order are carried along.
  Keys travel as 64-bit digests (a false merge of two rules needs a collision among a few million
  digests: odds below 1e-6).
* The driver keeps, per key, the pair first in the serial order: exactly the pair the serial
  `keys.setdefault` keeps.  A second round sends each part its winners; the worker (holding the
  part from the first round, or rebuilding it) does the float check, the instance keys (again
  as digests) and the rule, so these are the serial ones, in the serial order.
* prune-smaller and prune-supergraph look at one rule at a time: a plain parallel map.

The bucket order assumed (`_bucket_place`) is `candidates.buckets`': one-output classes in class
order, then two-output buckets in the order of their first multi-output node; the test comparing
this path with the serial one guards it.
"""
from __future__ import annotations

import hashlib
import time

import numpy as np

from subgen import candidates as C
from subgen.fingerprint import multiset_hash
from subgen.level_arrays import is_in, lookup


def _digest(key) -> int:
    """64 bits of a rule key (`candidates.term_key`: text, or a tuple of texts and numbers)."""
    return int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=8).digest(), "little")


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


def _part_masks(en, flat: dict, nparts: int) -> list[np.ndarray]:
    """Which kept nodes each part needs (module doc)."""
    fps, nouts = flat["fps"], flat["nouts"]
    p = np.uint64(nparts)
    reads = [set() for _ in range(nparts)]        # classes read by each part's 2-output buckets
    multi_prefix = [[en.terms[o].fp for o in n.outputs] for n in en.nodes if len(n.outputs) > 1]
    multi_kept = [[int(f) for f in fps[i, :nouts[i]]] for i in np.flatnonzero(nouts > 1)]
    for outs in multi_prefix + multi_kept:
        reads[multiset_hash(outs) % nparts].update(outs)
    # one sorted table of the classes read, looked up once (np.isin per part sorted 5 M
    # fingerprints 2 x nparts times: a minute of the driver's time at depth 4)
    read = np.array(sorted(set().union(*reads)), dtype=np.uint64)
    read_by = [is_in(read, np.array(sorted(r), dtype=np.uint64)) for r in reads]
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
    return masks


# ----------------------------------------------------------------------------------------------
# worker: one part

def _rebuild(ops, max_ops, seed, nodes: dict):
    """The prefix plus the given kept nodes, and each term's position in the full enumeration
    (prefix terms keep their ids; a kept node's outputs come after, in serial order)."""
    from subgen.level_arrays import node_shapes
    from subgen.shard import _private_copy, prefix
    en = _private_copy(prefix(ops, max_ops, seed))
    base = len(en.terms)
    pos = list(range(base))
    op_names, memo = en.op_names, {}
    for op_i, pidx, ins, fps, nouts, ordinal in zip(
            nodes["op"].tolist(), nodes["pidx"].tolist(), nodes["ins"].tolist(),
            nodes["fps"].tolist(), nodes["nouts"].tolist(), nodes["ordinal"].tolist()):
        op = op_names[op_i]
        pkey = nodes["tables"][op_i][pidx]
        terms = [en.terms[i] for i in ins if i >= 0]
        en._insert(op, pkey, terms, node_shapes(op, pkey, terms, memo), [None] * nouts,
                   fps[:nouts])
        pos += [base + 2 * ordinal + k for k in range(nouts)]
    return en, pos


def _bucket_place(en, bucket, pos) -> tuple:
    """Where `candidates.buckets` puts this bucket in the full enumeration (module doc)."""
    if len(bucket[0]) == 1:
        return (0, pos[bucket[0][0]])
    firsts = [pos[g[0]] for g in bucket
              if en.terms[g[0]].node is not None and en.nodes[en.terms[g[0]].node].outputs == g]
    return (1, min(firsts))


def pair_part(job):
    """Worker side, first round: (graphs, pairs, records, cpu) for the buckets of one part; a
    record per key, its first pair in the part: (key digest, place, part, src, dst), terms
    named by their position in the full enumeration (`_rebuild`), so the second round can
    rebuild only the terms its winners need."""
    ops, max_ops, seed, part, nparts, nodes = job
    c0 = time.process_time()
    en, pos = _rebuild(ops, max_ops, seed, nodes)
    bks = C.buckets(en, two_output=lambda key: key % nparts == part)
    c1 = time.process_time()
    first: dict = {}
    graphs = pairs = 0
    for key, bucket in bks.items():
        own = (en.terms[bucket[0][0]].fp if len(bucket[0]) == 1 else key) % nparts == part
        if not own:
            continue
        graphs += sum(1 for g in bucket if en.op_count(g) > 0)
        place = None
        for j, (a, c) in enumerate(C.pairs(en, bucket)):
            pairs += 1
            o = C.orient(en, a, c)
            if o is not None:
                k = C.term_key(en, *o)
                if k not in first:
                    place = place or _bucket_place(en, bucket, pos)
                    first[k] = (place + (j,), o)
    records = [(_digest(k), place, part, tuple(pos[t] for t in a), tuple(pos[t] for t in c))
               for k, (place, (a, c)) in first.items()]
    cpu = {"rebuild+buckets": c1 - c0, "pair+renaming": time.process_time() - c1}
    return graphs, pairs, records, cpu


def check_part(job):
    """Worker side, second round: for the winning pairs of one part (terms by position), (agrees,
    instance digests, rule or None) each, and the CPU seconds.  Only the last-level nodes the
    winners use are rebuilt: a term's value and text depend on its subterms alone."""
    ops, max_ops, seed, nodes, winners = job
    c0 = time.process_time()
    en, pos = _rebuild(ops, max_ops, seed, nodes)
    local = {p: t for t, p in enumerate(pos)}
    c1 = time.process_time()
    fv = C.FloatValues(en)
    out = []
    for a, c in winners:
        a, c = tuple(local[p] for p in a), tuple(local[p] for p in c)
        agrees = fv.agree(a, c)
        inst = [_digest(x) for x in C.instance_term_keys(en, a, c)] if agrees else []
        rule = C.to_rule(en, a, c, C.term_key(en, a, c)) if agrees else None
        out.append((agrees, inst, rule))
    return out, {"rebuild": c1 - c0, "refute+instances": time.process_time() - c1}


def prune_flags(rules):
    """Worker side: per rule, (an instance of a smaller rule, a smaller rule in context)."""
    from subgen.prune import common_supergraph, generalizes
    out = []
    for r in rules:
        smaller = generalizes(r)
        out.append((smaller, False if smaller else common_supergraph(r)))
    return out


# ----------------------------------------------------------------------------------------------
# driver: the stages

def candidate_stages(en, s, executor, summary, progress, stats: dict | None = None,
                     nparts: int | None = None) -> list:
    """The stages after `enumerate_compact(...)` on `executor` (module doc);
    returns the kept rules and records the stage counts in `summary` as the serial stages do.
    `stats` receives the workers' CPU seconds per step, summed over parts."""
    flat = _flatten(en.kept_last_level, en.op_names)
    n_kept = len(flat["nouts"])
    nparts = nparts or max(2 * executor.workers, n_kept // 250_000)
    masks = _part_masks(en, flat, nparts)
    ordinal = np.arange(n_kept, dtype=np.int64)

    def nodes_of(m):
        return {"op": flat["op"][m], "pidx": flat["pidx"][m], "ins": flat["ins"][m],
                "fps": flat["fps"][m], "nouts": flat["nouts"][m], "ordinal": ordinal[m],
                "tables": flat["tables"]}
    jobs = [(s.ops, s.max_ops, s.seed, p, nparts, nodes_of(m)) for p, m in enumerate(masks)]
    del masks
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
    nodes_per_part = [len(j[5]["op"]) for j in jobs]
    del jobs
    winners = sorted(best.values(), key=lambda r: r[1])
    del best
    by_part: list[list[int]] = [[] for _ in range(nparts)]
    for i, (_, _, part, _, _) in enumerate(winners):
        by_part[part].append(i)
    progress.start("refute (float), prune: instances", len(winners))
    checks: list = [None] * len(winners)
    base = len(en.terms)

    def winners_job(p):
        pairs_p = [(winners[i][3], winners[i][4]) for i in by_part[p]]
        used = np.zeros(n_kept, dtype=bool)
        last = [q - base for a, c in pairs_p for q in a + c if q >= base]
        used[np.array(last, dtype=np.int64) // 2] = True
        return (s.ops, s.max_ops, s.seed, nodes_of(used), pairs_p)
    jobs2 = (winners_job(p) for p in range(nparts) if by_part[p])
    parts_done = [p for p in range(nparts) if by_part[p]]
    for j, (out, part_cpu) in executor.map_unordered(check_part, jobs2):
        add_cpu(part_cpu)
        for i, res in zip(by_part[parts_done[j]], out):
            checks[i] = res
        progress.advance(len(out))
    if stats is not None:
        stats["partition_cpu_s"] = cpu
        stats["parts"] = nparts
        stats["nodes_per_part"] = nodes_per_part
    del flat
    unkept = getattr(en, "unkept_terms", 0)
    graphs += unkept
    summary.enumerated = graphs
    kept_terms = int(sum(k[5].sum() for k in en.kept_last_level))
    summary.stage("enumerate", sum(1 for t in en.terms if t.node is not None) + kept_terms +
                  unkept, graphs)
    summary.candidates = pairs
    summary.stage("pair", graphs, pairs)
    summary.stage("prune-renaming", pairs, len(winners))
    true_pairs = [(w[0], ch) for w, ch in zip(winners, checks) if ch[0]]
    summary.refuted += len(winners) - len(true_pairs)
    summary.stage("refute", len(winners), len(true_pairs))
    instances = set().union(*(ch[1] for _, ch in true_pairs))
    rules = [ch[2] for k, ch in true_pairs if k not in instances]
    summary.stage("prune-instances", len(true_pairs), len(rules))
    del winners, checks, true_pairs, instances

    progress.start("prune: smaller rules, common supergraph", len(rules))
    chunk = max(1, min(256, len(rules) // (8 * executor.workers) or 1))
    chunks = [rules[i:i + chunk] for i in range(0, len(rules), chunk)]
    parts: list = [None] * len(chunks)
    for i, part in executor.map_unordered(prune_flags, chunks):
        parts[i] = part
        progress.advance(len(part))
    flags = [f for part in parts for f in part]
    general = [r for r, (smaller, _) in zip(rules, flags) if not smaller]
    summary.stage("prune-smaller", len(rules), len(general))
    kept_rules = [r for r, (smaller, sup) in zip(rules, flags) if not smaller and not sup]
    summary.stage("prune-supergraph", len(general), len(kept_rules))
    summary.after_pruning = len(kept_rules)
    return kept_rules
