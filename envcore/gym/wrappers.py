"""A hierarchical view of GraphRewriteEnv's flat action: pick a rule, then one of its locations.

The action is MultiDiscrete([num_rules + 1, max_locations]): (r, l) applies the l-th location
(in the env's candidate order) of rule r; r == num_rules stops.  `rule_mask()` and
`location_mask(r)` give the exact two-stage masks an agent that picks sequentially needs.
`action_masks()` concatenates the rule mask with the union of all rules' location masks: that
is the per-dimension (independent) form sb3-contrib's MaskablePPO takes for MultiDiscrete, and it
is only an over-approximation; a pair it allows that has no candidate ends the episode like any
invalid action.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np


class HierarchicalActions(gym.ActionWrapper):
    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        self.num_rules = base.num_rules
        self.max_locations = base.max_candidates
        self.action_space = gym.spaces.MultiDiscrete([self.num_rules + 1, self.max_locations])

    def _locations(self) -> dict[int, list[int]]:
        """rule index -> flat action indices of its candidates, in order."""
        by_rule: dict[int, list[int]] = {}
        for k, m in enumerate(self.env.unwrapped.candidates):
            by_rule.setdefault(m.rule_index, []).append(k)
        return by_rule

    def action(self, action) -> int:
        r, loc = int(action[0]), int(action[1])
        base = self.env.unwrapped
        stop = base.max_candidates
        if r >= self.num_rules:
            return stop
        flat = self._locations().get(r, [])
        return flat[loc] if 0 <= loc < len(flat) else stop + 1  # out of range: invalid

    def rule_mask(self) -> np.ndarray:
        mask = np.zeros(self.num_rules + 1, dtype=bool)
        mask[list(self._locations())] = True
        mask[-1] = True
        return mask

    def location_mask(self, rule: int) -> np.ndarray:
        mask = np.zeros(self.max_locations, dtype=bool)
        mask[:len(self._locations().get(int(rule), []))] = True
        return mask

    def action_masks(self) -> np.ndarray:
        longest = max((len(v) for v in self._locations().values()), default=0)
        locs = np.zeros(self.max_locations, dtype=bool)
        locs[:max(longest, 1)] = True
        return np.concatenate([self.rule_mask(), locs])
