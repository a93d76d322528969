"""SQLite cache of measured op costs, keyed by (backend, device, op signature).

One file is shared by every process and run: WAL journaling lets readers and one writer work
at once, writes are single `INSERT OR IGNORE` transactions (the first measurement wins; a
concurrent duplicate is harmless), `lower` lets a re-timing replace a value with a lower one,
and a busy timeout waits out other writers.  The default path is $SUBGEN_COST_CACHE, else
~/.cache/subgen/costs.db.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

_SCHEMA = """CREATE TABLE IF NOT EXISTS costs (
    backend TEXT NOT NULL, device TEXT NOT NULL, signature TEXT NOT NULL, ms REAL NOT NULL,
    PRIMARY KEY (backend, device, signature))"""


def default_path() -> Path:
    env = os.environ.get("SUBGEN_COST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "subgen" / "costs.db"


class CostCache:
    def __init__(self, path: str | os.PathLike | None = None, backend: str = "", device: str = ""):
        self.path = Path(path) if path is not None else default_path()
        self.backend, self.device = backend, device
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as c:
            c.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        # one connection per process and thread: sqlite connections must not cross a fork
        key = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != key:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, key
        return conn

    def load_all(self) -> dict[str, float]:
        rows = self._conn().execute(
            "SELECT signature, ms FROM costs WHERE backend=? AND device=?",
            (self.backend, self.device)).fetchall()
        return dict(rows)

    def get(self, signature: str) -> float | None:
        row = self._conn().execute(
            "SELECT ms FROM costs WHERE backend=? AND device=? AND signature=?",
            (self.backend, self.device, signature)).fetchone()
        return None if row is None else float(row[0])

    def put(self, signature: str, ms: float) -> float:
        """Stores ms unless another process got there first; returns the stored value."""
        c = self._conn()
        c.execute("INSERT OR IGNORE INTO costs VALUES (?, ?, ?, ?)",
                  (self.backend, self.device, signature, float(ms)))
        stored = self.get(signature)
        return float(ms) if stored is None else stored

    def lower(self, signature: str, ms: float) -> float:
        """Stores min(stored, ms) (a re-timing keeps the lowest value seen); returns it."""
        c = self._conn()
        c.execute("INSERT OR IGNORE INTO costs VALUES (?, ?, ?, ?)",
                  (self.backend, self.device, signature, float(ms)))
        c.execute("UPDATE costs SET ms = MIN(ms, ?) WHERE backend=? AND device=? AND signature=?",
                  (float(ms), self.backend, self.device, signature))
        stored = self.get(signature)
        return float(ms) if stored is None else stored

    def __len__(self) -> int:
        return self._conn().execute(
            "SELECT COUNT(*) FROM costs WHERE backend=? AND device=?",
            (self.backend, self.device)).fetchone()[0]
