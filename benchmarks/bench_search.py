"""Search benchmark: what greedy, beam and TASO's backtracking search (budget 1000) gain on every
zoo model at full size, under the analytic and the torch cost model, and how long each takes;
the measured end-to-end speedup of the taso result beside its prediction; and onnxruntime with
all its graph optimizations (ORT_ENABLE_ALL) on the same model, the tool a user would otherwise
pick.

    python benchmarks/bench_search.py                 # writes benchmarks/results/search.md
    python benchmarks/bench_search.py --models squeezenet,nasrnn --costs analytic
    pytest benchmarks/bench_search.py --benchmark-only  # taso against greedy, one small model

Targets (issue 5): taso at budget 1000 within 60 s per model on 2 cores; measured speedup at
least 0.9x the predicted one wherever the prediction is above 1.1x.
Measured times are CPU (torch eager, 1 thread, float32), the fastest run over interleaved
rounds.  The analytic cost model uses its "cpu" device profile (--device v100 for TASO's GPU), so
that its predictions are about the machine --measure times.  Torch timings go to a fresh cost
cache in a temporary directory (--cache to reuse one), so every number is measured in this run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))

MODELS = ("squeezenet", "nasrnn", "resnet50", "resnext50", "inception_v3", "bert", "vit",
          "nasnet_a")
AGENTS = ("greedy", "beam", "taso")
# One thread for timing: on a shared 2-core machine a second OpenMP thread that spins while the
# other core is busy turns a 0.2 ms graph into 200 ms (measured), which would time the
# contention, not the graph.
THREADS = 1


def load_rules():
    from subgen.errors import BadInput
    from subgen.pipelines.optimize import load_rule_set
    from subgen.paths import DEFAULT_RULES
    try:
        rules = load_rule_set(DEFAULT_RULES)
        return f"subgen/data/rules.db ({len(rules)} rules: the proved ones and their reverses)", rules
    except BadInput:   # no rule DB yet: the hand-made rules still show the search at work
        pass
    from rules_fixture import hand_rules
    return "tests/rules_fixture.hand_rules (12 hand-made rules)", hand_rules()


def ort_ms(graph, level: str, repeats: int = 10) -> float:
    """ms of one onnxruntime run of `graph` (exported by envcore.onnx.exporter): the fastest run in
    the calling thread's CPU time, as `subgen.pipelines.optimize.measure` times torch (with one intra-op
    thread ORT runs every kernel on the calling thread)."""
    import numpy as np
    import onnxruntime as ort
    from envcore.onnx.exporter import to_onnx
    model = to_onnx(graph)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.uniform(-1, 1, [d if isinstance(d, int) else 1 for d in i.shape])
             .astype(np.float32) for i in sess.get_inputs()}
    sess.run(None, feeds)
    times = []
    started = time.perf_counter()
    for k in range(repeats):
        t0 = time.thread_time()
        sess.run(None, feeds)
        times.append((time.thread_time() - t0) * 1e3)
        if k >= 2 and time.perf_counter() - started > 20:
            break
    return min(times)


def ort_extras(original, optimized=None) -> dict:
    try:
        out = {"ort_disable_ms": ort_ms(original, "ORT_DISABLE_ALL"),
               "ort_all_ms": ort_ms(original, "ORT_ENABLE_ALL")}
        if optimized is not None:
            out["ort_all_optimized_ms"] = ort_ms(optimized, "ORT_ENABLE_ALL")
        return out
    except Exception as e:  # noqa: BLE001 - a model ORT cannot run is reported, not fatal
        return {"ort_error": str(e).splitlines()[0][:120]}


def load() -> float:
    return os.getloadavg()[0]


def bench_model(model: str, rules, costs, agents, budget, time_limit, measure_it, ort_it,
                device="cpu"):
    from subgen.pipelines.optimize import measure, optimize
    rows, extra = [], {}
    best_graph = None
    for cost in costs:
        timing_s = 0.0
        if cost != "analytic":   # time the model's ops once, so no agent's search time holds it
            from envcore import zoo
            from envcore.cost import get_cost_model
            t0 = time.perf_counter()
            get_cost_model(cost).graph_cost(zoo.build(model))
            timing_s = time.perf_counter() - t0
        for agent in agents:
            t0 = time.perf_counter()
            res = optimize(model, rules=list(rules), agent=agent, budget=budget, cost=cost,
                           time_limit=time_limit, check=(agent == "taso"),
                           device=device if cost == "analytic" else None)
            label = f"{cost}({res.device})" if res.device else cost
            row = {"model": model, "cost": label, "agent": agent, "load": load(),
                   "op_timing_s": timing_s,
                   "retimed": res.retimed, "fallback": res.fallback,
                   "search_cost_after": res.search_cost_after,
                   "cost_before": res.cost_before, "cost_after": res.cost_after,
                   "reduction": 1 - res.cost_after / res.cost_before, "speedup": res.speedup,
                   "search_s": res.seconds, "search_cpu_s": res.cpu_seconds,
                   "total_s": time.perf_counter() - t0,
                   "expansions": res.expansions, "rewrites": len(res.rewrites),
                   "equivalent": res.equivalent if agent == "taso" else None}
            if agent == "taso" and measure_it:
                row.update(measure(res.original, res.graph, "torch"))
                row["load_after"] = load()
            if agent == "taso" and cost == costs[0]:
                best_graph = (res.original, res.graph)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if ort_it and best_graph is not None:
        extra = ort_extras(*best_graph)
        print(json.dumps({"model": model, **extra}), flush=True)
    return rows, extra


def machine() -> str:
    from envcore.cost.measured import cpu_name
    return f"{cpu_name()}, {os.cpu_count()} cores, torch threads {THREADS}"


def to_markdown(rows, extras, rules_name, budget, time_limit) -> str:
    loads = [r[k] for r in rows for k in ("load", "load_after") if k in r]
    out = [f"# Search: greedy, beam and taso (budget {budget})", "",
           f"Rules: {rules_name}.  Machine: {machine()}.  Load average (1 min) during the run: "
           f"{min(loads, default=0):.1f}-{max(loads, default=0):.1f} (per row below).  Search "
           "(s) is wall-clock on this machine, which other jobs shared; search CPU (s) is the "
           "search process's own CPU time; a search is cut at "
           f"{time_limit:.0f} s (then `expansions` < budget).  `retimed`: op signatures timed "
           "again before the result was reported (torch cost: the guard against the "
           "optimiser's curse; a re-timing lowers the shared cache's value, so the agents run "
           "later see it); `kept original`: why the search's graph was dropped.  Under torch "
           "cost the model's ops are timed once before the agents run (not in their search "
           "time): " + ", ".join(f"{m} {t:.0f} s" for m, t in sorted(
               {r["model"]: r["op_timing_s"] for r in rows if r.get("op_timing_s")}.items()))
           + ".", "",
           "| model | cost | agent | cost before (ms) | cost after (ms) | reduction | predicted "
           "speedup | measured speedup | measured / predicted | search (s) | search CPU (s) | "
           "expansions | "
           "retimed | kept original | load |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        meas = f"{r['measured_speedup']:.2f}x" if "measured_speedup" in r else ""
        if "measured_speedup_wall" in r:
            meas += f" (wall {r['measured_speedup_wall']:.2f}x)"
        ratio = f"{r['measured_speedup'] / r['speedup']:.2f}" if "measured_speedup" in r else ""
        out.append(f"| {r['model']} | {r['cost']} | {r['agent']} | {r['cost_before']:.3f} | "
                   f"{r['cost_after']:.3f} | {100 * r['reduction']:.1f}% | {r['speedup']:.2f}x | "
                   f"{meas} | {ratio} | {r['search_s']:.1f} | "
                   f"{r.get('search_cpu_s', float('nan')):.1f} | {r['expansions']} | "
                   f"{r.get('retimed') or ''} | {r.get('fallback') or ''} | "
                   f"{r.get('load', float('nan')):.1f} |")
    out += ["", "## End to end on CPU: torch eager (subgen's executor) and onnxruntime", "",
            "| model | torch original (ms) | torch taso-optimized (ms) | ORT no opts (ms) | "
            "ORT_ENABLE_ALL (ms) | ORT_ENABLE_ALL on taso-optimized (ms) |",
            "|---|---|---|---|---|---|"]
    for model, ex in extras.items():
        taso = next((r for r in rows if r["model"] == model and r["agent"] == "taso"
                     and "ms_before" in r), None)
        t = (f"{taso['ms_before']:.1f} | {taso['ms_after']:.1f}" if taso else " | ")
        if "ort_error" in ex:
            out.append(f"| {model} | {t} | ORT failed: {ex['ort_error']} | | |")
        else:
            opt = ex.get("ort_all_optimized_ms")
            out.append(f"| {model} | {t} | {ex['ort_disable_ms']:.1f} | {ex['ort_all_ms']:.1f} | "
                       f"{'' if opt is None else f'{opt:.1f}'} |")
    taso = [r for r in rows if r["agent"] == "taso"]
    slow = [f"{r['model']}/{r['cost']} ({r['search_s']:.0f} s)" for r in taso if r["search_s"] > 60]
    slow_cpu = [f"{r['model']}/{r['cost']} ({r['search_cpu_s']:.0f} s)" for r in taso
                if r.get("search_cpu_s", 0) > 60]
    short = [f"{r['model']}/{r['cost']}" for r in taso
             if r["speedup"] > 1.1 and "measured_speedup" in r
             and r["measured_speedup"] < 0.9 * r["speedup"]]
    out += ["", "## How the numbers were taken", "",
            "- analytic(cpu): the analytic model's cpu profile (envcore/cost/profiles.py): "
            "per-kernel-class rates measured on this machine, one thread; an activation costs a "
            "pass of its own, as torch eager runs it on the CPU (fusing conv and relu measured "
            "2.13 ms against 2.12 ms for the conv alone then a relu; oneDNN's fused kernel 2.18 "
            "ms), so fusion is predicted to gain nothing.",
            "- torch: each op signature timed with the executor's own kernel, one thread, the "
            "minimum over 15 repeats of the thread's CPU time, a conv's or matmul's weight "
            "cycled through copies that overflow the 32 MB L3 (in a forward pass each weight comes from memory); before a "
            "result is reported every op signature that differs between the original and the "
            "result is timed four times more, believing the median of the five timings (the "
            "shared cache keeps the lowest), and a result whose re-timed gain "
            "is under 1% is dropped for the original.",
            "- measured: `subgen.pipelines.optimize.measure`: original and optimized graphs interleaved "
            "over at least 3 rounds of 5 runs (more, up to 20, while under 10 s; 2 past "
            "60 s), one thread, the fastest run of each, in the thread's CPU time (with one "
            "torch thread every kernel runs on it: the pass's own work, what wall time is on "
            "an idle machine; wall time on this loaded machine was 1.3-4x that).  The "
            "wall-clock speedup is listed too.",
            "- onnxruntime: the graph exported by envcore/onnx_io, CPU provider, 1 intra-op "
            "thread, the fastest of up to 10 runs in the thread's CPU time (ORT runs its "
            "kernels on the calling thread with one intra-op thread)."]
    out += ["", "## Targets (over the rows above)", "",
            f"- taso within 60 s per model, wall clock: "
            f"{'met' if not slow else 'missed for ' + ', '.join(slow)}; in the search's own CPU "
            f"time (what an idle machine would take; the search runs on one core): "
            f"{'met' if not slow_cpu else 'missed for ' + ', '.join(slow_cpu)}.",
            "- measured >= 0.9x predicted where predicted > 1.1x: "
            f"{'met' if not short else 'missed for ' + ', '.join(short)}."]
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--costs", default="analytic,torch")
    ap.add_argument("--agents", default=",".join(AGENTS))
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--time-limit", type=float, default=180.0)
    ap.add_argument("--no-measure", action="store_true")
    ap.add_argument("--no-ort", action="store_true")
    ap.add_argument("--ort-only", action="store_true",
                    help="only time onnxruntime on the original models, into OUT's .json")
    ap.add_argument("--out", default=str(RESULTS / "search.md"))
    ap.add_argument("--device", default="cpu", choices=("cpu", "v100"),
                    help="the analytic cost model's device profile")
    ap.add_argument("--cache", default=None,
                    help="torch cost cache to use (default: a fresh one in a temp directory)")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows already in OUT's .json (runs split over several calls)")
    args = ap.parse_args(argv)
    import tempfile
    import torch
    torch.set_num_threads(THREADS)
    tmp = tempfile.mkdtemp(prefix="bench_search_")
    os.environ["SUBGEN_COST_CACHE"] = args.cache or os.path.join(tmp, "costs.db")
    rules_name, rules = load_rules()
    rows, extras = [], {}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.append and out.with_suffix(".json").exists():
        old = json.loads(out.with_suffix(".json").read_text())
        rows, extras = old["rows"], old["ort"]
    if args.ort_only:
        from envcore import zoo
        old = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(
            ".json").exists() else {"rows": [], "ort": {}}
        rows, extras = old["rows"], old["ort"]
        for model in args.models.split(","):
            extras[model] = ort_extras(zoo.build(model))
            print(json.dumps({"model": model, **extras[model]}), flush=True)
        out.write_text(to_markdown(rows, extras, rules_name, args.budget, args.time_limit))
        out.with_suffix(".json").write_text(json.dumps({"rows": rows, "ort": extras}, indent=1))
        return
    for model in args.models.split(","):
        r, ex = bench_model(model, rules, args.costs.split(","), args.agents.split(","),
                            args.budget, args.time_limit, not args.no_measure, not args.no_ort,
                            args.device)
        rows += r
        if ex:
            extras[model] = ex
        # written after every model, so a long run that is stopped keeps what it measured
        out.write_text(to_markdown(rows, extras, rules_name, args.budget, args.time_limit))
        out.with_suffix(".json").write_text(json.dumps({"rows": rows, "ort": extras}, indent=1))
    print(out.read_text())


# ---------------------------------------------------------------------- pytest-benchmark entry

def test_bench_taso_against_greedy(benchmark):
    """taso's search time on one small model, with greedy's measured in the same run as the
    baseline: the ratio is what this reports (absolute times depend on the machine)."""
    from agents.base import get_agent
    from agents.search.problem import SearchProblem
    from envcore import zoo
    from envcore.cost import get_cost_model
    from rules_fixture import hand_rules
    g, rules = zoo.build("squeezenet", "small"), hand_rules()

    def run(agent):
        return get_agent(agent).search(SearchProblem(g, rules, get_cost_model("analytic")), 200)

    t0 = time.perf_counter()
    greedy = run("greedy")
    greedy_s = time.perf_counter() - t0
    taso = benchmark.pedantic(run, args=("taso",), rounds=3, iterations=1)
    benchmark.extra_info["greedy_s"] = greedy_s
    benchmark.extra_info["taso_over_greedy_time"] = benchmark.stats.stats.median / greedy_s
    benchmark.extra_info["taso_cost_over_greedy_cost"] = taso.cost / greedy.cost
    assert taso.cost <= greedy.cost


if __name__ == "__main__":
    main()
