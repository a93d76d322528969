"""The zoo judged in onnxruntime: `optimize --measure` on each zoo model (the search prices with
`--cost`; the judge times the original and the result end to end in onnxruntime, CPU EP,
ORT_ENABLE_ALL, one thread, interleaved beside an A/A control, and keeps the original unless
the result is faster beyond noise).  Then a zero-rewrite run on an ONNX file: the written file
against its source, interleaved, with an A/A control.

    python benchmarks/bench_judge.py [--size small] [--agent taso] [--budget 300]
                                     [--cost analytic] [--models a,b] [--out benchmarks/results/judge]

Per model: onnxruntime ms of the original and of the search's result (medians over rounds),
their ratio, the A/A ratio and the noise bound, which was kept, the rewrites the search made,
and the search seconds.  A ratio the judge rejected is reported as measured, and the model
handed back is the original.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def zoo_rows(models, size, agent, budget, cost):
    from subgen.pipelines.optimize import optimize
    rows = []
    for name in models:
        res = optimize(name, agent=agent, budget=budget, cost=cost, size=size, do_measure=True)
        j = res.judged
        rows.append({"model": name, "ms_original": j["ort_ms_original"],
                     "ms_result": j["ort_ms_result"], "ratio": j["ort_speedup"],
                     "aa_ratio": j["ort_control_ratio"], "noise": j["ort_noise"],
                     "kept": j["ort_kept"], "rewrites_found": j["ort_rewrites_judged"],
                     "predicted": j["ort_predicted_judged"],
                     "cost_before": res.cost_before,
                     "search_s": res.seconds})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def zero_rewrite_row(model="squeezenet", size="small"):
    """A model exported to ONNX, optimized with no budget (zero rewrites), written, and timed
    against its source: the judge's own interleaved timing, source as 'original'."""
    import onnx
    from envcore import zoo
    from envcore.onnx.exporter import save_onnx
    from subgen.pipelines.judge import judge
    from subgen.pipelines.optimize import (draw_input, onnx_input_specs, optimize,
                                           write_result)
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / f"{model}.onnx", Path(d) / "out.onnx"
        save_onnx(zoo.build(model, size), src)
        res = optimize(str(src), budget=0)
        write_result(res, out)
        a, b = onnx.load(src), onnx.load(out)
        feeds = {n: draw_input(dims, 0, 1.0, (dt, hi))
                 for n, (dt, hi, dims) in onnx_input_specs(a).items()}
        j = judge(a, b, feeds, rounds=15, min_seconds=5.0)
        return {"model": f"{model} ({size}) as ONNX, zero rewrites", "ms_source": j["ort_ms_original"],
                "ms_written": j["ort_ms_result"], "ratio": j["ort_speedup"],
                "aa_ratio": j["ort_control_ratio"], "noise": j["ort_noise"],
                "identical_bytes": src.read_bytes() == out.read_bytes()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="small")
    ap.add_argument("--agent", default="taso")
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--cost", default="analytic")
    ap.add_argument("--models", default=None)
    ap.add_argument("--no-zero", action="store_true", help="skip the zero-rewrite run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "judge"))
    a = ap.parse_args()
    from envcore.zoo import ZOO
    models = a.models.split(",") if a.models else sorted(ZOO)
    rows = zoo_rows(models, a.size, a.agent, a.budget, a.cost)
    zero = zero_rewrite_row() if not a.no_zero else None
    print(json.dumps(zero))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                                 "settings": vars(a), "zoo": rows,
                                                 "zero_rewrite": zero}, indent=1))
    lines = [f"# optimize --measure: the zoo judged in onnxruntime ({a.size}, {a.agent}, budget "
             f"{a.budget}, --cost {a.cost})", "",
             "| model | ORT ms original | ORT ms result | ratio | A/A | noise | kept | rewrites "
             f"| predicted | search s | {a.cost} ms (original) / ORT ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['ms_original']:.3f} | {r['ms_result']:.3f} | "
                     f"{r['ratio']:.3f} | {r['aa_ratio']:.3f} | {100 * r['noise']:.1f}% | "
                     f"{r['kept']} | {r['rewrites_found']} "
                     f"| {r['predicted']:.3f} | {r['search_s']:.1f} | "
                     f"{r['cost_before'] / r['ms_original']:.2f} |")
    if zero:
        lines += ["", f"Zero rewrites, written file against its source: {zero['ms_source']:.3f} "
                  f"vs {zero['ms_written']:.3f} ms, ratio {zero['ratio']:.3f}, A/A "
                  f"{zero['aa_ratio']:.3f}, identical bytes: {zero['identical_bytes']}", ""]
    Path(a.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
