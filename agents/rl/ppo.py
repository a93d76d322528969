"""`ppo`: masked PPO over a GNN, CleanRL-style (https://docs.cleanrl.dev/rl-algorithms/ppo/).

The action is the environment's flat one: candidate k of the current graph, or stop (the last
index).  Each candidate's logit comes from its embedding (matched nodes pooled + rule embedding,
see agents/rl/gnn.py) next to the graph embedding, plus a learnable weight times the env's
estimated cost delta of the candidate (`cand_delta`): a greedy prior that PPO refines.  Stop's
logit and the value come from the graph embedding.  Invalid actions get logit -1e9, so they are
never sampled and carry no gradient.
Evaluation is greedy (argmax).

Read top to bottom: Args, make_env, ActorCritic, one PPO iteration (`PPOTrainer.iteration`: a
rollout of `num_steps` real steps, GAE, and `update_epochs` passes of clipped-objective updates),
then the outer loop (`train`: iterations, metrics, checkpoints, the learning curve).  Each rollout
starts from a fresh reset, so a checkpoint between iterations resumes exactly.  The rules, the
settings and the envs are given by the caller (`subgen train`); nothing here imports subgen.
"""
from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from agents.rl import run_dir
from agents.rl.gnn import GraphEncoder, collate, mlp, obs_to_data, env_dims
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
    """rewrites per episode"""
    candidate_order: str = "delta"
    """env candidate order before the max_candidates cut: "delta" (estimated cost delta, best
    first: keeps a large rule set's useful candidates) or "rule" (rule then location)"""
    seed: int = 0
    """seed of everything"""
    total_steps: int = 400
    """real environment steps to train for"""
    learning_rate: float = 1e-3
    """Adam learning rate"""
    num_steps: int = 64
    """real steps per rollout"""
    gamma: float = 0.99
    """discount"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    update_epochs: int = 4
    """passes over each rollout"""
    clip_coef: float = 0.2
    """PPO's surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss too"""
    ent_coef: float = 0.01
    """entropy bonus"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    target_kl: float | None = None
    """stop the epoch early past this approximate KL"""
    hidden: int = 32
    """GNN width"""
    gnn_layers: int = 2
    """GNN depth"""
    delta_prior: float = 5.0
    """initial weight of the env's estimated cost delta (`cand_delta`) added to each candidate's
    logit (learnable): the untrained policy leans towards the greedy choice and PPO learns the
    residual.  0 starts from a uniform-ish policy (the weight can still grow)"""


def make_env(model: str, args, seed: int = 0, *, rules):
    """The Gymnasium env for one zoo model.  `rules`: the rules to apply, or a function of no
    arguments that loads them (so an env built in another process loads its own copy); the
    caller loads them as `subgen optimize` does, so rule indices line up."""
    import gymnasium as gym
    from envcore.gym.registration import ENV_ID, register
    register()
    env = gym.make(ENV_ID, model=model, model_size=args.size, rules=rules, cost=args.cost,
                   max_candidates=args.max_candidates, max_steps=args.max_steps,
                   candidate_order=getattr(args, "candidate_order", "rule"))
    env.reset(seed=seed)
    # thousands of long-lived rule objects: keep the cyclic GC from rescanning them every step
    gc.freeze()
    return env


class ActorCritic(nn.Module):
    """The policy (candidate and stop logits) and the value, over one shared GNN encoder."""

    def __init__(self, node_dim: int, edge_dim: int, num_rules: int, num_actions: int,
                 hidden: int = 32, layers: int = 2, delta_prior: float = 0.0):
        super().__init__()
        self.num_actions = num_actions
        self.encoder = GraphEncoder(node_dim, edge_dim, num_rules, hidden, layers)
        self.actor_cand = mlp(2 * hidden, hidden, 1)
        self.actor_stop = mlp(hidden, hidden, 1)
        self.critic = mlp(hidden, hidden, 1)
        for head in (self.actor_cand, self.actor_stop):   # CleanRL: small actor outputs, so the
            nn.init.normal_(head[-1].weight, std=0.01)     # initial policy is the prior's
            nn.init.zeros_(head[-1].bias)
        self.delta_weight = nn.Parameter(torch.tensor(float(delta_prior)))

    def _logits(self, batch, masks):
        emb = self.encoder(batch)
        b = emb.graph.size(0)
        logits = emb.graph.new_full((b, self.num_actions), -1e9)
        cand = self.actor_cand(torch.cat([emb.candidates, emb.graph[emb.cand_graph]], -1))
        cand = cand.squeeze(-1) + self.delta_weight * batch.cand_delta.float()
        logits[emb.cand_graph, batch.cand_action] = cand
        logits[:, -1] = self.actor_stop(emb.graph).squeeze(-1)
        return logits.masked_fill(~masks, -1e9), emb

    def get_value(self, batch):
        return self.critic(self.encoder(batch).graph).squeeze(-1)

    def get_action_and_value(self, batch, masks, action=None, greedy=False):
        logits, emb = self._logits(batch, masks)
        probs = torch.distributions.Categorical(logits=logits)
        if action is None:
            action = logits.argmax(-1) if greedy else probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(emb.graph).squeeze(-1)


class PPOTrainer:
    """Holds the agent, optimiser, envs, RNG and counters; `iteration()` is one PPO loop body."""

    def __init__(self, args: Args, envs: list):
        self.args, self.envs = args, envs
        node_dim, edge_dim, num_rules = env_dims(envs[0])
        self.num_actions = envs[0].action_space.n
        torch.manual_seed(args.seed)
        self.agent_net = ActorCritic(node_dim, edge_dim, num_rules, self.num_actions, args.hidden,
                               args.gnn_layers, args.delta_prior)
        self.optimizer = torch.optim.Adam(self.agent_net.parameters(), lr=args.learning_rate,
                                          eps=1e-5)
        self.rng = np.random.default_rng(args.seed)
        self.real_steps = self.episodes = self.iterations = 0
        self.best_cost = float("inf")
        self.best_trace: list[tuple[int, float]] = []   # (real step, best cost) at each new best

    def _seen(self, cost: float) -> None:
        """Every real step's graph counts: the best cost is the cheapest graph passed so far."""
        if cost < self.best_cost:
            self.best_cost = cost
            self.best_trace.append((self.real_steps, cost))

    def iteration(self) -> dict:
        args, agent = self.args, self.agent_net
        # ---- rollout ----------------------------------------------------------------------------
        datas, masks, actions, logprobs, rewards, dones, values = [], [], [], [], [], [], []
        env = self.envs[self.episodes % len(self.envs)]
        obs, info = env.reset(seed=int(self.rng.integers(2**31)))
        self._seen(float(info["cost"]))
        done, finished = False, []
        for _ in range(args.num_steps):
            data = obs_to_data(obs)
            mask = torch.as_tensor(np.asarray(env.unwrapped.action_masks(), dtype=bool))[None]
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(collate([data]), mask)
            obs, reward, terminated, truncated, info = env.step(int(action))
            self.real_steps += 1
            self._seen(float(info["cost"]))
            done = terminated or truncated
            datas.append(data), masks.append(mask[0]), actions.append(action[0])
            logprobs.append(logprob[0]), values.append(value[0])
            rewards.append(float(reward)), dones.append(float(done))
            if done:
                finished.append(float(info["cost"]))
                self.episodes += 1
                env = self.envs[self.episodes % len(self.envs)]
                obs, info = env.reset(seed=int(self.rng.integers(2**31)))
        with torch.no_grad():   # bootstrap the unfinished episode (unless the last step ended one)
            next_value = 0.0 if done else float(agent.get_value(collate([obs_to_data(obs)])))

        # ---- GAE --------------------------------------------------------------------------------
        values_t = torch.stack(values)
        rewards_t, dones_t = torch.tensor(rewards), torch.tensor(dones)
        advantages = torch.zeros(args.num_steps)
        lastgaelam = 0.0
        for t in reversed(range(args.num_steps)):
            nextnonterminal = 1.0 - dones_t[t]
            nextvalues = next_value if t == args.num_steps - 1 else values_t[t + 1]
            delta = rewards_t[t] + args.gamma * nextvalues * nextnonterminal - values_t[t]
            advantages[t] = lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
        returns = advantages + values_t
        b_masks, b_actions, b_logprobs = torch.stack(masks), torch.stack(actions), torch.stack(logprobs)

        # ---- clipped-objective updates -----------------------------------------------------------
        minibatch_size = max(args.num_steps // args.num_minibatches, 1)
        clipfracs, pg_losses, v_losses, entropies, approx_kl = [], [], [], [], torch.tensor(0.0)
        epoch_v_losses = []     # value loss per epoch: it must fall as the epochs fit the rollout
        for epoch in range(args.update_epochs):
            epoch_v_losses.append([])
            order = self.rng.permutation(args.num_steps)
            for start in range(0, args.num_steps, minibatch_size):
                mb = order[start:start + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    collate([datas[i] for i in mb]), b_masks[mb], b_actions[mb])
                logratio = newlogprob - b_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(float(((ratio - 1.0).abs() > args.clip_coef).float().mean()))
                mb_adv = advantages[mb]
                if len(mb) > 1:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss1 = -mb_adv * ratio
                pg_loss2 = -mb_adv * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - returns[mb]) ** 2
                    v_clipped = values_t[mb] + torch.clamp(newvalue - values_t[mb],
                                                           -args.clip_coef, args.clip_coef)
                    v_loss_clipped = (v_clipped - returns[mb]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * ((newvalue - returns[mb]) ** 2).mean()
                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                self.optimizer.step()
                pg_losses.append(float(pg_loss.detach())), v_losses.append(float(v_loss.detach()))
                epoch_v_losses[-1].append(float(v_loss.detach()))
                entropies.append(float(entropy_loss.detach()))
            if args.target_kl is not None and approx_kl > args.target_kl:
                break
        self.iterations += 1
        y_pred, y_true = values_t.numpy(), returns.numpy()
        var_y = np.var(y_true)
        return {"real_steps": self.real_steps,
                "episode_cost": float(np.mean(finished)) if finished else float(info["cost"]),
                "best_cost": self.best_cost,
                "cost_ratio": (float(np.mean(finished)) if finished else float(info["cost"]))
                / float(info["initial_cost"]),
                "loss": float(np.mean(v_losses)) * args.vf_coef + float(np.mean(pg_losses)),
                "pg_loss": float(np.mean(pg_losses)), "v_loss": float(np.mean(v_losses)),
                "entropy": float(np.mean(entropies)), "approx_kl": float(approx_kl),
                "clipfrac": float(np.mean(clipfracs)),
                "v_loss_first_epoch": float(np.mean(epoch_v_losses[0])),
                "v_loss_last_epoch": float(np.mean(epoch_v_losses[-1])),
                "explained_variance": float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y),
                "episode_return": float(np.sum(rewards)) / max(len(finished), 1)}

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"args": asdict(self.args), "agent": self.agent_net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "real_steps": self.real_steps,
                "episodes": self.episodes, "iterations": self.iterations,
                "best_cost": self.best_cost, "best_trace": list(self.best_trace)}

    def load_state_dict(self, s: dict) -> None:
        self.agent_net.load_state_dict(s["agent"]), self.optimizer.load_state_dict(s["optimizer"])
        self.rng.bit_generator.state = s["rng"]
        torch.set_rng_state(s["torch_rng"])
        self.real_steps, self.episodes = s["real_steps"], s["episodes"]
        self.iterations, self.best_cost = s["iterations"], s["best_cost"]
        self.best_trace = list(s.get("best_trace", []))

    def agent(self) -> "PPOAgent":
        return PPOAgent.from_net(self.args, self.agent_net, env_dims(self.envs[0]))


