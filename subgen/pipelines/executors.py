"""Where parallel work runs: a local process pool or a Ray cluster, behind one small interface.

    with make_executor("ray", workers=8) as ex:
        for i, result in ex.map_unordered(fn, items):   # (index into items, fn(item)), as done
            ...
        results = ex.map(fn, items, chunksize=64)       # in order, once all are done

`fn` must be a module-level function (it travels by name) and items must pickle.  Items are
grouped into tasks of `chunksize`; a task's results come back together, so a caller that commits
each result loses at most the tasks in flight when it is killed.

Locally it is `envcore.processes.LocalPool` (`workers == 1` runs inline, more use a `spawn`
process pool whose workers die with their driver).  Ray: a task whose worker process dies (OOM,
a killed node, os._exit) is resubmitted up to `max_retries` times; an exception raised by `fn`
is a bug, not a failure of the machine, and propagates.  At most `workers` tasks are in flight,
so `workers` means the same thing on both executors.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from envcore.processes import LocalPool, OrderedMap, chunks, reap_descendants_after_exit, run_chunk
from subgen.errors import BadInput

KINDS = ("local", "ray")
RAY_MISSING = "ray is not installed: pip install 'subgen[ray]'"
SOCKET_PATH_LIMIT = 107   # AF_UNIX sun_path; Ray puts its sockets under the temp dir
RAY_SOCKET_SUFFIX = len("/session_2026-01-01_00-00-00_000000_1234567/sockets/plasma_store")


# the local executor is envcore's one process pool (shared with the verifier's `verify_many`)
LocalExecutor = LocalPool


def import_ray():
    """`ray`, with usage reporting off (it must be set before the import), or BadInput."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise BadInput(RAY_MISSING) from None
    return ray


def ray_temp_dir(run_dir: str | Path = "runs") -> Path:
    """`RUN_DIR/ray`, unless that path is too long for the Unix sockets Ray keeps under it."""
    path = (Path(run_dir) / "ray").resolve()
    if len(str(path)) + RAY_SOCKET_SUFFIX > SOCKET_PATH_LIMIT:
        path = Path(f"/tmp/subgen-ray-{os.getuid()}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def connect_ray(address: str | None = None, run_dir: str | Path = "runs",
                num_cpus: int | None = None):
    """Connects to the cluster at `address` (or $RAY_ADDRESS), or starts a local Ray with this
    machine's cores: no dashboard, no usage stats, worker logs kept out of our output, temp files
    under the run folder.  A Ray already initialised in this process is reused."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _probe(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            # Ray runs workers at nice 15, so on a busy machine they starve behind everything
            # else; ours do the work and should compete like the local pool's processes do
            os.environ.setdefault("RAY_worker_niceness", "0")
            # the local Ray is ours: it ends with this process, SIGKILL included (Ray's
            # dashboard and runtime-env agents outlive their raylet otherwise)
            reap_descendants_after_exit()
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                     log_to_driver=False, configure_logging=False,
                     _temp_dir=str(ray_temp_dir(run_dir)))
    except ConnectionError as e:
        raise BadInput(f"cannot reach the Ray cluster at {address}: {e}") from None
    return ray


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """BadInput at once when HOST:PORT does not answer (Ray itself retries for minutes)."""
    import socket
    hostport = address.split("://", 1)[-1]
    if ":" not in hostport:      # "auto", "local": Ray finds the cluster itself
        return
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot reach the Ray cluster at {address} "
                       f"({type(e).__name__}: {e})") from None


class RayExecutor(OrderedMap):
    kind = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None,
                 run_dir: str | Path = "runs", max_retries: int = 3):
        self.ray = connect_ray(address, run_dir)
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, int(workers or cpus))
        self._task = self.ray.remote(num_cpus=1, max_retries=max_retries,
                                     retry_exceptions=False)(run_chunk)

    def map_unordered(self, fn: Callable, items: Iterable, chunksize: int = 1
                      ) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        todo = chunks(list(items), chunksize)[::-1]
        fn_ref = ray.put(fn)
        in_flight: list = []
        try:
            while todo or in_flight:
                while todo and len(in_flight) < self.workers:
                    start, chunk = todo.pop()
                    in_flight.append(self._task.remote(fn_ref, start, chunk))
                done, in_flight = ray.wait(in_flight, num_returns=1)
                yield from ray.get(done[0])
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        """Leaves Ray running: starting it again costs seconds, and a cluster is not ours."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_executor(kind: str = "local", workers: int | None = 1, address: str | None = None,
                  run_dir: str | Path = "runs", max_retries: int = 3):
    """A LocalExecutor or a RayExecutor (see the module doc); BadInput for an unknown kind or a
    missing ray."""
    if kind == "local":
        if address:
            raise BadInput("--ray-address needs --executor ray")
        return LocalExecutor(workers or os.cpu_count() or 1)
    if kind == "ray":
        return RayExecutor(workers, address, run_dir, max_retries)
    raise BadInput(f"unknown executor {kind!r} (one of {', '.join(KINDS)})")


def shutdown_ray() -> None:
    """Stops a local Ray started by this process (or disconnects from a cluster)."""
    import sys
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
