"""The optimize pipeline, usable from Python as well as from `subgen optimize`:

    model (zoo name or .onnx) -> proved rules -> agent search under a cost model
      -> numeric check of the result against the original -> optional .onnx/.json out

    from subgen.pipelines.optimize import optimize
    r = optimize("squeezenet", agent="taso", budget=1000)
    print(r.cost_before, r.cost_after, r.equivalent)

A graph that fails the numeric check is never written.  The check compares per output and per
element against that output's own scale, over several input draws and magnitudes, runs even when
no rewrite was made, and an .onnx file is read back in onnxruntime and compared with the original
before it replaces the target (see "the numeric check" below and `write_result`).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from envcore.graph import Graph
from envcore.rewrite.rule import Rule
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
    judged: dict | None = None     # from --measure: onnxruntime's verdict (subgen.pipelines.judge)
    device: str | None = None      # the analytic model's device profile ("cpu", "v100")
    retimed: int = 0               # measured costs: op signatures timed again before reporting
    search_cost_after: float | None = None   # what the search believed, before re-timing
    fallback: str | None = None    # why the original graph was handed back, if it was
    cpu_seconds: float = float("nan")   # the search's own CPU time (wall `seconds` counts waits)
    weights: dict | None = field(default=None, repr=False)   # trained values (ONNX input)
    rule_texts: dict = field(default_factory=dict, repr=False)  # applied rule -> "src => dst"
    source: str | None = None      # the .onnx file the model came from, if it did
    input_specs: dict | None = field(default=None, repr=False)  # onnx_input_specs
    checked: str = "graph"         # what `equivalent` describes: "graph" or "written file"
    check_draws: int = 0           # input draws compared by that check
    check_skipped: int = 0         # ... and skipped: float32 execution of the original unreliable
    check_failure: str = ""        # what the check found first, when it failed
    measure_skipped: str = ""      # why --measure timed no torch eager run, when it did not

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
               "cpu_seconds": self.cpu_seconds, "checked": self.checked,
               "check_draws": self.check_draws, "check_skipped": self.check_skipped}
        if self.check_failure:
            out["check_failure"] = self.check_failure
        if self.measured:
            out.update(self.measured)
        if self.measure_skipped:
            out["measure_skipped"] = self.measure_skipped
        if self.judged:
            out.update(self.judged)
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
            from envcore.onnx.importer import load_onnx
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


def load_rule_set(path: str | Path | None = None, both_directions: bool = True,
                  unverified: bool = False, workers: int = 1) -> list[Rule]:
    """Rules ready to apply, each inside its proof's scope (`subgen.rules.load`): a DB's proved
    rules, or a .json/.pb file's rules once verified; `unverified` applies a file as it is."""
    from subgen.rules.load import load_rules_for_use
    return load_rules_for_use(path, both_directions, unverified, workers=workers,
                              default=DEFAULT_RULES)


# ----------------------------------------------------------------------------------------------
# the numeric check and measurement
#
# The rule, everywhere (the graph check and the read-back of a written file): per output and per
# element, |a - b| <= ATOL + RTOL * max|a| of that output (envcore.execute.outputs_close), over
# several draws: seeds x input magnitudes SCALES.  RTOL = 1e-4 is what float32 execution of the
# zoo (and of files in onnxruntime, which fuses differently) passes with room to spare: they
# move results by ~1e-6 of an output's own scale, a wrong rewrite by O(1).  ATOL only matters
# for an output that is ~0 everywhere.  Integer and bool inputs get valid integer draws.

RTOL, ATOL = 1e-4, 1e-8
SCALES = (1.0, 1e-2, 1e2)
GRAPH_DRAWS, FILE_DRAWS = 3, 6     # one seed per scale on the graph; two per scale in onnxruntime


class NotEquivalent(Exception):
    """The optimized result (graph or written file) differs from the original: exit code 3."""