def train(args: Args, envs: list, out: str | Path, resume: bool = False,
          on_progress: Callable[[int, int], None] | None = None) -> tuple[PPOTrainer, list[dict]]:
    """The outer loop: PPO iterations until `args.total_steps` real steps, into run directory
    `out` (agents/rl/run_dir.py).  After every iteration the metrics row, then the checkpoint,
    then the policy are written, each whole; a metrics row past the checkpoint is dropped on
    resume, so a resumed run reproduces the uninterrupted one exactly (deterministic costs)."""
    out = Path(out)
    trainer = PPOTrainer(args, envs)
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
        run_dir.save_atomic({"trainer": trainer.state_dict(), "wall_s": wall, "agent": "ppo"},
                            out / run_dir.CHECKPOINT)
        trainer.agent().save(out)
        if on_progress:
            on_progress(trainer.real_steps, args.total_steps)
    if rows:
        run_dir.plot_curve(rows, out, f"ppo on {args.model}")
    return trainer, rows


def policy_search(agent, problem, budget: int, max_candidates: int, num_rules: int,
                  candidate_order: str = "rule"):
    """`search` for a learned policy: one greedy episode of at most `budget` rewrites in an env
    built on the problem's graph, rules and cost model; returns the cheapest graph it passed."""
    from agents.search.problem import SearchResult
    from envcore.gym.env import GraphRewriteEnv
    if len(problem.rules) != num_rules:
        raise BadInput(f"the checkpoint was trained on {num_rules} rules but {len(problem.rules)} "
                       "were given: pass the --rules it was trained with")
    env = GraphRewriteEnv(model=problem.graph, rules=list(problem.rules), cost=problem.cost_model,
                          max_candidates=max_candidates, max_steps=max(budget, 1),
                          candidate_order=candidate_order)
    obs, info = env.reset(seed=0)
    if hasattr(agent, "reset"):
        agent.reset()
    best = (info["cost"], info["graph"], [])
    rewrites, trace, steps = [], [(0, info["cost"])], 0
    while steps < budget:
        action = agent.act(obs, env.action_masks())
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        if info["rule_applied"]:
            rewrites.append(info["rule_applied"])
        if info["cost"] < best[0]:
            best = (info["cost"], info["graph"], list(rewrites))
        trace.append((steps, best[0]))
        if problem.on_step:
            problem.on_step(steps, best[0])
        if terminated or truncated:
            break
    return SearchResult(graph=best[1], cost=best[0], rewrites=best[2], trace=trace,
                        initial_cost=env.initial_cost, expansions=steps)


