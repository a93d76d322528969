"""From enumerated terms to candidate rules: bucket by fingerprint, pair, dedupe, refute.

Everything here works on the enumerator's terms (cheap tuples of ids), and only the survivors
become `Rule` objects.  A graph is a tuple of output term ids; its fingerprint is the multiset of
its outputs' value hashes (`subgen.enumeration.fingerprint.multiset_hash`), so output order never matters.
"""
from __future__ import annotations

import hashlib
import itertools

import numpy as np

from envcore.graph import Graph, Node, Ref
from envcore.ops import OPS, SHAPE_PARAMS, semantic_dims
from envcore.rewrite.rule import Rule
from subgen.enumeration.enumerator import POOL, Enumerator
from subgen.enumeration.fingerprint import multiset_hash
from subgen.pairing.normal_form import NormalForms, term_describer

ALL_PAIRS_MAX = 12   # buckets of up to this many normal forms also pair all-with-all (`pairs`)


def buckets(en: Enumerator, two_output=lambda key: True, one_output: bool = True,
            spellings=None) -> dict[int, list[tuple[int, ...]]]:
    """Fingerprint -> graphs (tuples of output term ids), every graph of a bucket kept.

    Single-output graphs are the terms (leaves included, as 0-operator graphs).  Two-output
    graphs are the outputs of each split, and beside them the unions of the representatives of
    the classes they match, or of their spellings (see `pairs`), e.g. {relu(x0), relu(x1)}
    beside split(relu(concat(x0, x1))), as long as the union has at most `max_ops` operators
    and its parts share none: unions of unrelated graphs are never enumerated themselves, they
    are looked up.  The union of the representatives comes first (the bucket's
    representative).  Only two-output buckets whose key passes `two_output` are made, and
    one-output ones only with `one_output` (a worker of `subgen.pairing.sharded_stages` makes the
    two-output buckets of its part, and gives `spellings`: fingerprint -> the class's
    spellings, which it finds without Terms for the whole class)."""
    out: dict[int, list[tuple[int, ...]]] = {}
    for fp, members in (en.classes.items() if one_output else ()):
        out[multiset_hash([fp])] = [(m,) for m in members]
    if en.max_outputs < 2:
        return out
    splits: dict[int, list[tuple[int, ...]]] = {}
    for n in en.nodes:
        if len(n.outputs) >= 2:
            key = multiset_hash([en.terms[o].fp for o in n.outputs])
            splits.setdefault(key, []).append(tuple(n.outputs))
    for key, outs in splits.items():
        if two_output(key):
            out[key] = _unions(en, [en.terms[o].fp for o in outs[0]], spellings) + outs
    return out


def _unions(en: Enumerator, fps: list[int], spellings=None) -> list[tuple[int, ...]]:
    """Graphs made of one spelling of each class's representative, disjoint, within `max_ops`
    operators; the union of the representatives first.  Equal classes give each unordered
    union once."""
    pools = [_spellings(en, f) if spellings is None else spellings[f] for f in fps]
    out = []
    for combo in itertools.product(*pools):
        if len(set(combo)) < len(combo) or en.op_count(combo) > en.max_ops or \
                _overlap(en, combo):
            continue
        if any(fps[i] == fps[j] and combo[i] > combo[j]
               for i, j in itertools.combinations(range(len(fps)), 2)):
            continue
        out.append(combo)
    return out


def _spellings(en: Enumerator, fp: int) -> list[int]:
    """The class's representative and the members with its normal form, within `max_ops`
    (memoized: at depth 4 a class of thousands of members is read by many splits)."""
    memo = getattr(en, "_spelling_memo", None)
    if memo is None:
        memo = en._spelling_memo = {}
    members = en.classes[fp]
    pool = memo.get((fp, len(members)))        # a class only grows, at its end
    if pool is None:
        nf = _normal_forms(en)
        rep = members[0]
        pool = memo[(fp, len(members))] = [m for m in members if en.terms[m].size <= en.max_ops and
                           (m == rep or nf((m,)) == nf((rep,)))]
    return pool


def _overlap(en: Enumerator, outs) -> bool:
    ops = [en.terms[o].ops for o in outs]
    return any(a & b for a, b in itertools.combinations(ops, 2))


def _normal_forms(en: Enumerator):
    """The normal form of a graph (its outputs' forms, as a multiset), memoized per term."""
    nf = getattr(en, "_graph_nf", None)
    if nf is None:
        nf = en._graph_nf = NormalForms(term_describer(en))
    return lambda g: nf.of(g[0]) if len(g) == 1 else tuple(sorted(nf.of(o) for o in g))


