"""The RL training driver behind `subgen train`: iterations of an agent's trainer, with
checkpoints, metrics.csv and a PNG learning curve in the run directory.

    run/
      checkpoint.pt      everything --resume needs: nets, optimisers, RNG states, buffers, counters
      metrics.csv        one row per iteration: real env steps, wall time, episode cost, losses
      learning_curve.png best and episode cost against real env steps
      ppo_agent.pt | worldmodel_agent.pt   the policy alone (`subgen optimize --checkpoint run/`)
      run.json           the settings, so --resume can refuse a different run

A checkpoint is written after every iteration, atomically (temp file + rename), and the metrics
row of an iteration is kept only if its checkpoint was: on --resume rows past the checkpoint are
dropped and the run continues from the checkpoint's RNG states and counters, so it reproduces
the uninterrupted run exactly under the deterministic `analytic` cost.
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable

from subgen.errors import BadInput

AGENTS = ("ppo", "worldmodel")
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
CURVE = "learning_curve.png"
RUN = "run.json"
LEADING = ["iteration", "real_steps", "wall_s", "episode_cost", "best_cost", "cost_ratio", "loss"]


def _module(agent: str):
    if agent == "ppo":
        from agents.rl import ppo
        return ppo, ppo.PPOTrainer
    if agent == "worldmodel":
        from agents.rl import worldmodel
        return worldmodel, worldmodel.WorldModelTrainer
    raise BadInput(f"unknown agent {agent!r} for training (one of {', '.join(AGENTS)})")


def make_args(agent: str, **settings):
    """The agent's Args with `settings` applied (unknown keys are an error)."""
    module, _ = _module(agent)
    names = {f.name for f in fields(module.Args)}
    unknown = set(settings) - names
    if unknown:
        raise BadInput(f"{agent} has no setting(s) {sorted(unknown)}")
    return module.Args(**settings)


def make_envs(agent: str, args, executor: str = "local", num_envs: int | None = None,
              ray_address: str | None = None) -> list:
    """One env per model, or `num_envs` envs cycling over the models; with executor "ray" each
    lives in a Ray actor (subgen.pipelines.rollouts) behind the same single-env interface."""
    from functools import partial

    from envcore import zoo
    module, _ = _module(agent)
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    if not models:
        raise BadInput("--model names no model")
    for m in models:
        if m not in zoo.ZOO:
            raise BadInput(f"unknown model {m!r} (zoo: {', '.join(sorted(zoo.ZOO))})")
    n = num_envs or len(models)
    if executor == "ray":   # actors may run elsewhere: they get the rule file's absolute path
        from dataclasses import replace

        from subgen.pipelines.rollouts import RayVectorEnv
        if args.rules:
            args = replace(args, rules=str(Path(args.rules).resolve()))
        fns = [partial(module.make_env, models[i % len(models)], args, seed=args.seed + i)
               for i in range(n)]
        return RayVectorEnv(fns, address=ray_address).envs
    if executor != "local":
        raise BadInput(f"unknown executor {executor!r} (local or ray)")
    return [module.make_env(models[i % len(models)], args, seed=args.seed + i) for i in range(n)]


def _save_atomic(obj, path: Path) -> None:
    import torch
    from subgen.outputs import write_atomic
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def _read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_metrics(path: Path, rows: list[dict]) -> None:
    keys = list(LEADING)
    for r in rows:
        keys += [k for k in r if k not in keys]
    from subgen.outputs import write_atomic

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, restval="")
            w.writeheader()
            w.writerows(rows)
    write_atomic(path, write)


def plot_curve(rows: list[dict], path: Path, title: str) -> None:
    """Best and per-iteration episode cost against real env steps (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [float(r["real_steps"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [float(r["episode_cost"]) for r in rows], alpha=0.5, label="episode cost")
    ax.plot(steps, [float(r["best_cost"]) for r in rows], label="best cost")
    ax.set_xlabel("real environment steps")
    ax.set_ylabel("graph cost (ms)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    from subgen.outputs import write_atomic
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def train(agent: str, out: str | Path, steps: int, resume: bool = False,
          on_progress: Callable[[int, int], None] | None = None, executor: str = "local",
          num_envs: int | None = None, ray_address: str | None = None, **settings) -> dict:
    """Trains `agent` for `steps` real env steps (in whole iterations) into directory `out`.

    `settings` are the agent's Args fields (model, size, rules, seed, ...).  Returns a summary."""
    import torch
    torch.set_num_threads(1)   # tiny nets: one thread beats two contending ones
    out = Path(out)
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
    from subgen.outputs import usable_output
    usable_output(out / RUN, "run")        # read-only or not a folder: one line, before any work
    run_path.write_text(json.dumps(identity, indent=1))

    _, Trainer = _module(agent)
    envs = make_envs(agent, args, executor, num_envs, ray_address)
    trainer = Trainer(args, envs)
    wall_before = 0.0
    rows = _read_metrics(out / METRICS)
    if resume and ckpt_path.exists():
        try:
            state = torch.load(ckpt_path, weights_only=False)
        except Exception as e:
            raise BadInput(f"cannot read checkpoint {ckpt_path}: {type(e).__name__}") from None
        trainer.load_state_dict(state["trainer"])
        wall_before = state["wall_s"]
        rows = [r for r in rows if int(r["iteration"]) <= trainer.iterations]
    else:
        rows = []
    _write_metrics(out / METRICS, rows)

    t0 = time.perf_counter()
    try:
        while trainer.real_steps < steps:
            metrics = trainer.iteration()
            wall = wall_before + time.perf_counter() - t0
            row = {"iteration": trainer.iterations, "wall_s": round(wall, 3), **metrics}
            rows.append(row)
            _write_metrics(out / METRICS, rows)
            _save_atomic({"trainer": trainer.state_dict(), "wall_s": wall, "agent": agent}, ckpt_path)
            trainer.agent().save(out)
            if on_progress:
                on_progress(trainer.real_steps, steps)
    finally:   # Ray env actors hold a CPU each until closed
        for env in envs:
            env.close()
    if rows:
        plot_curve(rows, out / CURVE, f"{agent} on {args.model}")
    last = rows[-1] if rows else {}
    return {"agent": agent, "models": args.model.split(","), "real_steps": trainer.real_steps,
            "iterations": trainer.iterations, "episodes": trainer.episodes,
            "episode_cost": float(last.get("episode_cost", "nan")),
            "best_cost": float(last.get("best_cost", "nan")),
            "loss": float(last.get("loss", "nan")),
            "seconds": round(float(last.get("wall_s", 0.0)), 3), "out": str(out),
            "checkpoint": str(ckpt_path), "metrics": str(out / METRICS), "curve": str(out / CURVE)}
