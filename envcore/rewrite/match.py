"""Where does a rule's source pattern occur in a graph?

A match maps every operator node of the rule's source to a distinct graph node, and binds every
rule variable to a graph tensor, such that
- ops agree, and so do parameters other than `SHAPE_PARAMS` (shape-derived, so wildcards);
- each edge of the pattern is an edge of the graph, and a variable used twice is one tensor;
- a variable keeps its rank (a rule proved on 2-D tensors says nothing about 3-D ones);
- internal tensors (pattern tensors that are not source outputs) have no consumer outside the
  match and are not graph outputs, so removing them changes nothing else;
- no variable is bound to a tensor the match itself produces.
Commutative ops match in the written order only: rule sets carry both orders as rules.
Whether the match is *applicable* (the target side fits the real shapes) is decided by
`envcore.rewrite.resolve.resolve`; `find_matches` keeps only applicable matches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

from envcore.graph import Graph, Ref
from envcore.rewrite.pattern import VAR, Pattern, non_shape_params, pattern_of
from envcore.rewrite.rule import Rule


@dataclass(frozen=True)
class Match:
    rule_index: int
    mapping: dict[int, int]                 # source pattern node id -> graph node id
    bindings: dict[str, Ref]                # rule variable -> graph tensor
    key: tuple = field(init=False, repr=False, compare=True, hash=True)
    bound_nodes: frozenset = field(init=False, repr=False, compare=False, hash=False)
    nodes: frozenset = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "key", (self.rule_index, tuple(sorted(self.mapping.items())),
                                         tuple(sorted(self.bindings.items()))))
        object.__setattr__(self, "bound_nodes", frozenset(b.node for b in self.bindings.values()))
        object.__setattr__(self, "nodes", frozenset(self.mapping.values()))  # what it replaces

    def __eq__(self, other):
        return isinstance(other, Match) and self.key == other.key

    def __getstate__(self):
        # what `resolve` keeps on a match (the last graph it was resolved in) does not travel
        return {k: v for k, v in self.__dict__.items() if k != "_resolved"}

    def __hash__(self):
        return hash(self.key)


def ops_index(graph: Graph) -> dict[str, list[int]]:
    """op -> ids of the graph's nodes with that op, in id order (cached on the graph)."""
    return graph.memo("match.ops_index", _ops_index)


def _ops_index(graph: Graph) -> dict[str, list[int]]:
    idx: dict[str, list[int]] = {}
    for i in sorted(graph.nodes):
        idx.setdefault(graph.nodes[i].op, []).append(i)
    return idx


def output_set(graph: Graph) -> frozenset[Ref]:
    return graph.memo("match.output_set", lambda g: frozenset(g.outputs))


def find_matches(graph: Graph, rule: Rule, rule_index: int = 0,
                 roots: Iterable[int] | None = None) -> list[Match]:
    """Every applicable match of `rule` in `graph`; with `roots`, only those that map some
    pattern node onto one of the root nodes (how incremental re-matching asks)."""
    from envcore.rewrite.resolve import resolve
    pat = pattern_of(rule.src)
    if not pat.supported:
        return []
    if roots is None:
        anchors = [(pat.anchor, ops_index(graph).get(pat.nodes[pat.anchor].op, ()))]
    else:
        roots = [r for r in sorted(set(roots)) if r in graph.nodes]
        anchors = [(pid, [r for r in roots if graph.nodes[r].op == pn.op])
                   for pid, pn in pat.nodes.items()]
    out, seen = [], set()
    for pid, cands in anchors:
        for gid in cands:
            for m in match_at(graph, pat, pid, gid, rule_index):
                if m.key not in seen and resolve(graph, rule, m) is not None:
                    seen.add(m.key)
                    out.append(m)
    return out


def _could_match(nodes, pat: Pattern, pid: int, gid: int) -> bool:
    """A cheap look at the node and the ops feeding it, before any search is set up."""
    n, p = nodes[gid], pat.nodes[pid]
    if n.op != p.op or len(n.inputs) != len(p.inputs) or \
            non_shape_params(n.op, n.params) != p.params:
        return False
    if any(nodes[n.inputs[k].node].shapes[n.inputs[k].index][a] != size for k, a, size in p.fixed):
        return False
    return all(s[0] == VAR or nodes[r.node].op == pat.nodes[s[1]].op
               for s, r in zip(p.inputs, n.inputs))


