"""The greedy agent: take the best single rewrite until no rewrite lowers the cost.

`budget` bounds the number of expansions (one expansion = costing every successor of a graph).
Ties go to the first candidate, so the run is deterministic.
"""
from __future__ import annotations

from agents.base import SearchAgent
from agents.search import SearchProblem, SearchResult, result


class GreedyAgent(SearchAgent):
    name = "greedy"

    def search(self, problem: SearchProblem, budget: int = 1000) -> SearchResult:
        start = state = problem.start()
        trace = [(0, state.cost)]
        expansions = 0
        while expansions < budget and not problem.out_of_time():
            best_next = None
            for nxt in problem.successors(state):
                if nxt.cost < (best_next.cost if best_next else state.cost):
                    best_next = nxt
            expansions += 1
            if best_next is None:   # a local minimum: no single step improves
                break
            state = best_next
            trace.append((expansions, state.cost))
            problem.step(expansions, state.cost)
        return result(state, start, trace, expansions)
