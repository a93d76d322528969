"""Where a proof holds: a rule proved with symbolic dimensions, and the shape scope it rests on.

A rule is generated on small shapes (2x4x4x4) and applied to large ones (16x1024x64x64), so a
proof at the generated shapes alone says nothing.  Here every size the matcher leaves open is a
Z3 integer (a *slot*):

- ("var", name, axis)              a dim of a rule variable;
- ("param", node, name, index)     an entry of a source node's shape parameter (split sizes, a
                                   constant's shape), which the matcher takes from the graph.

Dims the matcher fixes (a conv kernel's window, `envcore.ops.SEMANTIC_DIMS`) are pinned to their
values, as the matcher pins them.  The catalogue's own shape rules run on these symbols
(`envcore.ops.assuming`): the source's conditions hold at every match (the graph is well typed);
the target's conditions and "each output keeps its shape" are checked by the rewriter at the real
sizes.  The target's shape parameters (and a target conv's `groups`) are *resolved from the
structure of the bindings*: each is the dim of a source tensor (or a source shape parameter)
that the shape rules force it to equal, or, when nothing forces it, its generated value.

The proof then runs on these symbolic shapes, with each equality that held at the generated
sizes offered as a tracked assumption (first slot = slot, then slot = constant).  The unsat core
names the assumptions the proof used: that is the rule's *precondition*, which the matcher
checks before it lists a match.  An empty core means the rule holds at every size the matcher
admits.  A scope is plain data (JSON):

    {"requires": [[slot, slot_or_int], ...],      # the precondition, [] when general
     "resolve": {dst node id: {param: [recipe per entry]}},
     "pinned": bool}                              # true when shapes could not be made symbolic

    recipe: ["var", name, axis] | ["dim", src node, output, axis] | ["param", node, name, i]
            | ["const", value]
"""
from __future__ import annotations

import itertools
from typing import Any

import z3

from envcore.graph import Graph, Ref
from envcore.ops import LEAVES, OPS, SHAPE_PARAMS, ShapeError, assuming, semantic_dims
from envcore.rewrite.rule import Rule
import verifier.z3ops as z3ops

# target params resolved from the bindings besides SHAPE_PARAMS: a conv's groups follow from
# its channel counts (pool_avg -> depthwise conv has groups = C)
RESOLVED_PARAMS = {"conv2d": ("groups",)}


class NotSymbolic(ValueError):
    """A shape rule that cannot run on symbolic dims (reshape's element count, opaque ops)."""


def _int(v) -> z3.ArithRef:
    return v if isinstance(v, z3.ExprRef) else z3.IntVal(int(v))


def _entries(value) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _rebuild(value, entries):
    return tuple(entries) if isinstance(value, (tuple, list)) else entries[0]


