"""The agent protocol and the agent registry.

An agent is anything with this small interface (duck-typed; subclassing `Agent` is optional):

    act(obs, mask) -> int           pick an action of the Gymnasium env (mask: valid actions)
    search(problem, budget)         search agents: -> SearchResult (see agents/search/problem.py)
    train(...), save(dir), load(dir)   optional, for agents that learn

Agents register by name.  The built-ins are listed below as "module:attribute" targets that are
imported only when asked for, so listing agents never imports torch.  A third-party package adds
one without touching subgen by declaring an entry point in the group `subgen.agents`:

    [project.entry-points."subgen.agents"]
    myagent = "my_pkg.agent:MyAgent"

`get_agent(name, **kwargs)` builds one; an unknown name raises KeyError.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np

ENTRY_POINT_GROUP = "subgen.agents"

# Built-ins.  ppo and worldmodel live in their own files (written separately); they are resolved
# lazily, so a missing or torch-less install only fails when one of them is asked for.
BUILTIN: dict[str, str] = {
    "random": "agents.search.random_agent:RandomAgent",
    "greedy": "agents.search.greedy:GreedyAgent",
    "beam": "agents.search.beam:BeamAgent",
    "taso": "agents.search.taso:TasoAgent",
    "ppo": "agents.rl.ppo:PPOAgent",
    "worldmodel": "agents.rl.worldmodel:WorldModelAgent",
}


@runtime_checkable
class Agent(Protocol):
    def act(self, obs: Any, mask: np.ndarray) -> int:
        """The index of a valid action (mask[i] is True) for observation `obs`."""


class SearchAgent:
    """Base for agents that search the rewrite space directly (random, greedy, beam, taso).

    `search` does the work.  `act` is the one-step view of a search for the Gymnasium env: take
    the valid candidate with the best estimated reward (`obs["cand_delta"]`), or stop (the last
    action) when none is estimated to improve the graph."""

    name = "search"

    def search(self, problem, budget: int):
        raise NotImplementedError

    def act(self, obs: Any, mask: np.ndarray) -> int:
        mask = np.asarray(mask, dtype=bool)
        stop = len(mask) - 1
        delta = obs.get("cand_delta") if isinstance(obs, dict) else None
        if delta is None:
            return stop
        delta = np.asarray(delta, dtype=np.float64)[:stop]
        scores = np.where(mask[: len(delta)], delta, -np.inf)
        k = int(np.argmax(scores)) if len(scores) else -1
        return k if k >= 0 and scores[k] > 0 else stop


def _entry_point_targets() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def registry() -> dict[str, str]:
    """name -> "module:attribute" for every known agent; entry points may add or override."""
    out = dict(BUILTIN)
    for name, ep in _entry_point_targets().items():
        out[name] = ep.value
    return out


def is_available(target: str) -> bool:
    """Whether the module behind a "module:attribute" target can be found (without importing)."""
    module = target.split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def agent_class(name: str):
    """The class (or factory) registered as `name`; KeyError if there is none."""
    eps = _entry_point_targets()
    if name in eps:
        return eps[name].load()
    if name not in BUILTIN:
        raise KeyError(f"unknown agent {name!r} (known: {', '.join(sorted(registry()))})")
    target = BUILTIN[name]
    if not is_available(target):
        raise KeyError(f"agent {name!r} is registered as {target} but that module is not installed")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def get_agent(name: str, **kwargs):
    """An agent instance.  Keyword arguments the agent does not take are dropped, so callers can
    pass the CLI's common options (alpha, seed, checkpoint, ...) to any agent."""
    cls = agent_class(name)
    try:
        sig = inspect.signature(cls)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in sig.parameters}
    except (TypeError, ValueError):  # builtins without a signature: pass everything
        pass
    return cls(**kwargs)
