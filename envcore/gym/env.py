"""`subgen/GraphRewrite-v0`: graph rewriting as a Gymnasium environment (docs/CONTRACTS.md).

    import gymnasium as gym, envcore
    env = gym.make("subgen/GraphRewrite-v0", model="bert", model_size="tiny", rules=rules,
                   cost="analytic", max_candidates=256, max_steps=100)

- Action: Discrete(max_candidates + 1).  Index k < number of candidates applies candidate k (the
  applicable (rule, match) pairs, ordered by rule then location, cut at max_candidates); the last
  index stops.  With `candidate_order="delta"` they are ordered instead by their estimated cost
  delta (the observation's `cand_delta`, best first; ties keep rule-then-location order) before
  the cut, so a large rule set's useful candidates are not cut away behind its early rules.  `action_masks()` says which are valid.  A masked (invalid) action is never
  applied: it ends the episode like "stop", with reward 0 and `info["invalid_action"] = True`.
- Observation: see envcore.gym.observation (`to_pyg_data(obs)` gives a torch_geometric Data).
- Reward: 100 * (previous cost - new cost) / initial cost.
- Ends (terminated) on stop or when no candidate is left; truncated after max_steps or when the
  graph outgrows the observation (max_nodes / max_edges).
- `model`: a zoo name (built with `model_size`) or a Graph.  `rules`: a list of Rules or a
  callable returning one, e.g. `subgen.rules.load.load_rules_for_use` (the shipped DB's proved
  rules, each applied only inside its proof's scope) or `functools.partial` of it with a path.
  `cost`: a cost-model name for envcore.cost.get_cost_model, or an object with `graph_cost` and
  `op_cost`.
`import envcore` registers the id with Gymnasium (this module's `register()`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

from envcore.rewrite.candidate_set import CandidateSet
from envcore.graph import Graph, Node
from envcore.rewrite.match import Match
from envcore.gym.observation import ObservationBuilder, observation_space
from envcore.ops import LEAVES
from envcore.rewrite.pattern import pattern_of
from envcore.rewrite.apply import RewriteError, apply
from envcore.rewrite.price import local_gain
from envcore.rewrite.rule import Rule
from envcore.gym.registration import ENV_ID, register



def _load_model(model, model_size) -> Graph:
    if isinstance(model, Graph):
        return model
    from envcore.zoo import build
    return build(str(model), size=model_size)


def _load_rules(rules) -> list[Rule]:
    if isinstance(rules, str) or hasattr(rules, "__fspath__"):
        # the env applies Rules it is given: reading (and proving) a file is subgen's job
        raise TypeError("rules must be Rule objects or a callable returning them, not a path: "
                        "load a file with subgen.rules.load.load_rules_for_use(path)")
    if callable(rules) and not isinstance(rules, (list, tuple)):
        rules = rules()
    rules = list(rules)
    if not all(isinstance(r, Rule) for r in rules):
        raise TypeError("rules must be Rule objects or a callable returning them")
    return rules


def _load_cost(cost):
    if isinstance(cost, str):
        from envcore.cost import get_cost_model
        return get_cost_model(cost)
    return cost


class GraphRewriteEnv(gym.Env):
    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, model: str | Graph = "toy", rules: Sequence[Rule] | Callable | str = (),
                 cost: Any = "analytic", max_candidates: int = 256, max_steps: int = 100,
                 model_size: str = "full", max_nodes: int | None = None,
                 max_edges: int | None = None, render_mode: str | None = None,
                 candidate_order: str = "rule"):
        if candidate_order not in ("rule", "delta"):
            raise ValueError(f"candidate_order must be 'rule' or 'delta', not {candidate_order!r}")
        self.candidate_order = candidate_order
        self.graph0 = _load_model(model, model_size)
        self.rules = _load_rules(rules)
        self.cost_model = _load_cost(cost)
        self.num_rules = len(self.rules)
        self.max_candidates, self.max_steps = int(max_candidates), int(max_steps)
        n0 = len(self.graph0.nodes)
        e0 = sum(len(n.inputs) for n in self.graph0.nodes.values())
        self.max_nodes = int(max_nodes or 2 * n0 + 64)
        self.max_edges = int(max_edges or 2 * e0 + 128)
        self.max_members = max([len(pattern_of(r.src).nodes) for r in self.rules] or [1])
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(self.max_candidates + 1)
        self.observation_space = observation_space(self.max_nodes, self.max_edges,
                                                   self.max_candidates, self.max_members,
                                                   self.num_rules)
        self.initial_cost = float(self.cost_model.graph_cost(self.graph0))
        self._cands0 = CandidateSet(self.rules, self.graph0)
        self._build_obs = ObservationBuilder(max_nodes=self.max_nodes, max_edges=self.max_edges,
                                             max_candidates=self.max_candidates,
                                             max_members=self.max_members)
        self._node_cost: dict[int, tuple[Node, float]] = {}
        self._delta_cache: dict[tuple, float] = {}
        self._delta_by_match: dict[int, tuple[Match, float]] = {}
        self._set_state(self.graph0, self._cands0, self.initial_cost)
        self.steps = 0

    # -- state ------------------------------------------------------------------------------
    def _set_state(self, graph: Graph, cands: CandidateSet, cost: float) -> None:
        self.graph, self.cands, self.cost = graph, cands, cost
        applicable = cands.applicable()
        if self.candidate_order == "delta":   # stable sort: ties stay in rule-then-location order
            applicable = sorted(applicable, key=lambda m: -self._cand_delta(0, m))
        self.candidates: list[Match] = applicable[:self.max_candidates]

    def action_masks(self) -> np.ndarray:
        mask = np.zeros(self.max_candidates + 1, dtype=bool)
        mask[:len(self.candidates)] = True
        mask[-1] = True
        return mask

    # -- gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.steps = 0
        self._set_state(self.graph0, self._cands0, self.initial_cost)
        obs, _ = self._observe()
        return obs, self._info(rule_applied=None)

    def step(self, action):
        a = int(action)
        stop = a == self.max_candidates
        if stop or not 0 <= a < len(self.candidates):
            obs, _ = self._observe()
            return obs, 0.0, True, False, self._info(None, invalid_action=not stop)
        match = self.candidates[a]
        rule = self.rules[match.rule_index]
        try:
            new_graph, created = apply(self.graph, rule, match)
        except RewriteError:  # listed candidates are applicable, so this is a bug if it happens
            obs, _ = self._observe()
            return obs, 0.0, True, False, self._info(None, invalid_action=True)
        new_cost = float(self.cost_model.graph_cost(new_graph))
        reward = 100.0 * (self.cost - new_cost) / self.initial_cost if self.initial_cost else 0.0
        self._set_state(new_graph, self.cands.advance(new_graph, created), new_cost)
        self.steps += 1
        obs, overflow = self._observe()
        terminated = not self.candidates
        truncated = self.steps >= self.max_steps or overflow
        return obs, float(reward), terminated, truncated, self._info(rule.name)

    def render(self):
        if self.render_mode == "ansi":
            return (f"step {self.steps}: {self.graph!r} cost {self.cost:.4f} "
                    f"({100 * self.cost / self.initial_cost:.1f}% of initial), "
                    f"{len(self.candidates)} candidates")
        return None

    # -- observation and info ---------------------------------------------------------------------
    def _info(self, rule_applied: str | None, invalid_action: bool = False) -> dict:
        return {"cost": self.cost, "initial_cost": self.initial_cost, "graph": self.graph,
                "candidates": [(m.rule_index, tuple(sorted(m.mapping.values())))
                               for m in self.candidates],
                "rule_applied": rule_applied, "invalid_action": invalid_action,
                "steps": self.steps}

    def _observe(self) -> tuple[dict, bool]:
        if len(self._node_cost) > 2 * len(self.graph.nodes) + 1024:   # forget nodes long gone
            self._node_cost = {i: c for i, c in self._node_cost.items() if i in self.graph.nodes}
        return self._build_obs(self.graph, self.candidates, self._op_cost, self._cand_delta)

    def _op_cost(self, node_id: int) -> float:
        """One node's cost as a percentage of the initial graph's, cached while the node lives."""
        n = self.graph.nodes[node_id]
        hit = self._node_cost.get(node_id)
        if hit is None or hit[0] is not n:
            c = 0.0 if n.op in LEAVES else float(self.cost_model.op_cost(self.graph, node_id))
            hit = (n, 100.0 * c / self.initial_cost if self.initial_cost else 0.0)
            self._node_cost[node_id] = hit
        return hit[1]

    def _cand_delta(self, _k: int, m: Match) -> float:
        """Estimated reward of a candidate (`envcore.rewrite.price.local_gain`, as a percentage
        of the initial cost); a kept match keeps its estimate."""
        by_match = self._delta_by_match.get(id(m))
        if by_match is not None and by_match[0] is m:
            return by_match[1]
        gain = local_gain(self.cost_model, self.graph, self.rules[m.rule_index], m,
                          self._delta_cache)
        hit = 100.0 * gain / self.initial_cost
        if len(self._delta_by_match) > 4 * self.max_candidates + 1024:
            self._delta_by_match.clear()
        self._delta_by_match[id(m)] = (m, hit)
        return hit


register()   # also here, so importing this module alone is enough, as before

__all__ = ["GraphRewriteEnv", "ENV_ID", "register"]
