"""Agent checkpoints written whole: a temporary file with a unique name beside the target, then
renamed over it; on a failure (disk full: torch raises RuntimeError) the temporary file is
removed, the old checkpoint stays, and an OSError carries one line."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def save_atomic(obj, path: str | Path) -> None:
    import torch
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)         # mkstemp's 0600 is for the temporary name only
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, (OSError, RuntimeError)):
            reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
            raise OSError(f"could not write {path}: {reason}") from None
        raise