def draws(seed: int, count: int) -> list[tuple[int, float]]:
    """(seed, input scale) pairs: the scales in turn, a new seed each."""
    return [(seed + k, SCALES[k % len(SCALES)]) for k in range(count)]


def draw_input(shape, seed: int, scale: float = 1.0, spec: tuple | None = None,
               salt: int = 0):
    """One input's random value: floats uniform in [-scale, scale) (float64 unless `spec`
    says another float type); for an integer or bool `spec` = (dtype, high), integers in
    [0, high) (non-negative and small: indices into a Gather stay in range)."""
    import numpy as np
    rng = np.random.default_rng([seed, salt])
    dtype = np.dtype(spec[0]) if spec else np.dtype(np.float64)
    if dtype.kind == "f":
        return (rng.uniform(-1, 1, size=shape) * scale).astype(dtype)
    high = 2 if dtype.kind == "b" else max(int(spec[1] or 2), 1)
    return rng.integers(0, high, size=shape).astype(dtype)


def check_values(graph: Graph, seed: int = 0, scale: float = 1.0,
                 specs: dict | None = None, weights: dict | None = None) -> dict:
    """Random leaves for a numeric check: inputs in [-scale, scale) (integer inputs named in
    `specs` get integer draws, see `draw_input`); weights from `weights` where given (trained
    values of an ONNX model), otherwise random and scaled by 1/sqrt(fan-in) (estimated as size /
    largest dim) so activations stay O(1) through 50 layers instead of growing by ~30x a layer,
    which would let a real difference hide under the output's scale."""
    import numpy as np
    from envcore.execute import random_values
    vals = random_values(graph, seed, leaves=("weight",))
    for name, ref in graph.leaves("weight").items():
        shape = graph.shape(ref)
        if weights is not None and name in weights:
            vals[name] = np.asarray(weights[name])
        elif len(shape) >= 2:
            vals[name] = vals[name] / np.sqrt(np.prod(shape) / max(shape))
    for k, (name, ref) in enumerate(sorted(graph.leaves("input").items())):
        vals[name] = draw_input(graph.shape(ref), seed, scale, (specs or {}).get(name), k)
    return vals


def _run_graph(graph: Graph, vals: dict, float32: bool = False) -> list:
    """The graph's outputs in float64 (torch when installed, else numpy's reference ops;
    opaque ONNX nodes run in float32 inside either); in float32 with `float32`."""
    import numpy as np
    try:
        import torch

        from envcore.torch_exec import run_torch
    except ImportError:
        from envcore.execute import evaluate
        if float32:
            vals = {k: v.astype(np.float32) if np.asarray(v).dtype.kind == "f" else v
                    for k, v in vals.items()}
        return evaluate(graph, vals)
    return run_torch(graph, vals, dtype=torch.float32 if float32 else torch.float64)


def _unreliable(want: list, alt: list | None) -> bool:
    """Whether two computations of the ORIGINAL (float32 against float64) disagree by the rule
    on a draw: such a draw (attention saturated by x1e2 inputs, say) is ill-conditioned in
    float32 and can tell nothing apart, so it is skipped, and counted."""
    from envcore.execute import outputs_close
    return alt is not None and not outputs_close(want, alt, RTOL, ATOL)[0]


@dataclass
class CheckResult:
    equivalent: bool
    max_abs_err: float
    reason: str = ""      # what failed first ("" when equivalent)
    draws: int = 0        # input draws compared
    skipped: int = 0      # draws on which float32 execution of the original is unreliable


def _verdict(worst: float, compared: int, skipped: int) -> CheckResult:
    if compared:
        return CheckResult(True, worst, "", compared, skipped)
    return CheckResult(False, float("inf"), f"all {skipped} draws are ill-conditioned in "
                       "float32 (the original disagrees with itself): nothing could be checked",
                       0, skipped)


