"""`worldmodel`: model-based RL after Ha & Schmidhuber (https://arxiv.org/abs/1803.10122).

    V  the GNN encoder (agents/rl/gnn.py) -> latent z_t, trained jointly with M plus a small
       reconstruction of the state's own summary (its applicable rules and its cost ratio), which
       keeps z from collapsing to a constant that M could predict trivially.
    M  an MDN-RNN: an LSTM over (z_t, a_t) with a mixture-of-Gaussians head for z_{t+1} and heads for
       the reward, "done", the next step's applicable rules and each rule's best estimated cost
       delta.  The last three are residuals on what the current step already shows: the mask
       head adds a learnable multiple of the current mask ("nothing changes" is the prior), the
       delta head adds the current deltas, and the reward head adds the chosen rule's current
       delta (the env's local estimate of the reward).  An ensemble of E independent Ms.
    C  a small controller on [z_t, h_t] with a policy head over rules (+ stop) and a value head;
       each rule's logit also gets a learnable weight times the rule's best delta (real in the
       env, M's prediction in the dream): a greedy prior that C refines in the dream.

Training alternates (`WorldModelTrainer.iteration`):
    1. collect real episodes: uniformly random at first, then with C;
    2. fit V and M on every real episode collected so far;
    3. train C ONLY inside M's dream (`dream`): start from real (z, h) states, roll M forward for a
       short horizon, no call to the real environment.

Dream action space.  The dream cannot imagine the candidate list of a graph it has never seen, so
C picks a *rule* (or stop); M predicts which rules will be applicable, and C is masked by that
prediction.  In the real environment the *location* is chosen by a fixed rule: the chosen rule's
candidate with the best local cost delta (the env's `cand_delta`, first in env order on ties).

Rule vocabulary.  The rule set has thousands of rules; a run meets a few hundred.  Every per-rule
output (M's mask and delta heads, V's mask reconstruction, C's rule logits) is computed only for
the rules in play: in the dream and in fitting, the rules seen applicable in some real state so
far (`WorldModelTrainer.known`); in the real env, the observation's own candidate rules.  A rule
never met gets no gradient, so its rows keep their seeded initial values and zero optimiser
moments, and the checkpoint stores only what differs from those (`run_dir.pack`): its size
follows what was learned, not the size of the rule set.

Guards against C exploiting M's errors, all on by default and each switchable:
    - dream temperature (tau < 1 tightens M's mixture so imagined states stay near the data);
    - ensemble disagreement penalty: imagined reward = mean over members - lambda * std;
    - short imagined horizons, always started from real states.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.rl import run_dir
from agents.rl.gnn import GraphEncoder, collate, env_dims, mlp, obs_to_data
from agents.rl.ppo import make_env, policy_search  # the same env and evaluation as ppo's
from envcore.errors import BadInput


@dataclass
class Args:
    model: str = "nasrnn"
    """zoo model name(s), comma separated: episodes rotate over them"""
    size: str = "tiny"
    """zoo model size"""
    rules: str | None = None
    """rule DB (default: subgen's shipped rules.db); a .json/.pb file is proved first"""
    unverified: bool = False
    """apply a rules file as it is, without proving it first"""
    cost: str = "analytic"
    """cost model"""
    max_candidates: int = 64
    """candidates per observation (the env pads to this)"""
    max_steps: int = 16
    """rewrites per real episode"""
    candidate_order: str = "delta"
    """env candidate order before the max_candidates cut (see agents.rl.ppo.Args)"""
    seed: int = 0
    """seed of everything"""
    total_steps: int = 400
    """real environment steps to train for"""
    random_episodes: int = 6
    """episodes collected with a uniformly random policy before C takes over"""
    episodes_per_iter: int = 2
    """real episodes C collects per iteration"""
    explore_eps: float = 0.1
    """probability that C's real action is replaced by a random valid one"""
    hidden: int = 32
    """GNN width"""
    gnn_layers: int = 2
    """GNN depth"""
    z_dim: int = 16
    """latent size"""
    rnn_hidden: int = 64
    """M's LSTM width"""
    action_dim: int = 16
    """size of M's learned embedding of the action (a rule, or stop)"""
    mixtures: int = 5
    """Gaussians in M's mixture"""
    ensemble: int = 3
    """independent Ms (their disagreement penalises imagined reward)"""
    wm_lr: float = 2e-3
    """V and M learning rate"""
    wm_updates: int = 40
    """V and M Adam steps per iteration"""
    wm_batch: int = 8
    """real episodes per V/M step"""
    c_lr: float = 3e-3
    """C learning rate"""
    dream_updates: int = 30
    """C updates in the dream per iteration"""
    dream_batch: int = 64
    """imagined rollouts per C update"""
    dream_horizon: int = 8
    """imagined steps per rollout (a guard: short horizons)"""
    temperature: float = 0.7
    """dream temperature on M's mixture (a guard)"""
    disagreement_coef: float = 1.0
    """lambda of the ensemble disagreement penalty (a guard; 0 disables)"""
    delta_prior: float = 5.0
    """initial weight of each rule's best estimated delta in C's logits (learnable; 0: none)"""
    residual_heads: bool = True
    """M's mask, delta and reward heads are residuals on the current step's mask and deltas"""
    gamma: float = 0.99
    """discount"""
    gae_lambda: float = 0.95
    """GAE lambda in the dream"""
    ent_coef: float = 0.01
    """entropy bonus for C"""
    vf_coef: float = 0.5
    """value loss weight for C"""


# ------------------------------------------------------------------------------------------------
# V, M, C

def rule_rows(head: nn.Linear, x: torch.Tensor, rules: torch.Tensor) -> torch.Tensor:
    """`head(x)[..., rules]`, computing those outputs alone: a rule not asked for costs nothing
    and gets no gradient."""
    return F.linear(x, head.weight[rules], head.bias[rules])


class V(nn.Module):
    """Graph -> z.  The reconstruction heads decode the state's own applicable rules (the rules in
    play only, see `rule_rows`) and cost."""

    def __init__(self, node_dim, edge_dim, num_rules, args: Args):
        super().__init__()
        self.encoder = GraphEncoder(node_dim, edge_dim, num_rules, args.hidden, args.gnn_layers)
        self.to_z = nn.Sequential(nn.Linear(args.hidden, args.z_dim), nn.Tanh())
        self.recon_mask = nn.Linear(args.z_dim, num_rules)
        self.recon_cost = nn.Linear(args.z_dim, 1)

    def forward(self, batch) -> torch.Tensor:
        return self.to_z(self.encoder(batch).graph)


class M(nn.Module):
    """MDN-RNN: (z_t, a_t, h_t) -> p(z_{t+1}) as a Gaussian mixture, reward, done, next mask."""

    def __init__(self, num_rules, args: Args):
        super().__init__()
        self.num_actions = num_rules + 1            # rules + stop
        self.z_dim, self.k = args.z_dim, args.mixtures
        self.action = nn.Embedding(self.num_actions, args.action_dim)
        self.lstm = nn.LSTM(args.z_dim + args.action_dim, args.rnn_hidden, batch_first=True)
        self.mdn = nn.Linear(args.rnn_hidden, self.k * (1 + 2 * args.z_dim))
        self.reward = nn.Linear(args.rnn_hidden, 1)
        self.done = nn.Linear(args.rnn_hidden, 1)
        self.next_mask = nn.Linear(args.rnn_hidden, num_rules)
        self.next_delta = nn.Linear(args.rnn_hidden, num_rules)
        self.residual = args.residual_heads
        self.copy_weight = nn.Parameter(torch.tensor(4.0))     # logit margin of "unchanged"
        self.reward_weight = nn.Parameter(torch.tensor(1.0))   # reward ~ the chosen rule's delta

    def forward(self, z, a, rules, state=None, mask=None, delta=None):
        """z [B,T,Z]; `rules` [K] the rules in play (sorted rule indices); a [B,T] the action as a
        position in them (K = stop) -> heads over [B,T], the per-rule ones over `rules`.
        mask [B,T,K] (0/1) and delta [B,T,K]: the current step's applicable rules and their best
        deltas; with them (and `residual_heads`) the heads predict changes to them."""
        stop = torch.full((1,), self.num_actions - 1, dtype=rules.dtype)
        x = torch.cat([z, self.action(torch.cat([rules, stop])[a])], -1)
        h, state = self.lstm(x, state)
        logit_pi, mu, log_sigma = self.mdn(h).split([self.k, self.k * self.z_dim,
                                                     self.k * self.z_dim], -1)
        shape = (*h.shape[:-1], self.k, self.z_dim)
        reward = self.reward(h).squeeze(-1)
        next_mask, next_delta = rule_rows(self.next_mask, h, rules), rule_rows(self.next_delta, h, rules)
        if self.residual and mask is not None:
            next_mask = next_mask + self.copy_weight * (2 * mask.float() - 1)
        if self.residual and delta is not None:
            next_delta = next_delta + delta
            chosen = F.pad(delta, (0, 1)).gather(-1, a[..., None]).squeeze(-1)   # stop: 0
            reward = reward + self.reward_weight * chosen
        return dict(logit_pi=logit_pi, mu=mu.view(shape), log_sigma=log_sigma.view(shape).clamp(-5, 2),
                    reward=reward, done=self.done(h).squeeze(-1), next_mask=next_mask,
                    next_delta=next_delta, h=h), state

    def z_nll(self, out, z_next):
        """-log p(z_next) under the mixture, per step."""
        z = z_next.unsqueeze(-2)
        log_n = (-0.5 * ((z - out["mu"]) / out["log_sigma"].exp()) ** 2 - out["log_sigma"]
                 - 0.5 * math.log(2 * math.pi)).sum(-1)
        return -torch.logsumexp(F.log_softmax(out["logit_pi"], -1) + log_n, -1)

    @staticmethod
    def sample_z(out, temperature: float, gen: torch.Generator):
        """z_{t+1} ~ mixture, with pi sharpened and sigma scaled by the temperature."""
        pi = F.softmax(out["logit_pi"] / temperature, -1)
        comp = torch.multinomial(pi, 1, generator=gen).squeeze(-1)
        idx = comp[:, None, None].expand(-1, 1, out["mu"].size(-1))
        mu = out["mu"].gather(1, idx).squeeze(1)
        sigma = out["log_sigma"].gather(1, idx).squeeze(1).exp() * temperature
        return mu + sigma * torch.randn(mu.shape, generator=gen)


class C(nn.Module):
    """Controller on [z, h]: logits over the rules in play + stop, and a value."""

    def __init__(self, num_rules, args: Args):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(args.z_dim + args.rnn_hidden, 64), nn.ReLU())
        self.rule_logit, self.stop_logit = nn.Linear(64, num_rules), nn.Linear(64, 1)
        for head in (self.rule_logit, self.stop_logit):  # CleanRL: the initial policy is the prior
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        self.v = mlp(args.z_dim + args.rnn_hidden, 64, 1)
        self.delta_weight = nn.Parameter(torch.tensor(float(args.delta_prior)))

    def forward(self, z, h, rules, rule_mask, rule_delta=None):
        """`rules` [K] the rules in play; rule_mask [B, K] bool; rule_delta [B, K] each rule's best
        estimated delta.  Actions are positions in `rules`, and K is stop (always allowed)."""
        x = torch.cat([z, h], -1)
        allowed = torch.cat([rule_mask, torch.ones_like(rule_mask[:, :1])], -1)
        f = self.body(x)
        logits = torch.cat([rule_rows(self.rule_logit, f, rules), self.stop_logit(f)], -1)
        if rule_delta is not None:
            logits = logits + self.delta_weight * F.pad(rule_delta, (0, 1))
        logits = logits.masked_fill(~allowed, -1e9)
        return torch.distributions.Categorical(logits=logits), self.v(x).squeeze(-1)


