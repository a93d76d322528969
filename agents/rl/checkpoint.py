"""Agent checkpoints written whole (`envcore.files.write_atomic`): a full disk leaves the old
checkpoint and no temporary file, and raises an OSError of one line."""
from __future__ import annotations

from pathlib import Path

from envcore.files import write_atomic


def save_atomic(obj, path: str | Path) -> None:
    import torch
    write_atomic(path, lambda tmp: torch.save(obj, tmp))
