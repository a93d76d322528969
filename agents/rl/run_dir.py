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


# A packed tensor: the flat positions where it differs, bit for bit, from its reference, and
# its values there.  `pack` uses it where it halves the size or better.
PACKED = "packed_tensor"
_SAME_SIZE_INT = {2: "int16", 4: "int32", 8: "int64"}


def pack(obj, reference=None):
    """`obj` (nested dicts and lists of tensors: state dicts, optimiser states) with each large
    float tensor stored as its differences from `reference` (the same structure, e.g. the seeded
    initial weights; zeros where it has nothing, as for optimiser moments).  Weights that
    training never touched (rows of rules a run never met) then cost nothing; `unpack` with the
    same reference restores every tensor bit for bit."""
    import torch
    if isinstance(obj, dict):
        ref = reference if isinstance(reference, dict) else {}
        return {k: pack(v, ref.get(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(pack(v) for v in obj)
    if not (torch.is_tensor(obj) and obj.is_floating_point() and obj.numel() >= 1024):
        return obj
    ref = reference if torch.is_tensor(reference) and reference.shape == obj.shape \
        and reference.dtype == obj.dtype else torch.zeros_like(obj)
    as_int = getattr(torch, _SAME_SIZE_INT[obj.element_size()])
    flat = obj.detach().contiguous().flatten()
    where = (flat.view(as_int) != ref.contiguous().flatten().view(as_int)).nonzero().flatten()
    if 3 * len(where) > obj.numel():          # index + value: no gain past a third
        return obj
    return {PACKED: True, "shape": tuple(obj.shape), "where": where.to(torch.int32),
            "values": flat[where].clone()}


def unpack(obj, reference=None):
    """The inverse of `pack` for the same reference."""
    import torch
    if isinstance(obj, dict) and obj.get(PACKED) is True:
        values = obj["values"]
        ref = reference if torch.is_tensor(reference) and tuple(reference.shape) == obj["shape"] \
            and reference.dtype == values.dtype else torch.zeros(obj["shape"], dtype=values.dtype)
        flat = ref.detach().clone().contiguous().flatten()
        flat[obj["where"].long()] = values
        return flat.view(obj["shape"])
    if isinstance(obj, dict):
        ref = reference if isinstance(reference, dict) else {}
        return {k: unpack(v, ref.get(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(unpack(v) for v in obj)
    return obj


def compressed(obj) -> bytes:
    """`obj` as torch.save would write it, zlib-compressed: for replay buffers, whose consecutive
    states share most of their features (a world-model run's 300 states: 10.8 MB -> 0.5 MB)."""
    import io
    import zlib

    import torch
    raw = io.BytesIO()
    torch.save(obj, raw)
    return zlib.compress(raw.getvalue(), 6)


def decompressed(blob: bytes):
    import io
    import zlib

    import torch
    return torch.load(io.BytesIO(zlib.decompress(blob)), weights_only=False)


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
