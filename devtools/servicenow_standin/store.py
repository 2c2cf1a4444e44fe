"""Where the stand-in keeps incidents: one SQLite file (or memory), safe across threads.

Records are stored as JSON, each with a private ``_journal`` list for the
journal fields; numbers come from a counter row, so ``INC0010001`` follows on
from the last one across restarts of a file database.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any, Dict, List, Optional

from .records import FIELD_RE, Filter

FIRST_NUMBER_BASE = 10000  # the first incident is INC0010001, as on a fresh instance


class IncidentStore:
    """Incident records in SQLite. ``lock`` makes a read-modify-write atomic."""

    def __init__(self, db_path: str = ":memory:") -> None:
        self.db_path = str(db_path)
        self.lock = threading.RLock()
        self._db: Optional[sqlite3.Connection] = None
        self.open()

    @property
    def in_memory(self) -> bool:
        return self.db_path in (":memory:", "")

    def open(self) -> None:
        """Open (and create) the database; a no-op when it is open."""
        with self.lock:
            if self._db is not None:
                return
            db = sqlite3.connect(self.db_path, check_same_thread=False, timeout=10.0)
            if not self.in_memory:
                db.execute("PRAGMA journal_mode=WAL")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS incident (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    sys_id TEXT NOT NULL UNIQUE,
                    data TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS incident_correlation
                    ON incident (json_extract(data, '$.correlation_id'));
                CREATE TABLE IF NOT EXISTS meta (
                    name TEXT PRIMARY KEY,
                    value INTEGER NOT NULL
                );
                """
            )
            db.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('incident_number', ?)",
                (FIRST_NUMBER_BASE,),
            )
            db.commit()
            self._db = db

    def close(self) -> None:
        """Close a file database (an in-memory one stays: closing would lose it)."""
        if self.in_memory:
            return
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    def all(self) -> List[Dict[str, Any]]:
        """Every record, oldest first."""
        with self.lock:
            rows = self._conn().execute("SELECT data FROM incident ORDER BY seq").fetchall()
        return [json.loads(row[0]) for row in rows]

    def candidates(self, filters: List[Filter]) -> List[Dict[str, Any]]:
        """Records that may match: for an exact, non-empty match on a field, only those
        SQLite finds with that value (by index for correlation_id), not every record
        decoded in Python. The caller still applies every filter."""
        for field, op, value in filters:
            if op == "=" and value and FIELD_RE.match(field):
                sql = "SELECT data FROM incident WHERE json_extract(data, '$.{}') = ? ORDER BY seq"
                with self.lock:
                    rows = self._conn().execute(sql.format(field), (value,)).fetchall()
                return [json.loads(row[0]) for row in rows]
        return self.all()

    def get(self, sys_id: str) -> Optional[Dict[str, Any]]:
        with self.lock:
            row = (
                self._conn()
                .execute("SELECT data FROM incident WHERE sys_id = ?", (sys_id,))
                .fetchone()
            )
        return json.loads(row[0]) if row else None

    def insert(self, record: Dict[str, Any]) -> Dict[str, Any]:
        """Give the record its number and store it, atomically."""
        with self.lock:
            db = self._conn()
            with db:
                db.execute("UPDATE meta SET value = value + 1 WHERE name = 'incident_number'")
                (value,) = db.execute(
                    "SELECT value FROM meta WHERE name = 'incident_number'"
                ).fetchone()
                record["number"] = f"INC{value:07d}"
                db.execute(
                    "INSERT INTO incident (sys_id, data) VALUES (?, ?)",
                    (record["sys_id"], json.dumps(record)),
                )
        return record

    def save(self, record: Dict[str, Any]) -> None:
        with self.lock:
            db = self._conn()
            with db:
                db.execute(
                    "UPDATE incident SET data = ? WHERE sys_id = ?",
                    (json.dumps(record), record["sys_id"]),
                )

    def delete(self, sys_id: str) -> bool:
        with self.lock:
            db = self._conn()
            with db:
                cursor = db.execute("DELETE FROM incident WHERE sys_id = ?", (sys_id,))
        return cursor.rowcount > 0
