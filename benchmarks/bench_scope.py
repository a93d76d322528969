"""What scoped proofs cost the optimizer: the zoo under the shipped (scoped) rule DB against the
pre-scope DB, in the same run, interleaved model by model.

The pre-scope DB's proved rules are applied the old way (`unverified`: rank-generic matching,
first-fit shape resolution), which is what `optimize` did before.  A precondition stricter than the
truth would show here as a model that lost speedup.

    python benchmarks/bench_scope.py --old OLD.db [--models nasrnn,inception_v3] [--out F.md]

`git show b51fe71:subgen/data/rules.db > /tmp/old_rules.db` gives the last pre-scope DB.  Costs are
analytic(cpu), taso at budget 1000 (alpha 1.05), the README's setting.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(models, old_db: Path, budget: int = 1000) -> list[dict]:
    from subgen.pipelines.optimize import load_rule_set, optimize
    from subgen.paths import DEFAULT_RULES
    sets = {"scoped (shipped)": load_rule_set(DEFAULT_RULES),
            "pre-scope (old DB)": load_rule_set(old_db, unverified=True)}
    rows = []
    for model in models:
        for label, rules in sets.items():      # interleaved: one model, both rule sets
            t0 = time.perf_counter()
            res = optimize(model, rules=rules, agent="taso", budget=budget, device="cpu")
            rows.append({"model": model, "rules": label, "rule_count": len(rules),
                         "cost_before": res.cost_before, "cost_after": res.cost_after,
                         "speedup": res.cost_before / res.cost_after,
                         "rewrites": len(res.rewrites), "equivalent": res.equivalent,
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows) -> str:
    lines = ["| model | rules | rule directions | predicted speedup | rewrites | equivalent | search s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['rules']} | {r['rule_count']} | {r['speedup']:.3f}x "
                     f"| {r['rewrites']} | {r['equivalent']} | {r['seconds']} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, type=Path)
    ap.add_argument("--models", default="nasrnn,inception_v3")
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    rows = run(a.models.split(","), a.old, a.budget)
    text = table(rows)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