def compare_graphs(original: Graph, optimized: Graph, seed: int = 0, specs: dict | None = None,
                   weights: dict | None = None, count: int = GRAPH_DRAWS) -> CheckResult:
    """Runs both graphs on the same leaves over `count` draws (see `draws`), per output with the
    module's rule.  Identical graphs are run too: nothing is taken on trust.  Both run in
    float64; where the original holds opaque ONNX nodes (float32 inside), a draw on which the
    original in float32 disagrees with itself in float64 is skipped (`_unreliable`)."""
    from envcore.execute import outputs_close
    worst, compared, skipped = 0.0, 0, 0
    opaque = any(n.op == "opaque" for n in original.nodes.values())
    for k, (s, scale) in enumerate(draws(seed, count)):
        vals = check_values(original, s, scale, specs, weights)
        vals.update({n: v for n, v in check_values(optimized, s, scale, specs, weights).items()
                     if n not in vals})
        a = _run_graph(original, vals)
        try:
            b = _run_graph(optimized, vals)
        except Exception as e:   # a result that cannot run is not the original
            return CheckResult(False, float("inf"), f"the optimized graph fails: {_first_line(e)}",
                               compared, skipped)
        ok, err, why = outputs_close(a, b, RTOL, ATOL)
        if not ok and opaque and _unreliable(a, _run_graph(original, vals, float32=True)):
            skipped += 1
            continue
        worst, compared = max(worst, err), compared + 1
        if not ok:
            return CheckResult(False, worst, f"inputs x{scale:g} (seed {s}): {why}", compared,
                               skipped)
    return _verdict(worst, compared, skipped)


def check_equivalent(original: Graph, optimized: Graph, seed: int = 0,
                     specs: dict | None = None, weights: dict | None = None
                     ) -> tuple[bool, float]:
    """(equal within tolerance?, max abs error): `compare_graphs` in short."""
    r = compare_graphs(original, optimized, seed, specs, weights)
    return r.equivalent, r.max_abs_err


# -- ONNX files: what is written is read back and run

def onnx_signature(model) -> tuple[list, list]:
    """([(name, elem type)] of the real inputs (initializers excluded), [(name, elem type)] of
    the outputs), in declared order."""
    inits = {t.name for t in model.graph.initializer}
    return ([(vi.name, vi.type.tensor_type.elem_type) for vi in model.graph.input
             if vi.name not in inits],
            [(vi.name, vi.type.tensor_type.elem_type) for vi in model.graph.output])


def onnx_input_specs(model) -> dict:
    """name -> (numpy dtype, high, shape) for each real input of an ONNX model.  `high` bounds
    integer draws: for indices of a Gather the size of the gathered axis (of every Gather the
    input feeds, the smallest), else 2.  Symbolic dims are 1, as `load_onnx` pins them."""
    import onnx
    from onnx import helper
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(
            inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            shapes.setdefault(vi.name, tuple(d.dim_value if d.HasField("dim_value") else 1
                                             for d in tt.shape.dim))
    inits = {t.name for t in model.graph.initializer}
    specs = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim)
        specs[vi.name] = (helper.tensor_dtype_to_np_dtype(tt.elem_type), None, dims)
    bounds: dict[str, int] = {}
    for node in model.graph.node:
        for k, x in enumerate(node.input):
            if x not in specs or specs[x][0].kind not in "iub":
                continue
            high = 2
            data = shapes.get(node.input[0]) if node.op_type.startswith("Gather") else None
            if k == 1 and data:
                if node.op_type == "GatherND":
                    high = min(data)
                else:
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    high = data[axis % len(data)]
            bounds[x] = min(bounds.get(x, high), high)
    return {n: (dt, bounds.get(n, 2) if dt.kind in "iub" else None, dims)
            for n, (dt, _, dims) in specs.items()}


