"""Shared settings for the RL tests: a small zoo model whose hand-made rules change its analytic
cost (squeezenet tiny: conv+relu fusion), tiny nets and one torch thread."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")
pytest.importorskip("gymnasium")

from rules_fixture import hand_rules  # noqa: E402

torch.set_num_threads(1)
MODEL = "squeezenet"
RULES = hand_rules()


def envs(module, args, models=(MODEL,)):
    return [module.make_env(m, args, seed=i, rules=RULES) for i, m in enumerate(models)]


def greedy_episode(agent, env):
    """(final cost, initial cost, final graph, original graph) of one greedy episode."""
    obs, info = env.reset(seed=0)
    original = info["graph"]
    if hasattr(agent, "reset"):
        agent.reset()
    while True:
        obs, _, terminated, truncated, info = env.step(agent.act(obs, env.unwrapped.action_masks()))
        if terminated or truncated:
            return info["cost"], info["initial_cost"], info["graph"], original


def write_rule_db(path):
    """The hand rules as a rule DB, each row proved (with its scope) as `subgen verify` would."""
    from subgen.rules.db import RuleDB
    from verifier import verify_rule
    with RuleDB(path) as db:
        db.add_rules(RULES)
        for stored in db.rules():
            res = verify_rule(stored.rule)
            db.set_result(stored.id, res.status, res.axioms, scope=res.scope)
    return path