# ------------------------------------------------------------------------------------------------
# the bridge between rules (C's actions) and the env's flat candidate actions

def candidate_rules(data) -> torch.Tensor:
    """[K] the rules with at least one candidate in this observation, sorted."""
    return torch.unique(data.cand_rule)


def rule_mask_of(data, rules: torch.Tensor) -> torch.Tensor:
    """[K] bool: which of `rules` have at least one candidate in this observation."""
    return torch.isin(rules, data.cand_rule)


def rule_delta_of(data, rules: torch.Tensor) -> torch.Tensor:
    """[K] each of `rules` (sorted)' best estimated delta among its candidates (0 where it has
    none; candidates of other rules are ignored)."""
    best = torch.full((len(rules),), -torch.inf)
    if not len(rules):
        return best
    pos = torch.searchsorted(rules, data.cand_rule).clamp(max=len(rules) - 1)
    hit = rules[pos] == data.cand_rule
    best = best.scatter_reduce(0, pos[hit], data.cand_delta.float()[hit], "amax")
    return torch.where(torch.isinf(best), torch.zeros_like(best), best)


def position_in(rules: torch.Tensor, rule: int) -> int:
    """Where `rule` sits in `rules` (sorted); len(rules), the stop action, when it is absent."""
    i = int(torch.searchsorted(rules, torch.tensor(rule)))
    return i if i < len(rules) and int(rules[i]) == rule else len(rules)


