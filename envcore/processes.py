"""Worker processes that never outlive their driver, and the one local process pool.

`LocalPool(workers)` is where local parallel work runs (the verifier's `verify_many`, subgen's
local executor):

    with LocalPool(2) as pool:
        for i, result in pool.map_unordered(fn, items):   # (index into items, fn(item)), as done
            ...
        results = pool.map(fn, items, chunksize=64)       # in order, once all are done

`fn` must be a module-level function (it travels by name) and items must pickle.  Items are
grouped into tasks of `chunksize`; a task's results come back together, so a caller that commits
each result loses at most the tasks in flight when it is killed.  `workers == 1` runs inline (no
processes, no start-up cost); more use a `spawn` process pool (Z3 and torch do not survive a
fork), where a dead worker raises BrokenProcessPool instead of hanging.  Leaving the `with` block
by an exception (Ctrl-C included) kills the workers at once instead of waiting for their tasks.

A pool's workers are separate processes: when the driver is killed outright (SIGKILL, the OOM
killer) nothing tells them, and each went on holding its memory (gigabytes at depth 4).  Every
worker therefore runs `die_with_parent` when it starts (the pools' `initializer`):
- on Linux the kernel kills it when its parent dies (`prctl(PR_SET_PDEATHSIG, SIGKILL)`);
- everywhere, a daemon thread checks every half second that its parent is still the one it was
  started by (an orphan is re-parented) and ends the process if not.
Workers ignore Ctrl-C: the driver handles it and ends them at once (`kill_workers`).  A worker
only learns to ignore it when its initializer runs, after a second or more of imports, so
workers are started with SIGINT blocked (`sigint_blocked_while_starting_workers`): a Ctrl-C then
cannot print a traceback from a worker that is still starting.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

PR_SET_PDEATHSIG = 1
POLL_S = 0.5


def die_with_parent(parent: int | None = None) -> None:
    """A worker's initializer.  `parent`: the driver's pid, passed by the driver (`initargs`):
    a spawned worker runs this only after its imports, and a driver killed during them has
    already been replaced by init as the parent, which the worker must not take for its own."""
    # Ctrl-C goes to the whole process group; the driver alone answers it (one line, exit 130)
    # and ends its workers: a worker's own KeyboardInterrupt would print its traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is None:
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


@contextmanager
def sigint_blocked_while_starting_workers():
    """Blocks SIGINT in the calling (main) thread while it starts processes: a child inherits
    the signal mask through fork and exec, so it starts deaf to Ctrl-C until its initializer
    ignores it for good.  The driver loses nothing: a Ctrl-C that came meanwhile is delivered
    when the block ends."""
    if not hasattr(signal, "pthread_sigmask") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def kill_workers(pool) -> None:
    """End a `concurrent.futures.ProcessPoolExecutor`'s workers now (on Ctrl-C or an error in
    the driver), instead of waiting for the tasks they are running."""
    processes = list(getattr(pool, "_processes", {}).values())
    # Cancel first and let the pool's manager thread drop the cancelled tasks (it clears the
    # flag when done): killed first, it would fail every task still listed, cancelled ones
    # included, and print an InvalidStateError traceback from its thread (CPython 3.11).
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + 0.2
    while getattr(pool, "_cancel_pending_futures", False) and time.monotonic() < deadline:
        time.sleep(0.002)
    for proc in processes:
        proc.kill()


# ----------------------------------------------------------------------------------------------
# the local pool

def chunks(items: list, size: int) -> list[tuple[int, list]]:
    """(start, items[start:start + size]) for each task of `size` items."""
    return [(start, items[start:start + size]) for start in range(0, len(items), size)]


def run_chunk(fn: Callable, start: int, chunk: list) -> list[tuple[int, Any]]:
    """A task's work: (index, fn(item)) for each item of one chunk."""
    return [(start + k, fn(item)) for k, item in enumerate(chunk)]


class OrderedMap:
    """`map` for anything with `map_unordered(fn, items, chunksize)` yielding (index, result)."""

    def map(self, fn: Callable, items: Iterable, chunksize: int = 1) -> list:
        """[fn(item) for item in items], computed by the workers."""
        items = list(items)
        out: list = [None] * len(items)
        for i, result in self.map_unordered(fn, items, chunksize):
            out[i] = result
        return out


class LocalPool(OrderedMap):
    """`workers` local processes (see the module doc); the pool starts with the first task
    and is kept for the next ones until `close`."""
    kind = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._pool = None

    def map_unordered(self, fn: Callable, items: Iterable, chunksize: int = 1
                      ) -> Iterator[tuple[int, Any]]:
        items = list(items)
        if self.workers == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                yield i, fn(item)
            return
        from concurrent.futures import as_completed
        pool = self._get_pool()
        with sigint_blocked_while_starting_workers():      # submit starts the workers
            futures = [pool.submit(run_chunk, fn, s, c) for s, c in chunks(items, chunksize)]
        try:
            for fut in as_completed(futures):
                yield from fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def submit(self, fn: Callable, *args):
        """One task on a worker, as a `concurrent.futures.Future`: for callers that stream their
        work instead of mapping over a list."""
        pool = self._get_pool()
        with sigint_blocked_while_starting_workers():
            return pool.submit(fn, *args)

    def _get_pool(self):
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            with sigint_blocked_while_starting_workers():
                self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                                 initializer=die_with_parent,
                                                 initargs=(os.getpid(),))
        return self._pool

    def close(self, now: bool = False) -> None:
        """Shut the pool down; `now` (Ctrl-C, an error) kills its workers instead of waiting."""
        if self._pool is not None:
            if now:
                kill_workers(self._pool)
            else:
                self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(now=exc_type is not None)


# ----------------------------------------------------------------------------------------------
# processes we do not start ourselves

# The watcher, run as `python -c WATCHER <driver pid>` in a session of its own.  It notes the
# driver's descendants every half second and, once the driver is gone, kills those still alive
# (a pid is taken as the same process only with the same start time, so a reused pid is spared).
WATCHER = r"""
import os, signal, sys, time
driver = int(sys.argv[1])

def table():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[int(name)] = (int(fields[1]), fields[19])     # ppid, start time
            except (OSError, IndexError, ValueError):
                pass
    return out

def started(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None

me, seen = started(driver), {}
while started(driver) == me and me is not None:
    procs = table()
    kids = {driver}
    grew = True
    while grew:
        new = {p for p, (pp, _) in procs.items() if pp in kids and p not in kids}
        kids |= new
        grew = bool(new)
    for p in kids - {driver, os.getpid()}:
        seen.setdefault(p, procs[p][1])
    time.sleep(0.5)
for pid, start in seen.items():
    if started(pid) == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def reap_descendants_after_exit() -> None:
    """Ends, once this process is gone however it ends (SIGKILL included), every process it
    started, directly or not, that is still alive.  For services started on our behalf whose
    own fate-sharing falls short (a local Ray's agents outlive their raylet); our own workers
    use `die_with_parent` instead.  Linux only (it reads /proc); a no-op elsewhere."""
    global _watcher
    if _watcher is not None or not os.path.isdir("/proc/self"):
        return
    import subprocess
    _watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(os.getpid())],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)


_watcher = None
