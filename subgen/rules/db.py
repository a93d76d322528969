"""The rule DB: SQLite, one transaction per write, so a killed run keeps what it committed.

Tables
  meta(key, value)        'format' = 'subgen-rules' marks the file as ours, 'version' = 1
  rules(id, key, name, rule, status, axioms, counterexample, seconds, settings)
      rule: JSON of Rule.to_dict(); key: the canonical form up to renaming (unique);
      status: candidate | proved | refuted | unknown | malformed; axioms, counterexample: JSON
      scope: JSON, proved rules only: {"forward": scope, "reverse": scope} (verifier.scope),
      where each direction's proof holds; a proved row without one predates scoped proofs
      and is proved again before use
  runs(settings, stage, summary)
      one row per generator settings (JSON): stage 'verifying' until every candidate has a
      result, then 'done'; summary holds the stage counts of the run (JSON)
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from envcore.rewrite.rule import MalformedRule, Rule
from subgen.errors import BadInput

FORMAT = "subgen-rules"
VERSION = 1
STATUSES = ("candidate", "proved", "refuted", "unknown", "malformed")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rules (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, name TEXT NOT NULL, rule TEXT NOT NULL,
    status TEXT NOT NULL, axioms TEXT NOT NULL DEFAULT '[]', counterexample TEXT,
    seconds REAL NOT NULL DEFAULT 0, settings TEXT, scope TEXT);
CREATE INDEX rules_status ON rules(status);
CREATE TABLE runs (settings TEXT PRIMARY KEY, stage TEXT NOT NULL, summary TEXT);
"""


@dataclass(frozen=True)
class StoredRule:
    id: int
    rule: Rule
    status: str
    axioms: tuple[str, ...]
    counterexample: dict | None
    seconds: float
    scope: dict | None = None


