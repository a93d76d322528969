"""PPO over the GNN: the encoder batches correctly, training lowers the loss and improves the
greedy policy, and a saved agent reloads and rewrites a model into an equivalent graph."""
from __future__ import annotations

import numpy as np
import pytest
from rl_helpers import MODEL, RULES, envs, greedy_episode, torch

from agents.rl import ppo
from agents.rl.gnn import GraphEncoder, collate, obs_to_data, synthetic_data
from envcore.execute import equivalent


def test_batched_encoding_equals_one_graph_at_a_time():
    datas = [synthetic_data(6, 3, seed=0), synthetic_data(4, 2, seed=1), synthetic_data(5, 4, seed=2)]
    enc = GraphEncoder(8, 4, 5, hidden=16)
    batched = enc(collate(datas))
    alone = [enc(collate([d])) for d in datas]
    assert torch.allclose(batched.graph, torch.cat([a.graph for a in alone]), atol=1e-5)
    assert torch.allclose(batched.candidates, torch.cat([a.candidates for a in alone]), atol=1e-5)
    assert batched.cand_graph.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]


def test_observation_becomes_candidates_over_matched_nodes():
    env = envs(ppo, ppo.Args(model=MODEL))[0]
    obs, info = env.reset(seed=0)
    data = obs_to_data(obs)
    assert data.cand_rule.tolist() == [r for r, _ in info["candidates"]]
    k, n = data.cand_member_index
    assert int(k.max()) < len(info["candidates"]) and int(n.max()) < data.num_nodes


def _train(iterations, seed=0, **settings):
    args = ppo.Args(model=MODEL, num_steps=64, seed=seed, max_steps=16, **settings)
    trainer = ppo.PPOTrainer(args, envs(ppo, args))
    return trainer, [trainer.iteration() for _ in range(iterations)]


def test_ppo_loss_falls_and_greedy_policy_improves():
    """Without the greedy prior, so that what the greedy policy gains is learned."""
    args = ppo.Args(model=MODEL, max_steps=16, delta_prior=0.0)
    env = envs(ppo, args)[0]
    trainer, _ = _train(0, delta_prior=0.0)
    before, initial, *_ = greedy_episode(trainer.agent(), env)
    rows = [trainer.iteration() for _ in range(5)]            # 320 real steps
    assert trainer.real_steps == 320
    # within every update the value loss falls as the epochs fit the rollout
    assert np.mean([r["v_loss_last_epoch"] for r in rows]) < np.mean([r["v_loss_first_epoch"] for r in rows])
    after, *_ = greedy_episode(trainer.agent(), env)
    assert after < before and after < initial
    assert rows[-1]["episode_return"] > rows[0]["episode_return"] * 0.9   # no collapse


def test_delta_prior_makes_the_untrained_policy_greedy_on_the_estimate():
    """With the prior, the untrained policy's greedy choice is the candidate the env estimates
    best (`cand_delta`'s argmax, up to near-ties that the small initial actor output can break),
    wherever one is estimated to lower the cost."""
    trainer, _ = _train(0, delta_prior=5.0)
    env = trainer.envs[0]
    obs, _ = env.reset(seed=0)
    agent, checked = trainer.agent(), 0
    for _ in range(8):
        n = int(obs["num_candidates"][0])
        deltas = obs["cand_delta"][:n]
        a = agent.act(obs, env.unwrapped.action_masks())
        if n and deltas.max() > 0.05:
            assert a < n and deltas[a] >= deltas.max() - 0.01, (a, deltas)
            checked += 1
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            break
    assert checked >= 1


def test_saved_agent_reloads_and_rewrites_to_an_equivalent_graph(tmp_path):
    trainer, _ = _train(2)
    trainer.agent().save(tmp_path)
    loaded = ppo.PPOAgent(checkpoint=str(tmp_path))
    env = envs(ppo, trainer.args)[0]
    cost_a, _, graph_a, original = greedy_episode(trainer.agent(), env)
    cost_b, initial, graph_b, _ = greedy_episode(loaded, env)
    assert cost_a == cost_b and graph_a == graph_b                 # same greedy decisions
    assert cost_b <= initial
    ok, err = equivalent(original, graph_b)
    assert ok, err


def test_search_through_the_optimize_pipeline(tmp_path):
    pytest.importorskip("envcore.cost")
    from subgen.pipelines.optimize import optimize
    trainer, _ = _train(2)
    trainer.agent().save(tmp_path)
    res = optimize(MODEL, rules=list(RULES), agent="ppo", checkpoint=str(tmp_path), size="tiny",
                   budget=16)
    assert res.equivalent and res.cost_after <= res.cost_before
    assert len(res.rewrites) >= 1


def test_delta_order_keeps_the_best_estimated_candidates():
    """candidate_order="delta" (the agents' default) sorts the applicable candidates by their
    estimated delta before the max_candidates cut: same candidates as rule order when none are
    cut, and when some are, no kept candidate is estimated worse than a cut one."""
    from envcore.gym.env import GraphRewriteEnv

    def env(order, k):
        e = GraphRewriteEnv(model="inception_v3", model_size="tiny", rules=RULES,
                            max_candidates=k, candidate_order=order)
        return e, e.reset(seed=0)

    (full, (obs_r, info_r)), (dfull, (obs_d, info_d)) = env("rule", 512), env("delta", 512)
    n = int(obs_d["num_candidates"][0])
    assert n > 4 and sorted(info_r["candidates"]) == sorted(info_d["candidates"])
    deltas = obs_d["cand_delta"][:n]
    assert np.all(np.diff(deltas) <= 1e-6) and deltas[0] > deltas[-1]   # best estimate first
    cut, (obs_c, _) = env("delta", n // 2)
    assert np.allclose(obs_c["cand_delta"][:n // 2], deltas[:n // 2])
    with pytest.raises(ValueError):
        GraphRewriteEnv(model="toy", rules=RULES, candidate_order="random")