def check_onnx_file(reference, written, seed: int = 0, graph: Graph | None = None,
                    weights: dict | None = None, reference_in_ort: bool | None = None
                    ) -> CheckResult:
    """Reads the ONNX file `written` back, in onnxruntime (CPU, ORT_ENABLE_ALL), and compares it
    with the original: first the declared inputs and outputs (names, element types, order)
    against the ModelProto or path `reference`; then the outputs, per output with the module's
    rule, on inputs of the declared dtypes over several draws.  The original's outputs come
    from `reference` run in onnxruntime (the default without `graph`), or with
    `reference_in_ort=False` (a zoo model: `reference` is its export) from the project's
    executor on `graph` with `weights`, in float64.  Given `graph` (the original's IR with
    `weights`), a draw on which two computations of the original disagree -- onnxruntime
    against the executor in float64, or the executor in float32 against float64 -- is skipped
    as ill-conditioned in float32; at least one draw must be compared."""
    import onnx

    from envcore.cost.ort_cost import ort_session  # (onnxruntime: only when a file is checked)
    from envcore.execute import outputs_close
    ref = reference if isinstance(reference, onnx.ModelProto) else onnx.load(str(reference))
    try:
        got = onnx.load(str(written))
    except Exception as e:
        return CheckResult(False, float("inf"), f"cannot read back {written}: {_first_line(e)}")
    (ri, ro), (wi, wo) = onnx_signature(ref), onnx_signature(got)
    if wi != ri:
        return CheckResult(False, float("inf"), f"the written file's inputs {wi} are not the "
                           f"original's {ri} (names, element types, order)")
    if wo != ro:
        return CheckResult(False, float("inf"), f"the written file's outputs {wo} are not the "
                           f"original's {ro} (names, element types, order)")
    specs = onnx_input_specs(ref)
    try:
        sess = ort_session(written, threads=0)
    except Exception as e:
        return CheckResult(False, float("inf"), f"onnxruntime cannot load the written file: "
                           f"{_first_line(e)}")
    in_ort = graph is None if reference_in_ort is None else reference_in_ort
    if not in_ort and graph is None:
        raise ValueError("reference_in_ort=False needs the original's graph")
    ref_sess = ort_session(ref, threads=0) if in_ort else None
    count = FILE_DRAWS if in_ort else GRAPH_DRAWS
    worst, compared, skipped = 0.0, 0, 0
    for s, scale in draws(seed, count):
        feeds = {n: draw_input(dims, s, scale, (dt, high), j)
                 for j, (n, (dt, high, dims)) in enumerate(sorted(specs.items()))}
        leaves = {**(weights or {}), **feeds}
        want = ref_sess.run(None, feeds) if in_ort else _run_graph(graph, leaves)
        try:
            have = sess.run(None, feeds)
        except Exception as e:
            return CheckResult(False, float("inf"), f"the written file fails in onnxruntime: "
                               f"{_first_line(e)}", compared, skipped)
        ok, err, why = outputs_close(want, have, RTOL, ATOL)
        if not ok and graph is not None and _unreliable(
                want, _run_graph(graph, leaves) if in_ort else _run_graph(graph, leaves, True)):
            skipped += 1
            continue
        worst, compared = max(worst, err), compared + 1
        if not ok:
            return CheckResult(False, worst, f"written file, inputs x{scale:g} (seed {s}): {why}",
                               compared, skipped)
    return _verdict(worst, compared, skipped)


