"""Cost-model fidelity: does the torch cost model rank graphs the way measured time does?

Graphs: random rewrite walks (random lengths) over the small zoo variants, with the proved rules
of subgen/data/rules.db when present, else the hand-made rules of the test fixture.  For each distinct
graph: predicted = TorchCostModel.graph_cost (sum of per-op medians), measured = median
end-to-end torch time (`torch_exec.time_graph`, the fastest run), both on CPU with one thread,
in this same run and with a fresh cost cache.  Reported: the Spearman correlation over all graphs
(target >= 0.9), the mean within-model correlation, the analytic model's correlation (its cpu
profile, and its v100 profile) for comparison, and per-model node counts.

    pytest benchmarks/bench_cost_fidelity.py --benchmark-only -s
    python benchmarks/bench_cost_fidelity.py [--graphs-per-model 7] [--size small]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from envcore.cost import get_cost_model  # noqa: E402
from envcore.torch_exec import time_graph  # noqa: E402
from envcore.zoo import ZOO, build  # noqa: E402

MODELS = [m for m in ZOO if m != "toy"]


def load_rules():
    from rules_fixture import hand_rules, load_db_rules
    return load_db_rules() or hand_rules()


def spearman(a, b) -> float:
    def ranks(x):
        x = np.asarray(x, float)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):            # average ranks over ties
            r[x == v] = r[x == v].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def rewritten_graphs(model: str, size: str, rules, count: int, seed: int, max_steps: int = 40):
    """`count` distinct graphs: the model itself plus random walks of random lengths."""
    from envcore.rewrite.candidate_set import CandidateSet
    from envcore.rewrite.apply import RewriteError, apply
    rng = np.random.default_rng(seed)
    start = build(model, size)
    seen, out = {start.canonical_hash}, [start]
    attempts = 0
    while len(out) < count and attempts < 4 * count:
        attempts += 1
        g, cands = start, CandidateSet(rules, start)
        for _ in range(int(rng.integers(1, max_steps + 1))):
            options = cands.applicable()
            if not options:
                break
            m = options[int(rng.integers(len(options)))]
            try:
                new, created = apply(g, rules[m.rule_index], m)
            except RewriteError:
                continue
            g, cands = new, cands.advance(new, created)
        if g.canonical_hash not in seen:
            seen.add(g.canonical_hash)
            out.append(g)
    return out


def run(graphs_per_model: int = 7, size: str = "small", repeats: int = 15, seed: int = 0,
        progress: bool = True) -> dict:
    rules = load_rules()
    with tempfile.TemporaryDirectory() as tmp:
        torch_cm = get_cost_model("torch", cache_path=Path(tmp) / "costs.db", threads=1)
        analytic = get_cost_model("analytic", profile="cpu")
        v100 = get_cost_model("analytic", profile="v100")
        rows = []
        jobs = [(m, g) for k, m in enumerate(MODELS)
                for g in rewritten_graphs(m, size, rules, graphs_per_model, seed + k)]
        bar = None
        if progress:
            from rich.progress import Progress
            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task("timing graphs", total=len(jobs))
        try:
            for model, g in jobs:
                rows.append({"model": model, "ops": g.num_ops,
                             "predicted": torch_cm.graph_cost(g),
                             "analytic": analytic.graph_cost(g),
                             "analytic_v100": v100.graph_cost(g),
                             "measured": time_graph(g, repeats=repeats, threads=1, stat=min)})
                if bar:
                    bar.advance(task)
        finally:
            if bar:
                bar.stop()
    pred = [r["predicted"] for r in rows]
    meas = [r["measured"] for r in rows]
    within = [spearman([r["predicted"] for r in rows if r["model"] == m],
                       [r["measured"] for r in rows if r["model"] == m]) for m in MODELS]
    within = [w for w in within if w == w]
    return {
        "graphs": len(rows), "rules": len(rules), "size": size,
        "spearman": spearman(pred, meas),
        "spearman_analytic": spearman([r["analytic"] for r in rows], meas),
        "spearman_analytic_v100": spearman([r["analytic_v100"] for r in rows], meas),
        "mean_within_model_spearman": statistics.mean(within) if within else float("nan"),
        "predicted_over_measured_median": statistics.median(p / m for p, m in zip(pred, meas)),
        "rows": rows,
    }


def node_counts() -> dict:
    return {m: {s: (build(m, s).num_ops, len(build(m, s).nodes)) for s in ("full", "small")}
            for m in ZOO}


def report(res: dict) -> str:
    lines = [f"cost fidelity over {res['graphs']} graphs ({res['size']} zoo variants, "
             f"{res['rules']} rules):",
             f"  Spearman(torch predicted, measured)     = {res['spearman']:.3f}  (target >= 0.9)",
             f"  Spearman(analytic cpu, measured)        = {res['spearman_analytic']:.3f}",
             f"  Spearman(analytic v100, measured)       = {res['spearman_analytic_v100']:.3f}",
             f"  mean within-model Spearman (torch)      = {res['mean_within_model_spearman']:.3f}",
             f"  median predicted/measured               = "
             f"{res['predicted_over_measured_median']:.2f}",
             "", f"  {'model':<14}{'ops full':>9}{'nodes full':>11}{'ops small':>10}"
             f"{'graphs':>7}{'pred ms':>9}{'meas ms':>9}"]
    counts = node_counts()
    for m in MODELS:
        rs = [r for r in res["rows"] if r["model"] == m]
        (of, nf), (os_, _) = counts[m]["full"], counts[m]["small"]
        lines.append(f"  {m:<14}{of:>9}{nf:>11}{os_:>10}{len(rs):>7}"
                     f"{statistics.median(r['predicted'] for r in rs):>9.2f}"
                     f"{statistics.median(r['measured'] for r in rs):>9.2f}")
    return "\n".join(lines)


def test_cost_fidelity(benchmark):
    res = benchmark.pedantic(lambda: run(progress=False), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in res.items() if k != "rows"})
    print("\n" + report(res))
    assert res["graphs"] >= 50
    assert res["spearman"] >= 0.9


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs-per-model", type=int, default=7)
    ap.add_argument("--size", default="small")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(report(run(a.graphs_per_model, a.size, a.repeats, a.seed)))
