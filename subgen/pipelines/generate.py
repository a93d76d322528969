"""`subgen generate`, top to bottom: enumerate -> pair -> prune -> refute -> verify -> rule DB.

Stages and what each one drops (the counts go in the summary's `stages`):
  enumerate          every graph of up to max_ops operators (RepGen: only representatives grow)
  pair               graphs with the same fingerprint become candidate rules
  prune-renaming     one rule per class up to variable renaming, direction, output order and
                     concrete dimensions (ranks stay: matching and proofs are rank-generic)
  refute             float evaluation on random inputs drops false pairs (fingerprint collisions,
                     stand-ins such as relu's polynomial)
  prune-instances    rules that are another rule with variables merged
  prune-smaller      rules that are instances of smaller ones (TASO's common subgraph and more)
  prune-supergraph   rules that are a smaller rule in context (TASO's common supergraph)
  normal-form        rules that follow from the base rules by associativity, commutativity and
                     scalar moves, or share a normal form with another rule, are kept but not
                     verified (`subgen.pairing.normal_form`); after verification they inherit a status
  verify             the verifier proves, refutes or gives up on each remaining rule

Resuming: the survivors of the cheap, deterministic stages are stored as 'candidate' rules
together with the run's settings in one transaction; every verifier result is its own
transaction.  A rerun with the same settings skips to the candidates that still lack a result.
A DB holding unfinished work of *different* settings is refused (BadInput) unless `fresh`
wipes it: mixing two half-done runs would make neither resumable.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from envcore.ops import OPS, TASO_GENERATOR_OPS
from subgen.errors import BadInput
from subgen.faults import phase_started

MAX_OPS_LIMIT = 5   # depth 5 would need days in Python; refuse it rather than appear to hang
SETTINGS_VERSION = 2


@dataclass(frozen=True)
class Settings:
    max_ops: int = 3
    ops: tuple[str, ...] = TASO_GENERATOR_OPS
    verify: bool = True
    # The limit of one proof, counted as Z3 work (`verifier.prove`: rlimit, not wall time).
    # A rule Z3 cannot settle uses all of it, once (it is not retried), so the limit sits well
    # above every proof of the default depth-3 set and low enough that such rules do not take
    # most of the verify stage (benchmarks/results/history.md).
    timeout_ms: int = 2000
    seed: int = 1
    spellings: int | None = None     # None: `enumerator.default_spellings(max_ops)`

    @property
    def spellings_up_to(self) -> int:
        from subgen.enumeration.enumerator import default_spellings
        return default_spellings(self.max_ops) if self.spellings is None else self.spellings

    def key(self) -> str:
        from subgen.enumeration.enumerator import CONSTANT_SHAPES, pool_for
        d = asdict(self)
        d.pop("spellings")
        d["spellings_up_to"] = self.spellings_up_to
        d["ops"] = sorted(self.ops)
        d["pool"] = sorted((k, list(v)) for k, v in pool_for(self.ops).items())
        d["constants"] = sorted((k, [list(s) for s in v]) for k, v in CONSTANT_SHAPES.items())
        d["version"] = SETTINGS_VERSION
        return json.dumps(d, sort_keys=True)


def check_settings(max_ops: int, ops) -> tuple[str, ...]:
    from subgen.enumeration.enumerator import ENUMERABLE
    if not 1 <= max_ops <= MAX_OPS_LIMIT:
        raise BadInput(f"impossible --max-ops {max_ops}: choose 1 to {MAX_OPS_LIMIT}")
    ops = tuple(ops)
    if not ops:
        raise BadInput("--ops names no operator")
    for name in ops:
        if name not in OPS:
            raise BadInput(f"unknown operator {name!r} in --ops")
        if name not in ENUMERABLE:
            raise BadInput(f"operator {name!r} cannot be enumerated "
                           f"(enumerable: {', '.join(sorted(ENUMERABLE))})")
    return tuple(dict.fromkeys(ops))


class NoProgress:
    def start(self, name: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1) -> None: ...


class TimedProgress:
    """Passes progress on and notes each phase's wall seconds (phases are what `start` names),
    so a summary says where a long run's time went."""

    def __init__(self, inner):
        self.inner, self.seconds, self._name, self._t = inner, {}, None, 0.0

    def start(self, name: str, total: int | None = None) -> None:
        self.stop()
        self._name, self._t = name.split(" (")[0], time.perf_counter()
        self.inner.start(name, total)
        phase_started(name)

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)

    def stop(self) -> None:
        if self._name is not None:
            dt = time.perf_counter() - self._t
            self.seconds[self._name] = round(self.seconds.get(self._name, 0.0) + dt, 3)
            self._name = None