def location_for(data, rule: int, num_rules: int, stop_action: int) -> int:
    """The fixed location rule: of `rule`'s candidates, the one with the best local cost delta
    (the env's `cand_delta`; ties go to the first in env order); stop -> the stop action."""
    if rule >= num_rules:
        return stop_action
    hits = (data.cand_rule == rule).nonzero().flatten()
    if not len(hits):
        return stop_action
    best = hits[int(torch.argmax(data.cand_delta[hits]))]
    return int(data.cand_action[best])


def rule_of_action(data, action: int, num_rules: int) -> int:
    hits = (data.cand_action == action).nonzero()
    return int(data.cand_rule[hits[0, 0]]) if len(hits) else num_rules


# ------------------------------------------------------------------------------------------------
# real episodes

@dataclass
class Episode:
    datas: list = field(default_factory=list)      # RewriteData of s_0..s_T (T+1 states)
    actions: list = field(default_factory=list)    # rule index (num_rules = stop), T of them
    rewards: list = field(default_factory=list)
    dones: list = field(default_factory=list)      # terminated (not truncated)
    cost_ratios: list = field(default_factory=list)
    final_cost: float = 0.0
    initial_cost: float = 0.0


def init_nets(args: Args, dims: tuple[int, int, int]) -> tuple[V, nn.ModuleList, C]:
    """V, the ensemble of Ms and C as seeded: the reference a checkpoint stores differences from."""
    node_dim, edge_dim, num_rules = dims
    torch.manual_seed(args.seed)
    v = V(node_dim, edge_dim, num_rules, args)
    ms = nn.ModuleList(M(num_rules, args) for _ in range(args.ensemble))
    return v, ms, C(num_rules, args)


