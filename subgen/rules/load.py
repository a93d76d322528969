"""The one rule loader: what `optimize`, `train` and the Gym env apply, numbered the same way.

Every rule that is applied carries the scope its proof holds in (`rule.meta["scope"]`, see
`verifier.scope`), so the matcher never applies it outside its proof:
- a rule DB gives its proved rows, each with its stored scope, and (both directions) each
  row's reverse where that direction was proved too;
- a .json or .pb file is verified first: proved rules are kept, with their scopes, the others
  are left out; a file with no proved rule is refused with one line;
- Rule objects given in Python keep a scope they carry, and are verified when they carry none;
- `unverified=True` opts out: rules are applied as given, without a scope (the rewriter then
  re-derives the target's shape parameters by first fit, as for any hand-built rule).
The order is the file's, each rule's reverse right after the forward rules (as before).
A DB's rules are read back from its compiled index (`subgen.rules.index`, a file beside it)
when that is current: the same rules in the same order, in a fraction of the time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from envcore.rewrite.rule import MalformedRule, Rule
from subgen.errors import BadInput
from subgen.paths import DEFAULT_RULES
from subgen.rules.db import scoped
from subgen.rules.io import is_rule_db


def load_rules_for_use(source: str | Path | Iterable[Rule] | None = None,
                       both_directions: bool = True, unverified: bool = False,
                       timeout_ms: int = 2000, workers: int = 1,
                       default: Path | None = None) -> list[Rule]:
    """Rules ready to apply (see the module doc); BadInput (one line) when there are none.
    `default`: the DB read when `source` is None (subgen/data/rules.db)."""
    if source is None or isinstance(source, (str, Path)):
        path = Path(source) if source is not None else Path(default or DEFAULT_RULES)
        if not path.is_file():
            if source is None:
                raise BadInput(f"no rule DB at {path}: run `subgen generate` first "
                               "(or pass --rules)")
            raise BadInput(f"no such rule file: {path}")
        if is_rule_db(path) and not unverified:
            return _from_db(path, both_directions)
        if is_rule_db(path):              # unverified: the proved rows, scoped or not
            from subgen.rules.db import RuleDB
            with RuleDB(path, create=False) as db:
                plain = [s.rule for s in db.rules("proved")]
            return _with_plain_reverses(plain) if both_directions else plain
        from subgen.rules.io import load_rules
        # a file is not trusted: whatever scope it states, its rules are proved here again
        given = [Rule(r.name, r.src, r.dst, {k: v for k, v in r.meta.items()
                                             if k not in ("scope", "scopes")})
                 for r in load_rules(path)]
        label = str(path)
    else:
        given, label = list(source), "the given rules"
    if unverified:
        rules = [Rule(r.name, r.src, r.dst, {k: v for k, v in r.meta.items() if k != "scope"})
                 for r in given]
        return _with_plain_reverses(rules) if both_directions else rules
    return _verified(given, label, both_directions, timeout_ms, workers)


def _from_db(path: Path, both_directions: bool) -> list[Rule]:
    """The DB's proved rules, read back from its index (`subgen.rules.index`) where that is
    current, else built from its rows (and the index written for the next load)."""
    from subgen.rules import index
    from subgen.rules.db import RuleDB
    variant = "both" if both_directions else "forward"
    with index.collector_paused(), RuleDB(path, create=False) as db:
        rows = db.rows("proved")
        key = index.key(rows)            # the very rows built from below: one consistent read
        rules = index.read(path, key, variant)
        if rules is None:
            sets = _db_rule_sets(db, path, rows)
            rules = index.write(path, key, sets, variant)
            if rules is None:
                rules = sets[variant]
            del sets      # what was built and read back: freed before the collector walks it
    # the rules' compiled patterns, from the cache beside the index (compiled and written
    # there where it is not current): matching starts without compiling 12,496 patterns
    index.attach_patterns(path, key, variant, rules)
    return rules


def _db_rule_sets(db, path: Path, rows: list[tuple]) -> dict[str, list[Rule]]:
    """Both of what `_from_db` hands out, built from the DB's proved rows: "both" (each row's
    rule, then the reverses proved too) and "forward"."""
    fwd, rev = [], []
    for s in map(db.stored, rows):
        if not s.scope or "forward" not in s.scope:
            continue
        fwd.append(scoped(s.rule, s.scope["forward"]))
        if "reverse" in s.scope:
            try:
                rev.append(scoped(s.rule.reversed(), s.scope["reverse"]))
            except MalformedRule:
                pass
    if not fwd:
        unscoped = db.unscoped_proved()
        if unscoped:
            raise BadInput(f"{path}: its {len(unscoped)} proved rules predate scoped proofs: "
                           f"run `subgen verify {path}` to prove them again")
        raise BadInput(f"{path} holds no proved rules: run `subgen generate` "
                       "(or `subgen verify` on it) first")
    return {"both": _dedupe(fwd + rev), "forward": _dedupe(fwd)}


def _verified(given: list[Rule], label: str, both_directions: bool, timeout_ms: int,
              workers: int) -> list[Rule]:
    todo = [i for i, r in enumerate(given) if r.meta.get("scope") is None]
    results = {}
    if todo:
        from verifier.batch import verify_many
        for i, res in zip(todo, verify_many([given[i] for i in todo], timeout_ms, workers)):
            results[i] = res
    fwd, rev = [], []
    for i, r in enumerate(given):
        if i not in results:                      # carries its scope: one direction
            fwd.append(r)
            continue
        res = results[i]
        if res.status != "proved" or not res.scope:
            continue
        fwd.append(scoped(r, res.scope["forward"]))
        if both_directions and "reverse" in res.scope:
            try:
                rev.append(scoped(r.reversed(), res.scope["reverse"]))
            except MalformedRule:
                pass
    if not fwd:
        raise BadInput(f"{label}: no rule is proved ({len(given)} given); "
                       "pass --unverified to apply them anyway")
    return _dedupe(fwd + rev)


def _dedupe(rules: list[Rule]) -> list[Rule]:
    """Drop a rule whose (source, target) pair is already there (a reverse that is another
    row's forward rule)."""
    seen, out = set(), []
    for r in rules:
        key = (r.src.canonical_hash, r.dst.canonical_hash)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _with_plain_reverses(rules: list[Rule]) -> list[Rule]:
    from subgen.rules.derive import both_directions
    return _dedupe(both_directions(rules))