@dataclass
class Summary:
    enumerated: int = 0
    candidates: int = 0
    after_pruning: int = 0
    proved: int = 0
    refuted: int = 0
    unknown: int = 0
    unverified: int = 0
    rules: int = 0
    seconds: float = 0.0
    stages: list = field(default_factory=list)
    phase_seconds: dict = field(default_factory=dict)
    resumed: bool = False
    already_done: bool = False       # the DB held this run finished: read back, nothing redone
    out: str = ""

    def stage(self, name, n_in, n_out):
        self.stages.append({"name": name, "in": int(n_in), "out": int(n_out)})


# ----------------------------------------------------------------------------------------------
# the cheap, deterministic stages


# From this depth on the candidate stages run in the executor's workers.  Below it the whole
# search takes under a second and spawning workers costs more than it saves; from depth 3 on
# the sharded search is much faster, with the same rules (benchmarks/bench_generate.py;
# figures in benchmarks/results/history.md).
SHARDED_FROM_DEPTH = 3


def find_candidates(s: Settings, progress=NoProgress(), summary: Summary | None = None,
                    executor=None, sharded: bool | None = None, prepared: dict | None = None):
    """Enumerate, pair, prune and refute: the surviving rules (and the stage counts).
    With an `executor` (subgen.pipelines.executors) the enumeration's last level is evaluated by its
    workers, only its nodes that can be in a rule are kept (`subgen.enumeration.shard.enumerate_compact`),
    and the workers run the stages too (`subgen.pairing.sharded_stages`); the result is identical.
    Without one, everything runs here on the full enumerator (the reference).  `sharded`
    None picks by depth (`SHARDED_FROM_DEPTH`).  On the sharded path `prepared` (when given)
    receives what the workers computed ahead for each rule (`candidate_stages`)."""
    from subgen.pairing import pairs as C
    from subgen.enumeration.enumerator import Enumerator
    from subgen.pairing.digests import instance_digests, oriented_digests
    from subgen.pairing.term_prune import ExactValues, Replaced, common_supergraph, generalizes

    summary = summary or Summary()
    if sharded is None:
        sharded = s.max_ops >= SHARDED_FROM_DEPTH
    if executor is not None and sharded:
        from subgen.enumeration.shard import enumerate_compact
        from subgen.pairing.sharded_stages import candidate_stages
        en = enumerate_compact(s.ops, s.max_ops, s.seed, executor, progress,
                               spellings=s.spellings_up_to)
        return (candidate_stages(en, s, executor, summary, progress, prepared=prepared),
                summary)
    en = Enumerator(s.ops, s.max_ops, seed=s.seed, spellings=s.spellings_up_to)
    for lv in range(1, s.max_ops + 1):
        progress.start(f"enumerate: {lv} op{'s' if lv > 1 else ''}")
        en.level(lv, progress.advance)
    bks = C.buckets(en)
    graphs = sum(1 for b in bks.values() for g in b if en.op_count(g) > 0)
    summary.enumerated = graphs
    summary.stage("enumerate", len(en.terms) - len([t for t in en.terms if t.node is None]),
                  graphs)

    progress.start("pair", len(bks))
    raw = []
    for b in bks.values():
        progress.advance()
        raw.extend(C.pairs(en, b))
    summary.candidates = len(raw)
    summary.stage("pair", graphs, len(raw))

    progress.start("prune: renaming", len(raw))
    oriented = [o for o in (C.orient(en, a, c) for a, c in raw) if o is not None]
    keys: dict[int, tuple] = {}
    for d, o in zip(oriented_digests(en, oriented), oriented):
        keys.setdefault(d, o)
    progress.advance(len(raw))
    summary.stage("prune-renaming", len(raw), len(keys))

    progress.start("refute (float)", len(keys))
    agrees = C.FloatValues(en).agree_many(list(keys.values()))
    true_pairs = [(k, a, c) for (k, (a, c)), ok in zip(keys.items(), agrees) if ok]
    progress.advance(len(keys))
    numeric_refuted = len(keys) - len(true_pairs)
    summary.refuted += numeric_refuted
    summary.stage("refute", len(keys), len(true_pairs))

    progress.start("prune: instances", len(true_pairs))
    instances = instance_digests(en, [(a, c) for _, a, c in true_pairs])
    kept = [(a, c) for k, a, c in true_pairs if k not in instances]
    progress.advance(len(true_pairs))
    summary.stage("prune-instances", len(true_pairs), len(kept))

    progress.start("prune: smaller rules", len(kept))
    replaced, nf = Replaced(en, ExactValues(en)), C._normal_forms(en)
    general = []
    for a, c in kept:
        progress.advance()
        if not generalizes(en, replaced, a, c, lambda t: nf((t,))):
            general.append((a, c))
    summary.stage("prune-smaller", len(kept), len(general))

    progress.start("prune: common supergraph", len(general))
    rules = []
    for a, c in general:
        progress.advance()
        if not common_supergraph(en, a, c):
            rules.append(C.to_rule(en, a, c, C.term_key(en, a, c)))
    summary.stage("prune-supergraph", len(general), len(rules))
    summary.after_pruning = len(rules)
    return rules, summary


