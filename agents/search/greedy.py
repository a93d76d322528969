"""The greedy agent: take the best single rewrite until no rewrite lowers the cost.

`budget` bounds the number of expansions (one expansion = costing every successor of a graph).
Ties go to the first candidate, so the run is deterministic.
"""
from __future__ import annotations

from agents.base import SearchAgent
from agents.search.problem import SearchProblem, SearchResult, result


class GreedyAgent(SearchAgent):
    name = "greedy"

    def search(self, problem: SearchProblem, budget: int = 1000) -> SearchResult:
        start = state = problem.start()
        trace = [(0, state.cost)]
        expansions = 0
        while expansions < budget and not problem.out_of_time():
            better = sorted(problem.moves(state, below=state.cost), key=lambda m: m.cost)
            expansions += 1
            nxt = next((s for s in map(problem.build, better)
                        if s is not None and s.cost < state.cost), None)
            if nxt is None:   # a local minimum: no single step improves
                break
            state = nxt
            trace.append((expansions, state.cost))
            problem.step(expansions, state.cost)
        return result(state, start, trace, expansions)
