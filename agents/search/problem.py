"""What every search agent shares: the problem (start graph, rules, cost model), its successor
function, and the result record.

A successor of a graph is one rule applied at one match (envcore.rewrite.candidate_set finds the matches,
envcore.rewrite.apply applies them).  Candidates are found incrementally: a successor keeps its parent's
CandidateSet and the ids the rewrite changed, and re-matches near them only when it is expanded.
Search agents keep a visited set on `Graph.canonical_hash`, so a graph reached twice (by rules
applied in another order) is expanded once.  Most such repeats are commuting rewrites, and they
are seen before the graph is built: a match that survives a rewrite untouched is kept as the same
object, so a state carries the set of match objects applied on the way to it (`applied`), and two
states with the same set applied the same independent rewrites in another order.

Rewrites are priced before they are built (envcore/rewrite/price.py), and prices are incremental too: a
match that survives a rewrite untouched keeps its cost change, so a state prices only the matches
that are new near the change.  (A rewrite whose price was not exact breaks this chain: its
result prices every match afresh.)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from envcore.graph import Graph
from envcore.rewrite.rule import Rule


@dataclass
class SearchResult:
    graph: Graph
    cost: float
    rewrites: list[str]                     # rule names, in the order they were applied
    trace: list[tuple[int, float]]          # (expansions so far, best cost so far)
    initial_cost: float = float("nan")
    expansions: int = 0


class State:
    """A graph the search reached: its cost, the rules that led to it and, once it is expanded,
    its candidate matches."""

    __slots__ = ("graph", "cost", "rewrites", "applied", "made_by", "_parent_candidates",
                 "_changed", "_candidates", "_parent_prices", "_prices")

    def __init__(self, graph: Graph, cost: float, rewrites: tuple[str, ...] = (),
                 parent_candidates=None, changed: frozenset = frozenset(), parent_prices=None,
                 applied: frozenset = frozenset(), made_by: tuple | None = None):
        self.graph, self.cost, self.rewrites = graph, cost, rewrites
        # (rule index, ids of the nodes it created, its bindings): what undoing it must match
        self.made_by = made_by
        # the match objects applied since the start; they stay referenced (by `applied`), so
        # their ids are never reused while this state lives
        self.applied = applied
        self._parent_candidates, self._changed, self._candidates = parent_candidates, changed, None
        # id(match) -> (match, cost change, exact?) for the parent's matches (None: price all)
        self._parent_prices: dict | None = parent_prices
        self._prices: dict | None = None

    @property
    def key(self) -> str:
        return self.graph.canonical_hash


class Move:
    """One rewrite of `parent` (rule + match) before it is applied: `cost` is the predicted cost
    of the result (exact unless `state` is already built; see envcore/rewrite/price.py)."""

    __slots__ = ("parent", "match", "cost", "exact", "state")

    def __init__(self, parent: State, match, cost: float, exact: bool = False):
        self.parent, self.match, self.cost, self.exact, self.state = parent, match, cost, exact, None

    @property
    def applied(self) -> frozenset:
        """What the result's `applied` will be: known before the move is built."""
        return self.parent.applied | {_Applied(self.match)}


class _Applied:
    """A match object compared by identity (Match itself compares by key, and keys of matches
    found in different branches can coincide: new node ids are reused across branches)."""

    __slots__ = ("match",)

    def __init__(self, match):
        self.match = match

    def __eq__(self, other):
        return isinstance(other, _Applied) and other.match is self.match

    def __hash__(self):
        return id(self.match)