def normal_form_stage(rules, summary: Summary, progress=NoProgress(),
                      classes: list | None = None) -> list:
    """Which rules follow from others by the normal form (`subgen.pairing.normal_form`): they are kept
    but not sent to the verifier; after it, they take their status from what they follow from.
    Returns [[index, leader index or None], ...] (None: from the base rules alone)."""
    from subgen.pairing.normal_form import derivations
    progress.start("normal forms", 1)
    d = derivations(rules, classes or None)
    summary.stage("normal-form", len(rules), len(rules) - len(d))
    return sorted([i, lead] for i, lead in d.items())


def inherit_results(db, derived: dict, leaders_done: bool = False) -> list[int]:
    """Statuses and scopes without a proof, where the normal form gives them (returns the ids
    left to verify).
    - A rule sharing its normal form with the base rules' (no leader): the base rules
      (associativity, commutativity, scalars through linear ops, a fused activation) hold at
      every size at which both sides are typed, and the rewriter checks the target's typing.
    - With `leaders_done`, a rule that follows from a proved leader whose scope is general in
      both directions and needs no resolved parameter: AC-steps keep it general.  A leader that
      failed passes its status on; one with a precondition does not pass its scope (it is in
      the leader's own slots), and the rule is left to the verifier.
    Rules with shape parameters are always left to the verifier."""
    if not derived:
        return []
    from envcore.ops import SHAPE_PARAMS
    from envcore.rewrite.rule import Rule
    from verifier.scope import normal_form_scope
    status, name = db.statuses(), db.names()
    # shape parameters may need a precondition (a split's sizes against a seam); a conv's
    # resolved groups do not: they are forced by the target's typing, as `Setup` resolves them
    special = set(SHAPE_PARAMS)
    scopes = {s.id: s.scope for s in db.rules("proved")} if leaders_done else {}
    todo = {rid: lead for rid, lead in derived.items() if status[rid] == "candidate"
            and (lead is None or leaders_done)}
    results, left = [], []
    for rid, rule_dict in db.rule_dicts("candidate"):
        if rid not in todo:
            continue
        lead, rule = todo[rid], Rule.from_dict(rule_dict)
        plain = not any(n.op in special for g in (rule.src, rule.dst) for n in g.nodes.values())
        if lead is None:
            scope = normal_form_scope(rule) if plain else None
            if scope is None:
                left.append(rid)
            else:
                results.append((rid, "proved", ("normal-form",), None, 0.0, scope))
            continue
        lead_status, lead_scope = status.get(lead), scopes.get(lead)
        if lead_status in ("refuted", "unknown", "malformed"):
            results.append((rid, lead_status, (), {"same normal form as": name[lead]}
                            if lead_status == "refuted" else None, 0.0))
        elif plain and lead_scope and all(
                not sc["requires"] and not sc.get("pinned") for sc in lead_scope.values()):
            scope = normal_form_scope(rule)
            if scope is None:
                left.append(rid)
            else:
                results.append((rid, "proved", ("normal-form", name[lead]), None, 0.0, scope))
        else:
            left.append(rid)
    db.set_results(results)
    return left


# ----------------------------------------------------------------------------------------------
# verification (the slow stage), resumable


def _verify_one(job):
    rule_id, rule_dict, timeout_ms = job
    from envcore.rewrite.rule import Rule
    from verifier import verify_rule
    res = verify_rule(Rule.from_dict(rule_dict), timeout_ms=timeout_ms)
    return (rule_id, res.status, tuple(res.axioms), res.counterexample, float(res.seconds),
            res.scope)


def _verifier_available() -> bool:
    try:
        from verifier import verify_rule  # noqa: F401
        return True
    except ImportError:
        return False