def initial_states(nets) -> dict:
    return {k: {n: t.detach().clone() for n, t in net.state_dict().items()}
            for k, net in zip(("v", "ms", "c"), nets)}


class WorldModelTrainer:
    """Owns V, M, C, their optimisers, the real-episode buffer and the counters; one call of
    `iteration` is collect -> fit V, M -> dream.  `state_dict` captures everything for --resume."""

    def __init__(self, args: Args, envs: list):
        self.args, self.envs = args, envs
        self.dims = env_dims(envs[0])
        self.num_rules = self.dims[2]
        self.stop_action = envs[0].action_space.n - 1
        self.v, self.ms, self.c = nets = init_nets(args, self.dims)
        self.initial = initial_states(nets)
        self.known = torch.zeros(0, dtype=torch.long)   # rules seen applicable in the buffer
        self.wm_opt = torch.optim.Adam([*self.v.parameters(), *self.ms.parameters()], lr=args.wm_lr)
        self.c_opt = torch.optim.Adam(self.c.parameters(), lr=args.c_lr)
        self.rng = np.random.default_rng(args.seed)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.buffer: list[Episode] = []
        self.real_steps = 0
        self.episodes = 0
        self.iterations = 0
        self.env_calls = 0     # every reset/step on a real env, for the "dream is env-free" test
        self.best_cost = float("inf")
        self.best_trace: list[tuple[int, float]] = []   # (real step, best cost) at each new best

    def _seen(self, cost: float) -> None:
        """Every real step's graph counts: the best cost is the cheapest graph passed so far."""
        if cost < self.best_cost:
            self.best_cost = cost
            self.best_trace.append((self.real_steps, cost))

    # -- acting in the real env ------------------------------------------------------------------
    def _reset(self, env):
        self.env_calls += 1
        return env.reset(seed=int(self.rng.integers(2**31)))

    def _step(self, env, action):
        self.env_calls += 1
        return env.step(action)

    @torch.no_grad()
    def collect_episode(self, use_c: bool) -> Episode:
        env = self.envs[self.episodes % len(self.envs)]
        obs, info = self._reset(env)
        self._seen(float(info["cost"]))
        ep = Episode(initial_cost=float(info["initial_cost"]))
        state, h = None, torch.zeros(1, self.args.rnn_hidden)
        data = obs_to_data(obs)
        while True:
            rules = candidate_rules(data)            # C chooses among the rules that apply here
            ep.datas.append(data)
            ep.cost_ratios.append(float(info["cost"]) / ep.initial_cost)
            if use_c and self.rng.random() >= self.args.explore_eps:
                z = self.v(collate([data]))
                dist, _ = self.c(z, h, rules, torch.ones(1, len(rules), dtype=torch.bool),
                                 rule_delta_of(data, rules)[None])
                k = int(torch.multinomial(dist.probs, 1, generator=self.gen))
                rule = int(rules[k]) if k < len(rules) else self.num_rules
            else:   # uniform over the valid candidates (not over rules), like the random agent
                valid = np.flatnonzero(env.unwrapped.action_masks())
                rule = rule_of_action(data, int(self.rng.choice(valid)), self.num_rules)
                k = position_in(rules, rule)
            action = location_for(data, rule, self.num_rules, self.stop_action)
            obs, reward, terminated, truncated, info = self._step(env, action)
            self.real_steps += 1
            self._seen(float(info["cost"]))
            ep.actions.append(rule), ep.rewards.append(float(reward))
            ep.dones.append(bool(terminated))
            if use_c:   # keep M's memory of the real trajectory for C's next decision
                z = self.v(collate([data]))
                out, state = self.ms[0](z[:, None], torch.tensor([[k]]), rules, state)
                h = out["h"][:, -1]
            data = obs_to_data(obs)
            if terminated or truncated:
                ep.datas.append(data)
                ep.cost_ratios.append(float(info["cost"]) / ep.initial_cost)
                break
        ep.final_cost = float(info["cost"])
        self.episodes += 1
        self.buffer.append(ep)
        self.known = torch.unique(torch.cat([self.known, *(d.cand_rule for d in ep.datas)]))
        return ep

    # -- fitting V and M -------------------------------------------------------------------------
    def _episodes_batch(self, episodes: list[Episode]):
        """Episodes padded to [B, T+1, ...]; `valid` [B, T] marks real transitions.  V encodes
        every state of every episode in one GNN pass.  Per-rule tensors are over `rules`, the
        rules in play (`known`), and actions are positions in them (len(rules) = stop)."""
        rules = self.known
        lens = [len(ep.actions) for ep in episodes]
        z_flat = self.v(collate([d for ep in episodes for d in ep.datas]))
        zs = z_flat.split([n + 1 for n in lens])
        pad = nn.utils.rnn.pad_sequence
        z = pad(list(zs), batch_first=True)                                      # [B, T+1, Z]
        a = pad([torch.tensor([position_in(rules, r) for r in ep.actions], dtype=torch.long)
                 for ep in episodes], batch_first=True)
        r = pad([torch.tensor(ep.rewards, dtype=torch.float32) for ep in episodes], batch_first=True)
        d = pad([torch.tensor(ep.dones, dtype=torch.float32) for ep in episodes], batch_first=True)
        masks = pad([torch.stack([rule_mask_of(dt, rules) for dt in ep.datas]).float()
                     for ep in episodes], batch_first=True)                   # [B, T+1, K]
        costs = torch.cat([torch.tensor(ep.cost_ratios, dtype=torch.float32) for ep in episodes])
        valid = torch.arange(a.size(1))[None] < torch.tensor(lens)[:, None]
        deltas = pad([torch.stack([rule_delta_of(dt, rules) for dt in ep.datas])
                      for ep in episodes], batch_first=True)                  # [B, T+1, K]
        return z_flat, z, a, r, d, masks, costs, valid, deltas, rules

    def fit_world_model(self) -> dict:
        """`wm_updates` Adam steps of V and every M on random batches of real episodes."""
        totals: dict[str, float] = {}
        for _ in range(self.args.wm_updates):
            pick = self.rng.choice(len(self.buffer), min(self.args.wm_batch, len(self.buffer)),
                                   replace=False)
            z_flat, z, a, r, d, masks, costs, valid, deltas, rules = self._episodes_batch(
                [self.buffer[i] for i in pick])
            flat_masks = torch.cat([masks[i, :int(valid[i].sum()) + 1] for i in range(len(pick))])
            recon = rule_rows(self.v.recon_mask, z_flat, rules)
            losses = {"v_recon": F.binary_cross_entropy_with_logits(recon, flat_masks)
                      + F.mse_loss(self.v.recon_cost(z_flat).squeeze(-1), costs)}
            w = valid.float()

            def mean(x):
                return (x * w).sum() / w.sum()
            for m in self.ms:
                out, _ = m(z[:, :-1], a, rules, None, masks[:, :-1], deltas[:, :-1])
                applicable = masks[:, 1:]    # a rule's delta means something only where it applies
                delta_err = (((out["next_delta"] - deltas[:, 1:]) ** 2) * applicable).sum(-1) \
                    / applicable.sum(-1).clamp(min=1)
                terms = {"m_z_nll": mean(m.z_nll(out, z[:, 1:].detach())) / z.size(-1),
                         "m_reward": mean((out["reward"] - r) ** 2),
                         "m_delta": mean(delta_err),
                         "m_done": mean(F.binary_cross_entropy_with_logits(out["done"], d, reduction="none")),
                         "m_mask": mean(F.binary_cross_entropy_with_logits(
                             out["next_mask"], masks[:, 1:], reduction="none").mean(-1))}
                for k, v in terms.items():
                    losses[k] = losses.get(k, 0) + v / len(self.ms)
            loss = sum(losses.values())
            self.wm_opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_([*self.v.parameters(), *self.ms.parameters()], 1.0)
            self.wm_opt.step()
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach()) / self.args.wm_updates
        totals["wm_loss"] = sum(totals.values())
        return totals

    @torch.no_grad()
    def model_accuracy(self, episodes: list[Episode] | None = None) -> dict:
        """M's (member 0) next-step reward error and applicability-mask accuracy on real episodes
        (per rule and step) and F1 on the applicable rules, next to trivial baselines: "nothing
        changes" (copy) and "no rule applies" (none)."""
        episodes = episodes if episodes is not None else self.buffer
        _, z, a, r, _, masks, _, valid, deltas, rules = self._episodes_batch(episodes)
        out, _ = self.ms[0](z[:, :-1], a, rules, None, masks[:, :-1], deltas[:, :-1])
        pred, truth = out["next_mask"] > 0, masks[:, 1:].bool()
        per_step = valid[..., None].expand_as(truth)
        same_as_now = masks[:, :-1].bool()

        def f1(guess):   # on the applicable rules alone: with thousands of rules, mostly absent,
            tp = float((guess & truth)[per_step].sum())   # accuracy alone flatters any guess
            n = float(guess[per_step].sum() + truth[per_step].sum())
            return 2 * tp / n if n else 1.0
        return {"mask_accuracy": float((pred == truth)[per_step].float().mean()),
                "mask_accuracy_copy_baseline": float((same_as_now == truth)[per_step].float().mean()),
                "mask_accuracy_none_baseline": float((~truth)[per_step].float().mean()),
                "mask_f1": f1(pred), "mask_f1_copy_baseline": f1(same_as_now),
                "reward_rmse": float(((out["reward"] - r) ** 2)[valid].mean().sqrt()),
                "reward_rmse_delta_baseline": float(((F.pad(deltas[:, :-1], (0, 1)).gather(
                    -1, a[..., None]).squeeze(-1) - r) ** 2)[valid].mean().sqrt()),
                "reward_std": float(r[valid].std()) if int(valid.sum()) > 1 else 0.0}

    # -- training C inside the dream ---------------------------------------------------------------
    @torch.no_grad()
    def dream_starts(self):
        """Real (z, h, c, mask, delta) of every non-terminal buffered state, and the rules in
        play; (h, c) are M's memory after reading the real prefix, stepped in a batch over all
        episodes."""
        _, z, a, _, _, masks, _, valid, deltas, rules = self._episodes_batch(self.buffer)
        b, t = a.shape
        hs, cs = [], []
        for m in self.ms:          # each member keeps its own memory of the real prefix
            h, c = torch.zeros(1, b, self.args.rnn_hidden), torch.zeros(1, b, self.args.rnn_hidden)
            mh, mc = [], []
            for i in range(t):
                mh.append(h[0]), mc.append(c[0])
                _, (h, c) = m(z[:, i:i + 1], a[:, i:i + 1], rules, (h, c))
            hs.append(torch.stack(mh, 1)[valid]), cs.append(torch.stack(mc, 1)[valid])
        return (z[:, :-1][valid], torch.stack(hs), torch.stack(cs), masks[:, :-1][valid].bool(),
                deltas[:, :-1][valid], rules)

    def dream(self, starts, env_guard=None) -> dict:
        """One C update from `dream_batch` imagined rollouts of `dream_horizon` steps.
        No real env is touched: everything below reads only M, C and `starts`."""
        a_ = self.args
        z0, h0, c0, m0, d0, rules = starts
        idx = torch.randint(len(z0), (a_.dream_batch,), generator=self.gen)
        z, mask, delta = z0[idx], m0[idx], d0[idx]
        states = [(h0[e, idx][None].contiguous(), c0[e, idx][None].contiguous())
                  for e in range(len(self.ms))]
        h = h0[0, idx]
        alive = torch.ones(a_.dream_batch)
        logps, values, rewards, alives, ents = [], [], [], [], []
        for _ in range(a_.dream_horizon):
            dist, value = self.c(z, h, rules, mask, delta)
            action = torch.multinomial(dist.probs.detach(), 1, generator=self.gen).squeeze(-1)
            logps.append(dist.log_prob(action)), values.append(value), ents.append(dist.entropy())
            with torch.no_grad():
                outs, new_states = [], []
                for m, st in zip(self.ms, states):
                    o, s = m(z[:, None], action[:, None], rules, st, mask[:, None], delta[:, None])
                    outs.append({k: v[:, 0] for k, v in o.items()}), new_states.append(s)
                states = new_states
                r_all = torch.stack([o["reward"] for o in outs])
                reward = r_all.mean(0) - a_.disagreement_coef * r_all.std(0, unbiased=False) \
                    if len(outs) > 1 else r_all[0]
                stop = action == len(rules)
                p_done = torch.where(stop, torch.ones_like(reward), torch.sigmoid(outs[0]["done"]))
                rewards.append(reward * alive), alives.append(alive.clone())
                alive = alive * (1 - p_done)
                z = M.sample_z(outs[0], a_.temperature, self.gen)
                h = outs[0]["h"]
                mask = outs[0]["next_mask"] > 0
                delta = outs[0]["next_delta"]
        with torch.no_grad():
            _, last_value = self.c(z, h, rules, mask, delta)
            advantages = torch.zeros(len(rewards), a_.dream_batch)
            gae = torch.zeros(a_.dream_batch)
            next_value = last_value * alive
            for t in reversed(range(len(rewards))):
                cont = alives[t + 1] if t + 1 < len(alives) else alive
                delta = rewards[t] + a_.gamma * next_value - values[t].detach() * alives[t]
                gae = delta + a_.gamma * a_.gae_lambda * gae * (cont > 0).float()
                advantages[t] = gae
                next_value = values[t].detach() * alives[t]
            returns = advantages + torch.stack(values).detach() * torch.stack(alives)
        w = torch.stack(alives)
        pg_loss = -(torch.stack(logps) * advantages * w).sum() / w.sum()
        v_loss = (((torch.stack(values) - returns) ** 2) * w).sum() / w.sum()
        entropy = (torch.stack(ents) * w).sum() / w.sum()
        loss = pg_loss + a_.vf_coef * v_loss - a_.ent_coef * entropy
        self.c_opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.c.parameters(), 1.0)
        self.c_opt.step()
        return {"c_pg_loss": float(pg_loss.detach()), "c_v_loss": float(v_loss.detach()),
                "c_entropy": float(entropy.detach()),
                "dream_return": float(torch.stack(rewards).sum(0).mean())}

    def train_controller(self) -> dict:
        starts = self.dream_starts()
        totals: dict[str, float] = {}
        for _ in range(self.args.dream_updates):
            for k, v in self.dream(starts).items():
                totals[k] = totals.get(k, 0.0) + v / self.args.dream_updates
        return totals

    # -- one iteration -----------------------------------------------------------------------------
    def iteration(self) -> dict:
        first = self.iterations == 0
        n_eps = self.args.random_episodes if first else self.args.episodes_per_iter
        eps = [self.collect_episode(use_c=not first) for _ in range(n_eps)]
        # M's accuracy on the newest real episodes, measured before M is fit on them (held out)
        held_out = self.model_accuracy(eps)
        metrics = self.fit_world_model()
        metrics.update(held_out)
        metrics.update(self.train_controller())
        self.iterations += 1
        metrics.update(real_steps=self.real_steps,
                       episode_cost=float(np.mean([e.final_cost for e in eps])),
                       best_cost=self.best_cost,
                       cost_ratio=float(np.mean([e.final_cost / e.initial_cost for e in eps])),
                       loss=metrics["wm_loss"])
        return metrics

    # -- checkpoints -------------------------------------------------------------------------------
    FORMAT = 2      # 2: packed against the seeded nets, per-rule outputs over the rules in play

    def state_dict(self) -> dict:
        """Everything a resume needs; weights as their changes from the seeded initial ones,
        optimiser moments as their non-zero entries (`run_dir.pack`)."""
        nets = {"v": self.v.state_dict(), "ms": self.ms.state_dict(), "c": self.c.state_dict()}
        return {"format": self.FORMAT, "args": asdict(self.args),
                **run_dir.pack(nets, self.initial),
                "wm_opt": run_dir.pack(self.wm_opt.state_dict()),
                "c_opt": run_dir.pack(self.c_opt.state_dict()), "rng": self.rng.bit_generator.state,
                "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                "buffer": run_dir.compressed(self.buffer), "real_steps": self.real_steps,
                "episodes": self.episodes, "iterations": self.iterations, "num_rules": self.num_rules,
                "dims": self.dims, "stop_action": self.stop_action, "best_cost": self.best_cost,
                "best_trace": list(self.best_trace)}

    def load_state_dict(self, s: dict) -> None:
        if s.get("format") != self.FORMAT:
            raise BadInput("the checkpoint was written by another version of the world model: "
                           "start a new run (without --resume)")
        nets = run_dir.unpack({k: s[k] for k in ("v", "ms", "c")}, self.initial)
        try:
            self.v.load_state_dict(nets["v"]), self.ms.load_state_dict(nets["ms"])
            self.c.load_state_dict(nets["c"])
        except RuntimeError:                   # other sizes: another rule set or other args
            raise BadInput("the checkpoint does not fit this run's rules and sizes") from None
        self.wm_opt.load_state_dict(run_dir.unpack(s["wm_opt"]))
        self.c_opt.load_state_dict(run_dir.unpack(s["c_opt"]))
        self.rng.bit_generator.state = s["rng"]
        self.gen.set_state(s["gen"]), torch.set_rng_state(s["torch_rng"])
        self.buffer, self.real_steps = run_dir.decompressed(s["buffer"]), s["real_steps"]
        self.episodes, self.iterations = s["episodes"], s["iterations"]
        self.best_cost = s.get("best_cost", float("inf"))
        self.best_trace = list(s.get("best_trace", []))
        self.known = torch.unique(torch.cat([self.known, *(d.cand_rule for ep in self.buffer
                                                             for d in ep.datas)]))

    def agent(self) -> "WorldModelAgent":
        return WorldModelAgent.from_parts(self.args, self.v, self.ms[0], self.c, self.num_rules,
                                          self.stop_action, self.dims, self.initial)


