"""The world-model agent: V and M fit real episodes (their loss falls), C trains in M's dream with
no call to the real environment, M's predicted applicability mask has the right shape and its
accuracy is measured, and the trained agent rewrites a model into an equivalent graph."""
from __future__ import annotations

import numpy as np
import pytest
from rl_helpers import MODEL, envs, greedy_episode, torch

from agents.rl import worldmodel as wm
from envcore.execute import equivalent

ARGS = dict(model=MODEL, max_steps=16, random_episodes=4, episodes_per_iter=2, wm_updates=25,
            dream_updates=15, dream_batch=32)


@pytest.fixture(scope="module")
def trained():
    args = wm.Args(**ARGS)
    trainer = wm.WorldModelTrainer(args, envs(wm, args))
    # six iterations, not four: since the zoo's classifier pools globally, squeezenet offers two
    # rules in play, and four iterations left M no better than copying the current mask (0.79)
    rows = [trainer.iteration() for _ in range(6)]
    return trainer, rows


def test_world_model_loss_falls(trained):
    trainer, rows = trained
    assert 64 <= trainer.real_steps <= 200                     # a few hundred steps at most
    assert rows[-1]["wm_loss"] < rows[0]["wm_loss"] - 0.5
    assert rows[-1]["m_reward"] < rows[0]["m_reward"]


class CountingEnv:
    """Forwards to a real env and counts every call that would touch it."""

    def __init__(self, env):
        self.env, self.calls = env, 0

    def __getattr__(self, name):
        self.calls += 1
        return getattr(self.env, name)


def test_dream_never_calls_the_real_environment(trained):
    trainer, _ = trained
    counted = [CountingEnv(e) for e in trainer.envs]
    trainer.envs = counted
    env_calls = trainer.env_calls
    try:
        before = {k: v.clone() for k, v in trainer.c.state_dict().items()}
        stats = trainer.train_controller()
        assert sum(e.calls for e in counted) == 0 and trainer.env_calls == env_calls
        # ... and yet C did learn something in there
        assert any(not torch.equal(before[k], v) for k, v in trainer.c.state_dict().items())
        assert np.isfinite(stats["dream_return"])
        trainer.collect_episode(use_c=True)                   # the counter does see real calls
        assert sum(e.calls for e in counted) > 0 and trainer.env_calls > env_calls
    finally:
        trainer.envs = [e.env for e in counted]


def test_predicted_mask_shape_and_accuracy(trained):
    trainer, _ = trained
    episodes = trainer.buffer[-3:]
    _, z, a, *_, rules = trainer._episodes_batch(episodes)
    out, _ = trainer.ms[0](z[:, :-1], a, rules)
    # over the rules in play: each seen applicable in some buffered state, and no other
    seen = {int(r) for ep in trainer.buffer for d in ep.datas for r in d.cand_rule}
    assert rules.tolist() == sorted(seen) and 0 < len(rules) <= trainer.num_rules
    assert out["next_mask"].shape == (len(episodes), a.size(1), len(rules))
    acc = trainer.model_accuracy(episodes)
    assert 0.0 <= acc["mask_accuracy"] <= 1.0
    # measured against the truth, per rule in play and step (no easy absent rules to flatter
    # it): a fitted M predicts applicability well, far above guessing "none applies"
    assert acc["mask_accuracy"] >= 0.85 and acc["mask_f1"] >= 0.9, acc
    assert acc["mask_accuracy"] >= acc["mask_accuracy_none_baseline"] + 0.5, acc
    assert acc["reward_rmse"] < 2.0, acc
    # the mask head is a residual on the current mask: no worse than copying it
    assert acc["mask_accuracy"] >= acc["mask_accuracy_copy_baseline"] - 2e-3, acc


def test_rule_delta_is_each_rules_best_candidate_delta(trained):
    trainer, _ = trained
    obs, _ = trainer.envs[0].reset(seed=0)
    n = int(obs["num_candidates"][0])
    got = wm.rule_delta_of(wm.obs_to_data(obs), torch.arange(trainer.num_rules)).numpy()
    want = np.zeros(trainer.num_rules, np.float32)
    for r in set(obs["cand_rule"][:n].tolist()):
        want[r] = obs["cand_delta"][:n][obs["cand_rule"][:n] == r].max()
    assert n > 0 and np.allclose(got, want)
    some = torch.tensor(sorted(set(obs["cand_rule"][:n].tolist()))[1:] + [trainer.num_rules + 5])
    got = wm.rule_delta_of(wm.obs_to_data(obs), some).numpy()   # a subset, and a rule not there
    assert np.allclose(got, [*(want[int(r)] for r in some[:-1]), 0.0])
    assert wm.rule_mask_of(wm.obs_to_data(obs), some).tolist() == [True] * (len(some) - 1) + [False]


def test_mdn_sampling_respects_temperature():
    args = wm.Args(z_dim=4, mixtures=3)
    m = wm.M(num_rules=3, args=args)
    z = torch.zeros(256, 1, 4)
    out, _ = m(z, torch.zeros(256, 1, dtype=torch.long), torch.arange(3))
    out = {k: v[:, 0] for k, v in out.items()}
    gen = torch.Generator().manual_seed(0)
    cold = wm.M.sample_z(out, 0.1, gen)
    warm = wm.M.sample_z(out, 1.0, gen)
    assert cold.shape == (256, 4) and cold.std(0).mean() < warm.std(0).mean()


def test_trained_agent_saves_loads_and_rewrites_equivalently(trained, tmp_path):
    trainer, _ = trained
    trainer.agent().save(tmp_path)
    loaded = wm.WorldModelAgent(checkpoint=str(tmp_path))
    env = trainer.envs[0]
    cost, initial, graph, original = greedy_episode(loaded, env)
    assert cost < initial                     # the greedy controller does fuse convs
    ok, err = equivalent(original, graph)
    assert ok, err


def test_untouched_rules_keep_their_initial_rows_and_the_checkpoint_stores_only_changes(trained):
    """Rows of per-rule outputs for rules never seen applicable get no gradient: they equal the
    seeded initial weights, their Adam moments are zero, and the packed checkpoint holds none of
    them; it unpacks to the trainer's exact state."""
    trainer, _ = trained
    unseen = torch.ones(trainer.num_rules, dtype=torch.bool)
    unseen[trainer.known] = False
    assert unseen.any() and (~unseen).any()
    for name in ("next_mask.weight", "next_delta.weight"):
        now, then = trainer.ms[0].state_dict()[name], trainer.initial["ms"]["0." + name]
        assert torch.equal(now[unseen], then[unseen]) and not torch.equal(now, then)
    state = trainer.state_dict()
    fresh = wm.WorldModelTrainer(trainer.args, trainer.envs)
    fresh.load_state_dict(state)
    for a, b in ((fresh.v, trainer.v), (fresh.ms, trainer.ms), (fresh.c, trainer.c)):
        for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), k
    for o1, o2 in ((fresh.wm_opt, trainer.wm_opt), (fresh.c_opt, trainer.c_opt)):
        for s1, s2 in zip(o1.state_dict()["state"].values(), o2.state_dict()["state"].values()):
            assert all(torch.equal(s1[k], s2[k]) for k in s2)
    assert torch.equal(fresh.known, trainer.known)