def verify_pending(db, ids: list[int], timeout_ms: int, workers: int = 1, executor="local",
                   progress=NoProgress()) -> None:
    """Verifies the candidates among `ids`, committing each result as it arrives.  `executor`
    is "local", "ray" or an executor from subgen.pipelines.executors."""
    from subgen.pipelines.executors import make_executor
    from subgen.rules.db import ResultBatch
    wanted = set(ids)
    again = set(db.unscoped_proved())        # proved before scoped proofs: prove again
    jobs = [(i, d, timeout_ms) for i, d in db.rule_dicts("candidate") if i in wanted]
    jobs += [(i, d, timeout_ms) for i, d in db.rule_dicts("proved") if i in wanted & again]
    # rules that run into the time limit come in families of neighbours (conv of an enlarged
    # kernel by itself, ...): shuffled, they do not pile up in the last chunks of one worker
    random.Random(0).shuffle(jobs)
    progress.start("verify", len(jobs))
    ex = executor if hasattr(executor, "map_unordered") else make_executor(executor, workers)
    chunk = max(1, min(16, len(jobs) // (8 * ex.workers)))
    # committed in small batches: a kill loses at most a second's worth (`ResultBatch`)
    try:
        with ResultBatch(db, seconds=1.0, max_rows=64) as batch:
            for _, result in ex.map_unordered(_verify_one, jobs, chunk):
                batch.add(result)
                progress.advance()
    finally:
        if ex is not executor:
            ex.close()


def generate(settings: Settings, out: str | Path, workers: int = 1, executor: str = "local",
             progress=NoProgress(), fresh: bool = False,
             ray_address: str | None = None) -> Summary:
    from subgen.rules.db import RuleDB

    t0 = time.perf_counter()
    progress = TimedProgress(progress)
    check_settings(settings.max_ops, settings.ops)
    if executor not in ("local", "ray"):
        raise BadInput(f"unknown executor {executor!r} (local or ray)")
    if workers < 1:
        raise BadInput(f"--workers must be at least 1, got {workers}")
    if settings.verify and not _verifier_available():
        raise BadInput("the verifier is not available; rerun with --no-verify")

    from subgen.pipelines.executors import make_executor
    skey = settings.key()
    with RuleDB(out) as db, make_executor(executor, workers, ray_address) as ex:
        if fresh:
            db.clear()
        others = [k for k in db.unfinished_runs() if k != skey]
        if others:
            raise BadInput(f"{out} holds unfinished work of other settings; rerun those "
                           f"settings to finish it, pass --fresh to discard it, or use --out")
        stage, stored = db.run_stage(skey)
        if stage is None:
            prepared: dict = {}
            rules, summary = find_candidates(settings, progress, executor=ex, prepared=prepared)
            derived = normal_form_stage(rules, summary, progress, prepared.get("classes"))
            summary.out = str(out)
            progress.start("store", 1)
            ids = db.store_candidates(skey, rules, {**asdict(summary), "derived": derived},
                                      prepared.get("rows"))
            stored = {**asdict(summary), "ids": ids, "derived": derived}
        else:
            summary = Summary(**{k: v for k, v in stored.items() if k in Summary.__annotations__})
            summary.resumed = stage != "done"
            summary.already_done = stage == "done"
        ids = stored["ids"]
        derived = {ids[i]: (None if lead is None else ids[lead])
                   for i, lead in stored.get("derived", [])}
        if settings.verify and stage != "done":
            left = inherit_results(db, derived)
            own_proof = [i for i in ids if i not in derived] + left
            verify_pending(db, own_proof, settings.timeout_ms, workers, ex, progress)
            left = inherit_results(db, derived, leaders_done=True)
            verify_pending(db, left, settings.timeout_ms, workers, ex, progress)
        status_of = db.statuses()
        by_status = {}
        for i in set(ids):
            by_status[status_of[i]] = by_status.get(status_of[i], 0) + 1
        numeric_refuted = next((st["in"] - st["out"] for st in summary.stages
                                if st["name"] == "refute"), 0)
        summary.proved = by_status.get("proved", 0)
        summary.refuted = numeric_refuted + by_status.get("refuted", 0)
        summary.unknown = by_status.get("unknown", 0)
        summary.unverified = by_status.get("candidate", 0)
        summary.rules = summary.proved
        summary.stages = [st for st in summary.stages if st["name"] != "verify"]
        if settings.verify:
            status_of = db.statuses()
            # what went through the verifier: every rule but those the normal form settled
            by_nf = {i for i, ax in db.conn.execute("SELECT id, axioms FROM rules")
                     if ax.startswith('["normal-form"')}
            verified = {i for i in ids if i not in by_nf}
            proved_own = sum(1 for i in verified if status_of[i] == "proved")
            summary.stage("verify", len(verified), proved_own)
        progress.stop()
        summary.phase_seconds = {**summary.phase_seconds, **progress.seconds}
        final = {**asdict(summary), "ids": ids, "derived": stored.get("derived", [])}
        final.pop("seconds")
        final.pop("phase_seconds")
        if stage != "done":          # a finished run is read back, never written again
            db.finish_run(skey, final)
    summary.seconds = round(time.perf_counter() - t0, 3)
    return summary
