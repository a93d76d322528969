"""Worker processes that never outlive their driver.

A pool's workers are separate processes: when the driver is killed outright (SIGKILL, the OOM
killer) nothing tells them, and each went on holding its memory (2.8 GB at depth 4).  Every
worker therefore runs `die_with_parent` when it starts (the pools' `initializer`):
- on Linux the kernel kills it when its parent dies (`prctl(PR_SET_PDEATHSIG, SIGKILL)`);
- everywhere, a daemon thread checks every half second that its parent is still the one it was
  started by (an orphan is re-parented) and ends the process if not.
Workers ignore Ctrl-C: the driver handles it and ends them at once (`kill_workers`).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_S = 0.5


def die_with_parent() -> None:
    # Ctrl-C goes to the whole process group; the driver alone answers it (one line, exit 130)
    # and ends its workers: a worker's own KeyboardInterrupt would print its traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass                      # the watchdog below still covers it
    if os.getppid() != parent:        # the parent died before prctl took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(POLL_S)
            if os.getppid() != parent:
                os._exit(1)
    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def kill_workers(pool) -> None:
    """End a `concurrent.futures.ProcessPoolExecutor`'s workers now (on Ctrl-C or an error in
    the driver), instead of waiting for the tasks they are running."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)
