"""`subgen optimize MODEL`: rewrite a model with proved rules under a cost model."""
from __future__ import annotations

import json
from pathlib import Path

import click

from subgen.errors import BadInput


@click.command()
@click.argument("model")
@click.option("--rules", "rules", type=click.Path(dir_okay=False), default=None,
              help="Rule DB (.db: proved rules only), .json or .pb (proved here first: only the "
                   "proved rules are used, each inside its scope).  Default: subgen/data/rules.db.")
@click.option("--unverified", is_flag=True,
              help="Apply the rules file as it is, without proving it (no scopes: a rule may "
                   "then be applied where its proof does not hold).")
@click.option("--agent", default="taso", show_default=True, help="A registered agent (`subgen agents`).")
@click.option("--budget", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Expansions the search may spend.")
@click.option("--cost", default="analytic", show_default=True,
              type=click.Choice(["analytic", "torch", "cupy", "ort"]), help="Cost model.")
@click.option("--device", type=click.Choice(["cpu", "v100"]), default=None,
              help="Device the analytic cost model describes: cpu (torch eager on this CPU, one "
                   "thread: what --measure times; the default) or v100 (TASO's GPU, where fusing "
                   "conv and relu saves a launch and a pass over memory).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the optimized graph to F.onnx or F.json.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--measure", is_flag=True,
              help="Also time original and optimized end to end, interleaved: in onnxruntime "
                   "(ORT_ENABLE_ALL, beside an A/A control; the original is kept unless the "
                   "result is faster beyond noise) and on the backend (CPU: one thread, its CPU "
                   "time; wall time is shown too).")
@click.option("--alpha", default=1.05, show_default=True, type=float,
              help="taso: keep candidates costing below alpha x best.")
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Checkpoint directory for a learned agent (ppo, worldmodel).")
@click.option("--model-size", "size", default="full", show_default=True,
              type=click.Choice(["full", "small", "tiny"]), help="Zoo model size.")
@click.option("--time-limit", type=click.FloatRange(min=0), default=None,
              help="Stop the search after this many seconds, whatever is left of the budget.")
@click.option("--seed", default=0, show_default=True, type=int)
def optimize(model, rules, unverified, agent, budget, cost, device, out, as_json, measure, alpha,
             checkpoint, size, time_limit, seed):
    """Optimize MODEL (a zoo name or an .onnx file) and check the result numerically.

    The check runs on every result, no rewrites included: per output, per element, against that
    output's own scale, on several input draws at magnitudes 1, 1e-2 and 1e2.  An .onnx --out is
    read back in onnxruntime and compared with the original (declared inputs and outputs too)
    before it is moved into place; --json's equivalent and max_abs_err then describe that file.

    Exit codes: 0 done; 2 unusable input; 3 the result is not equivalent to the original (one
    line on stderr; nothing is written).
    """
    import sys

    from subgen.pipelines import optimize as pipeline
    if out is not None and Path(out).suffix not in (".onnx", ".json"):
        raise BadInput(f"--out must end in .onnx or .json, got {Path(out).name}")
    if out is not None:
        from subgen.outputs import usable_output
        usable_output(out, "result")        # before the search, not after it
    with _progress(not as_json, budget) as on_step:
        res = pipeline.optimize(model, rules, agent=agent, budget=budget, cost=cost, alpha=alpha,
                                checkpoint=checkpoint, size=size, do_measure=measure, seed=seed,
                                time_limit=time_limit, on_step=on_step, device=device,
                                unverified=unverified)
    written, refusal = None, None
    if out is not None:
        try:
            written = pipeline.write_result(res, out, seed=seed)
        except pipeline.NotEquivalent as e:
            refusal = str(e)
    if as_json:
        click.echo(json.dumps(res.to_json()))
    else:
        print_result(res, written)
    if not res.equivalent:
        click.echo("error: " + (refusal or "the optimized graph differs from the original ("
                                + (res.check_failure or f"max abs err {res.max_abs_err:.3g}")
                                + ")"), err=True)
        sys.exit(3)


def print_result(res, written=None) -> None:
    from rich.console import Console
    from rich.table import Table

    cost = res.cost_model + (f" ({res.device})" if res.device else "")
    t = Table(title=f"{res.model}: {res.agent} search, {cost} cost")
    t.add_column("", style="bold")
    t.add_column("value", justify="right")
    t.add_row("cost before (ms)", f"{res.cost_before:.4f}")
    t.add_row("cost after (ms)", f"{res.cost_after:.4f}")
    t.add_row("predicted speedup", f"{res.speedup:.3f}x")
    if res.retimed:
        t.add_row("re-timed ops", f"{res.retimed} (search believed {res.search_cost_after:.4f} ms)")
    if res.fallback:
        t.add_row("kept the original", res.fallback)
    if res.measured:
        m = res.measured
        t.add_row("measured speedup", f"{m['measured_speedup']:.3f}x "
                  f"({m['ms_before']:.2f} -> {m['ms_after']:.2f} ms, {m.get('clock', 'wall')})")
        if m.get("clock") == "thread cpu":
            t.add_row("measured, wall clock", f"{m['measured_speedup_wall']:.3f}x "
                      f"({m['ms_before_wall']:.2f} -> {m['ms_after_wall']:.2f} ms)")
    if res.measure_skipped:
        t.add_row("measured speedup", f"not timed: {res.measure_skipped}")
    if res.judged:
        j = res.judged
        t.add_row("onnxruntime (the judge)",
                  f"{j['ort_speedup']:.3f}x ({j['ort_ms_original']:.3f} -> "
                  f"{j['ort_ms_result']:.3f} ms), A/A {j['ort_control_ratio']:.3f}, noise "
                  f"{100 * j['ort_noise']:.1f}%")
    t.add_row("operators", f"{res.original.num_ops} -> {res.graph.num_ops}")
    judged_away = (res.judged or {}).get("ort_kept") == "original" and not res.rewrites
    found = (res.judged or {}).get("ort_rewrites_judged", 0)
    t.add_row("rewrites", f"0 handed back ({found} found, judged not faster)"
              if judged_away and found else str(len(res.rewrites)))
    t.add_row("expansions", str(res.expansions))
    t.add_row("search time (s)", f"{res.seconds:.2f}")
    t.add_row("equivalent", ("yes" if res.equivalent else "[red]NO[/red]")
              + f" (max abs err {res.max_abs_err:.2g})")
    if written:
        t.add_row("written", str(written))
    console = Console()
    console.print(t)
    if res.rewrites:
        r = Table(title="rules applied")
        r.add_column("rule")
        r.add_column("times", justify="right")
        r.add_column("rewrite")
        for name, n in res.rule_counts.items():
            r.add_row(name, str(n), res.rule_texts.get(name, ""))
        console.print(r)


class _progress:
    """A rich progress bar over the expansion budget, started by the first expansion (so input
    errors print nothing but their one line); a no-op when quiet."""

    def __init__(self, show: bool, budget: int):
        self.show, self.budget, self.bar, self.task = show, budget, None, None

    def __enter__(self):
        return self.on_step if self.show else None

    def on_step(self, expansions: int, best: float) -> None:
        if self.bar is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            self.bar = Progress(TextColumn("search"), BarColumn(),
                                TextColumn("{task.completed}/{task.total} expansions"),
                                TextColumn("best {task.fields[best]}"), TimeElapsedColumn(),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("search", total=max(self.budget, 1), best="-")
        self.bar.update(self.task, completed=expansions, best=f"{best:.4f} ms")

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