class PPOAgent:
    """A trained PPO policy behind the agent protocol; `act` is greedy.  `subgen train` finds
    the algorithm through it (the registry names this class): its settings, env and loop."""

    name = "ppo"
    Args, make_env, train = Args, staticmethod(make_env), staticmethod(train)

    def __init__(self, checkpoint: str | None = None, seed: int = 0):
        self.seed = seed
        if checkpoint is not None:
            self.load(checkpoint)

    @classmethod
    def from_net(cls, args, net, dims):
        self = cls()
        self.args, self.net, self.dims = args, net, dims
        return self

    @torch.no_grad()
    def act(self, obs, mask) -> int:
        mask_t = torch.as_tensor(np.asarray(mask, dtype=bool))[None]
        action, *_ = self.net.get_action_and_value(collate([obs_to_data(obs)]), mask_t, greedy=True)
        return int(action)

    def search(self, problem, budget: int):
        return policy_search(self, problem, budget, self.args.max_candidates, self.dims[2],
                             getattr(self.args, "candidate_order", "rule"))

    def save(self, directory) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        run_dir.save_atomic({"args": asdict(self.args), "net": self.net.state_dict(), "dims": self.dims,
                     "num_actions": self.net.num_actions}, Path(directory) / "ppo_agent.pt")

    def load(self, directory) -> None:
        path = Path(directory) / "ppo_agent.pt"
        if not path.exists():
            raise BadInput(f"no PPO checkpoint in {directory}")
        s = torch.load(path, weights_only=False)
        self.args, self.dims = Args(**s["args"]), tuple(s["dims"])
        self.net = ActorCritic(*self.dims, s["num_actions"], self.args.hidden, self.args.gnn_layers,
                         self.args.delta_prior)
        self.net.load_state_dict(s["net"])
        self.net.eval()
