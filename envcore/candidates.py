"""Every (rule, match) of a graph, kept up to date incrementally as the graph is rewritten.

Why incremental re-matching is exact: a match depends only on its own nodes (op, params, input
tensors), on their consumers (internal tensors must not leak) and on shapes, which rewrites keep.
So after a rewrite a match can only appear or disappear if one of its nodes is *touched*:
created, changed, or feeding a node that was created, changed or removed (its consumers changed),
or entering/leaving the graph outputs.  `advance` drops the old matches on touched or removed
nodes and re-matches only those anchored at a touched node.

Rules are indexed by what a graph node must look like to stand for one of their pattern nodes
(op, non-shape params, arity), so a node only ever meets the rules that could match there, and
rules sharing a source graph are matched once.
"""
from __future__ import annotations

import itertools
from typing import Iterable, Sequence

from envcore.graph import Graph, Node
from envcore.match import Match, match_at
from envcore.pattern import NODE, pattern_of
from envcore.pattern import non_shape_params
from envcore.rule import Rule

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
    source's anchor indexed by what its image must look like.  A pattern also knows its radius
    (hops from the anchor to its farthest node), which bounds where re-matching must look.
    Every node of the rare disconnected patterns (no radius) is indexed too (`loose`)."""

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
        self.max_radius = 0
        for rep, members in self.groups:
            pat = pattern_of(self.rules[rep].src)
            for pid, pn in pat.nodes.items():
                ins = tuple(pat.nodes[s[1]].op if s[0] == NODE else None for s in pn.inputs)
                entry = (rep, pid, members, ins, pat)
                key = (pn.op, pn.params, len(pn.inputs))
                if pat.radius is None:
                    self.loose.add(key, ins, entry)
                if pid == pat.anchor:
                    self.anchors.add(key, ins, entry)
                    self.max_radius = max(self.max_radius, pat.radius or 0)


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
        hit = _INDEXES[key] = (list(rules), RuleIndex(rules))
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
        self._sorted: list[Match] | None = None
        self._applicable: list[Match] | None = None

    @property
    def matches(self) -> list[Match]:
        """All applicable matches (shape-wise), ordered by rule then by location."""
        if self._sorted is None:
            self._sorted = [self._by_key[k] for k in sorted(self._by_key)]
        return self._sorted

    def applicable(self) -> list[Match]:
        """`matches` without those whose rewrite would close a cycle in this graph (a global
        property, so it is checked per graph rather than kept incrementally)."""
        if self._applicable is None:
            from envcore.rewrite import would_create_cycle
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
        touched = set(changed)
        for i in changed:
            touched.update(r.node for r in new.nodes[i].inputs)
            if i in old.nodes:
                touched.update(r.node for r in old.nodes[i].inputs)
        for i in removed:
            touched.update(r.node for r in old.nodes[i].inputs)
        touched.update(o.node for o in set(old.outputs) ^ set(new.outputs))
        touched &= new.nodes.keys()
        gone = touched | removed
        # in the old sorted order, so that re-sorting after the additions is nearly linear
        kept = {m.key: m for m in self.matches
                if gone.isdisjoint(m.nodes) and removed.isdisjoint(m.bound_nodes)}
        for m in self._rematch(new, touched, kept):
            kept.setdefault(m.key, m)
        return CandidateSet(self.index, new, kept)

    def _rematch(self, graph: Graph, touched: set[int], known: dict) -> list[Match]:
        """Matches with a node in `touched`.  Such a match's anchor lies within its pattern's
        radius of that node, so anchors are tried on the nodes that near the change only."""
        index, nodes, cons = self.index, graph.nodes, graph.consumers
        dist = {t: 0 for t in touched}
        frontier = sorted(touched)
        for d in range(1, index.max_radius + 1):
            nxt = []
            for v in frontier:
                for w in itertools.chain((r.node for r in nodes[v].inputs), cons[v]):
                    if w not in dist:
                        dist[w] = d
                        nxt.append(w)
            frontier = nxt
        out = []
        for g in sorted(dist):
            d = dist[g]
            entries = [e for e in index.anchors.at(nodes, g)
                       if e[4].radius is not None and e[4].radius >= d]
            if d == 0:
                entries += index.loose.at(nodes, g)
            out += self._match_entries(graph, g, entries, known)
        return out

    def _match_entries(self, graph: Graph, g: int, entries, known=None) -> list[Match]:
        """Matches of the indexed pattern nodes `entries` with node g as their image (those
        already in `known` are not rebuilt)."""
        from envcore.rewrite import resolve
        out = []
        for rep, pid, members, _ops, pat in entries:
            for m in match_at(graph, pat, pid, g, rep, prechecked=True):
                site = m.key[1:]
                for k in members:    # the same structural match, for each rule sharing it
                    if known is not None and (k,) + site in known:
                        continue
                    mk = m if k == rep else Match(k, m.mapping, m.bindings)
                    if resolve(graph, self.rules[k], mk) is not None:
                        out.append(mk)
        return out


__all__ = ["CandidateSet", "RuleIndex", "rule_index"]
