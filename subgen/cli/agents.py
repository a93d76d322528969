"""`subgen agents`: the registered agents (built-in and from the `subgen.agents` entry points)."""
from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def agents(as_json):
    """List the agents `--agent` accepts."""
    from agents.base import BUILTIN, is_available, registry

    rows = [{"name": name, "target": target, "builtin": BUILTIN.get(name) == target,
             "available": is_available(target)} for name, target in sorted(registry().items())]
    if as_json:
        click.echo(json.dumps({"agents": rows}))
        return
    from rich.console import Console
    from rich.table import Table
    t = Table(title="agents")
    for col in ("name", "target", "source", "available"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r["target"], "built-in" if r["builtin"] else "entry point",
                  "yes" if r["available"] else "[dim]not installed[/dim]")
    Console().print(t)