@dataclass
class SearchProblem:
    """Start graph, rules and cost model, plus the successor function built on them.

    `moves(state)` prices every rewrite of a state without building it (envcore/rewrite/price.py);
    `build(move)` applies one; `successors(state)` does both for every move.
    `on_step(expansions, best_cost)` is called by agents after every expansion (progress bars);
    `time_limit` (seconds) bounds a search besides its expansion budget."""

    graph: Graph
    rules: Sequence[Rule]
    cost_model: object
    on_step: Callable[[int, float], None] | None = None
    time_limit: float | None = None
    _started: float = field(default_factory=time.perf_counter, repr=False)
    _pricer: object = field(default=None, repr=False)
    _reverse_index: dict | None = field(default=None, repr=False)

    def cost(self, graph: Graph) -> float:
        return float(self.cost_model.graph_cost(graph))

    def start(self) -> State:
        self._started = time.perf_counter()
        return State(self.graph, self.cost(self.graph))

    def candidates(self, state: State):
        """The state's CandidateSet, computed on first use (incrementally from its parent's)."""
        if state._candidates is None:
            if state._parent_candidates is None:
                from envcore.rewrite.candidate_set import CandidateSet
                state._candidates = CandidateSet(list(self.rules), state.graph)
            else:
                state._candidates = state._parent_candidates.advance(state.graph, state._changed)
            state._parent_candidates = None   # free the parent's matches
        return state._candidates

    def moves(self, state: State, below: float = float("inf")) -> list[Move]:
        """Every rewrite of `state` whose result costs less than `below`, with that cost.
        Rewrites whose cost cannot be predicted exactly are built here; rewrites that do not fit
        are left out."""
        if self._pricer is None:
            from envcore.rewrite.price import Pricer
            self._pricer = Pricer(self.cost_model)
        inherited, prices = state._parent_prices or {}, {}
        state._parent_prices = None
        out = []
        candidates = self.candidates(state)
        near, cost0, graph = candidates.near_change, state.cost, state.graph
        inherit, predict, rules = inherited.get, self._pricer.predict, self.rules
        for m in candidates.matches:
            key = id(m)
            price = inherit(key)      # (match, cost change, exact?)
            if price is None or price[0] is not m or key in near:
                p = predict(graph, cost0, rules[m.rule_index], m)
                if p is None:
                    continue
                price = (m, p[0] - cost0, p[1])
            prices[key] = price
            cost = cost0 + price[1]
            if price[2]:
                if cost < below:
                    out.append(Move(state, m, cost, True))
                continue
            move = Move(state, m, cost, False)
            move.state = self.build(move)
            if move.state is not None and move.state.cost < below:
                move.cost = move.state.cost
                out.append(move)
        state._prices = prices
        return out

    def build(self, move: Move) -> State | None:
        """The state a move leads to (its exact cost), or None when the rewrite does not fit
        after all (a cycle, shapes): the matcher proposes, the rewriter decides."""
        if move.state is not None:
            return move.state
        from envcore.ops import ShapeError
        from envcore.rewrite.apply import RewriteError, apply
        parent, rule = move.parent, self.rules[move.match.rule_index]
        try:
            g, changed = apply(parent.graph, rule, move.match)
        except (RewriteError, ShapeError):
            return None
        # a predicted cost is exact (envcore/rewrite/price.py); otherwise cost the whole graph
        cost = move.cost if move.exact else self.cost(g)
        move.state = State(g, cost, parent.rewrites + (rule.name,), self.candidates(parent), changed,
                           parent._prices if move.exact else None, move.applied,
                           (move.match.rule_index, changed, move.match.bindings))
        return move.state

    def undoes(self, move: Move) -> bool:
        """Whether `move` applies the reverse of the rule that made its parent, to exactly the
        nodes that rule created, with the same bindings: it leads back to the grandparent.
        (A search that admits steps uphill would otherwise build each such step to find it
        visited: a third of what taso built on inception_v3 under measured costs.)"""
        made = move.parent.made_by
        if made is None:
            return False
        rule_index, created, bindings = made
        m = move.match
        return (m.nodes == created and m.bindings == bindings
                and m.rule_index in self._reverses(rule_index))

    def _reverses(self, k: int) -> frozenset[int]:
        """Indices of the rules that rewrite rule k's target into its source."""
        if self._reverse_index is None:
            index: dict[tuple, list[int]] = {}
            for i, r in enumerate(self.rules):
                index.setdefault((r.src.canonical_hash, r.dst.canonical_hash), []).append(i)
            self._reverse_index = index
        r = self.rules[k]
        return frozenset(self._reverse_index.get((r.dst.canonical_hash, r.src.canonical_hash), ()))

    def successors(self, state: State) -> Iterator[State]:
        """Every graph one rewrite away, built, with its exact cost."""
        for move in self.moves(state):
            nxt = self.build(move)
            if nxt is not None:
                yield nxt

    def step(self, expansions: int, best_cost: float) -> None:
        if self.on_step is not None:
            self.on_step(expansions, best_cost)

    def out_of_time(self) -> bool:
        return self.time_limit is not None and time.perf_counter() - self._started > self.time_limit


def result(best: State, start: State, trace: list[tuple[int, float]], expansions: int) -> SearchResult:
    return SearchResult(best.graph, best.cost, list(best.rewrites), trace, start.cost, expansions)
