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

`--cost ort`: the onnxruntime cost model against what onnxruntime runs.  The same kind of graph
sample; predicted = OrtCostModel.graph_cost (each op signature a one-operator session, net of a
call's fixed overhead), measured = each graph exported to ONNX (`to_onnx`, with the seeded
fan-in-scaled weights `subgen optimize` writes) and timed end to end as the judge times it
(`subgen.pipelines.judge.time_interleaved`: CPU EP, ORT_ENABLE_ALL, one thread, wall clock, per
round the fastest of `repeats` runs, the median over rounds), all graphs of one model in one
interleaving, beside an A/A control (the model's own graph again, in a session of its own).
Reported: Spearman of the ort, analytic (cpu, v100) and torch models' predictions against that
time, overall and mean within-model; predicted/measured per model; the control's ratio spread;
per model, where the original graph's time goes (onnxruntime's profile by op type, next to the
ort model's price by IR op).  Writes benchmarks/results/cost_fidelity_ort.{md,json}.

    python benchmarks/bench_cost_fidelity.py --cost ort [--graphs-per-model 7] [--size small]
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


# ----------------------------------------------------------------------------------------------
# --cost ort: the onnxruntime cost model against end-to-end onnxruntime time


def _exported(graphs: list):
    """The graphs as the ONNX models `subgen optimize` writes (`optimize.onnx_models`): the first
    one's seeded, fan-in scaled weights for all, the others under its interface; and its feeds."""
    from envcore.onnx.exporter import to_onnx
    from subgen.pipelines.optimize import (check_values, conform_signature, draw_input,
                                           onnx_input_specs)
    start = graphs[0]
    weights = {k: np.asarray(v, np.float32) for k, v in check_values(start, 0).items()
               if k in start.leaves("weight")}
    reference = to_onnx(start, weights)
    models = [reference]
    for g in graphs[1:]:
        m = to_onnx(g, weights)
        conform_signature(m, reference)
        models.append(m)
    feeds = {name: draw_input(dims, 0, 1.0, (dtype, high))
             for name, (dtype, high, dims) in onnx_input_specs(reference).items()}
    return models, weights, feeds


def _ort_profile(model, feeds, runs: int = 50) -> tuple[dict, dict]:
    """Where one end-to-end run's time goes in onnxruntime, for the report only: ({op type of the
    optimized graph: kernel us per run}, {op type: node count}), one thread, ORT_ENABLE_ALL."""
    import json
    import os
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "prof")
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        for _ in range(5):
            sess.run(None, feeds)
        path = sess.end_profiling()         # the warm-up runs' profile: discarded
        so.enable_profiling = True
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        sess.run(None, feeds)
        for _ in range(runs):
            sess.run(None, feeds)
        path = sess.end_profiling()
        events = json.loads(Path(path).read_text())
    by_node: dict[str, list[float]] = {}
    kinds: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            by_node.setdefault(node, []).append(float(e["dur"]))
            kinds[node] = e.get("args", {}).get("op_name", "?")
    us: dict[str, float] = {}
    count: dict[str, int] = {}
    for node, durs in by_node.items():      # the median over runs, per node (the first run of
        k = kinds[node]                     # the second session is in the list: medians ignore it)
        us[k] = us.get(k, 0.0) + statistics.median(durs)
        count[k] = count.get(k, 0) + 1
    return us, count


def _by_op(cm, g) -> dict[str, float]:
    """The ort model's price of `g` by IR op (ms); nodes that fold left out."""
    from envcore.cost.fold import folded_nodes
    folded = folded_nodes(g)
    out: dict[str, float] = {}
    for i, n in g.nodes.items():
        if i not in folded:
            c = cm.node_cost(g, n)
            if c:
                out[n.op] = out.get(n.op, 0.0) + c
    return out


def _absorbed_bias_ms(cm, g, weights) -> float:
    """What the ort model charges for the bias_adds the exporter writes inside their Conv or
    Gemm (`_Writer._absorbed`): onnxruntime never runs those as nodes of their own."""
    from envcore.cost.fold import folded_nodes
    from envcore.onnx.exporter import _Writer
    folded = folded_nodes(g)
    return sum(cm.node_cost(g, g.nodes[i]) for i in _Writer(g, weights)._absorbed().values()
               if i not in folded)


