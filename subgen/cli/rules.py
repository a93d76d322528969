"""`subgen rules show | export | compare`."""
from __future__ import annotations

import json

import click


@click.group()
def rules():
    """Inspect, export and compare rule sets."""


@rules.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("--status", type=click.Choice(["candidate", "proved", "refuted", "unknown",
                                            "malformed"]),
              default=None, help="only rules with this status")
@click.option("--limit", type=click.IntRange(0), default=50, show_default=True, help="rows to print (0: all)")
@click.option("--json", "as_json", is_flag=True)
def show(db, status, limit, as_json):
    """A table of the rules in DB, with the sizes each proved rule holds at (its scope)."""
    from rich.console import Console
    from rich.table import Table

    from subgen.rules.db import RuleDB
    from verifier.scope import describe
    with RuleDB(db, create=False) as rdb:
        stored = rdb.rules(status)
        counts = rdb.counts()
    if as_json:
        click.echo(json.dumps({"counts": counts, "rules": [
            {"id": s.id, "name": s.rule.name, "status": s.status, "axioms": list(s.axioms),
             "src": s.rule.src.text(), "dst": s.rule.dst.text(),
             **({"scope": s.scope, "holds_at": {d: describe(sc) for d, sc in s.scope.items()}}
                if s.scope else {})} for s in stored]}))
        return
    t = Table(title=f"{db}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for c in ("id", "status", "source", "target", "holds at"):
        t.add_column(c)
    for s in stored[: limit or None]:
        t.add_row(str(s.id), s.status, s.rule.src.text(), s.rule.dst.text(),
                  describe(s.scope["forward"]) if s.scope else "")
    Console().print(t)
    if limit and len(stored) > limit:
        click.echo(f"... {len(stored) - limit} more (--limit 0 shows all)")


@rules.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["json", "taso-pb"]), required=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--status", default="proved", show_default=True,
              help="which rules to export ('all' for every status)")
def export(db, fmt, out, status):
    """Write DB's rules as JSON or as TASO's protobuf."""
    from subgen.outputs import usable_output
    from subgen.rules.io import is_rule_db, load_rules, save_json
    usable_output(out, "export")
    from envcore.rewrite.rule import Rule
    from subgen.rules.db import RuleDB
    from verifier.scope import describe
    if is_rule_db(db):
        with RuleDB(db, create=False) as rdb:
            # a proved rule's scope travels in its meta: the export states where it holds
            chosen = [Rule(s.rule.name, s.rule.src, s.rule.dst,
                           {**s.rule.meta, "scopes": s.scope,
                            "holds_at": {d: describe(sc) for d, sc in s.scope.items()}})
                      if s.scope else s.rule
                      for s in rdb.rules(None if status == "all" else status)]
    else:
        chosen = load_rules(db)
    if fmt == "json":
        save_json(chosen, out)
        click.echo(f"wrote {len(chosen)} rules to {out}")
        return
    from subgen.rules.taso_pb import write_rules
    n, skipped = write_rules(chosen, out)
    click.echo(f"wrote {n} rules to {out}"
               + (f"; {len(skipped)} cannot be expressed in TASO's format" if skipped else ""))


@rules.command()
@click.argument("ours", type=click.Path(dir_okay=False))
@click.argument("theirs", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.option("--list-missing", is_flag=True,
              help="print every rule not held (subsumed, derivable, then missing)")
def compare(ours, theirs, as_json, list_missing):
    """How many of THEIRS rules OURS covers: holds (up to input renaming and direction) or
    subsumes (one application of a more general rule of ours)."""
    from subgen.rules.compare import compare as run
    res = run(ours, theirs)
    if as_json:
        click.echo(json.dumps(res))
        return
    share = res["covered"] / max(res["theirs"], 1)
    click.echo(f"theirs {res['theirs']}  covered {res['covered']} ({share:.1%}) = "
               f"held {res['held']} + subsumed {res['subsumed']}  "
               f"derivable {res['derivable']}  missing {res['missing']}")
    click.echo("  held: the same rule up to input renaming and direction; subsumed: one "
               "application of a more general rule of ours (an instance, or in context); "
               "derivable: a chain of our proved rules")
    if list_missing:
        for m in res["subsumed_rules"] + res["derivable_rules"] + res["missing_rules"]:
            click.echo(f"  {m['name']}: {m['src']}  ==>  {m['dst']}   [{m['why']}]")
