"""TASO's cost-based backtracking search (Jia et al., SOSP'19, Algorithm 2).

    queue <- {G0};  best <- G0
    while queue not empty and expansions < budget:
        G <- pop the cheapest graph; skip it if seen before (canonical hash)
        if cost(G) >= alpha * cost(best) and G is not best: drop it (it fell out of the window)
        for every rewrite G' of G (rule x match):
            if cost(G') < cost(best): best <- G'
            if cost(G') < alpha * cost(best): push G'

A rewrite is pushed as a priced move (agents/delta.py) and built only when popped: most pushed
graphs are never expanded, and building one costs far more than pricing it.  So the visited set
is checked when a graph is popped rather than when it is pushed.

alpha > 1 admits graphs slightly worse than the best, which lets the search go uphill for a step
or two to reach a cheaper graph beyond.  With alpha = 1 only strict improvements are admitted and
the window keeps only the best graph, so the search is greedy (same ties, same order).
"""
from __future__ import annotations

import heapq
import itertools

from agents.base import SearchAgent
from agents.search import SearchProblem, SearchResult, State, result


class TasoAgent(SearchAgent):
    name = "taso"

    def __init__(self, alpha: float = 1.05):
        self.alpha = alpha

    def search(self, problem: SearchProblem, budget: int = 1000) -> SearchResult:
        start = best = problem.start()
        tie = itertools.count()   # equal costs pop in the order they were found
        queue = [(start.cost, next(tie), start)]   # States, or Moves not built yet
        visited: set[str] = set()
        trace = [(0, best.cost)]
        expansions = 0
        while queue and expansions < budget and not problem.out_of_time():
            cost, _, item = heapq.heappop(queue)
            state = item if isinstance(item, State) else problem.build(item)
            if state is None:
                continue
            if state is not best and cost >= self.alpha * best.cost:
                continue   # fell out of the window since it was queued
            if state.key in visited:
                continue   # reached before by another order of the same rewrites
            visited.add(state.key)
            expansions += 1
            moves = problem.moves(state, below=self.alpha * best.cost)
            # only the cheapest improving move is built (a new best is built at once, so best is
            # real): building each running minimum in turn cost ~7 builds per expansion under
            # measured costs, where deltas rarely tie
            failed = set()
            for move in sorted((m for m in moves if m.cost < best.cost), key=lambda m: m.cost):
                if problem.build(move) is not None:
                    best = move.state
                    trace.append((expansions, best.cost))
                    break
                failed.add(id(move))
            for move in moves:
                if id(move) in failed:
                    continue
                if move.state is not best and move.cost >= self.alpha * best.cost:
                    continue
                heapq.heappush(queue, (move.cost, next(tie), move))
            problem.step(expansions, best.cost)
        return result(best, start, trace, expansions)
