"""Every (rule, match) of a graph, kept up to date incrementally as the graph is rewritten.

Why incremental re-matching is exact: a match depends only on its own nodes (op, params, input
tensors), on their consumers (internal tensors must not leak) and on shapes, which rewrites keep.
So after a rewrite a match can only appear or disappear if one of its nodes is *touched*:
created, changed, or feeding a node that was created, changed or removed (its consumers changed),
or entering/leaving the graph outputs.  `advance` drops the old matches on changed or removed
nodes, re-checks the leak condition of those on nodes whose readers changed, and re-matches only
around the changed nodes (and the few nodes that may have stopped leaking).

Rules are indexed by what a graph node must look like to stand for one of their pattern nodes
(op, non-shape params, arity), so a node only ever meets the rules that could match there, and
rules sharing a source graph are matched once.
"""
from __future__ import annotations

import bisect
import gc
import itertools
from typing import Iterable, Sequence

from envcore.graph import Graph, Node
from envcore.rewrite.apply import derive_consumers
from envcore.rewrite.match import Match, leaks, match_at
from envcore.rewrite.pattern import NODE, pattern_of
from envcore.rewrite.pattern import non_shape_params
from envcore.rewrite.rule import Rule

NodeKey = tuple  # (op, non-shape params, arity)


def node_key(n: Node) -> NodeKey:
    return (n.op, non_shape_params(n.op, n.params), len(n.inputs))


class _KeyIndex:
    """Pattern-node entries by what their image must look like: op, non-shape params, arity
    and the ops feeding it (None where the pattern has a variable: anything fits)."""

    WIDE = 4        # nodes with more inputs than this are looked up without their input ops

    def __init__(self):
        self.exact: dict[tuple, list[tuple]] = {}
        self.wide: dict[NodeKey, list[tuple]] = {}

    def add(self, key: NodeKey, ins: tuple, entry: tuple) -> None:
        if len(ins) > self.WIDE:
            self.wide.setdefault(key, []).append(entry)
        else:
            self.exact.setdefault(key + (ins,), []).append(entry)

    def at(self, nodes, g: int) -> list[tuple]:
        """Entries whose pattern node could map to graph node g."""
        n = nodes[g]
        key = node_key(n)
        ops = [nodes[r.node].op for r in n.inputs]
        if len(ops) > self.WIDE:
            return [e for e in self.wide.get(key, ()) if _ops_fit(e[3], ops)]
        out = []
        for mask in _MASKS[len(ops)]:
            hit = self.exact.get(key + (tuple(o if m else None for o, m in zip(ops, mask)),))
            if hit:
                out.extend(hit)
        return out


class RuleIndex:
    """Rules grouped by source graph (a source with several targets is matched once), and each
    source's anchor indexed by what its image must look like.  A pattern also knows how far its
    nodes lie from its anchor (`reach`: upstream hops; else `radius`: hops either way), which
    bounds where re-matching must look.  Every node of the rare disconnected patterns (neither)
    is indexed too (`loose`)."""

    def __init__(self, rules: Sequence[Rule]):
        self.rules = list(rules)
        by_src: dict[str, list[int]] = {}
        for k, rule in enumerate(self.rules):
            if pattern_of(rule.src).supported:
                by_src.setdefault(pattern_of(rule.src).key, []).append(k)
        self.groups = [(ks[0], ks) for ks in by_src.values()]
        self.rep = {k: rep for rep, members in self.groups for k in members}
        self.multi_output = {k for k, r in enumerate(self.rules) if len(r.src.outputs) > 1}
        self.anchors, self.loose = _KeyIndex(), _KeyIndex()
        self.max_reach = self.max_radius = 0   # max_radius: over patterns without a reach
        for rep, members in self.groups:
            pat = pattern_of(self.rules[rep].src)
            # every node of a disconnected pattern is indexed (loose); of the others, the anchor
            for pid in (pat.nodes if pat.radius is None else (pat.anchor,)):
                pn = pat.nodes[pid]
                ins = tuple(pat.nodes[s[1]].op if s[0] == NODE else None for s in pn.inputs)
                entry = (rep, pid, members, ins, pat)
                key = (pn.op, pn.params, len(pn.inputs))
                if pat.radius is None:
                    self.loose.add(key, ins, entry)
                if pid == pat.anchor:
                    self.anchors.add(key, ins, entry)
                    if pat.reach is not None:
                        self.max_reach = max(self.max_reach, pat.reach)
                    else:
                        self.max_radius = max(self.max_radius, pat.radius or 0)


