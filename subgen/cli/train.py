"""`subgen train --agent ppo|worldmodel|... --model M[,M2,...]`: train an RL agent on zoo models."""
from __future__ import annotations

import json

import click


@click.command()
@click.option("--agent", required=True,
              help="Which RL agent to train: a registered agent that learns (ppo, worldmodel, "
                   "or one a package adds; `subgen agents` lists them).")
@click.option("--model", required=True, help="Zoo model(s), comma separated: episodes rotate over them.")
@click.option("--rules", type=click.Path(dir_okay=False), default=None,
              help="Rule DB (proved rules) or .json/.pb (proved first: only proved rules are "
                   "used, each inside its scope).  Default: subgen/data/rules.db.")
@click.option("--unverified", is_flag=True,
              help="Apply the rules file as it is, without proving it first.")
@click.option("--steps", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Real environment steps to train for (whole iterations).")
@click.option("--out", default="runs/train", show_default=True, type=click.Path(file_okay=False),
              help="Run directory: checkpoints, metrics.csv, learning_curve.png.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--model-size", "size", default="tiny", show_default=True,
              type=click.Choice(["full", "small", "tiny"]), help="Zoo model size.")
@click.option("--cost", default="analytic", show_default=True,
              type=click.Choice(["analytic", "torch", "cupy", "ort"]), help="Cost model.")
@click.option("--max-steps", default=16, show_default=True, type=click.IntRange(min=1),
              help="Rewrites per episode.")
@click.option("--max-candidates", default=64, show_default=True, type=click.IntRange(min=1),
              help="Candidate actions per observation.")
@click.option("--candidate-order", default="delta", show_default=True,
              type=click.Choice(["delta", "rule"]),
              help="Which candidates survive the --max-candidates cut: best estimated cost "
                   "delta first, or rule then location.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary as the last line.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="Where the envs run: in this process, or in Ray actors.")
@click.option("--num-envs", default=None, type=click.IntRange(min=1),
              help="Envs to run (cycling over --model).  Default: one per model.")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS",
              help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray).")
def train(agent, model, rules, unverified, steps, out, resume, size, cost, max_steps,
          max_candidates, candidate_order, seed, as_json, executor, num_envs, ray_address):
    """Train an RL agent; writes checkpoints, metrics.csv and a PNG learning curve into --out."""
    from pathlib import Path

    from subgen.pipelines import train as driver
    from subgen.errors import BadInput

    if rules is not None and not Path(rules).is_file():
        raise BadInput(f"no such rule file: {rules}")
    settings = dict(model=model, size=size, rules=rules, unverified=unverified, cost=cost,
                    max_steps=max_steps, max_candidates=max_candidates,
                    candidate_order=candidate_order, seed=seed, executor=executor,
                    num_envs=num_envs, ray_address=ray_address)
    if as_json:
        summary = driver.train(agent, out, steps, resume=resume, **settings)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), transient=True) as bar:
            task = bar.add_task(f"{agent} on {model} (real env steps)", total=steps)
            summary = driver.train(agent, out, steps, resume=resume,
                                   on_progress=lambda done, total: bar.update(task, completed=done),
                                   **settings)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{agent}: {summary['real_steps']} real steps, best cost "
                   f"{summary['best_cost']:.4f} ms, {summary['seconds']:.1f}s -> {summary['out']}")
