"""The optimize pipeline, usable from Python as well as from `subgen optimize`:

    model (zoo name or .onnx) -> proved rules -> agent search under a cost model
      -> numeric check of the result against the original -> optional .onnx/.json out

    from subgen.optimize import optimize
    r = optimize("squeezenet", agent="taso", budget=1000)
    print(r.cost_before, r.cost_after, r.equivalent)

A graph that fails the numeric check is never written.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from envcore.graph import Graph
from envcore.rule import Rule
from subgen.errors import BadInput
from subgen.paths import DEFAULT_RULES

SIZES = ("full", "small", "tiny")


@dataclass
class OptimizeResult:
    model: str
    agent: str
    cost_model: str
    original: Graph
    graph: Graph
    cost_before: float
    cost_after: float
    rewrites: list[str]
    seconds: float
    equivalent: bool
    max_abs_err: float
    expansions: int = 0
    trace: list = field(default_factory=list)
    measured: dict | None = None   # from --measure: ms_before, ms_after, measured_speedup
    device: str | None = None      # the analytic model's device profile ("cpu", "v100")
    retimed: int = 0               # measured costs: op signatures timed again before reporting
    search_cost_after: float | None = None   # what the search believed, before re-timing
    fallback: str | None = None    # why the original graph was handed back, if it was
    cpu_seconds: float = float("nan")   # the search's own CPU time (wall `seconds` counts waits)
    weights: dict | None = field(default=None, repr=False)   # trained values (ONNX input)
    rule_texts: dict = field(default_factory=dict, repr=False)  # applied rule -> "src => dst"

    @property
    def speedup(self) -> float:
        return self.cost_before / self.cost_after if self.cost_after > 0 else float("inf")

    @property
    def rule_counts(self) -> dict[str, int]:
        return dict(Counter(self.rewrites).most_common())

    def to_json(self) -> dict:
        out = {"model": self.model, "agent": self.agent, "cost": self.cost_model,
               "cost_before": self.cost_before, "cost_after": self.cost_after,
               "speedup": self.speedup, "rewrites": len(self.rewrites),
               "rules_applied": self.rule_counts, "seconds": self.seconds,
               "equivalent": self.equivalent, "max_abs_err": self.max_abs_err,
               "expansions": self.expansions,
               "ops_before": self.original.num_ops, "ops_after": self.graph.num_ops,
               "device": self.device, "retimed": self.retimed,
               "search_cost_after": self.search_cost_after, "fallback": self.fallback,
               "cpu_seconds": self.cpu_seconds}
        if self.measured:
            out.update(self.measured)
        return out


# ----------------------------------------------------------------------------------------------
# inputs


def load_model(spec: str | Path, size: str = "full") -> tuple[str, Graph, dict | None]:
    """(display name, graph, weights or None) for a zoo name or an .onnx path; BadInput
    otherwise.  Zoo models carry no trained values (None: random ones are used)."""
    spec = str(spec)
    if Path(spec).suffix == ".onnx":
        path = Path(spec)
        if not path.is_file():
            raise BadInput(f"no such ONNX file: {spec}")
        try:
            from envcore.onnx_io import load_onnx
        except ImportError as e:
            raise BadInput(f"reading ONNX needs {e.name} (pip install 'subgen[onnx]')") from None
        try:
            graph, weights = load_onnx(path)
        except (ValueError, OSError) as e:   # OnnxError is a ValueError
            raise BadInput(f"{spec}: {_first_line(e)}") from None
        return path.stem, graph, weights
    from envcore import zoo
    if spec not in zoo.ZOO:
        raise BadInput(f"unknown model {spec!r}: use a zoo name ({', '.join(sorted(zoo.ZOO))}) "
                       "or a path to an .onnx file")
    if size not in SIZES:
        raise BadInput(f"unknown model size {size!r} (one of {', '.join(SIZES)})")
    return spec, zoo.build(spec, size=size), None


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def load_rule_set(path: str | Path | None = None, both_directions: bool = True) -> list[Rule]:
    """The proved rules of a rule DB (or every rule of a .json/.pb file, which hold verified
    exports).  Each rule is also used right to left where that is well formed, as TASO does."""
    default = path is None
    path = Path(path) if path is not None else DEFAULT_RULES
    if not path.is_file():
        if default:
            raise BadInput(f"no rule DB at {path}: run `subgen generate` first (or pass --rules)")
        raise BadInput(f"no such rule file: {path}")
    if path.suffix == ".db":
        from subgen.ruledb import RuleDB
        db = RuleDB(path, create=False)
        rules = [getattr(r, "rule", r) for r in db.proved_rules()]
        if not rules:
            raise BadInput(f"{path} holds no proved rules: run `subgen generate` "
                           "(or `subgen verify` on it) first")
    else:
        from subgen.ruleio import load_rules
        rules = list(load_rules(path))
    return with_reverses(rules) if both_directions else rules


def with_reverses(rules: list[Rule]) -> list[Rule]:
    """rules plus each one's reverse, skipping reverses that are malformed (target drops an
    input) or that duplicate a rule already present."""
    from envcore.rule import MalformedRule
    seen = {(r.src.canonical_hash, r.dst.canonical_hash) for r in rules}
    out = list(rules)
    for r in rules:
        key = (r.dst.canonical_hash, r.src.canonical_hash)
        if key in seen:
            continue
        try:
            rev = r.reversed()
        except MalformedRule:
            continue
        seen.add(key)
        out.append(rev)
    return out


# ----------------------------------------------------------------------------------------------
# the numeric check and measurement


def check_values(graph: Graph, seed: int = 0) -> dict:
    """Random leaves for a numeric check: inputs in [-1, 1); weights scaled by 1/sqrt(fan-in)
    (estimated as size / largest dim) so activations stay O(1) through 50 layers instead of
    growing by ~30x a layer, which would let a real difference hide under the output's scale."""
    import numpy as np
    from envcore.execute import random_values
    vals = random_values(graph, seed)
    for name, ref in graph.leaves("weight").items():
        shape = graph.shape(ref)
        if len(shape) >= 2:
            vals[name] = vals[name] / np.sqrt(np.prod(shape) / max(shape))
    return vals