def conform_signature(model, reference) -> None:
    """Gives an exported ModelProto the original's interface, in place: its real inputs in the
    original's order with the original's element types (the IR keeps no dtypes: an int64 input
    is exported as float otherwise), inputs the graph no longer reads declared anyway, and the
    outputs under the original's names.  `check_onnx_file` then checks the result."""
    from onnx import helper
    ref_inits = {t.name for t in reference.graph.initializer}
    have = {vi.name: vi for vi in model.graph.input}
    ins = []
    for r in reference.graph.input:
        if r.name in ref_inits:
            continue
        vi = have.pop(r.name, None)
        if vi is None:        # read by nothing now: declared, so callers feed what they did
            tt = r.type.tensor_type
            vi = helper.make_tensor_value_info(r.name, tt.elem_type, [
                d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim])
        else:
            vi.type.tensor_type.elem_type = r.type.tensor_type.elem_type
        ins.append(vi)
    ins.extend(have.values())     # an input the original lacks stays: the check refuses it
    del model.graph.input[:]
    model.graph.input.extend(ins)
    if len(model.graph.output) != len(reference.graph.output):
        return
    taken = {t.name for t in model.graph.initializer} | {vi.name for vi in model.graph.input}
    taken |= {o for n in model.graph.node for o in n.output}
    for vi, r in zip(model.graph.output, reference.graph.output):
        if vi.name == r.name or r.name in taken:
            continue
        for n in model.graph.node:
            n.output[:] = [r.name if o == vi.name else o for o in n.output]
        vi.name = r.name


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
             device: str | None = None, min_gain: float = 0.01,
             unverified: bool = False) -> OptimizeResult:
    """`device` picks the analytic model's profile (default "cpu": what `do_measure` times on;
    "v100" is TASO's GPU).  Under a measured cost model (torch, cupy) every op the result's
    gain rests on is timed again, and a result whose re-timed gain is below `min_gain` (a
    fraction) is dropped for the original: a guard against the optimiser's curse, where the
    search picks whatever a lucky or unlucky timing priced wrong."""
    from agents.base import SearchAgent, get_agent
    from agents.search.problem import SearchProblem

    # cheap checks first: a typo in the agent's name should not wait for thousands of rules
    if do_measure:
        import importlib.util
        if importlib.util.find_spec("torch") is None:
            raise BadInput("--measure needs torch: pip install 'subgen[torch]'")
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
    # a rules file is proved first (each rule then applies inside its scope); Rule objects
    # given in Python are the caller's: applied as they are
    rule_list = rules if isinstance(rules, list) else load_rule_set(rules, unverified=unverified)

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
    source = str(model) if not isinstance(model, Graph) and Path(str(model)).suffix == ".onnx" \
        else None
    specs = None
    if source is not None:
        import onnx
        specs = onnx_input_specs(onnx.load(source))
    # zero rewrites are checked too: the check takes nothing on trust
    chk = (compare_graphs(graph, found.graph, seed, specs, weights) if check
           else CheckResult(True, float("nan"), "", 0))
    res = OptimizeResult(name, agent, cost, graph, found.graph, before, after, list(found.rewrites),
                         seconds, chk.equivalent, chk.max_abs_err, found.expansions, found.trace,
                         weights=weights,
                         device=getattr(getattr(cost_model, "profile", None), "name", None),
                         retimed=retimed, search_cost_after=believed, fallback=fallback,
                         cpu_seconds=cpu_seconds, source=source, input_specs=specs,
                         check_failure=chk.reason, check_draws=chk.draws,
                         check_skipped=chk.skipped)
    applied = set(res.rewrites)
    res.rule_texts = {r.name: f"{r.src.text()}  =>  {r.dst.text()}"
                      for r in rule_list if r.name in applied}
    if do_measure:
        res.judged = judge_in_onnxruntime(res, seed)
        if res.judged:
            res.judged["ort_rewrites_judged"] = len(res.rewrites)
            res.judged["ort_predicted_judged"] = res.speedup
        if res.judged and res.judged["ort_kept"] == "original" and res.rewrites:
            res.fallback = (f"onnxruntime: {res.judged['ort_speedup']:.3f}x (predicted "
                            f"{res.speedup:.3f}x) is not faster beyond its noise "
                            f"({100 * res.judged['ort_noise']:.1f}%)")
            res.graph, res.rewrites, res.cost_after = graph, [], before
        not_float = sorted(n for n, (dt, _, _) in (specs or {}).items() if dt.kind != "f")
        if not_float:
            # torch eager is timed on float32 draws, which an integer or bool input (token ids,
            # a mask) refuses; onnxruntime's judge above drew each input in its own dtype
            res.measure_skipped = (f"torch eager is timed on float inputs only; "
                                   f"{', '.join(not_float)} {'is' if len(not_float) == 1 else 'are'}"
                                   f" not float (onnxruntime's judge timed it)")
        else:
            res.measured = measure(graph, res.graph, cost)
    return res


