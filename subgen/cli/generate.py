"""`subgen generate`: find, prune, verify and store graph substitutions."""
from __future__ import annotations

import json
import sys

import click

from subgen.paths import DEFAULT_RULES


class RichProgress:
    """Stage-by-stage progress bars (to stderr, so --json's last line stays on stdout)."""

    def __init__(self, console):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)
        self.bar = Progress(TextColumn("{task.description:<28}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=console)
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self._close()
        self.bar.__exit__(*exc)

    def _close(self):
        if self.task is not None:
            t = self.bar.tasks[-1]
            self.bar.update(self.task, total=t.completed)

    def start(self, name, total=None):
        self._close()
        self.task = self.bar.add_task(name, total=total)

    def advance(self, n=1):
        self.bar.advance(self.task, n)


@click.command()
@click.option("--max-ops", type=int, default=3, show_default=True,
              help="largest number of operators on one side of a rule")
@click.option("--ops", default="taso", show_default=True,
              help="an operator set (taso: TASO's generator's; real: what real models carry, "
                   "bias, GELU, global pooling beside matmul and conv) or comma-separated "
                   "operator names")
@click.option("--out", type=click.Path(dir_okay=False), default=str(DEFAULT_RULES),
              show_default=True, help="the rule DB (SQLite) to write and resume from")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="processes (or Ray tasks) for enumeration shards and verification")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True)
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS",
              help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
@click.option("--no-verify", is_flag=True, help="store candidates without proving them")
@click.option("--timeout-ms", type=click.IntRange(1), default=2000, show_default=True,
              help="verifier time limit per rule (as in `subgen verify`)")
@click.option("--spellings", type=click.IntRange(0, 3), default=None,
              help="respellings (a+b beside b+a) of terms up to this many operators grow like "
                   "representatives [default: 2 up to --max-ops 3, 1 above]")
@click.option("--fresh", is_flag=True, help="discard whatever the DB holds first")
@click.option("--json", "as_json", is_flag=True, help="print one JSON summary as the last line")
def generate(max_ops, ops, out, workers, executor, ray_address, no_verify, timeout_ms, spellings,
             fresh, as_json):
    """Enumerate small graphs, pair equal ones, prune, verify, and store the rules."""
    from rich.console import Console

    from envcore.ops import OP_SETS
    from subgen.pipelines.generate import Settings, check_settings, generate as run

    names = OP_SETS.get(ops.strip()) or [o.strip() for o in ops.split(",") if o.strip()]
    names = check_settings(max_ops, names)
    from subgen.outputs import usable_output
    usable_output(out, "rule DB")        # a read-only or missing folder: one line, up front
    settings = Settings(max_ops=max_ops, ops=names, verify=not no_verify, timeout_ms=timeout_ms,
                        spellings=spellings)
    err = Console(stderr=True)
    with RichProgress(err) as progress:
        summary = run(settings, out, workers=workers, executor=executor, progress=progress,
                      fresh=fresh, ray_address=ray_address if executor == "ray" else None)
    d = summary.__dict__
    if as_json:
        click.echo(json.dumps(d))
        return
    from rich.table import Table
    t = Table(title=f"subgen generate --max-ops {max_ops} -> {out}")
    t.add_column("stage")
    t.add_column("in", justify="right")
    t.add_column("out", justify="right")
    for st in summary.stages:
        t.add_row(st["name"], str(st["in"]), str(st["out"]))
    Console().print(t)
    click.echo(f"rules (proved): {summary.rules}   refuted: {summary.refuted}   "
               f"unknown: {summary.unknown}   unverified: {summary.unverified}   "
               + ("(already done: read from the DB, nothing redone)" if summary.already_done
                  else f"seconds: {summary.seconds:.1f}" + ("   (resumed)" if summary.resumed
                                                           else "")))
    sys.stdout.flush()