class Side:
    """One side of a rule with symbolic shapes.  `open_params`: (node, param) pairs whose entries
    get fresh symbols named with `prefix` (slots on the matched side, unknowns on the built one)."""

    def __init__(self, graph: Graph, var_dims: dict, open_params, prefix: str, pins: bool):
        self.graph = graph
        self.shapes: dict[Ref, tuple] = {}
        self.params: dict[int, dict] = {}
        self.symbols: dict[tuple, tuple[z3.ArithRef, int]] = {}   # key -> (symbol, gen value)
        self.conds: list = []
        for i in graph.topo_order:
            n = graph.nodes[i]
            if n.op in LEAVES:
                self.shapes[Ref(i, 0)] = var_dims[n.p["name"]]
                continue
            opdef = OPS[n.op]
            p = {**opdef.defaults, **n.p}
            for name in open_params(i, n.op):
                if name not in p:
                    continue
                ents = []
                for k, v in enumerate(_entries(p[name])):
                    key = (prefix, i, name, k)
                    sym = z3.Int(":".join(map(str, key)))
                    self.symbols[key] = (sym, int(v))
                    ents.append(sym)
                p[name] = _rebuild(p[name], ents)
            self.params[i] = p
            ins = [self.shapes[r] for r in n.inputs]
            if pins:   # the matcher keeps these dims (a kernel's window) as the rule has them
                concrete = [graph.shape(r) for r in n.inputs]
                for k, a, size in semantic_dims(n.op, concrete):
                    self.conds.append(_int(ins[k][a]) == size)
            try:
                with assuming() as conds:
                    outs = opdef.shape(ins, p)
            except (TypeError, z3.Z3Exception, ShapeError, IndexError) as e:
                raise NotSymbolic(f"{n.op}: {e}") from None
            self.conds += conds
            for k, sh in enumerate(outs):
                self.shapes[Ref(i, k)] = tuple(sh)

    def terms(self) -> dict:
        """Every tensor as a Z3 term, shape parameters symbolic."""
        out: dict = {}
        for i in self.graph.topo_order:
            n = self.graph.nodes[i]
            if n.op in LEAVES:
                out[Ref(i, 0)] = z3ops.leaf(n.op, n.p["name"])
                continue
            args = [out[r] for r in n.inputs]
            for k in range(n.num_outputs):
                out[Ref(i, k)] = z3ops.apply(n.op, self.params[i], args, k)
        return out


def _counted_limit(s: z3.Solver, ms: int) -> None:
    """The deterministic work limit of `verifier.prove` (wall time only as a safety net)."""
    from verifier.prove import set_limits
    set_limits(s, ms)


def _open_src(_i, op):
    return SHAPE_PARAMS.get(op, ())


def _open_dst(_i, op):
    return SHAPE_PARAMS.get(op, ()) + RESOLVED_PARAMS.get(op, ())


def _var_dims(rule: Rule) -> tuple[dict, dict]:
    """Symbolic dims of every rule variable, and the var slots: slot -> (symbol, gen value)."""
    dims, slots = {}, {}
    for g in (rule.src, rule.dst):
        for name, ref in g.leaves().items():
            if name in dims:
                continue
            syms = []
            for a, v in enumerate(g.shape(ref)):
                key = ("var", name, a)
                sym = z3.Int(f"var:{name}:{a}")
                slots[key] = (sym, int(v))
                syms.append(sym)
            dims[name] = tuple(syms)
    return dims, slots


