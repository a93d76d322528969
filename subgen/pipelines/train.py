"""The RL training driver behind `subgen train`: it checks the settings and the run directory,
loads the rules, builds the envs (here or in Ray actors) and hands them to the algorithm's own
outer loop (`train` in agents/rl/ppo.py, agents/rl/worldmodel.py), found through the agent
registry (agents/base.py).  The run directory's files are described in agents/rl/run_dir.py;
this driver adds `run.json`, the settings, so that --resume can refuse a different run.
"""
from __future__ import annotations

import json
from dataclasses import fields, replace
from functools import partial
from pathlib import Path
from typing import Callable

from subgen.errors import BadInput

RUN = "run.json"


def trainable_agents() -> list[str]:
    """The registered agents that learn: their class names its settings, env and loop."""
    from agents.base import agent_class, registry
    names = []
    for name in sorted(registry()):
        try:
            cls = agent_class(name)
        except (KeyError, ImportError):
            continue
        if hasattr(cls, "train") and hasattr(cls, "Args") and hasattr(cls, "make_env"):
            names.append(name)
    return names


def algorithm(agent: str):
    """The registered class of a trainable agent (`Args`, `make_env`, `train`)."""
    from agents.base import agent_class
    try:
        cls = agent_class(agent)
    except KeyError:
        cls = None
    if cls is None or not hasattr(cls, "train"):
        raise BadInput(f"unknown agent {agent!r} for training "
                       f"(one of {', '.join(trainable_agents())})")
    return cls


def make_args(agent: str, **settings):
    """The agent's Args with `settings` applied (unknown keys are an error)."""
    cls = algorithm(agent)
    names = {f.name for f in fields(cls.Args)}
    unknown = set(settings) - names
    if unknown:
        raise BadInput(f"{agent} has no setting(s) {sorted(unknown)}")
    return cls.Args(**settings)


def make_envs(agent: str, args, executor: str = "local", num_envs: int | None = None,
              ray_address: str | None = None) -> list:
    """One env per model, or `num_envs` envs cycling over the models, with the rules loaded as
    `subgen optimize` loads them; with executor "ray" each lives in a Ray actor
    (subgen.pipelines.rollouts) behind the same single-env interface, and loads the rules there."""
    from envcore import zoo
    from subgen.pipelines.optimize import load_rule_set
    cls = algorithm(agent)
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    if not models:
        raise BadInput("--model names no model")
    for m in models:
        if m not in zoo.ZOO:
            raise BadInput(f"unknown model {m!r} (zoo: {', '.join(sorted(zoo.ZOO))})")
    n = num_envs or len(models)
    if executor == "ray":   # actors may run elsewhere: they get the rule file's absolute path
        from subgen.pipelines.rollouts import RayVectorEnv
        if args.rules:
            args = replace(args, rules=str(Path(args.rules).resolve()))
        load = partial(load_rule_set, args.rules, unverified=args.unverified)
        fns = [partial(cls.make_env, models[i % len(models)], args, seed=args.seed + i, rules=load)
               for i in range(n)]
        return RayVectorEnv(fns, address=ray_address).envs
    if executor != "local":
        raise BadInput(f"unknown executor {executor!r} (local or ray)")
    rules = load_rule_set(args.rules, unverified=args.unverified)
    return [cls.make_env(models[i % len(models)], args, seed=args.seed + i, rules=rules)
            for i in range(n)]


def train(agent: str, out: str | Path, steps: int, resume: bool = False,
          on_progress: Callable[[int, int], None] | None = None, executor: str = "local",
          num_envs: int | None = None, ray_address: str | None = None, **settings) -> dict:
    """Trains `agent` for `steps` real env steps (in whole iterations) into directory `out`.

    `settings` are the agent's Args fields (model, size, rules, seed, ...).  Returns a summary."""
    import importlib.util
    missing = [m for m in ("torch", "torch_geometric", "gymnasium")
               if importlib.util.find_spec(m) is None]
    if missing:                # before anything is written
        raise BadInput(f"training needs {', '.join(missing)}: pip install 'subgen[gnn,env]'")
    import torch
    torch.set_num_threads(1)   # tiny nets: one thread beats two contending ones
    out = Path(out)
    from agents.rl.run_dir import CHECKPOINT, CURVE, METRICS
    ckpt_path, run_path = out / CHECKPOINT, out / RUN
    settings["total_steps"] = steps
    args = make_args(agent, **settings)
    identity = {"agent": agent, **{k: v for k, v in vars(args).items() if k != "total_steps"}}
    if num_envs is not None:   # where the envs run (local or ray) is not part of the run
        identity["num_envs"] = num_envs
    from envcore.zoo import ZOO             # unusable input fails before anything is written
    unknown = [m for m in str(args.model).split(",") if m not in ZOO]
    if unknown:
        raise BadInput(f"unknown model {unknown[0]!r} (zoo: {', '.join(sorted(ZOO))})")
    if ckpt_path.exists() and not resume:
        raise BadInput(f"{out} already holds a run: pass --resume to continue it, or use another --out")
    if resume and ckpt_path.exists():
        saved = json.loads(run_path.read_text()) if run_path.exists() else {}
        if saved and saved != identity:
            diff = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
            raise BadInput(f"--resume with different settings than the run in {out}: {', '.join(diff)}")
    from subgen.outputs import usable_output, write_atomic
    created = not out.exists()
    usable_output(out / RUN, "run")        # read-only or not a folder: one line, before any work
    try:
        write_atomic(run_path, lambda tmp: tmp.write_text(json.dumps(identity, indent=1)))
        envs = make_envs(agent, args, executor, num_envs, ray_address)
        try:
            trainer, rows = algorithm(agent).train(args, envs, out, resume=resume,
                                                   on_progress=on_progress)
        finally:   # Ray env actors hold a CPU each until closed
            for env in envs:
                env.close()
    except OSError:            # a failed write (disk full): a run folder of ours that holds
        if created and not ckpt_path.exists():     # nothing to resume from goes again
            import shutil
            shutil.rmtree(out, ignore_errors=True)
        raise
    last = rows[-1] if rows else {}
    return {"agent": agent, "models": args.model.split(","), "real_steps": trainer.real_steps,
            "iterations": trainer.iterations, "episodes": trainer.episodes,
            "episode_cost": float(last.get("episode_cost", "nan")),
            "best_cost": float(last.get("best_cost", "nan")),
            "loss": float(last.get("loss", "nan")),
            "seconds": round(float(last.get("wall_s", 0.0)), 3), "out": str(out),
            "checkpoint": str(ckpt_path), "metrics": str(out / METRICS), "curve": str(out / CURVE)}