class RuleDB:
    """Rules and their verification status in one SQLite file (see module doc)."""

    def __init__(self, path, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise BadInput(f"no rule DB at {self.path}")
        if self.path.exists() and self.path.is_dir():
            raise BadInput(f"{self.path} is a directory, not a rule DB")
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                if f.read(16) != b"SQLite format 3\x00":
                    raise BadInput(f"{self.path} is not an SQLite rule DB")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.exists()
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=30)
            self.conn.execute("PRAGMA synchronous=FULL")
            tables = {r[0] for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                if not create:
                    raise BadInput(f"{self.path} holds no rules")
                with self.conn:
                    self.conn.executescript(_SCHEMA)
                    self.conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                          [("format", FORMAT), ("version", str(VERSION))])
            elif not {"meta", "rules", "runs"} <= tables:
                raise BadInput(f"{self.path} is an SQLite file but not a subgen rule DB")
            # a garbled file can still answer a query or two: check it whole before trusting
            # any of it (cheap next to reading the rules)
            check = self.conn.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise BadInput(f"{self.path} is corrupt ({check.splitlines()[0]})")
            meta = dict(self.conn.execute("SELECT key, value FROM meta"))
            if meta.get("format") != FORMAT:
                raise BadInput(f"{self.path} is an SQLite file but not a subgen rule DB")
            if meta.get("version") != str(VERSION):
                raise BadInput(f"{self.path} has rule DB version {meta.get('version')}, "
                               f"this subgen reads {VERSION}")
            cols = {r[1] for r in self.conn.execute("PRAGMA table_info(rules)")}
            # a DB from before scoped proofs has no scope column: it is read as it is, and the
            # column is added by the first write of a result (reading never changes a file)
            self._has_scope = "scope" in cols
        except sqlite3.DatabaseError as e:
            if new_file:            # a DB this call began and could not finish (disk full)
                if getattr(self, "conn", None) is not None:
                    self.conn.close()
                for leftover in (self.path, Path(f"{self.path}-journal")):
                    leftover.unlink(missing_ok=True)
            if isinstance(e, sqlite3.OperationalError) and ("full" in str(e) or new_file):
                raise BadInput(f"cannot write the rule DB {self.path}: {e}") from None
            raise BadInput(f"{self.path} is corrupt or not a rule DB ({e})") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- rules --------------------------------------------------------------------------------
    def add_rules(self, rules: Iterable[Rule], status: str = "candidate",
                  settings: str | None = None) -> list[int]:
        """Adds rules (a rule already present up to renaming keeps its row); returns their ids."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.conn:
            return self._insert(rules, status, settings)

    @staticmethod
    def row(rule: Rule) -> tuple[str, str, str]:
        """(key, name, JSON) as stored: the key is the canonical form up to renaming."""
        from subgen.pairing.prune import canonical_key
        return canonical_key(rule), rule.name, json.dumps(rule.to_dict(), separators=(",", ":"))

    def _insert(self, rules: Iterable[Rule], status: str, settings: str | None,
                rows: list | None = None) -> list[int]:
        """Inserts inside the caller's transaction; a rule present up to renaming keeps its row.
        `rows` are the rules' `row`s when computed elsewhere (workers)."""
        ids = []
        for i, r in enumerate(rules):
            key, name, text = self.row(r) if rows is None else rows[i]
            self.conn.execute(
                "INSERT OR IGNORE INTO rules (key, name, rule, status, settings) "
                "VALUES (?, ?, ?, ?, ?)", (key, name, text, status, settings))
            ids.append(self.conn.execute("SELECT id FROM rules WHERE key = ?",
                                         (key,)).fetchone()[0])
        return ids

    def set_result(self, rule_id: int, status: str, axioms=(), counterexample=None,
                   seconds: float = 0.0, scope: dict | None = None) -> None:
        self.set_results([(rule_id, status, axioms, counterexample, seconds, scope)])

    def set_results(self, results) -> None:
        """Many `set_result`s, (rule_id, status, axioms, counterexample, seconds[, scope]) each,
        in ONE transaction."""
        rows = []
        for rule_id, status, axioms, cex, sec, *scope in results:
            if status not in STATUSES:
                raise ValueError(f"unknown status {status!r}")
            sc = scope[0] if scope else None
            rows.append((status, json.dumps(list(axioms)),
                         None if cex is None else json.dumps(cex, default=_plain), float(sec),
                         None if sc is None else json.dumps(sc, separators=(",", ":")),
                         int(rule_id)))
        with self.conn:
            if not self._has_scope:
                self.conn.execute("ALTER TABLE rules ADD COLUMN scope TEXT")
                self._has_scope = True
            self.conn.executemany(
                "UPDATE rules SET status=?, axioms=?, counterexample=?, seconds=?, scope=? "
                "WHERE id=?", rows)

    def rules(self, status: str | None = None) -> list[StoredRule]:
        return [self.stored(row) for row in self.rows(status)]

    def rows(self, status: str | None = None) -> list[tuple]:
        """The rows `rules` reads, by id, as stored (id, rule, status, axioms, counterexample,
        seconds, scope; JSON as text): what `stored` builds a StoredRule from, and what the
        loader's cached index (`subgen.rules.index`) is keyed by."""
        q = "SELECT id, rule, status, axioms, counterexample, seconds, " + \
            ("scope" if self._has_scope else "NULL") + " FROM rules"
        args: tuple = ()
        if status is not None:
            q += " WHERE status = ?"
            args = (status,)
        try:
            return self.conn.execute(q + " ORDER BY id", args).fetchall()
        except sqlite3.DatabaseError as e:
            raise BadInput(f"{self.path}: unreadable rule ({str(e).splitlines()[0]})") from None

    def stored(self, row: tuple) -> StoredRule:
        """One of `rows` built: its rule checked, its JSON parsed."""
        i, rule, st, ax, cx, sec, sc = row
        try:
            return StoredRule(i, Rule.from_dict(json.loads(rule)), st, tuple(json.loads(ax)),
                              None if cx is None else json.loads(cx), sec,
                              None if sc is None else json.loads(sc))
        except (json.JSONDecodeError, MalformedRule) as e:
            raise BadInput(f"{self.path}: unreadable rule ({str(e).splitlines()[0]})") from None

    def statuses(self) -> dict[int, str]:
        """Every rule's status by id, without reading the rules."""
        return dict(self.conn.execute("SELECT id, status FROM rules"))

    def names(self) -> dict[int, str]:
        return dict(self.conn.execute("SELECT id, name FROM rules"))

    def rule_dicts(self, status: str) -> list[tuple[int, dict]]:
        """(id, rule as a dict) of the rules with this status, as stored: for handing rules to
        workers without building them here."""
        try:
            return [(i, json.loads(rule)) for i, rule in self.conn.execute(
                "SELECT id, rule FROM rules WHERE status = ? ORDER BY id", (status,))]
        except (sqlite3.DatabaseError, json.JSONDecodeError) as e:
            raise BadInput(f"{self.path}: unreadable rule ({str(e).splitlines()[0]})") from None

    def proved_rules(self) -> list[Rule]:
        """Proved rules, each carrying its forward scope (`rule.meta["scope"]`); rows proved
        before scoped proofs (no scope) are left out: they are not known to hold at the sizes
        the matcher applies them at."""
        return [scoped(s.rule, s.scope["forward"]) for s in self.rules("proved")
                if s.scope and "forward" in s.scope]

    def unscoped_proved(self) -> list[int]:
        """Ids of proved rows without a scope (proved before scoped proofs): to prove again."""
        if not self._has_scope:
            return [r[0] for r in self.conn.execute("SELECT id FROM rules WHERE status='proved'")]
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM rules WHERE status='proved' AND scope IS NULL")]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        out.update(dict(self.conn.execute("SELECT status, COUNT(*) FROM rules GROUP BY status")))
        return out

    # -- generator runs -------------------------------------------------------------------------
    def run_stage(self, settings: str) -> tuple[str | None, dict]:
        row = self.conn.execute("SELECT stage, summary FROM runs WHERE settings=?",
                                (settings,)).fetchone()
        return (None, {}) if row is None else (row[0], json.loads(row[1] or "{}"))

    def unfinished_runs(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT settings FROM runs WHERE stage!='done'")]

    def store_candidates(self, settings: str, rules: list[Rule], summary: dict,
                         rows: list | None = None) -> list[int]:
        """Candidates and the run record in ONE transaction: a kill leaves both or neither.
        Returns the rules' ids (a rule already stored up to renaming keeps its row)."""
        with self.conn:
            ids = self._insert(rules, "candidate", settings, rows)
            self.conn.execute("INSERT OR REPLACE INTO runs VALUES (?, 'verifying', ?)",
                              (settings, json.dumps({**summary, "ids": ids})))
        return ids

    def finish_run(self, settings: str, summary: dict) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO runs VALUES (?, 'done', ?)",
                              (settings, json.dumps(summary)))

    def pending(self, settings: str) -> list[StoredRule]:
        """Candidates of this run that have no result yet."""
        ids = {r[0] for r in self.conn.execute(
            "SELECT id FROM rules WHERE status='candidate' AND settings=?", (settings,))}
        return [s for s in self.rules("candidate") if s.id in ids]

    def clear(self) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM rules")
            self.conn.execute("DELETE FROM runs")
        self.conn.execute("VACUUM")   # give the space back: the DB is shipped

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class ResultBatch:
    """Verifier results written into a RuleDB in batches: `add` collects `set_results` rows and
    commits them in one transaction once `seconds` have passed since the last commit (or
    `max_rows` are waiting), and on leaving the `with` block, even by an exception or Ctrl-C.
    A synchronous commit per rule costs more than verifying it, and a killed run loses at most
    the last batch, which a rerun verifies again."""

    def __init__(self, db: RuleDB, seconds: float, max_rows: int | None = None):
        self.db, self.seconds, self.max_rows = db, seconds, max_rows
        self.rows: list = []
        self.last = time.monotonic()

    def add(self, row) -> None:
        """One result: (rule_id, status, axioms, counterexample, seconds[, scope])."""
        self.rows.append(row)
        if ((self.max_rows is not None and len(self.rows) >= self.max_rows)
                or time.monotonic() - self.last >= self.seconds):
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.db.set_results(self.rows)
        self.rows, self.last = [], time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.flush()


def scoped(rule: Rule, scope: dict | None) -> Rule:
    """The rule carrying `scope` (a new Rule: the original keeps its own meta; its sides passed
    the checks when it was built)."""
    return Rule.unchecked(rule.name, rule.src, rule.dst, {**rule.meta, "scope": scope})


def _plain(v):
    """JSON fallback for numpy values in counterexamples."""
    try:
        return v.tolist()
    except AttributeError:
        return str(v)
