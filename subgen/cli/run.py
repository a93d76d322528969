"""`subgen run`: the main job of the README, end to end.

1. Generate and verify the default rule set (`subgen generate`, TASO's op set and then the real
   models' one, `--ops real`, into the same DB): from scratch when the rule DB
   is missing or holds no proved rules, resumed when an earlier run was interrupted, and only
   read back (its stage table printed, a second) when the DB holds that run finished, as the
   shipped `subgen/data/rules.db` does.  A DB of other rules (other settings, an import) is used as
   it is.
2. Optimize a zoo model at full size with TASO's search and print the result table, with the
   measured end-to-end speedup beside the predicted one (`--no-measure` skips that).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from subgen.errors import BadInput
from subgen.paths import DEFAULT_RULES

# nasrnn: on a CPU, the analytic model (cpu profile) predicts a real gain there and the measurement
# confirms it; the CNNs' gains are fusions that only a GPU cashes (`--device v100` prices those)
DEFAULT_MODEL = "nasrnn"


@click.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Zoo model to optimize.")
@click.option("--rules", "rules", type=click.Path(dir_okay=False), default=str(DEFAULT_RULES),
              show_default=True, help="Rule DB; generated and verified here if missing.")
@click.option("--agent", default="taso", show_default=True)
@click.option("--budget", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option("--cost", default="analytic", show_default=True,
              type=click.Choice(["analytic", "torch", "cupy", "ort"]))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also write the optimized graph (.onnx or .json).")
@click.option("--measure/--no-measure", default=None,
              help="Also time the original and the optimized graph end to end "
                   "[default: measure when torch is installed].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def run(model, rules, agent, budget, cost, out, measure, as_json):
    """Generate and verify the default rules if needed, then optimize a zoo model."""
    from subgen.cli.optimize import optimize as optimize_cmd

    db = Path(rules)
    proved, default_runs = _rule_db_state(db)
    if proved == 0 or default_runs:
        if not as_json and proved == 0:
            click.echo(f"no proved rules in {db}: generating and verifying the default rule set")
        for op_set in DEFAULT_OP_SETS:      # each resumes, or reads back a finished run
            generate(db, op_set, quiet=as_json)
        if _rule_db_state(db)[0] == 0:
            raise BadInput(f"`subgen generate` produced no proved rules in {db}")
    elif not as_json:
        click.echo(f"{db}: {proved} proved rules of other settings, used as they are")
    args = [model, "--rules", str(db), "--agent", agent, "--budget", str(budget), "--cost", cost]
    if out:
        args += ["--out", out]
    if measure is None:
        import importlib.util
        measure = importlib.util.find_spec("torch") is not None
    if measure:
        args.append("--measure")
    if as_json:
        args.append("--json")
    optimize_cmd.main(args=args, standalone_mode=False)


# the runs the default rule DB holds: TASO's operator set, then what real models carry
DEFAULT_OP_SETS = ("taso", "real")


def _rule_db_state(db: Path) -> tuple[int, bool]:
    """(proved rules, whether the DB holds a run of the default settings, finished or not)."""
    if not db.is_file():
        return 0, False
    from envcore.ops import OP_SETS
    from subgen.pipelines.generate import Settings
    from subgen.rules.db import RuleDB
    with RuleDB(db, create=False) as rules:
        return (int(rules.counts().get("proved", 0)),
                any(rules.run_stage(Settings(ops=OP_SETS[s]).key())[0] is not None
                    for s in DEFAULT_OP_SETS))


def generate(db: Path, op_set: str = "taso", quiet: bool = False) -> None:
    """Runs `subgen generate --out DB --ops OP_SET` in a child process (its own progress bar,
    its own memory); an interrupted run keeps its committed work and resumes next time."""
    db.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-c", "from subgen.cli import main; main()", "generate", "--out", str(db),
           "--ops", op_set, "--workers", str(max(1, min(8, os.cpu_count() or 1)))]
    if quiet:
        cmd.append("--json")
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL if quiet else None)
    if done.returncode == 130:
        raise KeyboardInterrupt
    if done.returncode != 0:
        raise BadInput(f"`subgen generate` failed (exit {done.returncode}); rerun to resume")