def train(args: Args, envs: list, out: str | Path, resume: bool = False,
          on_progress: Callable[[int, int], None] | None = None
          ) -> tuple[WorldModelTrainer, list[dict]]:
    """The outer loop: iterations (collect, fit V and M, dream C) until `args.total_steps` real
    steps, into run directory `out` (agents/rl/run_dir.py).  After every iteration the metrics
    row, then the checkpoint, then the agent are written, each whole; a metrics row past the
    checkpoint is dropped on resume, so a resumed run reproduces the uninterrupted one."""
    out = Path(out)
    trainer = WorldModelTrainer(args, envs)
    rows, wall_before = [], 0.0
    state = run_dir.load_checkpoint(out) if resume else None
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        wall_before = state["wall_s"]
        rows = [r for r in run_dir.read_metrics(out) if int(r["iteration"]) <= trainer.iterations]
    run_dir.write_metrics(out, rows)
    t0 = time.perf_counter()
    while trainer.real_steps < args.total_steps:
        metrics = trainer.iteration()
        wall = wall_before + time.perf_counter() - t0
        rows.append({"iteration": trainer.iterations, "wall_s": round(wall, 3), **metrics})
        run_dir.write_metrics(out, rows)
        run_dir.save_atomic({"trainer": trainer.state_dict(), "wall_s": wall,
                             "agent": "worldmodel"}, out / run_dir.CHECKPOINT)
        trainer.agent().save(out)
        if on_progress:
            on_progress(trainer.real_steps, args.total_steps)
    if rows:
        run_dir.plot_curve(rows, out, f"worldmodel on {args.model}")
    return trainer, rows


