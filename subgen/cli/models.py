"""`subgen models`: the zoo's models with their node counts."""
from __future__ import annotations

import json

import click


@click.command()
@click.option("--size", default="full", show_default=True,
              type=click.Choice(["full", "small", "tiny"]), help="which variant to build")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def models(size: str, as_json: bool):
    """List the model zoo: operator, weight and input counts of each model."""
    from envcore.zoo import ZOO, build

    rows = []
    for name in ZOO:
        g = build(name, size)
        kinds = [n.op for n in g.nodes.values()]
        rows.append({"model": name, "ops": g.num_ops, "nodes": len(g.nodes),
                     "weights": kinds.count("weight"), "inputs": kinds.count("input"),
                     "output_shape": list(g.shape(g.outputs[0]))})
    if as_json:
        click.echo(json.dumps({"size": size, "models": rows}))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"subgen model zoo ({size})")
    for col in ("model", "ops", "nodes", "weights", "inputs", "output shape"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(r["model"], str(r["ops"]), str(r["nodes"]), str(r["weights"]),
                      str(r["inputs"]), "x".join(map(str, r["output_shape"])))
    Console().print(table)
