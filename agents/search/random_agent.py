"""The random agent: a baseline that any learning agent must beat.

As a policy it picks a uniformly random valid action.  As a search it walks `budget` random
rewrites from the start graph and returns the cheapest graph it saw (never worse than the start).
"""
from __future__ import annotations

import numpy as np

from agents.base import SearchAgent
from agents.search.problem import SearchProblem, SearchResult, result


class RandomAgent(SearchAgent):
    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def act(self, obs, mask) -> int:
        valid = np.flatnonzero(np.asarray(mask))
        return int(self.rng.choice(valid)) if len(valid) else int(len(mask) - 1)

    def search(self, problem: SearchProblem, budget: int = 1000) -> SearchResult:
        start = state = best = problem.start()
        trace = [(0, best.cost)]
        steps = 0
        while steps < budget and not problem.out_of_time():
            moves = problem.moves(state)
            nxt = None
            for i in self.rng.permutation(len(moves)):   # the first random move that applies
                nxt = problem.build(moves[int(i)])
                if nxt is not None:
                    break
            if nxt is None:
                break
            state = nxt
            steps += 1
            if state.cost < best.cost:
                best = state
            trace.append((steps, best.cost))
            problem.step(steps, best.cost)
        return result(best, start, trace, steps)