def pairs(en: Enumerator, bucket: list[tuple[int, ...]]):
    """Candidate rules of one bucket.  The first graph is the representative, the smallest.
    Every graph is paired with the representative and with each of its *spellings* (graphs
    with the representative's normal form: operands commuted or regrouped, a fused activation
    spelled apart), so two spellings are paired too.  Any other pair of graphs follows from the
    two rules through a spelling, so it is only formed among graphs as small as the
    representative, and all-with-all only in buckets of few normal forms (at most
    `ALL_PAIRS_MAX`: a bucket's spellings do not make it bigger here)."""
    if len(bucket) < 2:
        return
    nf = _normal_forms(en)
    forms = [nf(g) for g in bucket]
    spelled = [i for i in range(len(bucket)) if i == 0 or forms[i] == forms[0]]
    is_spelling = set(spelled)
    for i in spelled:
        for j in range(len(bucket)):
            if j != i and (j not in is_spelling or j > i):
                yield bucket[i], bucket[j]
    if len(set(forms)) > ALL_PAIRS_MAX:
        return
    least = en.op_count(bucket[0])
    same = [i for i in range(1, len(bucket))
            if i not in is_spelling and en.op_count(bucket[i]) == least]
    for i, j in itertools.combinations(same, 2):
        yield bucket[i], bucket[j]


def orient(en: Enumerator, a, b):
    """(src, dst) with outputs matched by value, the src holding every variable of the dst and
    at least one operator; None when no direction is a well-formed rule."""
    fa = [en.terms[o].fp for o in a]
    if [en.terms[o].fp for o in b] != fa:
        b = b[::-1]
        if [en.terms[o].fp for o in b] != fa:
            return None
    va, vb = _variables(en, a), _variables(en, b)
    na, nb = en.op_count(a), en.op_count(b)
    for s, d, vs, vd, ns in ((a, b, va, vb, na), (b, a, vb, va, nb)):
        if vd <= vs and ns > 0:
            return s, d
    return None


def _variables(en: Enumerator, outs) -> frozenset[str]:
    """The pool variables under these terms (memoized per term on the enumerator)."""
    memo = getattr(en, "_term_vars", None)
    if memo is None:
        memo = en._term_vars = {}

    def of(tid: int) -> frozenset[str]:
        v = memo.get(tid)
        if v is None:
            t = en.terms[tid]
            v = (frozenset((t.name,)) if t.node is None else
                 frozenset().union(*(of(i) for i in en.nodes[t.node].inputs)))
            memo[tid] = v
        return v
    return frozenset().union(*(of(o) for o in outs))


class TermText:
    """Memoized structural text of terms, split into a *template* (the text with every leaf
    written as its rank only: rules are matched rank-generically (`envcore.rewrite.match`) and proved
    for any dimensions, so two rules that differ only in the pool's concrete sizes are one
    rule) and the leaves' names in order of occurrence."""

    def __init__(self, en: Enumerator):
        self.en = en
        self.memo: dict[int, tuple[str, tuple[str, ...]]] = {}

    def of(self, tid: int) -> tuple[str, tuple[str, ...]]:
        s = self.memo.get(tid)
        if s is None:
            t = self.en.terms[tid]
            if t.node is None:
                s = (f"\x01{len(t.shape)}", (t.name,))
            else:
                n = self.en.nodes[t.node]
                skip = SHAPE_PARAMS.get(n.op, ())
                params = tuple(kv for kv in n.params if kv[0] not in skip)
                # kernel sizes stay part of a rule's identity (envcore.ops.SEMANTIC_DIMS)
                params += semantic_dims(n.op, [self.en.terms[i].shape for i in n.inputs])
                kids = [self.of(i) for i in n.inputs]
                s = (f"{n.op}{params}({','.join(k[0] for k in kids)}).{t.index}",
                     tuple(name for k in kids for name in k[1]))
            self.memo[tid] = s
        return s


def _texts(en: Enumerator, src, dst) -> list[tuple[str, tuple[str, ...]]]:
    """The pair's (template, leaf names) in every direction and output order."""
    text = getattr(en, "_term_text", None)
    if text is None:
        text = en._term_text = TermText(en)
    out = []
    for a, b in ((src, dst), (dst, src)):
        for perm in itertools.permutations(range(len(a))):
            parts = [text.of(a[i]) for i in perm] + [text.of(b[i]) for i in perm]
            template = "|".join(p[0] for p in parts[:len(a)]) + "=>" + \
                "|".join(p[0] for p in parts[len(a):])
            out.append((template, tuple(n for p in parts for n in p[1])))
    return out


def _canonical(texts) -> tuple:
    """The least (template, leaves numbered in order of first appearance)."""
    best = None
    for template, names in texts:
        ix: dict[str, int] = {}
        key = (template, tuple(ix.setdefault(n, len(ix)) for n in names))
        if best is None or key < best:
            best = key
    return best


def term_key(en: Enumerator, src, dst) -> tuple:
    """Canonical form of the pair up to renaming, direction, output order and concrete
    dimensions (ranks kept): variables are numbered in order of first appearance."""
    return _canonical(_texts(en, src, dst))


def instance_term_keys(en: Enumerator, src, dst) -> set[tuple]:
    """`term_key`s of every rule made from this one by merging variables of one shape (the
    same as `subgen.pairing.prune.instance_keys`, on text, before any Rule is built)."""
    from subgen.pairing.digests import variable_merges
    return {k for k, _ in variable_merges(_texts(en, src, dst), lambda a, b: POOL[a] == POOL[b],
                                          _canonical)}