class Setup:
    """Everything a direction's proof needs, short of the axioms: symbolic sides, facts, the
    resolution of the target's parameters, and the candidate assumptions."""

    def __init__(self, rule: Rule, max_entail_checks: int = 400):
        var_dims, var_slots = _var_dims(rule)
        self.rule = rule
        self.src = Side(rule.src, var_dims, _open_src, "param", pins=True)
        self.dst = Side(rule.dst, var_dims, _open_dst, "u", pins=False)
        self.slots = {**var_slots, **self.src.symbols}
        facts = list(self.src.conds) + list(self.dst.conds)
        for s, d in zip(rule.src.outputs, rule.dst.outputs):
            a, b = self.src.shapes[s], self.dst.shapes[d]
            if len(a) != len(b):
                raise ShapeError("outputs differ in rank")
            facts += [_int(p) == _int(q) for p, q in zip(a, b)]
        facts += [sym >= 1 for sym, _ in self.slots.values()]
        facts += [sym >= 1 for key, (sym, _) in self.dst.symbols.items()]
        self.shape_facts = facts
        self.resolve, self.resolution_facts = self._resolve(facts, max_entail_checks)

    # -- the target's parameters, from the structure of the bindings --------------------------

    def _candidates(self):
        """(recipe, expression, generated value) for every source tensor dim and shape param."""
        out = []
        for (kind, *rest), (sym, v) in self.src.symbols.items():
            out.append((["param", *rest], sym, v))
        for ref, sh in self.src.shapes.items():
            n = self.rule.src.nodes[ref.node]
            for a, e in enumerate(sh):
                v = self.rule.src.shape(ref)[a]
                if n.op in LEAVES:
                    out.append((["var", n.p["name"], a], _int(e), v))
                else:
                    out.append((["dim", ref.node, ref.index, a], _int(e), v))
        return out

    def _resolve(self, facts, budget):
        unknowns = dict(self.dst.symbols)
        if not unknowns:
            return {}, []
        s = z3.Solver()
        _counted_limit(s, 500)       # an entailment's answer must not depend on the load
        s.add(*facts)
        cands = self._candidates()
        chosen: dict[tuple, list] = {}
        extra = []
        todo = list(unknowns)
        checks = 0
        while todo:
            progress = False
            for key in list(todo):
                sym, v = unknowns[key]
                for recipe, expr, cv in cands:
                    if cv != v or checks >= budget:
                        continue
                    checks += 1
                    s.push()
                    s.add(sym != expr)
                    entailed = s.check() == z3.unsat
                    s.pop()
                    if entailed:
                        chosen[key], progress = recipe, True
                        extra.append(sym == expr)
                        s.add(sym == expr)
                        todo.remove(key)
                        break
            if not progress:        # nothing forces it: it keeps its generated value
                key = todo.pop(0)
                sym, v = unknowns[key]
                chosen[key] = ["const", v]
                extra.append(sym == v)
                s.add(sym == v)
        resolve: dict[str, dict[str, list]] = {}
        for (_, node, name, k), recipe in sorted(chosen.items(), key=lambda kv: kv[0][1:]):
            resolve.setdefault(str(node), {}).setdefault(name, []).append(recipe)
        return resolve, extra

    # -- the proof's facts and assumptions ------------------------------------------------------

    def dim_facts(self, src_terms: dict, dst_terms: dict) -> list:
        facts, seen = [], set()
        for side, terms in ((self.src, src_terms), (self.dst, dst_terms)):
            for ref, t in terms.items():
                if t.get_id() in seen:
                    continue
                seen.add(t.get_id())
                sh = side.shapes[ref]
                facts += [z3ops.DIM(t, k) == _int(d) for k, d in enumerate(sh)]
                facts.append(z3ops.DIM(t, len(sh)) == 0)
        return facts

    def equalities(self) -> list[tuple[tuple, Any]]:
        """slot = slot for every pair of slots of equal generated size."""
        keys = sorted(self.slots, key=str)
        return [(a, b) for a, b in itertools.combinations(keys, 2)
                if self.slots[a][1] == self.slots[b][1]]

    def pins(self) -> list[tuple[tuple, int]]:
        return [(k, self.slots[k][1]) for k in sorted(self.slots, key=str)]

    def formula(self, req) -> z3.BoolRef:
        a, b = req
        return self.slots[a][0] == (self.slots[b][0] if isinstance(b, tuple) else b)


_LAST: list = []       # [(rule, setup)]: the proof and its check ask for the same rule's setup


def setup_of(rule: Rule) -> Setup:
    if _LAST and _LAST[0][0] is rule:
        return _LAST[0][1]
    setup = Setup(rule)
    _LAST[:] = [(rule, setup)]
    return setup


def _jsonable_req(req) -> list:
    a, b = req
    return [list(a), list(b) if isinstance(b, tuple) else b]


def pinned_scope(rule: Rule) -> dict:
    """The scope of a rule whose shapes could not be made symbolic: every open size as
    generated (the matcher then applies it only at the generated sizes)."""
    reqs = []
    for g in (rule.src,):
        for name, ref in g.leaves().items():
            reqs += [[["var", name, a], int(v)] for a, v in enumerate(g.shape(ref))]
        for i, n in g.nodes.items():
            for p in SHAPE_PARAMS.get(n.op, ()):
                reqs += [[["param", i, p, k], int(v)] for k, v in enumerate(_entries(n.p[p]))]
    resolve: dict = {}
    for i, n in rule.dst.nodes.items():
        for p in _open_dst(i, n.op):
            if p in n.p:
                resolve.setdefault(str(i), {})[p] = [["const", int(v)] for v in _entries(n.p[p])]
    return {"requires": reqs, "resolve": resolve, "pinned": True, "fixed": fixed_params(rule)}