class WorldModelAgent:
    """The trained V + M + C behind the agent protocol: act(obs, mask) -> flat action.  M's memory
    h follows the trajectory; call `reset()` (or act on a fresh episode's first observation after
    a stop) to clear it."""

    name = "worldmodel"
    Args, make_env, train = Args, staticmethod(make_env), staticmethod(train)

    def __init__(self, checkpoint: str | None = None, seed: int = 0):
        self.seed = seed
        self._state, self._h = None, None
        if checkpoint is not None:
            self.load(checkpoint)

    @classmethod
    def from_parts(cls, args, v, m, c, num_rules, stop_action, dims, initial):
        """`initial`: the seeded nets' states (`initial_states`), what `save` stores changes from."""
        self = cls()
        self.dims, self.initial = dims, initial
        self.args, self.v, self.m, self.c = args, v, m, c
        self.num_rules, self.stop_action = num_rules, stop_action
        return self

    def reset(self):
        self._state, self._h = None, None

    @torch.no_grad()
    def act(self, obs, mask) -> int:
        data = obs_to_data(obs)
        rules = candidate_rules(data)
        z = self.v(collate([data]))
        h = self._h if self._h is not None else torch.zeros(1, self.args.rnn_hidden)
        dist, _ = self.c(z, h, rules, torch.ones(1, len(rules), dtype=torch.bool),
                         rule_delta_of(data, rules)[None])
        k = int(dist.probs.argmax())                 # greedy evaluation
        rule = int(rules[k]) if k < len(rules) else self.num_rules
        action = location_for(data, rule, self.num_rules, self.stop_action)
        if not mask[action]:
            action = len(mask) - 1
        out, self._state = self.m(z[:, None], torch.tensor([[k]]), rules, self._state)
        self._h = out["h"][:, -1]
        if action == len(mask) - 1:
            self.reset()
        return action

    def search(self, problem, budget: int):
        return policy_search(self, problem, budget, self.args.max_candidates, self.num_rules,
                             getattr(self.args, "candidate_order", "rule"))

    def _reference(self) -> dict:
        return {"v": self.initial["v"], "c": self.initial["c"],
                "m": {k[len("0."):]: t for k, t in self.initial["ms"].items() if k.startswith("0.")}}

    def save(self, directory) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        nets = {"v": self.v.state_dict(), "m": self.m.state_dict(), "c": self.c.state_dict()}
        run_dir.save_atomic({"format": WorldModelTrainer.FORMAT, "args": asdict(self.args),
                             **run_dir.pack(nets, self._reference()), "num_rules": self.num_rules,
                             "stop_action": self.stop_action, "dims": self.dims},
                            Path(directory) / "worldmodel_agent.pt")

    def load(self, directory) -> None:
        path = Path(directory) / "worldmodel_agent.pt"
        if not path.exists():
            raise BadInput(f"no worldmodel checkpoint in {directory}")
        s = torch.load(path, weights_only=False)
        if s.get("format") != WorldModelTrainer.FORMAT:
            raise BadInput(f"{path} was written by another version of the world model: train it again")
        self.args = Args(**s["args"])
        self.num_rules, self.stop_action, self.dims = s["num_rules"], s["stop_action"], s["dims"]
        with torch.random.fork_rng(devices=[]):      # the caller's RNG stays as it was
            v, ms, self.c = nets = init_nets(self.args, self.dims)
        self.v, self.m, self.initial = v, ms[0], initial_states(nets)
        nets = run_dir.unpack({k: s[k] for k in ("v", "m", "c")}, self._reference())
        self.v.load_state_dict(nets["v"]), self.m.load_state_dict(nets["m"])
        self.c.load_state_dict(nets["c"])
        self.reset()