def judge_in_onnxruntime(res: OptimizeResult, seed: int = 0) -> dict | None:
    """The judge's verdict on `res` (`subgen.pipelines.judge`): the original and the result
    timed end to end in onnxruntime, as they would be written; None without onnx/onnxruntime."""
    try:
        import onnxruntime  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        return None
    from subgen.pipelines.judge import judge
    reference, result, _, _ = onnx_models(res, seed)
    feeds = {name: draw_input(dims, seed, 1.0, (dtype, high))
             for name, (dtype, high, dims) in onnx_input_specs(reference).items()}
    return judge(reference, result, feeds)


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


def write_result(res: OptimizeResult, out: str | Path, seed: int = 0) -> Path:
    """Writes the optimized graph as .onnx or .json, atomically (`envcore.files.write_atomic`),
    and never one that failed the check: raises NotEquivalent, with
    nothing written and nothing left behind.

    An .onnx file is read back before it takes `out`'s place (`check_onnx_file`): its declared
    inputs and outputs against the original's, and its outputs in onnxruntime against the
    original's -- the source file run in onnxruntime, or a zoo model's graph run by the
    executor (with the weights the file is written with: seeded, fan-in scaled).  From then on
    `res.equivalent`, `max_abs_err`, `checked` and `check_failure` describe the file."""
    from envcore.files import write_atomic
    out = Path(out)
    if out.suffix not in (".onnx", ".json"):
        raise BadInput(f"--out must end in .onnx or .json, got {out.name}")
    if not res.equivalent:
        raise NotEquivalent(_refusal(res, out))
    made = [d for d in (out.parent, *out.parent.parents) if not d.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        if out.suffix == ".json":
            tmp.write_text(res.graph.to_json())
            return
        _write_checked_onnx(res, tmp, seed)
        if not res.equivalent:
            raise NotEquivalent(_refusal(res, out))
    try:
        write_atomic(out, write)  # `out` is the old file or the whole new one, never half
    except BaseException:
        for d in made:          # innermost first; only folders this call created
            try:
                d.rmdir()
            except OSError:
                break
        raise
    return out


def onnx_models(res: OptimizeResult, seed: int = 0):
    """(the original as ONNX, the result as it is written, the original's graph or None for a
    file, the weights): a file's original is the file; a zoo model's is its export with the
    seeded weights the written file gets too.  A result with no rewrite is the original itself,
    byte for byte: handing back an unchanged model must never cost its speed."""
    import numpy as np
    import onnx
    from envcore.onnx.exporter import to_onnx
    if res.source is not None:
        reference, graph, weights = onnx.load(res.source), None, res.weights
    else:
        weights = res.weights or {
            k: np.asarray(v, np.float32) for k, v in check_values(res.original, seed).items()
            if k in res.original.leaves("weight")}
        reference, graph = to_onnx(res.original, weights), res.original
    if not res.rewrites:
        return reference, reference, graph, weights
    model = to_onnx(res.graph, weights)
    conform_signature(model, reference)
    return reference, model, graph, weights


def _write_checked_onnx(res: OptimizeResult, path: str, seed: int) -> None:
    import onnx
    reference, model, graph, weights = onnx_models(res, seed)
    onnx.save(model, path)
    chk = check_onnx_file(reference, path, seed, graph=res.original, weights=weights,
                          reference_in_ort=graph is None)
    res.equivalent, res.max_abs_err = chk.equivalent, chk.max_abs_err
    res.checked, res.check_failure = "written file", chk.reason
    res.check_draws, res.check_skipped = chk.draws, chk.skipped


def _refusal(res: OptimizeResult, out: Path) -> str:
    what = "written file" if res.checked == "written file" else "optimized graph"
    why = res.check_failure or f"max abs err {res.max_abs_err:.3g}"
    return f"not writing {out}: the {what} differs from the original ({why})"
