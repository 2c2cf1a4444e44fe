"""The bridge's spool: messages for the broker, oldest first, within a byte limit.

The Greengrass V1 core's spooler, redone: a bounded store (in memory by
default, 2.5 MB like Greengrass; optionally a SQLite file that survives a
restart of the agent) from which a message leaves only when the broker has
acknowledged it. When a new message does not fit, the oldest go first and
``append`` says how many. No MQTT here: the spools are tested on their own.
"""

from __future__ import annotations

import collections
import os
import sqlite3
from typing import Dict, List, NamedTuple, Optional, Tuple

from ...errors import ConfigError

DEFAULT_SPOOL_LIMIT_BYTES = 2_500_000  # the Greengrass V1 core's default spool size


class SpoolEntry(NamedTuple):
    id: int
    topic: str
    payload: bytes

    @property
    def size(self) -> int:
        return entry_size(self.topic, self.payload)


def entry_size(topic: str, payload: bytes) -> int:
    """What a message costs in the spool: its topic and payload bytes."""
    return len(topic.encode("utf-8")) + len(payload)


class MemorySpool:
    """Messages for the broker, oldest first, at most ``limit_bytes`` of them."""

    kind = "memory"

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ConfigError(f"spool limit must be positive, got {limit_bytes} bytes")
        self.limit_bytes = int(limit_bytes)
        self._entries: Dict[int, SpoolEntry] = collections.OrderedDict()
        self._bytes = 0
        self._next_id = 1

    def append(self, topic: str, payload: bytes) -> Tuple[Optional[int], int]:
        """Store a message; return (its id or None if it alone exceeds the limit, entries dropped)."""
        size = entry_size(topic, payload)
        if size > self.limit_bytes:
            return None, 0
        dropped = 0
        while self._bytes + size > self.limit_bytes:
            self._pop_oldest()
            dropped += 1
        entry = SpoolEntry(self._next_id, topic, payload)
        self._next_id += 1
        self._entries[entry.id] = entry
        self._bytes += size
        return entry.id, dropped

    def _pop_oldest(self) -> None:
        _, entry = self._entries.popitem(last=False)  # type: ignore[call-arg]
        self._bytes -= entry.size

    def entries_after(self, after_id: int, limit: int) -> List[SpoolEntry]:
        found: List[SpoolEntry] = []
        for entry_id, entry in self._entries.items():
            if entry_id > after_id:
                found.append(entry)
                if len(found) >= limit:
                    break
        return found

    def remove(self, entry_id: int) -> bool:
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        return True

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        pass


class SqliteSpool(MemorySpool):
    """The same spool in a SQLite file: what waits survives a restart of the agent."""

    kind = "disk"

    def __init__(self, path: str, limit_bytes: int) -> None:
        super().__init__(limit_bytes)
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "topic TEXT NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL)"
            )
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM spool").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the spool file {path}: {exc}")
        self.path = path
        self._count, self._bytes = int(row[0]), int(row[1])
        self.dropped_at_open = 0
        while self._bytes > self.limit_bytes:  # the limit was lowered since the last run
            self._pop_oldest()
            self.dropped_at_open += 1

    def append(self, topic: str, payload: bytes) -> Tuple[Optional[int], int]:
        size = entry_size(topic, payload)
        if size > self.limit_bytes:
            return None, 0
        dropped = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            while self._bytes + size > self.limit_bytes:
                self._pop_oldest()
                dropped += 1
            cursor = self._db.execute(
                "INSERT INTO spool (topic, payload, size) VALUES (?, ?, ?)",
                (topic, sqlite3.Binary(payload), size),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM spool").fetchone()
            self._count, self._bytes = int(row[0]), int(row[1])
            raise
        self._count += 1
        self._bytes += size
        return int(cursor.lastrowid), dropped

    def _pop_oldest(self) -> None:
        row = self._db.execute("SELECT id, size FROM spool ORDER BY id LIMIT 1").fetchone()
        if row is None:
            self._count, self._bytes = 0, 0
            return
        self._db.execute("DELETE FROM spool WHERE id = ?", (row[0],))
        self._count -= 1
        self._bytes -= int(row[1])

    def entries_after(self, after_id: int, limit: int) -> List[SpoolEntry]:
        rows = self._db.execute(
            "SELECT id, topic, payload FROM spool WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [SpoolEntry(int(r[0]), r[1], bytes(r[2])) for r in rows]

    def remove(self, entry_id: int) -> bool:
        row = self._db.execute("SELECT size FROM spool WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            return False
        self._db.execute("DELETE FROM spool WHERE id = ?", (entry_id,))
        self._count -= 1
        self._bytes -= int(row[0])
        return True

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:
            pass