_CTX_AXIOMS: list = []    # [(context, translated (formula, tracker) pairs, axioms)]: the last one


def _isolated_solver(ctx: z3.Context, timeout_ms: int, axioms=None) -> tuple[z3.Solver, list]:
    """A solver in the Z3 context `ctx` holding every axiom (tracked as `ax:name`), bounded by
    the deterministic work limit.  `verify_rule` makes one context per rule, shared by the
    rule's two directions (the axioms are translated into it once): the answer depends on the
    rule alone, not on what the process checked before, nor on the machine's load (see
    `verifier.prove`)."""
    import verifier.prove as prove
    if not (_CTX_AXIOMS and _CTX_AXIOMS[0][0] is ctx and _CTX_AXIOMS[0][2] is axioms):
        pairs = [(f.translate(ctx), b.translate(ctx)) for f, b in prove.tracked_axioms(axioms)]
        _CTX_AXIOMS[:] = [(ctx, pairs, axioms)]
    pairs = _CTX_AXIOMS[0][1]
    s = z3.Solver(ctx=ctx)
    s.set("smt.mbqi", False)
    s.set("core.minimize", True)
    s.set("smt.qi.max_instances", prove.MAX_INSTANCES)
    prove.set_limits(s, timeout_ms)
    ref, solver = ctx.ref(), s.solver
    for f, b in pairs:
        z3.Z3_solver_assert_and_track(ref, solver, f.as_ast(), b.as_ast())
    return s, []


def prove_scoped(rule: Rule, timeout_ms: int = 2000, axioms=None,
                 ctx: z3.Context | None = None) -> tuple[str, tuple[str, ...], dict | None]:
    """(status, axioms used, scope) for one direction of `rule` (src is what the matcher finds),
    checked in a Z3 context of its own under the deterministic work limit."""
    try:
        setup = setup_of(rule)
    except NotSymbolic:
        return "pinned", (), None
    except ShapeError:
        return "malformed", (), None
    try:
        src_t, dst_t = setup.src.terms(), setup.dst.terms()
    except z3ops.NotEncodable:
        return "unknown", (), None
    negated = z3.Or([src_t[a] != dst_t[b] for a, b in zip(rule.src.outputs, rule.dst.outputs)])
    ctx = ctx if ctx is not None else z3.Context()
    s, keep = _isolated_solver(ctx, timeout_ms, axioms)
    for f in [*setup.shape_facts, *setup.resolution_facts, *setup.dim_facts(src_t, dst_t),
              negated]:
        keep.append(f.translate(ctx) if isinstance(f, z3.ExprRef) else z3.BoolVal(bool(f), ctx))
        s.add(keep[-1])
    lits: dict[str, tuple] = {}

    def literal(req) -> z3.BoolRef:
        name = f"pre:{_jsonable_req(req)}"
        if name not in lits:
            lits[name] = req
            s.add(z3.Implies(z3.Bool(name, ctx), setup.formula(req).translate(ctx)))
        return z3.Bool(name, ctx)

    def proved(used, core) -> tuple:
        axioms_used = tuple(sorted(c[3:] for c in core if c.startswith("ax:")))
        requires = sorted((_jsonable_req(lits[str(u)]) for u in used), key=str)
        return "proved", axioms_used, {"requires": requires, "resolve": setup.resolve,
                                       "pinned": False, "fixed": fixed_params(rule)}

    # most rules hold at any size: one check with no assumption offered settles those
    if s.check() == z3.unsat:
        return proved([], [str(b) for b in s.unsat_core()])
    offered: list = []
    for reqs in (setup.equalities(), setup.pins()):
        offered += [literal(q) for q in reqs]
        if s.check(*offered) == z3.unsat:
            used = _weakest(s, [lits[str(c)] for c in s.unsat_core() if str(c) in lits], literal)
            s.check(*used)
            return proved(used, [str(b) for b in s.unsat_core()])
    return "unknown", (), None


