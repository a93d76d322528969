"""The `subgen` command line.  Each command lives in its own module and is loaded on demand, so
`subgen generate` never imports torch."""
from __future__ import annotations

import importlib.util
import sqlite3
import sys

import click

from subgen.errors import BadInput

# command name -> "module:attribute"
COMMANDS = {
    "generate": "subgen.cli.generate:generate",
    "verify": "subgen.cli.verify:verify",
    "rules": "subgen.cli.rules:rules",
    "models": "subgen.cli.models:models",
    "optimize": "subgen.cli.optimize:optimize",
    "agents": "subgen.cli.agents:agents",
    "train": "subgen.cli.train:train",
    "run": "subgen.cli.run:run",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(n for n, target in COMMANDS.items() if _available(target))

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None or not _available(target):
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


def _available(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(cls=LazyGroup)
def cli():
    """subgen: generate, prove and apply graph substitutions."""


def _interrupted():
    """One line and exit 130, at once.  Everything committed is on disk (SQLite transactions,
    atomic renames, each `finally` already run while the interrupt unwound) and the workers are
    gone, so the interpreter's own shutdown has nothing left to do for the user, and it can take
    seconds: freeing tens of thousands of rule and graph objects, or blocking on a process
    pool's queue feeder whose killed workers no longer read its pipe.  So the exit is direct;
    the multiprocessing resource tracker, which would only warn about the pool's semaphores,
    goes with it."""
    import os
    import signal
    click.echo("interrupted; committed work is kept, rerun to resume", err=True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        from multiprocessing import resource_tracker
        pid = getattr(resource_tracker._resource_tracker, "_pid", None)
        if pid:
            os.kill(pid, signal.SIGKILL)
    except (ImportError, OSError, AttributeError):
        pass
    os._exit(130)


# the optional packages (imported lazily, where they are needed) and the extra that brings each
EXTRAS = {"torch": "torch", "torch_geometric": "gnn", "gymnasium": "env", "onnx": "onnx",
          "onnxruntime": "onnx", "cupy": "cupy", "ray": "ray", "matplotlib": "plot"}


def main(argv=None):
    from envcore.cost import CostModelUnavailable
    from envcore.onnx.importer import OnnxError
    from envcore.ops import ShapeError
    from envcore.rewrite.rule import MalformedRule
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        _interrupted()
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(2)
    except (BadInput, ShapeError, MalformedRule, OnnxError, CostModelUnavailable,
            sqlite3.DatabaseError, FileNotFoundError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        click.echo(f"error: {msg}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except ModuleNotFoundError as e:    # an optional extra this command needs is not installed
        root = (e.name or "").split(".")[0]
        if root not in EXTRAS:
            raise
        click.echo(f"error: this needs {root}: pip install 'subgen[{EXTRAS[root]}]'", err=True)
        sys.exit(2)
    except Exception as e:      # a failure while writing (disk full, permission): one line
        import ctypes
        if isinstance(e, ctypes.ArgumentError) and "KeyboardInterrupt" in str(e):
            _interrupted()      # Ctrl-C landed while ctypes converted an argument for Z3
        from subgen.outputs import WriteFailed
        if isinstance(e, (WriteFailed, OSError)):
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            click.echo(f"error: {msg}", err=True)
            sys.exit(1)
        raise
    except SystemExit:
        raise
    sys.exit(0)
