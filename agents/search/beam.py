"""Beam search: keep the `width` cheapest graphs of each depth, expand them all.

Members of the beam may be worse than the best graph found so far (that is what lets beam search
cross a small hill); the search stops when a whole depth brings nothing better than the best, or
when `budget` expansions are spent.  A visited set on the canonical hash keeps the beam from
re-expanding a graph reached by another order of the same rewrites.
"""
from __future__ import annotations

from agents.base import SearchAgent
from agents.search.problem import SearchProblem, SearchResult, result


class BeamAgent(SearchAgent):
    name = "beam"

    def __init__(self, width: int = 4):
        self.width = width

    def search(self, problem: SearchProblem, budget: int = 1000) -> SearchResult:
        start = best = problem.start()
        beam, visited = [start], {start.key}
        trace = [(0, best.cost)]
        expansions = 0
        while beam and expansions < budget and not problem.out_of_time():
            level = []
            for state in beam[: budget - expansions]:
                expansions += 1
                level.extend(problem.moves(state))
                problem.step(expansions, best.cost)
            level.sort(key=lambda m: m.cost)   # stable: ties keep candidate order
            beam = []
            for move in level:   # build only as many as the beam keeps
                if len(beam) == self.width:
                    break
                nxt = problem.build(move)
                if nxt is not None and nxt.key not in visited:
                    visited.add(nxt.key)
                    beam.append(nxt)
            beam.sort(key=lambda s: s.cost)
            if not beam or beam[0].cost >= best.cost:
                break
            best = beam[0]
            trace.append((expansions, best.cost))
        return result(best, start, trace, expansions)
