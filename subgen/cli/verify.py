"""`subgen verify RULES`: prove or refute every rule of a DB, JSON or TASO protobuf file.

For a .db the results go into the DB as each rule finishes, and rules that already hold a final
status are skipped, so a killed run resumes.  `--axioms` validates the axioms instead.

Every rule gets its own verdict: proved, refuted, unknown, or malformed (a JSON or .pb entry whose
sides cannot be typed or cannot agree in shape; its reason goes into the report), and one bad
rule does not stop the others.  A verdict depends on the rule only, not on the other rules, the
order, `--workers` or the machine's load (see `verifier.prove`).
Exit codes: 0 every rule proved (or every axiom valid), 1 any refuted/unknown/malformed (or an
axiom failed), 2 the file itself cannot be read (missing, not a rule file, corrupt).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from subgen.errors import BadInput

FINAL = ("proved", "refuted", "unknown")
COMMIT_S = 0.5         # a .db's results commit in one transaction per half second (`ResultBatch`)
AXIOM_LIMIT = 300      # --axioms default: a seeded sample of this many instances per axiom


def _progress(total: int, label: str, quiet: bool, detail: bool = False):
    """A rich bar on stderr; `detail`: the task's description (updated as it runs) after it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeElapsedColumn
    cols = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if detail:
        cols.append(TextColumn("{task.description}"))
    return Progress(*cols, console=Console(stderr=True), transient=True, disable=quiet)


def _write_json(path: str, obj) -> None:
    """Written whole, then renamed: a killed run never leaves half a report."""
    from subgen.outputs import write_atomic
    text = json.dumps(obj, indent=1, default=str)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def _scope_counts(results) -> dict:
    """How many proved rules hold at any size, under a precondition, or only as generated
    (their forward direction: the rule as written)."""
    out = {"general": 0, "precondition": 0, "pinned": 0}
    for res in results:
        sc = (res.scope or {}).get("forward") if res.status == "proved" else None
        if sc is None:
            continue
        out["pinned" if sc.get("pinned") else "precondition" if sc["requires"] else "general"] += 1
    return out


def _holds_at(res) -> dict:
    from verifier.scope import describe
    if res.status != "proved" or not res.scope:
        return {}
    return {"holds_at": {d: describe(sc) for d, sc in res.scope.items()}}


def _load(path: str, retry_unknown: bool):
    """(rules to verify, their DB ids or None, results already final, db or None).  For .json
    and .pb, entries that cannot be built come back as (position, name, RuleResult "malformed")
    in the third slot, and the rules are verified with the rest."""
    from subgen.rules.io import rule_format
    from verifier import RuleResult
    p = Path(path)
    if not p.exists():
        raise BadInput(f"no such file: {path}")
    if rule_format(p) is None:
        raise BadInput(f"{path}: expected a .db, .json or .pb rule file")
    if rule_format(p) == "db":
        from subgen.rules.db import RuleDB
        db = RuleDB(p, create=False)
        final = ("proved", "refuted") if retry_unknown else FINAL
        todo, done = [], []
        for sr in db.rules():
            # a row proved before scoped proofs (no scope) is proved again: its old proof held
            # only at the generated sizes
            if sr.status in final and not (sr.status == "proved" and not sr.scope):
                done.append((sr.rule.name, RuleResult(sr.status, tuple(sr.axioms),
                                                      sr.counterexample, sr.seconds or 0.0,
                                                      scope=sr.scope)))
            else:
                todo.append(sr)
        return [s.rule for s in todo], [s.id for s in todo], done, db
    from subgen.rules.io import MalformedEntry, load_rules_tolerant
    from verifier.batch import malformed
    try:
        entries = load_rules_tolerant(p)
    except (ValueError, KeyError, TypeError, IndexError) as e:   # unreadable content
        raise BadInput(f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
            from None
    rules = [e for e in entries if not isinstance(e, MalformedEntry)]
    bad = [(k, e.name, malformed(e.reason)) for k, e in enumerate(entries)
           if isinstance(e, MalformedEntry)]
    return rules, None, bad, None


@click.command("verify")
@click.argument("rules", required=False, metavar="RULES")
@click.option("--timeout-ms", default=2000, show_default=True, type=click.IntRange(1),
              help="Z3 time limit per rule")
@click.option("--workers", default=None, type=click.IntRange(1),
              help="parallel worker processes [default: 1; with --axioms, every CPU]")
@click.option("--report", type=click.Path(dir_okay=False),
              help="write each rule's status, axioms used and counterexample (JSON)")
@click.option("--json", "as_json", is_flag=True, help="print a JSON summary as the last line")
@click.option("--axioms", "check_axioms", is_flag=True,
              help="validate the axioms against the operators' reference semantics instead")
@click.option("--max-dim", default=4, show_default=True, type=click.IntRange(1, 4),
              help="--axioms: largest tensor dimension")
@click.option("--limit", default=None, type=click.IntRange(0),
              help=f"--axioms: check a seeded sample of this many instances per axiom "
                   f"[default: {AXIOM_LIMIT}; 0: every instance]")
@click.option("--retry-unknown", is_flag=True, help=".db: verify 'unknown' rules again")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="where the workers run: local processes or a Ray cluster")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS",
              help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