_FAR = 1 << 30


def _key_of(m: Match) -> tuple:
    return m.key


def _updated(by_node: dict, dropped: list, added: list, removed: set) -> dict:
    """by_node after dropping and adding matches (a new dict; the lists that change are new
    lists, so the old set's index stays as it was)."""
    out = dict(by_node)
    for x in removed:
        out.pop(x, None)
    if dropped:
        gone_ids = {id(m) for m in dropped}
        for x in {x for m in dropped for x in m.nodes | m.bound_nodes} - removed:
            if x in out:
                out[x] = [m for m in out[x] if id(m) not in gone_ids]
    fresh: dict[int, list] = {}
    for m in added:
        for x in m.nodes | m.bound_nodes:
            fresh.setdefault(x, []).append(m)
    for x, ms in fresh.items():
        out[x] = out.get(x, []) + ms
    return out


def _hops(start: set[int], limit: int, neighbours) -> dict[int, int]:
    """node -> hops from `start` (breadth first), for nodes at most `limit` hops away."""
    dist = {t: 0 for t in start}
    frontier = sorted(start)
    for d in range(1, limit + 1):
        nxt = []
        for v in frontier:
            for w in neighbours(v):
                if w not in dist:
                    dist[w] = d
                    nxt.append(w)
        frontier = nxt
    return dist


def _ops_fit(want, ops) -> bool:
    return all(w is None or w == o for w, o in zip(want, ops))


_MASKS = [list(itertools.product((False, True), repeat=k)) for k in range(_KeyIndex.WIDE + 1)]


_INDEXES: dict[tuple[int, ...], tuple[list[Rule], RuleIndex]] = {}


def rule_index(rules: Sequence[Rule]) -> RuleIndex:
    """The index of a rule list, built once per list of rule objects."""
    key = tuple(id(r) for r in rules)
    hit = _INDEXES.get(key)
    if hit is None:
        if len(_INDEXES) > 16:
            _INDEXES.clear()
        # thousands of long-lived patterns: the cyclic collector, left on, would walk them
        # again and again while they are made (three quarters of building the shipped DB's)
        collecting = gc.isenabled()
        gc.disable()
        try:
            hit = _INDEXES[key] = (list(rules), RuleIndex(rules))
        finally:
            if collecting:
                gc.enable()
    return hit[1]


