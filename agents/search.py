"""What every search agent shares: the problem (start graph, rules, cost model), its successor
function, and the result record.

A successor of a graph is one rule applied at one match (envcore.candidates finds the matches,
envcore.rewrite applies them).  Candidates are found incrementally: a successor keeps its parent's
CandidateSet and the ids the rewrite changed, and re-matches near them only when it is expanded.
Search agents keep a visited set on `Graph.canonical_hash`, so a graph reached twice (by rules
applied in another order) is expanded once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from envcore.graph import Graph
from envcore.rule import Rule


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

    __slots__ = ("graph", "cost", "rewrites", "_parent_candidates", "_changed", "_candidates")

    def __init__(self, graph: Graph, cost: float, rewrites: tuple[str, ...] = (),
                 parent_candidates=None, changed: frozenset = frozenset()):
        self.graph, self.cost, self.rewrites = graph, cost, rewrites
        self._parent_candidates, self._changed, self._candidates = parent_candidates, changed, None

    @property
    def key(self) -> str:
        return self.graph.canonical_hash


@dataclass
class SearchProblem:
    """Start graph, rules and cost model, plus the successor function built on them.

    `on_step(expansions, best_cost)` is called by agents after every expansion (progress bars);
    `time_limit` (seconds) lets a caller bound a search besides its expansion budget."""

    graph: Graph
    rules: Sequence[Rule]
    cost_model: object
    on_step: Callable[[int, float], None] | None = None
    time_limit: float | None = None
    _started: float = field(default_factory=time.perf_counter, repr=False)

    def cost(self, graph: Graph) -> float:
        return float(self.cost_model.graph_cost(graph))

    def start(self) -> State:
        self._started = time.perf_counter()
        return State(self.graph, self.cost(self.graph))

    def candidates(self, state: State):
        """The state's CandidateSet, computed on first use (incrementally from its parent's)."""
        if state._candidates is None:
            if state._parent_candidates is None:
                from envcore.candidates import CandidateSet
                state._candidates = CandidateSet(list(self.rules), state.graph)
            else:
                state._candidates = state._parent_candidates.advance(state.graph, state._changed)
            state._parent_candidates = None   # free the parent's matches
        return state._candidates

    def successors(self, state: State) -> Iterator[State]:
        """Every graph one rewrite away, with its cost.  Rewrites that do not fit (a cycle, shapes)
        are skipped: the matcher proposes, the rewriter decides."""
        from envcore.ops import ShapeError
        from envcore.rewrite import RewriteError, apply
        cands = self.candidates(state)
        for m in cands.matches:
            rule = self.rules[m.rule_index]
            try:
                g, changed = apply(state.graph, rule, m)
            except (RewriteError, ShapeError):
                continue
            yield State(g, self.cost(g), state.rewrites + (rule.name,), cands, changed)

    def step(self, expansions: int, best_cost: float) -> None:
        if self.on_step is not None:
            self.on_step(expansions, best_cost)

    def out_of_time(self) -> bool:
        return self.time_limit is not None and time.perf_counter() - self._started > self.time_limit


def result(best: State, start: State, trace: list[tuple[int, float]], expansions: int) -> SearchResult:
    return SearchResult(best.graph, best.cost, list(best.rewrites), trace, start.cost, expansions)