def leaks(graph: Graph, pat: Pattern, mapping: dict[int, int], used) -> bool:
    """Whether an internal tensor of the match `mapping` (one the pattern does not output) is a
    graph output or is read by a node outside `used` (the match's nodes)."""
    outs, nodes, cons = output_set(graph), graph.nodes, graph.consumers
    for pid, g in mapping.items():
        for idx in range(len(nodes[g].shapes)):
            if (pid, idx) in pat.output_tensors:
                continue
            t = Ref(g, idx)
            if t in outs or any(c not in used and t in nodes[c].inputs for c in cons[g]):
                return True
    return False


def match_at(graph: Graph, pat: Pattern, anchor: int, gid: int, rule_index: int = 0,
             prechecked: bool = False, must: set[int] | None = None) -> Iterator[Match]:
    """Every structural match that maps pattern node `anchor` to graph node `gid`
    (`prechecked`: the caller's index already compared op, params, arity and input ops;
    `must`: only those that map some pattern node onto one of these graph nodes)."""
    nodes = graph.nodes
    if not prechecked and not _could_match(nodes, pat, anchor, gid):
        return
    plan = pat.plan(anchor)
    cons = graph.consumers
    mapping: dict[int, int] = {}
    bindings: dict[str, Ref] = {}
    used: set[int] = set()

    def assign(pid: int, g: int) -> list[str] | None:
        """Map pid -> g if consistent; returns the variables it newly bound (None: no)."""
        if g in used:
            return None
        n, p = nodes[g], pat.nodes[pid]
        if (n.op != p.op or len(n.inputs) != len(p.inputs)
                or tuple(map(len, n.shapes)) != p.ranks
                or non_shape_params(n.op, n.params) != p.params
                or any(nodes[n.inputs[k].node].shapes[n.inputs[k].index][a] != size
                       for k, a, size in p.fixed)):
            return None
        newly: list[str] = []
        for k, s in enumerate(p.inputs):
            r = n.inputs[k]
            if s[0] == VAR:
                b = bindings.get(s[1])
                if b is None:
                    if len(nodes[r.node].shapes[r.index]) != pat.var_ranks[s[1]]:
                        break
                    bindings[s[1]] = r
                    newly.append(s[1])
                elif b != r:
                    break
            elif s[1] in mapping and r != (mapping[s[1]], s[2]):
                break
        else:
            if all(c not in mapping or nodes[mapping[c]].inputs[k] == (g, idx)
                   for c, k, idx in pat.consumers[pid]):
                return newly
        for v in newly:
            del bindings[v]
        return None

    def candidates(step) -> Iterable[int]:
        src = step.source
        if src[0] == "input":
            return (nodes[mapping[src[1]]].inputs[src[2]].node,)
        if src[0] == "consumer":
            return cons[mapping[src[1]]]
        if src[0] == "var_consumer":
            return cons[bindings[src[1]].node]
        return ops_index(graph).get(pat.nodes[step.pid].op, ())

    def complete() -> bool:
        if any(b.node in used for b in bindings.values()):
            return False
        return not leaks(graph, pat, mapping, used)

    found: list[Match] = []
    last = len(plan)

    def search(i: int) -> None:
        # a plain recursive function filling `found` (a chain of generators, one per step,
        # cost more than the matching itself on small patterns); the same matches, in order
        if i == last:
            if (must is None or not must.isdisjoint(mapping.values())) and complete():
                found.append(Match(rule_index, dict(mapping), dict(bindings)))
            return
        step = plan[i]
        for g in (candidates(step) if i else (gid,)):
            newly = assign(step.pid, g)
            if newly is None:
                continue
            mapping[step.pid] = g
            used.add(g)
            search(i + 1)
            used.discard(g)
            del mapping[step.pid]
            for v in newly:
                del bindings[v]

    search(0)
    yield from found