def _weakest(s: z3.Solver, core: list, literal) -> list:
    """A precondition no stronger than it must be.  A minimal core is not the weakest: from
    {a = b, a = c} (b = c is what the proof needs) no literal can be dropped.  So the core's
    equalities are closed into classes first, every pair of a class offered, and then dropped one
    at a time while the proof still goes through (pins last, so equalities win over pins)."""
    eqs = [r for r in core if _is_eq(r)]
    pins = [r for r in core if not _is_eq(r)]
    parent: dict = {}

    def find(a):
        while parent.get(a, a) != a:
            a = parent[a]
        return a
    for a, b in eqs:
        parent[find(a)] = find(b)
    classes: dict = {}
    for a in {q for e in eqs for q in e}:
        classes.setdefault(find(a), []).append(a)
    closure = [(a, b) for members in classes.values()
               for a, b in itertools.combinations(sorted(members, key=str), 2)]
    if len(closure) > 40:           # a big class: the core as it came
        closure = eqs
    kept = [literal(q) for q in closure] + [literal(q) for q in pins]
    if s.check(*kept) != z3.unsat:
        return [literal(q) for q in core]
    best = None
    eq_lits, pin_lits = kept[:len(closure)], kept[len(closure):]
    # deleting in another order ends in another minimal set: two orders, the smaller wins
    for order in (eq_lits + pin_lits, eq_lits[::-1] + pin_lits):
        cur = list(kept)
        for lit in order:
            trial = [k for k in cur if not k.eq(lit)]
            if s.check(*trial) == z3.unsat:
                cur = trial
        if best is None or len(cur) < len(best):
            best = cur
    return best


def _is_eq(req) -> bool:
    return isinstance(req[1], tuple)


def fixed_params(rule: Rule) -> list:
    """Size-like parameters the matcher takes exactly as the rule has them (a conv's groups):
    part of the scope, stated so that nobody has to know the matcher to read it."""
    return [["groups", i, int(n.p["groups"])] for i, n in sorted(rule.src.nodes.items())
            if n.op == "conv2d"]


def describe(scope: dict | None) -> str:
    """One line a person reads: 'any sizes', or the precondition."""
    if scope is None:
        return "unscoped"
    fixed = sorted({f"{name} = {v}" for name, _node, v in scope.get("fixed", [])})
    tail = f" (conv {', '.join(fixed)}, matched exactly)" if fixed else ""
    if not scope["requires"]:
        return "any sizes" + tail

    def slot(s):
        if not isinstance(s, list):
            return str(s)
        if s[0] == "var":
            return f"{s[1]}[{s[2]}]"
        return f"{s[2]}[{s[3]}]@{s[1]}"
    text = ", ".join(f"{slot(a)} = {slot(b)}" for a, b in scope["requires"])
    return ("only at the generated sizes: " if scope.get("pinned") else "") + text + tail


def normal_form_scope(rule: Rule) -> dict | None:
    """The scope of a rule proved by the normal form alone (`subgen.pairing.normal_form`: the base
    rules hold at every size at which both sides are typed): no precondition, the target's
    resolved parameters derived as for any rule, per direction.  None for rules with shape
    parameters (they go to the prover: their sizes may need a precondition)."""
    if any(n.op in SHAPE_PARAMS for g in (rule.src, rule.dst) for n in g.nodes.values()):
        return None
    out = {}
    directions = [("forward", rule)]
    try:
        directions.append(("reverse", rule.reversed()))
    except ValueError:
        pass
    for name, r in directions:
        try:
            setup = Setup(r)
        except (NotSymbolic, ShapeError):
            return None
        out[name] = {"requires": [], "resolve": setup.resolve, "pinned": False,
                     "fixed": fixed_params(r)}
    return out


# ---------------------------------------------------------------------------------------------
# the scope, checked numerically through the matcher and the rewriter

