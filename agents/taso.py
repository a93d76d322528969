"""TASO's cost-based backtracking search (Jia et al., SOSP'19, Algorithm 2).

    queue <- {G0};  best <- G0
    while queue not empty and expansions < budget:
        G <- pop the cheapest graph
        if cost(G) >= alpha * cost(best) and G is not best: drop it (it fell out of the window)
        for every rewrite G' of G (rule x match), G' not seen before:
            if cost(G') < cost(best): best <- G'
            if cost(G') < alpha * cost(best): push G'

alpha > 1 admits graphs slightly worse than the best, which lets the search go uphill for a step
or two to reach a cheaper graph beyond.  With alpha = 1 only strict improvements are admitted and
the window keeps only the best graph, so the search is greedy (same ties, same order).
"""
from __future__ import annotations

import heapq
import itertools

from agents.base import SearchAgent
from agents.search import SearchProblem, SearchResult, result


class TasoAgent(SearchAgent):
    name = "taso"

    def __init__(self, alpha: float = 1.05):
        self.alpha = alpha

    def search(self, problem: SearchProblem, budget: int = 1000) -> SearchResult:
        start = best = problem.start()
        tie = itertools.count()   # equal costs pop in the order they were found
        queue = [(start.cost, next(tie), start)]
        visited = {start.key}
        trace = [(0, best.cost)]
        expansions = 0
        while queue and expansions < budget and not problem.out_of_time():
            cost, _, state = heapq.heappop(queue)
            if state is not best and cost >= self.alpha * best.cost:
                continue
            expansions += 1
            for nxt in problem.successors(state):
                if nxt.key in visited:
                    continue
                visited.add(nxt.key)
                if nxt.cost < best.cost:
                    best = nxt
                    trace.append((expansions, best.cost))
                if nxt.cost < self.alpha * best.cost:
                    heapq.heappush(queue, (nxt.cost, next(tie), nxt))
            problem.step(expansions, best.cost)
        return result(best, start, trace, expansions)