class CandidateSet:
    def __init__(self, rules: Sequence[Rule] | RuleIndex, graph: Graph,
                 _matches: dict | None = None):
        self.index = rules if isinstance(rules, RuleIndex) else rule_index(rules)
        self.rules = self.index.rules
        self.graph = graph
        if _matches is None:
            _matches = {}
            nodes = graph.nodes
            for g in nodes:
                for m in self._match_entries(graph, g, self.index.anchors.at(nodes, g)):
                    _matches[m.key] = m
        self._by_key: dict[tuple, Match] = _matches
        # ids of matches kept from the graph this set advanced from whose surroundings changed
        # (a node or input with other readers now): what depends on more than the match's own
        # nodes, such as its price (envcore/rewrite/price.py), must be recomputed for them
        self.near_change: frozenset[int] = frozenset()
        self.near_matches: list[Match] = []     # those matches themselves
        # once `matches` is known, for a set that merged its parent's order: that order (the
        # parent's `matches` list) and, per match here, its index there (-1: new here)
        self.merged_from: list[Match] | None = None
        self.parent_index: list[int] | None = None
        self._sorted: list[Match] | None = None
        self._keys: list[tuple] | None = None     # the keys of `_sorted`, in its order
        # (parent's sorted keys, its sorted matches, dropped, added): what `matches` merges
        self._pending: tuple | None = None
        self._applicable: list[Match] | None = None
        self._by_node: dict[int, list[Match]] | None = None

    @property
    def matches(self) -> list[Match]:
        """All applicable matches (shape-wise), ordered by rule then by location."""
        if self._sorted is None:
            merged = self._merged(*self._pending) if self._pending is not None else None
            if merged is not None:
                keys, ordered, self.parent_index = merged
                self.merged_from = self._pending[1]
            self._pending = None
            if merged is None:
                keys = sorted(self._by_key)
                ordered = list(map(self._by_key.__getitem__, keys))
            self._keys, self._sorted = keys, ordered
        return self._sorted

    @staticmethod
    def _merged(keys: list, ordered: list, dropped: list, added: list
                ) -> tuple[list, list, list] | None:
        """The parent's order with the dropped matches taken out and the added ones put in
        place: the order sorting every key gives (keys are distinct), in a few bisections
        (sorting 5,000 keys was a tenth of a taso expansion on DenseNet); with, per match,
        its index in the parent's order (-1: added)."""
        keys, ordered, source = list(keys), list(ordered), list(range(len(ordered)))
        for m in dropped:
            k = bisect.bisect_left(keys, m.key)
            if k == len(keys) or ordered[k] is not m:
                return None        # not the parent's: sort from scratch
            del keys[k], ordered[k], source[k]
        for m in sorted(added, key=_key_of):
            k = bisect.bisect_left(keys, m.key)
            keys.insert(k, m.key)
            ordered.insert(k, m)
            source.insert(k, -1)
        return keys, ordered, source

    def position(self, m: Match) -> int | None:
        """The index of match `m` (this very object) in `matches`, or None."""
        ordered, keys = self.matches, self._keys
        k = bisect.bisect_left(keys, m.key)
        return k if k < len(keys) and ordered[k] is m else None

    def by_node(self) -> dict[int, list[Match]]:
        """node id -> the matches that map an operator to it or bind a variable to it."""
        if self._by_node is None:
            idx: dict[int, list[Match]] = {}
            for m in self._by_key.values():
                for x in m.nodes | m.bound_nodes:
                    idx.setdefault(x, []).append(m)
            self._by_node = idx
        return self._by_node

    def applicable(self) -> list[Match]:
        """`matches` without those whose rewrite would close a cycle in this graph (a global
        property, so it is checked per graph rather than kept incrementally)."""
        if self._applicable is None:
            from envcore.rewrite.apply import would_create_cycle
            verdict: dict[tuple, bool] = {}   # rules sharing a source share the answer
            out = []
            multi, rep, rules = self.index.multi_output, self.index.rep, self.rules
            for m in self.matches:
                if m.rule_index in multi:
                    k = (rep[m.rule_index], m.key[1:])
                    if k not in verdict:
                        verdict[k] = would_create_cycle(self.graph, rules[m.rule_index], m)
                    if verdict[k]:
                        continue
                out.append(m)
            self._applicable = out
        return self._applicable

    def __len__(self) -> int:
        return len(self._by_key)

    def advance(self, new_graph: Graph, changed_node_ids: Iterable[int] = ()) -> "CandidateSet":
        """The candidate set of `new_graph`, a rewrite of this set's graph, re-matching only near
        the nodes that changed (any the caller names plus those found by comparing the graphs)."""
        old, new = self.graph, new_graph
        changed = {i for i in changed_node_ids if i in new.nodes}
        changed |= {i for i, n in new.nodes.items() if old.nodes.get(i) is not n}
        removed = {i for i in old.nodes if i not in new.nodes}
        readers = set()   # the same node, with other readers (or in or out of the outputs)
        for i in changed:
            readers.update(r.node for r in new.nodes[i].inputs)
            if i in old.nodes:
                readers.update(r.node for r in old.nodes[i].inputs)
        for i in removed:
            readers.update(r.node for r in old.nodes[i].inputs)
        flipped = {o.node for o in set(old.outputs) ^ set(new.outputs)}
        readers = (readers | flipped) & new.nodes.keys() - changed
        # A node whose readers changed keeps its matches unless it is internal to one and now
        # leaks (checked below).  It is in a new match only as an internal node that stopped
        # leaking: the match then holds all its readers, so it is found from a changed reader,
        # unless none of its readers changed (it lost a reader or left the outputs).
        seeds = set(changed)
        derive_consumers(old, new)     # the new graph's readers, from the old graph's
        new_cons, old_cons = new.consumers, old.consumers
        for t in readers:
            if changed.isdisjoint(new_cons[t]) and (
                    t in flipped or not set(old_cons.get(t, ())) <= set(new_cons[t])):
                seeds.add(t)
        gone = changed | removed
        by_node = self.by_node()
        affected = {id(m): m for x in gone | readers for m in by_node.get(x, ())}
        kept = dict(self._by_key)   # in the old order, so re-sorting is nearly linear
        dropped, near = [], set()
        for m in affected.values():
            if (gone.isdisjoint(m.nodes) and removed.isdisjoint(m.bound_nodes)
                    and (readers.isdisjoint(m.nodes) or not leaks(
                        new, pattern_of(self.rules[m.rule_index].src), m.mapping, m.nodes))):
                near.add(id(m))
            else:
                del kept[m.key]
                dropped.append(m)
        added = [m for m in self._rematch(new, seeds, kept) if kept.setdefault(m.key, m) is m]
        out = CandidateSet(self.index, new, kept)
        if self._sorted is not None:
            out._pending = (self._keys, self._sorted, dropped, added)
        out.near_change = frozenset(near)
        out.near_matches = [m for m in affected.values() if id(m) in near]
        out._by_node = _updated(by_node, dropped, added, removed)
        return out

    def _rematch(self, graph: Graph, touched: set[int], known: dict) -> list[Match]:
        """Matches with a node in `touched`.  Such a match's anchor lies downstream of that node
        within its pattern's reach (or, for a pattern without one, within its radius either
        way), so anchors are tried on the nodes near the change only."""
        index, nodes, cons = self.index, graph.nodes, graph.consumers
        down = _hops(touched, index.max_reach, lambda v: cons[v])
        around = _hops(touched, index.max_radius,
                       lambda v: itertools.chain((r.node for r in nodes[v].inputs), cons[v]))
        out = []
        for g in sorted(down.keys() | around.keys()):
            d_down, d_around = down.get(g, _FAR), around.get(g, _FAR)
            entries = [e for e in index.anchors.at(nodes, g)
                       if (e[4].reach >= d_down if e[4].reach is not None
                           else e[4].radius is not None and e[4].radius >= d_around)]
            if d_around == 0:
                entries += index.loose.at(nodes, g)
            out += self._match_entries(graph, g, entries, known, touched)
        return out

    def _match_entries(self, graph: Graph, g: int, entries, known=None,
                       touched: set[int] | None = None) -> list[Match]:
        """Matches of the indexed pattern nodes `entries` with node g as their image (those
        already in `known` are not rebuilt).  With `touched` (the seeds of `advance`), only
        matches that map a node onto one of them: any other is known already.  (All its
        nodes are as they were, so it held before the rewrite but for the leak condition, and
        a node it stopped leaking through is a seed: an internal node that lost a reader,
        and whose readers, all in the match, did not change, or one that left the outputs.
        So it was a match of the old graph, and one `advance` kept.)"""
        from envcore.rewrite.resolve import reads_of, resolve
        out = []
        for rep, pid, members, _ops, pat in entries:
            for m in match_at(graph, pat, pid, g, rep, prechecked=True, must=touched):
                site = m.key[1:]
                reads = None
                for k in members:    # the same structural match, for each rule sharing it
                    if known is not None and (k,) + site in known:
                        continue
                    mk = m if k == rep else Match(k, m.mapping, m.bindings)
                    if reads is None:
                        reads = reads_of(graph, m)
                    if resolve(graph, self.rules[k], mk, reads) is not None:
                        out.append(mk)
        return out


__all__ = ["CandidateSet", "RuleIndex", "rule_index"]