def check_equivalent(original: Graph, optimized: Graph, seed: int = 0) -> tuple[bool, float]:
    """Runs both graphs on the same random leaves: (equal within tolerance?, max abs error).

    With torch installed this runs in float32 (full-size BERT takes ~4 s a pass on 2 cores, five
    times that in float64) with a relative tolerance of 1e-4: reassociation moves float32 results
    by ~1e-6, a wrong rewrite by O(1).  Without torch it is numpy in float64 at 1e-6."""
    import numpy as np
    from envcore.execute import max_abs_error
    if original.canonical_hash == optimized.canonical_hash:
        return True, 0.0
    vals = check_values(original, seed)
    vals.update({k: v for k, v in check_values(optimized, seed).items() if k not in vals})
    try:
        from envcore.torch_exec import run_torch
        a, b = run_torch(original, vals), run_torch(optimized, vals)
        rtol = 1e-4
    except ImportError:
        from envcore.execute import evaluate
        a, b = evaluate(original, vals), evaluate(optimized, vals)
        rtol = 1e-6
    err = max_abs_error(a, b)
    scale = max((float(np.max(np.abs(x))) for x in a if x.size), default=0.0)
    return bool(err <= rtol * max(scale, 1e-3)), float(err)


def measure(original: Graph, optimized: Graph, backend: str = "torch", rounds: int = 3,
            repeats: int = 5, max_seconds: float = 60.0, threads: int | None = 1,
            min_seconds: float = 10.0, max_rounds: int = 20) -> dict:
    """End-to-end forward time of both graphs (float32, folded nodes precomputed as the cost
    models assume), interleaved in rounds (A B, B A, A B, ...) so that drift in the machine's
    speed hits both alike, with `threads` torch threads (1, as the torch cost model times ops).

    Per graph: the fastest run, in ms (other processes only ever add time, as
    envcore/cost/measured.py explains).  On the CPU with one thread the time is the thread's
    CPU time (`torch_exec.time_runs`: the pass's own work, what wall time is on an idle
    machine); wall-clock numbers come along as ms_*_wall.  At least `rounds` rounds, more (up
    to `max_rounds`) while under `min_seconds`; past `max_seconds` two rounds are enough."""
    try:
        from envcore.torch_exec import time_runs
    except ImportError:
        raise BadInput("--measure needs torch (pip install 'subgen[torch]')") from None
    device = "cpu"
    if backend == "cupy":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cpu_clock = device == "cpu" and threads == 1
    wall, cpu = [float("inf")] * 2, [float("inf")] * 2
    started = time.perf_counter()
    for k in range(max_rounds):
        spent = time.perf_counter() - started
        if k >= rounds and spent > min_seconds or k >= 2 and spent > max_seconds:
            break
        pair = ((0, original), (1, optimized)) if k % 2 == 0 else ((1, optimized), (0, original))
        for which, g in pair:
            for w, c in time_runs(g, device=device, repeats=repeats, warmup=1, threads=threads):
                wall[which], cpu[which] = min(wall[which], w), min(cpu[which], c)
    ta, tb = (cpu if cpu_clock else wall)
    return {"ms_before": ta, "ms_after": tb,
            "measured_speedup": ta / tb if tb > 0 else float("inf"),
            "clock": "thread cpu" if cpu_clock else "wall",
            "ms_before_wall": wall[0], "ms_after_wall": wall[1],
            "measured_speedup_wall": wall[0] / wall[1] if wall[1] > 0 else float("inf")}


# ----------------------------------------------------------------------------------------------
# the pipeline


