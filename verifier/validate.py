"""Axiom validation: every axiom is checked against the catalogue's reference semantics.

- **Numeric:** for each instance of the axiom's domain (every tensor shape with dimensions in
  1..max_dim, over the parameter choices it admits; a seeded uniform sample when `limit` is set)
  both sides are built as concrete graphs and run on random floats.  A mismatch is a counterexample.
- **Symbolic:** on small instances, both sides are run by the same reference semantics on numpy
  object arrays of Z3 reals (one unknown per tensor element), and Z3 decides whether they can
  differ.  The difference is first normalised (`som`); if it is not identically zero, Z3 looks
  for inputs in [-1, 1] that make some element differ by more than 1e-6 (float constants such as
  a pool kernel's 1/9 are not exact reals).  Operators whose reference semantics are not
  polynomial (relu's max, max pooling) cannot run on Z3 reals: those axioms are numeric only.
- **Redundancy:** an axiom that Z3 proves from the other axioms (within a work limit) is reported.

Every Z3 check here is bounded by Z3's deterministic resource limit (`verifier.prove.set_limits`:
`rlimit` scaled from `timeout_ms`, a generous wall-clock timeout only as a safety net), so the
report does not depend on the machine's load or on `--workers`.  Wall time alone was not a bound:
Z3 reads its timer only between instantiation rounds, and one redundancy check with a 2 s timeout
(`ewmul_comm`) ran for 173 s.  Each redundancy check also runs in a Z3 context of its own
(`verifier.prove.isolated_check`): in the process's shared context its answer depended on the
checks before it.

`validate_axioms(..., workers=n)` splits the work into jobs (numeric instances in chunks, the
symbolic check, the redundancy check, per axiom) and runs them on `n` spawned processes; the
report is the same as the serial one (instances keep their index, hence their random inputs).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import z3

from envcore.execute import evaluate
from envcore.ops import ShapeError
from verifier.axiom import Axiom
from verifier.axioms import AXIOMS
from verifier.prove import isolated_check, set_limits
from verifier.refute import compare, leaf_shapes


@dataclass
class AxiomReport:
    name: str
    statement: str
    instances: int = 0                 # instances run numerically
    ok: bool = True                    # no counterexample, numeric or symbolic
    counterexample: dict | None = None
    symbolic: int = 0                  # instances proved symbolically
    symbolic_note: str = ""
    redundant: bool | None = None      # None: not checked or Z3 gave no answer in time
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def check_numeric(ax: Axiom, max_dim: int = 4, limit: int | None = None, seed: int = 0):
    """(instances run, counterexample or None)."""
    n = 0
    for k, inst in enumerate(ax.instances(max_dim, limit, seed)):
        try:
            g1, g2 = ax.graphs(inst)
        except ShapeError:
            continue          # the instance's shapes do not fit one side: not admitted
        n += 1
        cex = compare(g1, g2, seed + k)
        if cex:
            cex["instance"] = _jsonable(inst)
            return n, cex
    return n, None


def _jsonable(inst: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in inst.items()}


def _symbols(shapes: dict) -> dict:
    out = {}
    for name, sh in shapes.items():
        flat = [z3.Real(f"{name}{list(np.unravel_index(i, sh)) if sh else ''}")
                for i in range(int(np.prod(sh)))]
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        out[name] = arr.reshape(sh)
    return out


def check_symbolic(ax: Axiom, max_dim: int = 2, limit: int = 8, max_elements: int = 48,
                   timeout_ms: int = 5000, seed: int = 0):
    """(instances proved, counterexample or None, note)."""
    n = skipped = 0
    for inst in ax.instances(max_dim, limit, seed):
        try:
            g1, g2 = ax.graphs(inst)
        except ShapeError:
            continue
        shapes = leaf_shapes(g1, g2)
        if sum(int(np.prod(s)) for s in shapes.values()) > max_elements:
            continue
        syms = _symbols(shapes)
        try:
            a, b = evaluate(g1, syms), evaluate(g2, syms)
        except (z3.Z3Exception, TypeError):   # relu / max: not polynomial, numeric only
            skipped += 1
            continue
        pairs = [(p, q) for pa, qa in zip(a, b)
                 for p, q in zip(np.ravel(pa).tolist(), np.ravel(qa).tolist())]
        if np.shape(a[0]) != np.shape(b[0]):
            return n, {"instance": _jsonable(inst), "note": "output shapes differ"}, ""
        diffs = [z3.simplify(_real(p) - _real(q), som=True) for p, q in pairs]
        if all(z3.is_rational_value(d) and d.as_fraction() == 0 for d in diffs):
            n += 1
            continue
        s = z3.Solver()
        set_limits(s, timeout_ms)
        for v in syms.values():
            for e in np.ravel(v).tolist():
                s.add(e >= -1, e <= 1)
        s.add(z3.Or([z3.Or(d > 1e-6, d < -1e-6) for d in diffs]))
        res = s.check()
        if res == z3.sat:
            m = s.model()
            vals = {str(e): str(m.eval(e, model_completion=True))
                    for v in syms.values() for e in np.ravel(v).tolist()}
            return n, {"instance": _jsonable(inst), "symbolic": True, "inputs": vals}, ""
        if res == z3.unsat:
            n += 1
    note = f"{skipped} instances numeric only (relu/max are not polynomial)" if skipped else ""
    return n, None, note if n or skipped else "no instance small enough"


def _real(e):
    return e if isinstance(e, z3.ExprRef) else z3.RealVal(float(e))


def check_redundant(ax: Axiom, axioms: list[Axiom], timeout_ms: int = 2000) -> bool | None:
    """True when the other axioms imply `ax` (Z3 unsat in time), else None."""
    others = [(o.name, _formula(o)) for o in axioms if o.name != ax.name]
    # its own Z3 context and a work limit: in the shared context the answer depended on what
    # was checked before (matmul_ewadd_left: proved first in a process, not after another check)
    res, _ = isolated_check([z3.Not(_formula(ax))], timeout_ms, others, track=False)
    return True if res == "unsat" else None


_FORMULAS: dict = {}


def _formula(ax: Axiom) -> z3.BoolRef:
    """ax.builder(), once per process per axiom."""
    key = (ax.name, ax.statement)
    if key not in _FORMULAS:
        _FORMULAS[key] = ax.builder()
    return _FORMULAS[key]


def validate_axiom(ax: Axiom, axioms: list[Axiom] | None = None, max_dim: int = 4,
                   limit: int | None = None, symbolic: bool = True, redundancy: bool = True,
                   timeout_ms: int = 2000, seed: int = 0) -> AxiomReport:
    t0 = time.perf_counter()
    rep = AxiomReport(ax.name, ax.statement)
    rep.instances, cex = check_numeric(ax, max_dim, limit, seed)
    if cex is None and symbolic:
        rep.symbolic, cex, rep.symbolic_note = check_symbolic(ax, seed=seed)
    rep.ok, rep.counterexample = cex is None, cex
    if redundancy:
        rep.redundant = check_redundant(ax, axioms or AXIOMS, timeout_ms)
    rep.seconds = time.perf_counter() - t0
    return rep


def validate_axioms(axioms: list[Axiom] | None = None, progress=None, workers: int = 1,
                    on_job=None, **kw) -> list[AxiomReport]:
    """Validate every axiom (see `validate_axiom` for the options); `progress(report)` is called
    after each one, `on_job(done, total)` after each piece of work (numeric chunk, symbolic or
    redundancy check), `total` growing as the instances are enumerated.  `workers` > 1 runs the
    pieces on that many spawned processes, with the same reports as one (axioms must be the
    registered ones, `AXIOMS`, which workers look up by name)."""
    axioms = list(axioms or AXIOMS)
    if workers <= 1 and on_job is None:
        out = []
        for ax in axioms:
            rep = validate_axiom(ax, axioms, **kw)
            out.append(rep)
            if progress:
                progress(rep)
        return out
    return validate_all(axioms, shape=False, progress=progress, workers=workers, on_job=on_job,
                        **kw)[0]


# -- the job runner: every piece of validation as a job, on one or many processes ------------

CHUNK = 500           # numeric instances per job


def _job_stream(axioms, max_dim, limit, symbolic, redundancy, seed, shape, shape_limit):
    """(kind, key, payload) jobs: redundancy and symbolic checks first (the long ones), then the
    numeric chunks axiom by axiom (enumerated lazily), then the shape axioms."""
    from verifier.shapes import SHAPE_AXIOMS
    for ax in axioms:
        if redundancy:
            yield "red", ax.name, None
    for ax in axioms:
        if symbolic:
            yield "sym", ax.name, None
    if shape:
        for sa in SHAPE_AXIOMS:
            yield "shape", sa.name, (min(max_dim, 3), shape_limit)
    for ax in axioms:
        insts = ax.instances(max_dim, limit, seed) if limit is not None else \
            (i for i in ax.domain(max_dim) if ax.holds_where(i))
        chunk, start, k = [], 0, 0
        for k, inst in enumerate(insts):
            chunk.append(inst)
            if len(chunk) == CHUNK:
                yield "num", ax.name, (start, chunk)
                start, chunk = k + 1, []
        if chunk or start == 0:
            yield "num", ax.name, (start, chunk)


_REGISTRY: dict = {}


def _lookup(name):
    if not _REGISTRY:
        from verifier.shapes import SHAPE_AXIOMS
        _REGISTRY.update({a.name: a for a in AXIOMS}, **{f"shape:{a.name}": a
                                                         for a in SHAPE_AXIOMS})
    return _REGISTRY[name]


def _run_job(job, axioms=None, timeout_ms: int = 2000, seed: int = 0, max_dim: int = 4):
    """One job's result: (kind, name, payload, result, seconds)."""
    kind, name, payload = job
    t0 = time.perf_counter()
    if kind == "shape":
        from verifier.shapes import validate_shape_axiom
        md, lim = payload
        res = validate_shape_axiom(_lookup(f"shape:{name}"), md, lim, seed)
    else:
        ax = axioms[name] if axioms is not None else _lookup(name)
        if kind == "red":
            res = check_redundant(ax, list(axioms.values()) if axioms is not None else AXIOMS,
                                  timeout_ms)
        elif kind == "sym":
            res = check_symbolic(ax, seed=seed)
        else:
            start, insts = payload
            res = _numeric_chunk(ax, start, insts, seed)
    return kind, name, (payload[0] if kind == "num" else None), res, time.perf_counter() - t0


