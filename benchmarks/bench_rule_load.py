"""Loading the rules to apply (`subgen.rules.load.load_rules_for_use`) with and without the
compiled index cached beside the DB (`subgen.rules.index`), each load in a fresh process, the
settings interleaved repetition by repetition so that a change of machine load hits them all.

    python benchmarks/bench_rule_load.py [--db RULES.db] [--reps 5] [--optimize]
                                         [--baseline TREE] [--out benchmarks/results/rule_load]

Settings:
- `off`: no index (`SUBGEN_RULE_INDEX=off`): the rules built from the DB's rows, every load;
- `cold`: the index removed first: built from the rows, and the index written;
- `warm`: read back from the index the previous load wrote;
- `baseline` (with `--baseline TREE`): the same load by another source tree, e.g. the commit
  before the index (`git archive <commit> | tar -x -C TREE`), put first on PYTHONPATH.
`--optimize` adds the end-to-end `subgen optimize toy --model-size tiny --agent greedy --json`
(wall time of the whole command) under `off`, `warm` and `baseline`.  The DB is a copy in a
temporary folder, so its index is this benchmark's own.  Figures: median (min-max) seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOAD = """
import json, sys, time
t0 = time.perf_counter()
from subgen.rules.load import load_rules_for_use
t1 = time.perf_counter()
rules = load_rules_for_use(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "rules": len(rules)}))
"""
OPTIMIZE = ["-c", "from subgen.cli import main; main()", "optimize", "toy", "--model-size", "tiny",
            "--agent", "greedy", "--json", "--rules"]


def _env(setting: str, baseline: Path | None, cache: Path) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("SUBGEN_RULE_INDEX", None)
    env.pop("PYTHONPATH", None)
    if setting == "off":
        env["SUBGEN_RULE_INDEX"] = "off"
    if setting == "baseline":
        env["PYTHONPATH"] = str(baseline)
    return env


def _index_of(db: Path) -> Path:
    return db.parent / f".{db.name}.idx"


def load_once(setting: str, db: Path, baseline: Path | None, cache: Path) -> dict:
    if setting == "cold":
        _index_of(db).unlink(missing_ok=True)
    out = subprocess.run([sys.executable, "-c", LOAD, str(db)], capture_output=True, text=True,
                         env=_env(setting, baseline, cache), cwd=tempfile.gettempdir(),
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def optimize_once(setting: str, db: Path, baseline: Path | None, cache: Path) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *OPTIMIZE, str(db)], capture_output=True, text=True,
                         env=_env(setting, baseline, cache), cwd=tempfile.gettempdir(),
                         check=True)
    wall = time.perf_counter() - t0
    res = json.loads(out.stdout)
    return {"wall_s": wall, "search_s": res["seconds"], "speedup": res["speedup"],
            "rewrites": res["rewrites"], "equivalent": res["equivalent"]}


def run(db: Path, reps: int, baseline: Path | None, optimize: bool) -> dict:
    settings = ["off", "cold", "warm"] + (["baseline"] if baseline else [])
    e2e = ["off", "warm"] + (["baseline"] if baseline else [])
    loads = {s: [] for s in settings}
    ends = {s: [] for s in e2e} if optimize else {}
    with tempfile.TemporaryDirectory() as tmp:
        copy, cache = Path(tmp) / db.name, Path(tmp) / "user-cache"
        shutil.copyfile(db, copy)
        load_once("cold", copy, baseline, cache)          # page cache and an index, untimed
        for rep in range(reps):
            for s in settings:                            # cold before warm: warm reads its index
                loads[s].append(load_once(s, copy, baseline, cache))
                print(json.dumps({"rep": rep, "setting": s, **loads[s][-1]}), flush=True)
            for s in ends:
                ends[s].append(optimize_once(s, copy, baseline, cache))
                print(json.dumps({"rep": rep, "optimize": s, **ends[s][-1]}), flush=True)
        size = _index_of(copy).stat().st_size
    return {"db": str(db), "db_bytes": db.stat().st_size, "index_bytes": size, "reps": reps,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                       f"{platform.python_version()}",
            "loads": loads, "optimize": ends}


def _fig(xs) -> str:
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"


def table(res: dict) -> str:
    lines = [f"DB {res['db']} ({res['db_bytes'] / 1e6:.1f} MB), index {res['index_bytes'] / 1e6:.1f}"
             f" MB; {res['reps']} repetitions, interleaved; {res['machine']}.", "",
             "| setting | rules | load s | import s |", "|---|---|---|---|"]
    for s, rows in res["loads"].items():
        lines.append(f"| {s} | {rows[0]['rules']} | {_fig([r['load_s'] for r in rows])} "
                     f"| {_fig([r['import_s'] for r in rows])} |")
    if res["optimize"]:
        lines += ["", "`subgen optimize toy --model-size tiny --agent greedy --json`:", "",
                  "| setting | wall s | search s | speedup | rewrites | equivalent |",
                  "|---|---|---|---|---|---|"]
        for s, rows in res["optimize"].items():
            lines.append(f"| {s} | {_fig([r['wall_s'] for r in rows])} "
                         f"| {_fig([r['search_s'] for r in rows])} | {rows[0]['speedup']:.3f} "
                         f"| {rows[0]['rewrites']} | {all(r['equivalent'] for r in rows)} |")
    return "\n".join(lines)


def main():
    from subgen.paths import DEFAULT_RULES
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, default=DEFAULT_RULES)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--optimize", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="writes OUT.md and OUT.json")
    a = ap.parse_args()
    res = run(a.db.resolve(), a.reps, a.baseline.resolve() if a.baseline else None, a.optimize)
    text = table(res)
    print(text)
    if a.out:
        a.out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
        a.out.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
