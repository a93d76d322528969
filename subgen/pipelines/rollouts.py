"""Gymnasium environments hosted in Ray actors, for collecting rollouts off the learner's process.

    vec = RayVectorEnv([lambda: make_env("bert", args, seed=s) for s in range(4)])
    obs, infos = vec.reset(seed=[1, 2, 3, 4])              # every env at once
    obs, rewards, terminated, truncated, infos = vec.step(actions)
    vec.action_masks()                                     # one bool array per env

Each actor owns one env and keeps it between calls, so an env's state never crosses the wire,
only observations, rewards and infos do.  There is no auto-reset: the learner resets with its own
seeded RNG, which keeps a Ray run step-for-step identical to a local one (and `--resume` exact).

`vec.envs` are single-env proxies (`RemoteEnv`) with the usual `reset`/`step`/`action_space`/
`observation_space` and `unwrapped.action_masks()`/`unwrapped.num_rules`: a trainer written for a
list of Gymnasium envs (PPO's rollout, the world model's real-data collection) takes them
unchanged.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from subgen.pipelines.executors import connect_ray


class _EnvHost:
    """The actor body: one env built in the actor process from `env_fn`."""

    def __init__(self, env_fn: Callable[[], Any]):
        self.env = env_fn()

    def spaces(self) -> dict:
        u = self.env.unwrapped
        return {"action_space": self.env.action_space,
                "observation_space": self.env.observation_space,
                "num_rules": getattr(u, "num_rules", None)}

    def reset(self, seed=None, options=None):
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        return self.env.step(action)

    def action_masks(self):
        return np.asarray(self.env.unwrapped.action_masks(), dtype=bool)

    def call(self, name: str, *args, **kwargs):
        """Any other method or attribute of the unwrapped env."""
        attr = getattr(self.env.unwrapped, name)
        return attr(*args, **kwargs) if callable(attr) else attr

    def close(self):
        self.env.close()


class RemoteEnv:
    """One actor-hosted env behind the single-env Gymnasium interface (calls block)."""

    def __init__(self, ray, actor, spaces: dict):
        self._ray, self.actor = ray, actor
        self.action_space = spaces["action_space"]
        self.observation_space = spaces["observation_space"]
        self.num_rules = spaces["num_rules"]

    @property
    def unwrapped(self) -> "RemoteEnv":
        return self

    def reset(self, *, seed=None, options=None):
        return self._ray.get(self.actor.reset.remote(seed, options))

    def step(self, action):
        return self._ray.get(self.actor.step.remote(action))

    def action_masks(self) -> np.ndarray:
        return self._ray.get(self.actor.action_masks.remote())

    def call(self, name: str, *args, **kwargs):
        return self._ray.get(self.actor.call.remote(name, *args, **kwargs))

    def close(self) -> None:
        """Closes the env and ends its actor, freeing the actor's CPU."""
        try:
            self._ray.get(self.actor.close.remote())
        finally:
            self._ray.kill(self.actor)


class RayVectorEnv:
    """`num_envs` envs in Ray actors, stepped together (see the module doc).

    `env_fns`: one zero-argument constructor per env (closures pickle with cloudpickle), or a
    single constructor used `num_envs` times.  Ray is connected (or started) on first use."""

    def __init__(self, env_fns: Sequence[Callable] | Callable, num_envs: int | None = None,
                 address: str | None = None, run_dir: str = "runs", num_cpus: float = 1):
        if callable(env_fns):
            env_fns = [env_fns] * (num_envs or 1)
        env_fns = list(env_fns)
        if num_envs is not None and num_envs != len(env_fns):
            raise ValueError(f"{len(env_fns)} env constructors for num_envs={num_envs}")
        self.ray = ray = connect_ray(address, run_dir)
        # a restarted actor rebuilds its env from env_fn; the learner re-seeds it on reset
        host = ray.remote(num_cpus=num_cpus, max_restarts=1)(_EnvHost)
        self.actors = [host.remote(fn) for fn in env_fns]
        spaces = ray.get([a.spaces.remote() for a in self.actors])
        self.envs = [RemoteEnv(ray, a, s) for a, s in zip(self.actors, spaces)]
        self.num_envs = len(self.envs)
        self.single_action_space = self.envs[0].action_space
        self.single_observation_space = self.envs[0].observation_space

    def reset(self, seed: Sequence[int | None] | int | None = None, options=None):
        """(list of observations, list of infos); an int seed gives env k the seed `seed + k`."""
        seeds = _per_env(seed, self.num_envs)
        out = self.ray.get([a.reset.remote(s, options) for a, s in zip(self.actors, seeds)])
        return [o for o, _ in out], [i for _, i in out]

    def step(self, actions: Sequence[int]):
        """(observations, rewards, terminated, truncated, infos); arrays are per env."""
        out = self.ray.get([a.step.remote(int(x)) for a, x in zip(self.actors, actions)])
        obs, rew, term, trunc, infos = zip(*out)
        return (list(obs), np.asarray(rew, dtype=np.float64), np.asarray(term, dtype=bool),
                np.asarray(trunc, dtype=bool), list(infos))

    def action_masks(self) -> list[np.ndarray]:
        return self.ray.get([a.action_masks.remote() for a in self.actors])

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors, self.envs = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _per_env(seed, n: int) -> list:
    if seed is None or isinstance(seed, (int, np.integer)):
        return [None if seed is None else int(seed) + k for k in range(n)]
    seed = list(seed)
    if len(seed) != n:
        raise ValueError(f"{len(seed)} seeds for {n} envs")
    return seed