def _spread(xs) -> dict:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1],
            "q1": xs[len(xs) // 4], "q3": xs[(3 * len(xs)) // 4]}


def run_ort(graphs_per_model: int = 7, size: str = "small", seed: int = 0, rounds: int = 30,
            repeats: int = 50, min_seconds: float = 3.0, max_seconds: float = 60.0,
            with_torch: bool = True, models: list | None = None, progress: bool = True) -> dict:
    import os
    import platform
    import time

    import onnxruntime
    from envcore.cost.measured import cpu_name
    from subgen.pipelines.judge import time_interleaved
    started, load0 = time.perf_counter(), os.getloadavg()
    rules = load_rules()
    models = models or MODELS
    rows, per_model = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        ort_cm = get_cost_model("ort", cache_path=Path(tmp) / "costs.db", threads=1)
        torch_cm = get_cost_model("torch", cache_path=Path(tmp) / "costs.db", threads=1) \
            if with_torch else None
        analytic = get_cost_model("analytic", profile="cpu")
        v100 = get_cost_model("analytic", profile="v100")
        for k, model in enumerate(MODELS):
            if model not in models:
                continue
            t0 = time.perf_counter()
            graphs = rewritten_graphs(model, size, rules, graphs_per_model, seed + k)
            onnx_models, weights, feeds = _exported(graphs)
            preds = [{"ort": ort_cm.graph_cost(g), "analytic": analytic.graph_cost(g),
                      "analytic_v100": v100.graph_cost(g),
                      "torch": torch_cm.graph_cost(g) if torch_cm else float("nan"),
                      "ort_absorbed_bias": _absorbed_bias_ms(ort_cm, g, weights),
                      "ort_by_op": _by_op(ort_cm, g)} for g in graphs]
            t1 = time.perf_counter()
            sessions = {f"g{i}": m for i, m in enumerate(onnx_models)}
            sessions["control"] = onnx_models[0]
            times = time_interleaved(sessions, feeds, rounds=rounds, repeats=repeats,
                                     min_seconds=min_seconds, max_seconds=max_seconds, threads=1)
            t2 = time.perf_counter()
            meas = [statistics.median(times[f"g{i}"]) for i in range(len(graphs))]
            control = statistics.median(times["control"])
            per_round = [c / o for o, c in zip(times["g0"], times["control"])]
            prof_us, prof_count = _ort_profile(onnx_models[0], feeds)
            for i, (g, m, p) in enumerate(zip(graphs, onnx_models, preds)):
                rows.append({"model": model, "graph": i, "ops": g.num_ops,
                             "onnx_nodes": len(m.graph.node), "measured": meas[i],
                             "measured_rounds": times[f"g{i}"], **p})
            mine = [r for r in rows if r["model"] == model]
            per_model[model] = {
                "graphs": len(graphs), "rounds": len(times["g0"]),
                "spearman_ort": spearman([r["ort"] for r in mine], meas),
                "spearman_analytic": spearman([r["analytic"] for r in mine], meas),
                "spearman_analytic_v100": spearman([r["analytic_v100"] for r in mine], meas),
                "spearman_torch": spearman([r["torch"] for r in mine], meas),
                "ratio_ort": _spread([r["ort"] / r["measured"] for r in mine]),
                "ratio_ort_less_absorbed_bias": _spread(
                    [(r["ort"] - r["ort_absorbed_bias"]) / r["measured"] for r in mine]),
                "ratio_torch": _spread([r["torch"] / r["measured"] for r in mine]),
                "measured_spread": max(meas) / min(meas),
                "aa_control_over_original": control / meas[0],
                "aa_per_round": _spread(per_round),
                "profile_us_by_op_type": prof_us, "profile_nodes_by_op_type": prof_count,
                "profile_kernel_ms": sum(prof_us.values()) / 1e3,
                "seconds_pricing": t1 - t0, "seconds_timing": t2 - t1,
            }
            if progress:
                pm = per_model[model]
                print(f"[{time.perf_counter() - started:6.0f}s] {model}: {len(graphs)} graphs, "
                      f"{pm['rounds']} rounds, rho ort {pm['spearman_ort']:.2f}, ort/meas "
                      f"{pm['ratio_ort']['median']:.2f}, A/A {pm['aa_control_over_original']:.3f}"
                      f" (pricing {t1 - t0:.0f}s, timing {t2 - t1:.0f}s)",
                      file=sys.stderr, flush=True)
    meas = [r["measured"] for r in rows]

    def overall(key):
        return spearman([r[key] for r in rows], meas)

    def within(key):
        ws = [pm[f"spearman_{key}"] for pm in per_model.values()]
        ws = [w for w in ws if w == w]
        return statistics.mean(ws) if ws else float("nan")
    keys = ["ort", "analytic", "analytic_v100"] + (["torch"] if with_torch else [])
    aa = [pm["aa_control_over_original"] for pm in per_model.values()]
    return {
        "cost": "ort", "graphs": len(rows), "rules": len(rules), "size": size,
        "models": list(per_model),
        "spearman": {k: overall(k) for k in keys},
        "mean_within_model_spearman": {k: within(k) for k in keys},
        "ratio_ort_overall": _spread([r["ort"] / r["measured"] for r in rows]),
        "ratio_torch_overall": _spread([r["torch"] / r["measured"] for r in rows])
        if with_torch else None,
        "aa_control_over_original": _spread(aa),
        "aa_worst_deviation": max(abs(a - 1) for a in aa),
        "per_model": per_model, "rows": rows,
        "settings": {"graphs_per_model": graphs_per_model, "seed": seed, "rounds": rounds,
                     "repeats": repeats, "min_seconds": min_seconds, "max_seconds": max_seconds,
                     "threads": 1, "clock": "wall (perf_counter), as the judge"},
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_name(), "gpu": "none",
                    "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
                    "load_avg_start": load0, "load_avg_end": os.getloadavg()},
        "seconds": time.perf_counter() - started,
    }


