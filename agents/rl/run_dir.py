"""The files of a training run, shared by the RL algorithms' outer loops:

    run/
      checkpoint.pt      everything a resume needs: nets, optimisers, RNG states, buffers, counters
      metrics.csv        one row per iteration: real env steps, wall time, episode cost, losses
      learning_curve.png best and episode cost against real env steps
      <agent>_agent.pt   the policy alone (`subgen optimize --checkpoint run/`)

Every file is written whole (`envcore.files.write_atomic`): a kill or a full disk leaves the
previous version and no temporary file.  The loop itself, when to write what, is in each
algorithm's file (agents/rl/ppo.py, agents/rl/worldmodel.py), as CleanRL keeps it.
"""
from __future__ import annotations

import csv
from pathlib import Path

from envcore.errors import BadInput
from envcore.files import write_atomic

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
CURVE = "learning_curve.png"
LEADING = ["iteration", "real_steps", "wall_s", "episode_cost", "best_cost", "cost_ratio", "loss"]


def save_atomic(obj, path: str | Path) -> None:
    """`torch.save`, whole or not at all."""
    import torch
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(out: Path) -> dict | None:
    """The run's checkpoint, or None when it has none yet."""
    path = Path(out) / CHECKPOINT
    if not path.exists():
        return None
    import torch
    try:
        return torch.load(path, weights_only=False)
    except Exception as e:
        raise BadInput(f"cannot read checkpoint {path}: {type(e).__name__}") from None


def read_metrics(out: Path) -> list[dict]:
    path = Path(out) / METRICS
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_metrics(out: Path, rows: list[dict]) -> None:
    keys = list(LEADING)
    for r in rows:
        keys += [k for k in r if k not in keys]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, restval="")
            w.writeheader()
            w.writerows(rows)
    write_atomic(Path(out) / METRICS, write)


def plot_curve(rows: list[dict], out: Path, title: str) -> None:
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
    write_atomic(Path(out) / CURVE, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