def in_scope_sizes(rule: Rule, scope: dict, seed: int = 0, max_dim: int = 6) -> dict | None:
    """Random sizes for every slot that satisfy the source's typing, the target's typing, the
    resolution and the precondition (None when none is found quickly).  Sizes are drawn one
    slot at a time in a random order and kept when still satisfiable, so unrelated slots end up
    unequal: the shapes a rule generated on 4x4 tensors never saw."""
    import random
    setup = setup_of(rule)
    s = z3.Solver()
    _counted_limit(s, 1000)
    s.add(*setup.shape_facts, *setup.resolution_facts)
    for a, b in scope["requires"]:
        req = (tuple(a), tuple(b) if isinstance(b, list) else b)
        s.add(setup.formula(req))
    s.add(*[sym <= max(max_dim, v) for sym, v in setup.slots.values()])
    return random_model(s, setup.slots, random.Random(seed), max_dim)


def random_model(s: z3.Solver, slots: dict, rng, max_dim: int) -> dict | None:
    """A model of `s` with each slot at a random size where the constraints let it be: every
    slot is offered a random size as an assumption, and the sizes of an unsat core are withdrawn
    until the rest fit (a few checks, not one per slot)."""
    offers = {}
    for k in sorted(slots, key=str):
        lit = z3.Bool(f"size:{':'.join(map(str, k))}")
        s.add(z3.Implies(lit, slots[k][0] == rng.randint(1, max_dim)))
        offers[str(lit)] = lit
    while True:
        r = s.check(*offers.values())
        if r == z3.sat:
            break
        if r != z3.unsat:
            return None
        core = [str(c) for c in s.unsat_core()]
        if not core:
            return None
        for c in core:
            offers.pop(c, None)
    m = s.model()
    return {k: m.eval(sym, model_completion=True).as_long() for k, (sym, _) in slots.items()}


def instantiate(graph: Graph, sizes: dict) -> Graph:
    """The rule's source graph at other sizes: variables' shapes and shape parameters set from
    `sizes` (slot -> size); raises ShapeError/ValueError when it does not type."""
    d = graph.to_dict()
    for e in d["nodes"]:
        p = e["params"]
        if e["op"] in LEAVES:
            p["shape"] = [sizes.get(("var", p["name"], a), v) for a, v in enumerate(p["shape"])]
            continue
        for name in SHAPE_PARAMS.get(e["op"], ()):
            if name in p:
                p[name] = [sizes.get(("param", e["id"], name, k), v)
                           for k, v in enumerate(_entries(p[name]))]
    return Graph.from_dict(d)


def check_in_scope(rule: Rule, scope: dict, samples: int = 1, seed: int = 0) -> dict | None:
    """Apply the scoped rule, with the project's matcher and rewriter, to its own source
    instantiated at random sizes inside its scope, and compare both graphs on random floats.
    A counterexample dict when they differ (an unsound proof: the axioms said too much), else
    None.  Sizes at which the rule does not apply (the target does not type) are skipped."""
    from envcore.rewrite.match import find_matches
    from envcore.rewrite.apply import apply
    from verifier.refute import compare
    scoped_rule = Rule(rule.name, rule.src, rule.dst, {**rule.meta, "scope": scope})
    for k in range(samples):
        sizes = in_scope_sizes(rule, scope, seed + k)
        if sizes is None:
            continue
        try:
            g = instantiate(rule.src, sizes)
        except (ShapeError, ValueError):
            continue
        for m in find_matches(g, scoped_rule):
            if set(m.mapping.values()) != set(i for i, n in g.nodes.items()
                                              if n.op not in LEAVES):
                continue
            new, _ = apply(g, scoped_rule, m)
            cex = compare(g, new, seed + 100 + k)
            if cex:
                cex["note"] = "inside its scope, through the matcher and rewriter"
                cex["sizes"] = {":".join(map(str, s)): v for s, v in sizes.items()}
                return cex
            break
    return None
