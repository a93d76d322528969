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

import numpy as np

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
                 "_changed", "_candidates", "_parent_prices", "_prices", "_hash_from")

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
        # the parent's prices (`_Prices`; None: price all)
        self._parent_prices = parent_prices
        self._prices = None
        self._hash_from: Graph | None = None   # the graph it was rewritten from, until hashed

    @property
    def key(self) -> str:
        if self._hash_from is not None:
            # the parent's node hashes, with those of the new or rewired nodes and the nodes
            # downstream of them taken again: the same hash, without sorting the whole graph
            from envcore.rewrite.apply import derive_hashes
            derive_hashes(self._hash_from, self.graph)
            self._hash_from = None
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


_EXACT, _INEXACT, _UNFIT = 0, 1, 2      # a price: exact, to be built, or no fit here


class _Prices:
    """A state's prices, aligned with its candidate set's `matches` (that very list): per
    match the predicted cost change and its kind (`_EXACT`, `_INEXACT`, `_UNFIT`)."""

    __slots__ = ("matches", "deltas", "kinds")

    def __init__(self, matches: list, deltas, kinds):
        self.matches, self.deltas, self.kinds = matches, deltas, kinds


class PricedMoves:
    """A state's moves as parallel lists (`matches`, `costs`), each Move made on first use and
    kept (so a move built once is that same object wherever it is asked for again)."""

    __slots__ = ("state", "matches", "costs", "made")

    def __init__(self, state: State, matches: list, costs: list[float], made: dict):
        self.state, self.matches, self.costs, self.made = state, matches, costs, made

    def __len__(self) -> int:
        return len(self.matches)

    def __getitem__(self, k: int) -> Move:
        move = self.made.get(k)
        if move is None:
            move = self.made[k] = Move(self.state, self.matches[k], self.costs[k], True)
        return move


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
        lazy = self.priced_moves(state, below)
        return [lazy[k] for k in range(len(lazy))]

    def priced_moves(self, state: State, below: float = float("inf")) -> "PricedMoves":
        """`moves`, with each Move object made only when it is asked for (a taso expansion
        prices thousands of rewrites and pops one or two): the same moves, costs and order.

        Prices are kept per state as arrays in the order of its candidate set's `matches`
        (`_Prices`): a state whose candidate set merged its parent's order takes the prices of
        the matches it kept from the parent's arrays by index, and prices the new matches, the
        kept ones near the change and those that did not fit (as before: those are not kept),
        in order; costs and the cut at `below` are one array operation each."""
        if self._pricer is None:
            from envcore.rewrite.price import Pricer
            self._pricer = Pricer(self.cost_model)
        inherited: _Prices | None = state._parent_prices
        state._parent_prices = None
        candidates = self.candidates(state)
        ms = candidates.matches
        n = len(ms)
        cost0, graph, predict, rules = state.cost, state.graph, self._pricer.predict, self.rules
        deltas = np.zeros(n)
        kinds = np.full(n, _UNFIT, dtype=np.int8)
        if (inherited is not None and candidates.parent_index is not None
                and candidates.merged_from is inherited.matches):
            src = np.asarray(candidates.parent_index, dtype=np.int64)
            have = src >= 0
            deltas[have] = inherited.deltas[src[have]]
            kinds[have] = inherited.kinds[src[have]]
            todo = ~have | (kinds == _UNFIT)
            for m in candidates.near_matches:
                k = candidates.position(m)
                if k is not None:
                    todo[k] = True
        elif inherited is not None:          # a set sorted afresh: found by identity
            where = {id(m): k for k, m in enumerate(inherited.matches)}
            near = candidates.near_change
            todo = np.ones(n, dtype=bool)
            for i, m in enumerate(ms):
                k = where.get(id(m))
                if (k is not None and inherited.matches[k] is m and id(m) not in near
                        and inherited.kinds[k] != _UNFIT):
                    deltas[i], kinds[i], todo[i] = inherited.deltas[k], inherited.kinds[k], False
        else:
            todo = np.ones(n, dtype=bool)
        candidates.merged_from = candidates.parent_index = None     # used: let it go
        built: dict[int, Move] = {}
        # the matches to price, and the inexact ones to build, in order (as one loop did)
        for i in np.flatnonzero(todo | (kinds == _INEXACT)).tolist():
            m = ms[i]
            if todo[i]:
                p = predict(graph, cost0, rules[m.rule_index], m)
                if p is None:
                    kinds[i] = _UNFIT
                    continue
                deltas[i] = p[0] - cost0
                kinds[i] = _EXACT if p[1] else _INEXACT
            if kinds[i] == _INEXACT:
                move = Move(state, m, cost0 + float(deltas[i]), False)
                move.state = self.build(move)
                if move.state is not None and move.state.cost < below:
                    move.cost = move.state.cost
                    built[i] = move
        state._prices = _Prices(ms, deltas, kinds)
        costs = cost0 + deltas
        keep = (kinds == _EXACT) & (costs < below)
        for i, move in built.items():
            keep[i] = True
            costs[i] = move.cost
        idx = np.flatnonzero(keep)
        made = {}
        if built:
            at = np.searchsorted(idx, list(built)).tolist()
            made = dict(zip(at, built.values()))
        return PricedMoves(state, [ms[i] for i in idx.tolist()], costs[idx].tolist(), made)

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
        move.state._hash_from = parent.graph
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
            index: dict = {}
            for i, r in enumerate(self.rules):
                index.setdefault((r.src.canonical_hash, r.dst.canonical_hash), []).append(i)
            self._reverse_index = index
        index = self._reverse_index
        hit = index.get(k)            # int keys: the answers, beside the (hash, hash) keys
        if hit is None:
            r = self.rules[k]
            hit = index[k] = frozenset(index.get((r.dst.canonical_hash, r.src.canonical_hash),
                                                 ()))
        return hit

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
