"""TASO's cost-based backtracking search (Jia et al., SOSP'19, Algorithm 2).

    queue <- {G0};  best <- G0
    while queue not empty and expansions < budget:
        G <- pop the cheapest graph; skip it if seen before (canonical hash)
        if cost(G) >= alpha * cost(best) and G is not best: drop it (it fell out of the window)
        for every rewrite G' of G (rule x match):
            if cost(G') < cost(best): best <- G'
            if cost(G') < alpha * cost(best): push G'

A rewrite is pushed as a priced move (envcore/rewrite/price.py) and built only when popped: most pushed
graphs are never expanded, and building one costs far more than pricing it.  So the visited set
is checked when a graph is popped rather than when it is pushed, and before it is built where the
set of rewrites that led to it tells (agents/search/problem.py: commuting rewrites); the window is checked
before building too, since a queued cost is exact.

alpha > 1 admits graphs slightly worse than the best, which lets the search go uphill for a step
or two to reach a cheaper graph beyond.  With alpha = 1 only strict improvements are admitted and
the window keeps only the best graph, so the search is greedy (same ties, same order).
"""
from __future__ import annotations

import bisect
import heapq

from agents.base import SearchAgent
from agents.search.problem import SearchProblem, SearchResult, State, result


class TasoAgent(SearchAgent):
    name = "taso"

    def __init__(self, alpha: float = 1.05):
        self.alpha = alpha

    def search(self, problem: SearchProblem, budget: int = 1000) -> SearchResult:
        start = best = problem.start()
        # The queue holds one entry per expanded state: its cheapest move not popped yet (a
        # stream of its moves, sorted).  That pops in the same order as pushing every move, at
        # a fraction of the pushes (~4,000 moves per expansion on a zoo model, ~1 popped).
        # Ties pop in the order the moves were found: (expansion, index among its moves).
        queue: list[tuple] = [(start.cost, (0, 0), None, start)]   # (cost, tie, stream, item)
        # stream = (costs, moves, move indices in cost order): the moves of one expansion
        visited: set[str] = set()
        visited_applied: set[frozenset] = set()
        unbuildable: dict[int, object] = {}   # id -> match that failed to build
        trace = [(0, best.cost)]
        expansions = 0
        while queue and expansions < budget and not problem.out_of_time():
            cost, tie, stream, item = heapq.heappop(queue)
            built = item if isinstance(item, State) else item.state
            if built is not best and cost >= self.alpha * best.cost:
                continue   # fell out of the window since it was queued, and so did the rest
            if stream is not None and tie[1] + 1 < len(stream[2]):
                costs, moves, ordered = stream
                k = ordered[tie[1] + 1]
                heapq.heappush(queue, (costs[k], (tie[0], tie[1] + 1), stream, moves[k]))
            if item.applied in visited_applied:
                continue   # the same rewrites, applied in another order
            if built is None and problem.undoes(item):
                continue   # back to the graph before the last rewrite: expanded already
            state = built or problem.build(item)
            if state is None:
                continue
            if state.cost < best.cost:   # a move skipped below as unbuildable built after all
                best = state
                trace.append((expansions, best.cost))
            if state.key in visited:
                continue   # reached before by another path
            visited.add(state.key)
            visited_applied.add(state.applied)
            expansions += 1
            # the moves as lists, a Move object made only for what is pushed or built
            moves = problem.priced_moves(state, below=self.alpha * best.cost)
            # only the cheapest improving move that fits is built (a new best is built at once,
            # so best is real): building each running minimum in turn cost ~7 builds per
            # expansion under measured costs, where deltas rarely tie
            costs = moves.costs
            ordered = sorted(range(len(moves)), key=costs.__getitem__)
            # A match that did not build (its rewrite closes a cycle) is inherited unchanged by
            # the states below, where it would be the cheapest move again: nasnet_a under torch
            # cost built 19 such per expansion.  So it is tried once here; later it is left to
            # the queue, which builds it when popped (and takes it as best if it builds then).
            failed = []
            for pos, k in enumerate(ordered):
                if costs[k] >= best.cost:
                    break
                match = moves.matches[k]
                if id(match) in unbuildable:
                    continue
                if problem.build(moves[k]) is not None:
                    best = moves[k].state
                    trace.append((expansions, best.cost))
                    break
                unbuildable[id(match)] = match   # kept alive: its id is not reused
                failed.append(pos)
            for pos in reversed(failed):
                del ordered[pos]
            # the stream: moves still inside the window (the best comes first among equal costs:
            # the sort is stable, and any before it failed or was skipped)
            cut = bisect.bisect_left(ordered, self.alpha * best.cost, key=costs.__getitem__)
            if cut < len(ordered) and moves[ordered[cut]].state is best:
                cut += 1   # alpha = 1: the best itself sits on the window's edge
            if cut:
                # a stream's entries keep their position: tie = (expansion, position), which
                # orders equal costs as (expansion, index found) would, the sort being stable
                k = ordered[0]
                heapq.heappush(queue, (costs[k], (expansions, 0), (costs, moves, ordered[:cut]),
                                       moves[k]))
            problem.step(expansions, best.cost)
        return result(best, start, trace, expansions)