def verify(rules, timeout_ms, workers, report, as_json, check_axioms, max_dim, limit,
           retry_unknown, executor, ray_address):
    """Prove each rule from the operator axioms (or refute it with a counterexample)."""
    if report:
        from subgen.outputs import usable_output
        usable_output(report, "report")     # before the proofs, not after them
    if check_axioms:
        shape_limit = 40 if limit is None else (limit or None)   # the shape axioms' sample
        limit = AXIOM_LIMIT if limit is None else (limit or None)
        return _axioms(timeout_ms, report, as_json, max_dim, limit, workers or os.cpu_count() or 1,
                       shape_limit)
    workers = workers or 1
    if rules is None:
        raise BadInput("missing RULES (a .db, .json or .pb file)")
    from subgen.faults import phase_started
    from verifier.batch import summary, verify_many
    t0 = time.perf_counter()
    phase_started("read")
    todo, ids, done, db = _load(rules, retry_unknown)
    pool = None
    if executor == "ray":   # --workers: tasks in flight at once on the cluster
        from subgen.pipelines.executors import make_executor
        pool = make_executor("ray", workers, ray_address)
    results = [None] * len(todo)
    from contextlib import nullcontext

    from subgen.rules.db import ResultBatch
    batched = ResultBatch(db, COMMIT_S) if db is not None else nullcontext()
    with _progress(len(todo), "verifying", as_json) as bar, batched as batch:
        task = bar.add_task("verify", total=len(todo))
        phase_started("verify")

        def on_result(i, res):
            results[i] = res
            if db is not None:
                batch.add((ids[i], res.status, res.axioms, res.counterexample, res.seconds,
                           res.scope))
            bar.advance(task)
        verify_many(todo, timeout_ms, workers, on_result, executor=pool)
    if db is None:       # a file: every entry in file order, the malformed ones in their place
        named = [(r.name, res) for r, res in zip(todo, results)]
        for k, name, res in done:
            named.insert(k, (name, res))
        skipped = 0
    else:
        named = done + [(r.name, res) for r, res in zip(todo, results)]
        skipped = len(done)
    out = summary([res for _, res in named], time.perf_counter() - t0)
    out["skipped_final"] = skipped
    out.update(_scope_counts(res for _, res in named))
    if report:
        phase_started("report")
        _write_json(report, {"summary": out, "rules": [
            {"name": n, **res.to_dict(), **_holds_at(res)} for n, res in named]})
    if as_json:
        click.echo(json.dumps(out))
    else:
        bad = f", {out['malformed']} malformed" if out["malformed"] else ""
        click.echo(f"{out['rules']} rules: {out['proved']} proved, {out['refuted']} refuted, "
                   f"{out['unknown']} unknown{bad} in {out['seconds']:.1f}s "
                   f"(median {out['median_s'] * 1000:.0f} ms, p95 {out['p95_s'] * 1000:.0f} ms)")
        click.echo(f"  proved: {out['general']} at any size, {out['precondition']} under a "
                   f"precondition" + (f", {out['pinned']} only at the generated sizes"
                                      if out["pinned"] else ""))
        for n, res in named:
            if res.status == "proved" and res.scope and res.scope["forward"]["requires"]:
                click.echo(f"  {n}: holds at {_holds_at(res)['holds_at']['forward']}")
        for n, res in named:
            if res.status == "malformed":
                click.echo(f"  malformed {n}: {res.info.get('reason', '')}", err=True)
    if out["proved"] != out["rules"]:
        sys.exit(1)


def _axioms(timeout_ms, report, as_json, max_dim, limit, workers, shape_limit=40):
    from verifier.axioms import AXIOMS
    from verifier.shapes import SHAPE_AXIOMS
    from verifier.validate import validate_all
    t0 = time.perf_counter()
    n_axioms = len(AXIOMS) + len(SHAPE_AXIOMS)
    with _progress(0, "validating axioms (jobs)", as_json, detail=True) as bar:
        task = bar.add_task("", total=None)
        finished = {"axioms": 0, "last": "", "said": time.monotonic()}
        plain = not as_json and not bar.console.is_terminal   # a log, not a terminal

        def on_axiom(rep):
            finished["axioms"] += 1
            finished["last"] = rep.name

        def on_job(done, total):
            bar.update(task, completed=done, total=total,
                       description=f"{finished['axioms']}/{n_axioms} axioms, "
                                   f"last {finished['last']}")
            if plain and time.monotonic() - finished["said"] >= 10:
                finished["said"] = time.monotonic()
                click.echo(f"validating axioms: {finished['axioms']}/{n_axioms} axioms, "
                           f"{done}/{total} jobs, {time.perf_counter() - t0:.0f}s", err=True)
        ops, shapes = validate_all(progress=on_axiom, on_job=on_job, workers=workers,
                                   max_dim=max_dim, limit=limit, timeout_ms=timeout_ms,
                                   shape_limit=shape_limit)
    reps = ops + shapes
    bad = [r for r in reps if not r.ok]
    out = {"axioms": len(reps), "valid": len(reps) - len(bad), "invalid": [r.name for r in bad],
           "redundant": [r.name for r in reps if r.redundant],
           "instances": sum(r.instances for r in reps),
           "symbolic": sum(r.symbolic for r in reps),
           "max_dim": max_dim, "limit": limit, "workers": workers,
           "seconds": round(time.perf_counter() - t0, 3)}
    if report:
        _write_json(report, {"summary": out, "axioms": [r.to_dict() for r in reps]})
    if not as_json:
        for r in reps:
            mark = "ok " if r.ok else "BAD"
            extra = " (redundant)" if r.redundant else ""
            click.echo(f"{mark} {r.name:28s} {r.instances:6d} numeric, {r.symbolic:2d} symbolic"
                       f"{extra}  {r.statement}")
            if not r.ok:
                click.echo(f"    counterexample: {json.dumps(r.counterexample)[:300]}")
    click.echo(json.dumps(out) if as_json else
               f"{out['valid']}/{out['axioms']} axioms valid in {out['seconds']:.1f}s")
    if bad:
        sys.exit(1)
