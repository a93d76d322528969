"""Real models judged in onnxruntime: the classic CNNs and Hugging Face transformers of
tests/real_models.py (torch exports with random weights, built here), each optimized from its
ONNX file with `optimize(..., do_measure=True)` and written back with `write_result`.

    python benchmarks/bench_real_models.py [--size full] [--models a,b] [--agent taso]
        [--budget 200] [--cost analytic] [--time-limit 180] [--out benchmarks/results/real_models]

Per model: the search (the agent under the --cost model, the default rules), then the judge
(`subgen.pipelines.judge`: the original and the result timed end to end in onnxruntime, CPU EP,
ORT_ENABLE_ALL, one thread, interleaved beside an A/A control; the original is kept unless the
result is faster beyond noise), then the written file loaded back in onnxruntime and compared
with the original on the model's own feeds.  Recorded: ONNX nodes, ORT ms of the original and
of the search's result (the judge's medians), their ratio, the A/A ratio and noise bound, the
rewrites the search found, which model was kept, ORT ms of the file handed back (the result's if
kept, else the original's: the file is then the source byte for byte), the search seconds, and
whether the written file is equivalent.

torch runs with one thread in this process (`torch.set_num_threads(1)`): on a shared 2-core
machine a second OpenMP thread waits on the busy core (see bench_search.py), which would time
the neighbours in the numeric checks; onnxruntime's timings use one thread too (the judge's).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

RTOL = 1e-4     # written file against the original, per output: |a - b| <= RTOL * max|a|


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ort_outputs(path, feeds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def close(want, got) -> tuple[bool, float]:
    """(every output within RTOL of its own scale, the worst relative error)."""
    import numpy as np
    worst = 0.0
    if len(want) != len(got):
        return False, float("inf")
    for w, g in zip(want, got):
        if w.shape != g.shape or w.dtype != g.dtype:
            return False, float("inf")
        err = float(np.abs(g.astype(np.float64) - w).max() / (np.abs(w).max() + 1e-12))
        worst = max(worst, err if np.isfinite(err) else float("inf"))
    return worst <= RTOL, worst


def one_model(name, size, rules, agent, budget, cost, time_limit, tmp: Path) -> dict:
    import onnx
    from real_models import SUITE, build, parameters
    from subgen.pipelines.optimize import NotEquivalent, optimize, write_result
    row = {"model": name, "description": SUITE[name].description}
    t0 = time.perf_counter()
    model, feeds = build(name, size)
    row["build_s"] = time.perf_counter() - t0
    row["params_M"] = parameters(name, size) / 1e6
    src, out = tmp / f"{name}.onnx", tmp / f"{name}.opt.onnx"
    onnx.save(model, src)
    row["nodes"], row["file_MB"] = len(model.graph.node), src.stat().st_size / 1e6
    del model
    t0 = time.perf_counter()
    res = optimize(str(src), rules, agent=agent, budget=budget, cost=cost, do_measure=True,
                   time_limit=time_limit)
    row["optimize_s"] = time.perf_counter() - t0
    row["judged_by"] = "optimize(do_measure=True)"
    row["measure_skipped"] = res.measure_skipped
    j = res.judged or {}
    row.update({"ops_ir": res.original.num_ops, "opaque": sum(
                    1 for n in res.original.nodes.values() if n.op == "opaque"),
                "ms_before": j.get("ort_ms_original"), "ms_result": j.get("ort_ms_result"),
                "ms_control": j.get("ort_ms_control"), "ratio": j.get("ort_speedup"),
                "aa_ratio": j.get("ort_control_ratio"), "noise": j.get("ort_noise"),
                "kept": j.get("ort_kept"), "rewrites_found": j.get("ort_rewrites_judged"),
                "predicted": j.get("ort_predicted_judged"), "rewrites_handed_back":
                    len(res.rewrites), "search_s": res.seconds, "expansions": res.expansions,
                "cost_before": res.cost_before, "fallback": res.fallback,
                "graph_check": res.equivalent, "rules_applied": res.rule_counts,
                "rules_found": sorted(res.rule_texts), "note": SUITE[name].full_note
                if size == "full" else ""})
    if j:
        row["ms_after"] = j["ort_ms_result"] if j["ort_kept"] == "result" else j["ort_ms_original"]
    t0 = time.perf_counter()
    try:
        write_result(res, out)
    except NotEquivalent as e:
        row.update(written=False, equivalent=False, error=str(e))
        return row
    row["write_s"] = time.perf_counter() - t0
    ok, err = close(ort_outputs(src, feeds), ort_outputs(out, feeds))
    row.update(written=True, equivalent=ok and res.equivalent, max_rel_err=err,
               identical_bytes=out.read_bytes() == src.read_bytes())
    return row


def fmt(v, spec=".3f", none="-"):
    return none if v is None else format(v, spec)


def markdown(rows, a, machine, started, wall) -> str:
    lines = [f"# Real models judged in onnxruntime ({a.size}, {a.agent}, budget {a.budget}, "
             f"--cost {a.cost}, search time limit {a.time_limit:g} s)", "",
             f"Machine: {machine}.  Run {started}, {wall / 60:.1f} min in all.  "
             f"`python benchmarks/bench_real_models.py --size {a.size} --agent {a.agent} "
             f"--budget {a.budget} --cost {a.cost} --time-limit {a.time_limit:g}"
             + (f" --models {a.models}" if a.models else "") + "`", "",
             "Models from tests/real_models.py: torch.onnx.export (TorchScript, opset 17, eval, "
             "BatchNorm folded), random weights (seed 0), batch 1, 224x224 images, 128 tokens.  "
             "ORT ms: the judge's medians over interleaved rounds (CPU EP, ORT_ENABLE_ALL, one "
             "thread).  *result* is what the search found, *after* the file handed back (the "
             "original when the judge kept it).  ratio = before / result; A/A = the original "
             "against itself; *equivalent*: the written file against the original in "
             "onnxruntime on the model's feeds (rtol 1e-4 of each output's scale) and "
             "subgen's own checks.", "",
             "| model | params M | ONNX nodes | opaque | ORT ms before | ORT ms result | ratio "
             "| A/A | noise | rewrites | kept | ORT ms after | search s | equivalent |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r and r.get("ms_before") is None:
            lines.append(f"| {r['model']} | {fmt(r.get('params_M'), '.1f')} | "
                         f"{r.get('nodes', '-')} | - | FAILED: {r['error'][:120]} "
                         "| | | | | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['params_M']:.1f} | {r['nodes']} | {r['opaque']} | "
            f"{fmt(r['ms_before'])} | {fmt(r['ms_result'])} | {fmt(r['ratio'])}"
            f"{'' if r['rewrites_found'] else '*'} | "
            f"{fmt(r['aa_ratio'])} | {fmt(r['noise'] and 100 * r['noise'], '.1f')}% | "
            f"{r['rewrites_found']} | {r['kept']} | {fmt(r.get('ms_after'))} | "
            f"{r['search_s']:.1f} | {'yes' if r.get('equivalent') else 'NO'} |")
    done = [r for r in rows if r.get("ratio") is not None]
    if done:
        changed = [r for r in done if r["rewrites_found"]]
        after = [r["ms_before"] / r["ms_after"] for r in done]
        faster = [r["model"] for r in changed if r["ratio"] >= 1.05]
        slower = [f"{r['model']} ({r['ratio']:.3f}x)" for r in changed
                  if r["ratio"] < 1 - r["noise"]]
        kept = [r["model"] for r in done if r["kept"] == "result"]
        median = (f"{statistics.median(r['ratio'] for r in changed):.3f}" if changed else "-")
        lines += ["", "\\* no rewrite found: the result is the original file itself, so its "
                  "ratio is a second A/A (the judge never keeps it).", "",
                  f"Summary: {len(done)} models; rewrites found in {len(changed)}; results "
                  f">= 1.05x in onnxruntime: {len(faster)} ({', '.join(faster) or 'none'}); "
                  f"median ratio of the results with rewrites {median}, of the files handed "
                  f"back (all models) {statistics.median(after):.3f}; kept by the judge: "
                  f"{', '.join(kept) or 'none'}; results slower beyond noise: "
                  f"{', '.join(slower) or 'none'} (the judge handed those back unchanged: no "
                  f"file handed back is slower); equivalent: "
                  f"{sum(1 for r in done if r.get('equivalent'))}/{len(done)}."]
        skipped = [r["model"] for r in done if r.get("measure_skipped")]
        if skipped:
            lines += ["", f"Integer inputs ({', '.join(skipped)}): `optimize --measure` times "
                      "no torch eager run (float32 draws only) and says so; onnxruntime's judge, "
                      "which draws each input in its declared dtype, decides as for the others."]
    failed = [r for r in rows if "error" in r]
    if failed:
        lines += ["", "Failures:", ""] + [f"- {r['model']}: {r['error']}" for r in failed]
    lines += ["", "Rewrites the search found (judged, then kept or not):", ""]
    for r in done:
        if r.get("rules_applied") or r.get("rewrites_found"):
            rules = r.get("rules_applied") or r.get("rules_found")
            lines.append(f"- {r['model']}: {r['rewrites_found']} rewrites"
                         + (f", rules {rules}" if rules else "")
                         + (f"; handed back the original: {r['fallback']}"
                            if r.get("fallback") else "; kept"))
    notes = [r for r in rows if r.get("note")]
    if notes:
        lines += ["", "Where \"full\" departs from the released model:", ""]
        lines += [f"- {r['model']}: {r['note']}" for r in notes]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="full", choices=("full", "small"))
    ap.add_argument("--models", default=None, help="comma-separated names (default: all)")
    ap.add_argument("--agent", default="taso")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--cost", default="analytic")
    ap.add_argument("--time-limit", type=float, default=180.0,
                    help="stop a model's search after this many seconds")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real_models"))
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--render", action="store_true",
                    help="only write the .md again from the .json of an earlier run")
    a = ap.parse_args()
    if a.render:
        data = json.loads(Path(a.out).with_suffix(".json").read_text())
        from real_models import SUITE
        for r in data["rows"]:    # runs from before the notes were recorded
            if "note" not in r and r["model"] in SUITE and data["settings"]["size"] == "full":
                r["note"] = SUITE[r["model"]].full_note
        for k, v in data["settings"].items():
            if k not in ("render", "out"):
                setattr(a, k, v)
        md = markdown(data["rows"], a, data["machine"], data["started"], data["wall_s"])
        Path(a.out).with_suffix(".md").write_text(md)
        print(md)
        return
    import torch
    torch.set_num_threads(1)
    from real_models import SUITE
    from subgen.pipelines.optimize import load_rule_set
    names = a.models.split(",") if a.models else list(SUITE)
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        ap.error(f"unknown models {unknown} (one of {', '.join(SUITE)})")
    machine = (f"{platform.system()} {platform.machine()}, {cpu_name()}, {os.cpu_count()} cores, "
               f"no GPU; Python {platform.python_version()}, torch {torch.__version__}")
    try:
        import onnxruntime
        machine += f", onnxruntime {onnxruntime.__version__}"
    except ImportError:
        pass
    started, t_start = time.strftime("%Y-%m-%d %H:%M"), time.perf_counter()
    rules = load_rule_set()
    rows = []
    bar = task = None
    if not a.no_progress and sys.stderr.isatty():
        from rich.progress import Progress
        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("models", total=len(names))
    try:
        for name in names:
            if bar:
                bar.update(task, description=name)
            with tempfile.TemporaryDirectory() as d:
                try:
                    row = one_model(name, a.size, rules, a.agent, a.budget, a.cost,
                                    a.time_limit, Path(d))
                except Exception as e:   # a model that fails is recorded, the run goes on
                    row = {"model": name, "error": f"{type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}",
                           "traceback": traceback.format_exc()}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "traceback"}), flush=True)
            if bar:
                bar.advance(task)
            _write(a, rows, machine, started, time.perf_counter() - t_start)  # as it goes
    finally:
        if bar:
            bar.stop()
    print(_write(a, rows, machine, started, time.perf_counter() - t_start))


def _write(a, rows, machine, started, wall) -> str:
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(
        {"machine": machine, "started": started, "wall_s": wall, "settings": vars(a),
         "rows": rows}, indent=1, default=str))
    md = markdown(rows, a, machine, started, wall)
    out.with_suffix(".md").write_text(md)
    return md


if __name__ == "__main__":
    main()