def optimize(model: str | Path | Graph, rules: str | Path | list[Rule] | None = None,
             agent: str = "taso", budget: int = 1000, cost: str = "analytic",
             alpha: float = 1.05, checkpoint: str | Path | None = None, size: str = "full",
             do_measure: bool = False, seed: int = 0, time_limit: float | None = None,
             on_step: Callable[[int, float], None] | None = None, check: bool = True,
             device: str | None = None, min_gain: float = 0.01) -> OptimizeResult:
    """`device` picks the analytic model's profile (default "cpu": what `do_measure` times on;
    "v100" is TASO's GPU).  Under a measured cost model (torch, cupy) every op the result's
    gain rests on is timed again, and a result whose re-timed gain is below `min_gain` (a
    fraction) is dropped for the original: a guard against the optimiser's curse, where the
    search picks whatever a lucky or unlucky timing priced wrong."""
    from agents.base import SearchAgent, get_agent
    from agents.search import SearchProblem

    # cheap checks first: a typo in the agent's name should not wait for thousands of rules
    if isinstance(model, Graph):
        name, graph, weights = "graph", model, None
    else:
        name, graph, weights = load_model(model, size)
    try:
        the_agent = get_agent(agent, alpha=alpha, seed=seed)
    except KeyError as e:
        raise BadInput(e.args[0] if e.args else f"unknown agent {agent!r}") from None
    if checkpoint is not None:
        if not hasattr(the_agent, "load"):
            raise BadInput(f"agent {agent!r} takes no checkpoint")
        if not Path(checkpoint).is_dir():
            raise BadInput(f"no such checkpoint directory: {checkpoint}")
        the_agent.load(checkpoint)
    elif hasattr(the_agent, "load") and not isinstance(the_agent, SearchAgent):
        raise BadInput(f"agent {agent!r} learns: pass --checkpoint DIR (written by `subgen train`)")
    if not hasattr(the_agent, "search"):
        raise BadInput(f"agent {agent!r} cannot optimize a graph (it has no search method)")
    cost_model = _cost_model(cost, device)
    rule_list = rules if isinstance(rules, list) else load_rule_set(rules)

    t0, c0 = time.perf_counter(), time.process_time()
    problem = SearchProblem(graph, rule_list, cost_model, on_step=on_step, time_limit=time_limit)
    found = the_agent.search(problem, budget)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0

    # costs are re-taken on whole graphs, so the report never rests on incremental bookkeeping
    before, after = float(cost_model.graph_cost(graph)), float(cost_model.graph_cost(found.graph))
    believed, retimed, fallback = after, 0, None
    if hasattr(cost_model, "retime") and found.graph is not graph:
        from envcore.cost.measured import retime_differences
        retimed = retime_differences(cost_model, graph, found.graph)
        before = float(cost_model.graph_cost(graph))
        after = float(cost_model.graph_cost(found.graph))
        if after > before * (1 - min_gain):
            fallback = (f"re-timed gain {100 * (1 - after / before):.1f}% is below "
                        f"{100 * min_gain:g}%")
    if after > before:   # never hand back a slower graph (an agent may bet and lose)
        fallback = fallback or "the search found nothing cheaper"
    if fallback:
        found.graph, found.rewrites, after = graph, [], before
    ok, err = check_equivalent(graph, found.graph, seed) if check else (True, float("nan"))
    res = OptimizeResult(name, agent, cost, graph, found.graph, before, after, list(found.rewrites),
                         seconds, ok, err, found.expansions, found.trace, weights=weights,
                         device=getattr(getattr(cost_model, "profile", None), "name", None),
                         retimed=retimed, search_cost_after=believed, fallback=fallback,
                         cpu_seconds=cpu_seconds)
    applied = set(res.rewrites)
    res.rule_texts = {r.name: f"{r.src.text()}  =>  {r.dst.text()}"
                      for r in rule_list if r.name in applied}
    if do_measure:
        res.measured = measure(graph, found.graph, cost)
    return res


DEVICES = ("cpu", "v100")


def _cost_model(name: str, device: str | None = None):
    from envcore.cost import CostModelUnavailable, get_cost_model
    if device is not None and name != "analytic":
        raise BadInput(f"--device picks the analytic model's profile; the {name} cost model "
                       "times the machine it runs on")
    if device is not None and device not in DEVICES:
        raise BadInput(f"unknown device {device!r} (one of {', '.join(DEVICES)})")
    kw = {"profile": device or "cpu"} if name == "analytic" else {}
    try:
        return get_cost_model(name, **kw)
    except (KeyError, ValueError, CostModelUnavailable) as e:
        raise BadInput(f"cost model {name!r}: {_first_line(e)}") from None
    except ImportError as e:
        raise BadInput(f"cost model {name!r} needs {e.name or 'a missing package'}") from None


def write_result(res: OptimizeResult, out: str | Path) -> Path:
    """Writes the optimized graph as .onnx or .json; refuses a graph that failed the check."""
    out = Path(out)
    if not res.equivalent:
        raise BadInput(f"not writing {out}: the optimized graph differs from the original "
                       f"(max abs err {res.max_abs_err:.3g})")
    if out.suffix not in (".onnx", ".json"):
        raise BadInput(f"--out must end in .onnx or .json, got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    if out.suffix == ".json":
        tmp.write_text(res.graph.to_json())
    else:
        from envcore.onnx_io import save_onnx
        save_onnx(res.graph, tmp, weights=res.weights)
    tmp.replace(out)   # atomic: an interrupted write never leaves half a file at `out`
    return out