class FloatValues:
    """Float values of terms on a few random pool assignments, computed on demand, once.
    With `shared` (a FloatValues of the enumerator `en` was copied from) the original's nodes
    are looked up, and computed, there: a worker keeps one for its prefix across jobs."""

    def __init__(self, en: Enumerator, trials: int = 2, seed: int = 7,
                 shared: "FloatValues | None" = None):
        self.en = en
        self.shared = shared
        self.shared_nodes = len(shared.en.nodes) if shared is not None else 0
        if shared is not None:
            self.pools = shared.pools
        else:
            rng = np.random.default_rng(seed)
            self.pools = [{k: rng.uniform(-1, 1, size=s) for k, s in POOL.items()}
                          for _ in range(trials)]
        self.memo: dict[int, list[list[np.ndarray]]] = {}   # node id -> per trial outputs

    def of(self, tid: int) -> list[np.ndarray]:
        t = self.en.terms[tid]
        if t.node is None:
            return [p[t.name] for p in self.pools]
        if t.node < self.shared_nodes:
            return self.shared.of(tid)
        if t.node not in self.memo:
            n = self.en.nodes[t.node]
            ins = [self.of(i) for i in n.inputs]
            params = dict(n.params)
            self.memo[t.node] = [OPS[n.op].ref([v[k] for v in ins], params)
                                 for k in range(len(self.pools))]
        return [outs[t.index] for outs in self.memo[t.node]]

    def preload(self, node_ids) -> None:
        """Computes these nodes (whose inputs are computed or computable one by one) in
        batches of one op, params and input shapes (`OpDef.ref_many`)."""
        groups: dict[tuple, list[int]] = {}
        for nid in node_ids:
            if nid in self.memo or nid < self.shared_nodes:
                continue
            n = self.en.nodes[nid]
            key = (n.op, n.params, tuple(self.en.terms[i].shape for i in n.inputs))
            groups.setdefault(key, []).append(nid)
        for (op, params, _), nids in groups.items():
            ins = [[self.of(i) for i in self.en.nodes[nid].inputs] for nid in nids]
            per_trial = []
            for k in range(len(self.pools)):
                xs = [np.stack([v[pos][k] for v in ins]) for pos in range(len(ins[0]))]
                per_trial.append(OPS[op].ref_many(xs, dict(params)))
            for j, nid in enumerate(nids):
                self.memo[nid] = [[o[j] for o in outs] for outs in per_trial]

    def agree(self, a, b, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
        return self.agree_many([(a, b)], rtol, atol)[0]

    def agree_many(self, pairs, rtol: float = 1e-6, atol: float = 1e-9) -> list[bool]:
        """For each (a, b) pair of output tuples: equal shapes, and every value within
        atol + rtol * (the largest magnitude of a's output) on every pool.  Compared in batches
        of one shape, a few thousand pairs at a time (the stacked values stay small)."""
        if len(pairs) > 4096:
            return [g for lo in range(0, len(pairs), 4096)
                    for g in self.agree_many(pairs[lo:lo + 4096], rtol, atol)]
        ok = [True] * len(pairs)
        rows: dict[tuple, list] = {}
        for i, (a, b) in enumerate(pairs):
            for x, y in zip(a, b):
                for vx, vy in zip(self.of(x), self.of(y)):
                    if vx.shape != vy.shape:
                        ok[i] = False
                    else:
                        rows.setdefault(vx.shape, []).append((i, vx, vy))
        for items in rows.values():
            vx = np.stack([r[1] for r in items]).reshape(len(items), -1)
            vy = np.stack([r[2] for r in items]).reshape(len(items), -1)
            if vx.shape[1] == 0:
                continue
            scale = np.abs(vx).max(axis=1)
            good = (np.abs(vx - vy) <= (atol + rtol * scale)[:, None]).all(axis=1)
            for (i, _, _), g in zip(items, good.tolist()):
                if not g:
                    ok[i] = False
        return ok


def to_graph(en: Enumerator, outs) -> Graph:
    """The graph computing these terms, leaves as `input` nodes named by pool variable."""
    ids: dict[int, int] = {}       # enumerator node id (or -1 - term id for leaves) -> graph id
    nodes: dict[int, Node] = {}

    def visit_term(tid: int) -> Ref:
        t = en.terms[tid]
        if t.node is None:
            k = -1 - tid
            if k not in ids:
                ids[k] = len(nodes)
                nodes[ids[k]] = Node("input", (), (("name", t.name), ("shape", t.shape)),
                                     (t.shape,))
            return Ref(ids[k], 0)
        if t.node not in ids:
            n = en.nodes[t.node]
            ins = tuple(visit_term(i) for i in n.inputs)
            ids[t.node] = len(nodes)
            nodes[ids[t.node]] = Node(n.op, ins, n.params,
                                      tuple(en.terms[o].shape for o in n.outputs))
        return Ref(ids[t.node], t.index)

    refs = [visit_term(o) for o in outs]
    return Graph(nodes, refs)


def to_rule(en: Enumerator, src, dst, key) -> Rule:
    name = "g-" + hashlib.blake2b(repr(key).encode(), digest_size=5).hexdigest()
    return Rule(name, to_graph(en, src), to_graph(en, dst))
