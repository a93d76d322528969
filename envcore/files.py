"""Files written whole: a temporary file with a unique name beside the target (`tempfile`: never
a name of the user's own), renamed over the target when complete.  On any failure (disk full,
permission; torch reports a full disk as RuntimeError) the temporary file is removed, the old
target is left as it was, and an OSError carries one line.  Shared by subgen (rule files,
reports, metrics) and agents (checkpoints)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp_path)` fills a temporary file beside `path`, which then replaces `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)        # mkstemp's 0600 is for the temporary name only
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, NotImplementedError):
            reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
            raise OSError(f"could not write {path}: {reason}") from None
        raise
    return path
