"""Where results are written: checked before the work, replaced whole, never left half-done.

- `usable_output(path)` runs before any long work: the folder is made if missing, and a file is
  created and removed in it, so a read-only or missing location is one line (exit 2) up front,
  not a traceback after the search.
- `write_atomic(path, write)` writes into a temporary file with a unique name in the target folder
  (`tempfile`: never a name of the user's own), then renames it over the target; on any failure
  (disk full, permission) the temporary file is removed, the old target is left as it was, and
  `WriteFailed` carries one line.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from subgen.errors import BadInput


class WriteFailed(OSError):
    """Writing a result failed (disk full, permission): one line, exit 1, nothing half-written."""


def usable_output(path: str | Path, what: str = "output") -> Path:
    path = Path(path)
    folder = path.parent if path.suffix or not path.is_dir() else path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".subgen-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BadInput(f"cannot write the {what} in {folder}: {e.strerror or e}") from None
    if path.is_dir() and path.suffix:
        raise BadInput(f"{path} is a folder, not a file")
    return path


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """`envcore.files.write_atomic`, its failure as `WriteFailed`."""
    from envcore.files import write_atomic as atomic
    try:
        return atomic(path, write)
    except OSError as e:
        if isinstance(e, WriteFailed):
            raise
        raise WriteFailed(str(e)) from None
