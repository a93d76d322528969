"""Files written whole: a temporary file with a unique name beside the target (`tempfile`: never
a name of the user's own), renamed over the target when complete.  On any failure (disk full,
permission; torch reports a full disk as RuntimeError) the temporary file is removed, the old
target is left as it was, and an OSError carries one line.  Shared by subgen (rule files,
reports, metrics) and agents (checkpoints).

A writer killed outright (SIGKILL, the OOM killer) cannot remove its temporary file.  Its name
carries the writer's pid, so the next write of the same target removes the temporary files of
writers that are no longer alive (a live writer's, another process writing the same target
at the same moment, is left alone)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp_path)` fills a temporary file beside `path`, which then replaces `path`."""
    path = Path(path)
    _remove_orphaned_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
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


def _remove_orphaned_temporaries(path: Path) -> None:
    prefix = f".{path.name}."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                os.unlink(path.parent / name)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:            # someone else's process: alive
        return True
    return True