def _worker_job(args):
    job, timeout_ms, seed, max_dim = args
    return _run_job(job, None, timeout_ms, seed, max_dim)


def _numeric_chunk(ax: Axiom, start: int, insts: list, seed: int):
    """check_numeric on instances start.. of the axiom (same seeds as one pass over all)."""
    n = 0
    for j, inst in enumerate(insts):
        try:
            g1, g2 = ax.graphs(inst)
        except ShapeError:
            continue
        n += 1
        cex = compare(g1, g2, seed + start + j)
        if cex:
            cex["instance"] = _jsonable(inst)
            return n, cex
    return n, None


def validate_all(axioms: list[Axiom] | None = None, shape: bool = True, progress=None,
                 workers: int = 1, on_job=None, max_dim: int = 4, limit: int | None = None,
                 symbolic: bool = True, redundancy: bool = True, timeout_ms: int = 2000,
                 seed: int = 0, shape_limit: int | None = 40):
    """(operator axiom reports, shape axiom reports): `validate_axioms` and
    `validate_shape_axioms` (when `shape`) as one stream of jobs on `workers` processes."""
    import queue

    from verifier.shapes import SHAPE_AXIOMS
    axioms = list(axioms or AXIOMS)
    by_name = {a.name: a for a in axioms}
    if any(_REGISTERED().get(a.name) is not a for a in axioms):
        workers = 1                     # an unregistered axiom cannot be looked up by a worker
    reps = {a.name: AxiomReport(a.name, a.statement) for a in axioms}
    chunks: dict = {a.name: [] for a in axioms}
    sym: dict = {}
    pending = {a.name: 0 for a in axioms}      # jobs submitted and not yet back
    submitted: set = set()                       # axioms whose every job is submitted
    done: set = set()
    shape_reps: dict = {}
    count = {"done": 0, "total": 0}

    def maybe_finish(name):
        if name in done or name not in submitted or pending[name]:
            return
        done.add(name)
        rep = reps[name]
        for _, (n, cex) in sorted(chunks[name], key=lambda c: c[0]):
            rep.instances += n                   # as one pass: up to the first counterexample
            if cex is not None:
                rep.ok, rep.counterexample = False, cex
                break
        if rep.ok and name in sym:               # symbolic only after numeric passed
            rep.symbolic, cex, rep.symbolic_note = sym[name]
            rep.ok, rep.counterexample = cex is None, cex
        if progress:
            progress(rep)

    def take(result):
        kind, name, start, res, secs = result
        count["done"] += 1
        if kind == "shape":
            sa = next(a for a in SHAPE_AXIOMS if a.name == name)
            n, bad = res
            shape_reps[name] = AxiomReport(sa.name, sa.statement, instances=n, ok=bad is None,
                                           counterexample=bad, symbolic=n,
                                           symbolic_note="shape rule (Z3)", seconds=secs)
            if progress:
                progress(shape_reps[name])
        else:
            reps[name].seconds += secs
            pending[name] -= 1
            if kind == "red":
                reps[name].redundant = res
            elif kind == "sym":
                sym[name] = res
            else:
                chunks[name].append((start, res))
            maybe_finish(name)
        if on_job:
            on_job(count["done"], count["total"])

    def jobs():
        """The job stream; an axiom counts as submitted once its last numeric chunk is."""
        last = None
        for job in _job_stream(axioms, max_dim, limit, symbolic, redundancy, seed, shape,
                               shape_limit):
            kind, name, _ = job
            if kind == "num" and name != last:
                if last is not None:
                    submitted.add(last)
                    yield None                   # a point to finish `last` at
                last = name
            if kind != "shape":
                pending[name] += 1
            count["total"] += 1
            yield job
        submitted.update(by_name)
        yield None

    if workers <= 1:
        for job in jobs():
            if job is not None:
                take(_run_job(job, by_name, timeout_ms, seed, max_dim))
            for name in list(submitted - done):
                maybe_finish(name)
    else:
        results: queue.Queue = queue.Queue()
        inflight = 0

        def drain(block: bool):
            nonlocal inflight
            while inflight and (block or not results.empty()):
                ok, r = results.get()
                inflight -= 1
                if not ok:
                    raise r
                take(r)
                block = False
        from envcore.processes import LocalPool

        def finished(fut):
            if fut.cancelled():           # the pool is being torn down (Ctrl-C, an error)
                return
            err = fut.exception()
            results.put((True, fut.result()) if err is None else (False, err))
        with LocalPool(workers) as pool:
            for job in jobs():
                if job is None:
                    for name in list(submitted - done):
                        maybe_finish(name)
                    continue
                pool.submit(_worker_job, (job, timeout_ms, seed, max_dim)).add_done_callback(finished)
                inflight += 1
                drain(inflight >= 4 * workers)   # a bounded queue: enumeration stays lazy
            while inflight:
                drain(True)
            for name in list(submitted - done):
                maybe_finish(name)
    return [reps[a.name] for a in axioms], [shape_reps[a.name] for a in SHAPE_AXIOMS
                                             if a.name in shape_reps]


def _REGISTERED() -> dict:
    return {a.name: a for a in AXIOMS}


def validate_shape_axioms(max_dim: int = 3, limit: int | None = 40, seed: int = 0,
                          progress=None) -> list[AxiomReport]:
    """Every shape axiom (verifier.shapes) against the catalogue's shape inference."""
    from verifier.shapes import SHAPE_AXIOMS, validate_shape_axiom
    out = []
    for sa in SHAPE_AXIOMS:
        t0 = time.perf_counter()
        n, bad = validate_shape_axiom(sa, min(max_dim, 3), limit, seed)
        rep = AxiomReport(sa.name, sa.statement, instances=n, ok=bad is None,
                          counterexample=bad, symbolic=n, symbolic_note="shape rule (Z3)",
                          seconds=time.perf_counter() - t0)
        out.append(rep)
        if progress:
            progress(rep)
    return out