def _no_nan(x):
    """JSON without NaN: an undefined correlation (a constant ranking) is null."""
    if isinstance(x, float):
        return None if x != x else x
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_no_nan(v) for v in x]
    return x


def report_ort(res: dict) -> str:
    mc = res["machine"]
    sp, wi = res["spearman"], res["mean_within_model_spearman"]
    names = {"ort": "ort (per-op onnxruntime)", "analytic": "analytic cpu",
             "analytic_v100": "analytic v100", "torch": "torch (per-op torch)"}
    r, aa = res["ratio_ort_overall"], res["aa_control_over_original"]
    lines = [
        "# Cost fidelity: `--cost ort` against end-to-end onnxruntime time", "",
        f"Machine: {mc['cpus']}-core VM, {mc['cpu']}, no GPU, Python {mc['python']}, "
        f"onnxruntime {mc['onnxruntime']} (CPU EP, ORT_ENABLE_ALL, 1 thread); load average "
        f"{mc['load_avg_start'][0]:.1f} at the start, {mc['load_avg_end'][0]:.1f} at the end "
        "(the machine is shared).", "",
        f"{res['graphs']} graphs: each of the {len(res['models'])} {res['size']} zoo models and "
        f"random rewrite walks over it ({res['rules']} rules), "
        f"{res['settings']['graphs_per_model']} per model.  Measured: the graph exported to ONNX "
        "and run end to end as the judge runs it (`judge.time_interleaved`, wall clock; per "
        f"round the fastest of {res['settings']['repeats']} runs, the median over "
        f">= {res['settings']['rounds']} rounds; a model's graphs in one interleaving, with an "
        "A/A control: its original graph again in a session of its own).  Fresh cost caches; "
        f"run time {res['seconds'] / 60:.1f} min.", "",
        "## Summary", "",
        "| predictor vs ORT end-to-end time | Spearman, all graphs | mean within-model Spearman |",
        "|---|---:|---:|"]
    for k in sp:
        lines.append(f"| {names[k]} | {sp[k]:.3f} | {wi[k]:.3f} |")
    lines += [
        "",
        f"- ort predicted / measured: median {r['median']:.2f}, range {r['min']:.2f}-"
        f"{r['max']:.2f} (quartiles {r['q1']:.2f}-{r['q3']:.2f})"]
    if res.get("ratio_torch_overall"):
        t = res["ratio_torch_overall"]
        lines.append(f"- torch predicted / ORT measured: median {t['median']:.2f}, range "
                     f"{t['min']:.2f}-{t['max']:.2f}")
    lines += [
        f"- A/A (control / original, medians over rounds, per model): median {aa['median']:.3f},"
        f" range {aa['min']:.3f}-{aa['max']:.3f}; worst |deviation| "
        f"{res['aa_worst_deviation']:.1%}", "",
        "## Per model", "",
        "| model | graphs | rounds | meas ms (orig) | meas max/min | A/A ratio (round IQR) "
        "| rho ort | rho analytic | rho torch | ort/meas median (range) "
        "| ort/meas, absorbed bias_add free | torch/meas median |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|---:|"]
    for m, pm in res["per_model"].items():
        rows = [x for x in res["rows"] if x["model"] == m]
        ro, rb, pr = pm["ratio_ort"], pm["ratio_ort_less_absorbed_bias"], pm["aa_per_round"]
        lines.append(
            f"| {m} | {pm['graphs']} | {pm['rounds']} | {rows[0]['measured']:.3f} "
            f"| {pm['measured_spread']:.2f} | {pm['aa_control_over_original']:.3f} "
            f"({pr['q1']:.2f}-{pr['q3']:.2f}) | {pm['spearman_ort']:.2f} "
            f"| {pm['spearman_analytic']:.2f} | {pm['spearman_torch']:.2f} "
            f"| {ro['median']:.2f} ({ro['min']:.2f}-{ro['max']:.2f}) "
            f"| {rb['median']:.2f} ({rb['min']:.2f}-{rb['max']:.2f}) "
            f"| {pm['ratio_torch']['median']:.2f} |")
    lines += ["", "## Graphs", "",
              "| model | graph | IR ops | ONNX nodes | ort pred ms | ORT meas ms | ort/meas "
              "| analytic ms | torch ms |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in res["rows"]:
        lines.append(f"| {x['model']} | {x['graph']} | {x['ops']} | {x['onnx_nodes']} "
                     f"| {x['ort']:.3f} | {x['measured']:.3f} | {x['ort'] / x['measured']:.2f} "
                     f"| {x['analytic']:.3f} | {x['torch']:.3f} |")
    lines += ["", "## Where the time goes (each model's original graph)", "",
              "onnxruntime's profile of the optimized session (median kernel time per run, by "
              "the op types it actually runs after its fusions, with how many nodes of each) "
              "next to the ort model's price by IR op, each as shares of its own total.  "
              "Profiling adds its own per-node cost, so the profile's total is not the "
              "end-to-end time; its shares are what to compare.", "",
              "| model | ONNX nodes | ORT nodes run | ORT meas ms | ort pred ms "
              "| ORT profile: share of kernel time | ort model: share of its price |",
              "|---|---:|---:|---:|---:|---|---|"]
    for m, pm in res["per_model"].items():
        x = next(x for x in res["rows"] if x["model"] == m and x["graph"] == 0)
        total_us = sum(pm["profile_us_by_op_type"].values()) or 1.0
        prof = ", ".join(f"{k} {v / total_us:.0%} (x{pm['profile_nodes_by_op_type'][k]})"
                         for k, v in sorted(pm["profile_us_by_op_type"].items(),
                                            key=lambda kv: -kv[1])[:6])
        pred = ", ".join(f"{k} {v / x['ort']:.0%}" for k, v in
                         sorted(x["ort_by_op"].items(), key=lambda kv: -kv[1])[:6])
        lines.append(f"| {m} | {x['onnx_nodes']} | {sum(pm['profile_nodes_by_op_type'].values())}"
                     f" | {x['measured']:.3f} | {x['ort']:.3f} | {prof} | {pred} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cost", choices=("torch", "ort"), default="torch",
                    help="the cost model to check: torch (against torch end-to-end time, the "
                         "default) or ort (against onnxruntime end-to-end time)")
    ap.add_argument("--graphs-per-model", type=int, default=7)
    ap.add_argument("--size", default="small")
    ap.add_argument("--repeats", type=int, default=None,
                    help="torch: repeats per graph (15); ort: runs per round (50)")
    ap.add_argument("--rounds", type=int, default=30, help="ort: interleaved rounds (at least)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default=None, help="ort: a comma-separated subset")
    ap.add_argument("--no-torch", action="store_true", help="ort: skip the torch model")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" /
                                         "cost_fidelity_ort"),
                    help="ort: results path without suffix (.md and .json are written)")
    a = ap.parse_args()
    if a.cost == "torch":
        print(report(run(a.graphs_per_model, a.size, a.repeats or 15, a.seed)))
    else:
        import json
        res = run_ort(a.graphs_per_model, a.size, a.seed, a.rounds, a.repeats or 50,
                      with_torch=not a.no_torch,
                      models=a.models.split(",") if a.models else None)
        text = report_ort(res)
        Path(a.out + ".md").write_text(text)
        Path(a.out + ".json").write_text(json.dumps(_no_nan(res), indent=1) + "\n")
        print(text)
