"""The bridge's spool: messages for the broker, oldest first, within a byte limit.

The Greengrass V1 core's spooler, redone: a bounded store (in memory by
default, 2.5 MB like Greengrass; optionally a SQLite file that survives a
restart of the agent) from which a message leaves only when the broker has
acknowledged it. When a new message does not fit, the oldest go first and
``append`` says how many. No MQTT here: the spools are tested on their own.

Entry ids only grow (also across restarts of a SQLite spool), so the bridge
can walk the spool with a cursor: "everything after the last id I sent".
"""

from __future__ import annotations

import collections
import os
import sqlite3
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, TypeVar, Union

from ...errors import AgentError, ConfigError

DEFAULT_SPOOL_LIMIT_BYTES = 2_500_000  # the Greengrass V1 core's default spool size
_T = TypeVar("_T")


class SpoolError(AgentError, OSError):
    """The spool file cannot be written (a full disk, say); the message names the file."""


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
        self.limit_bytes = _checked_limit(limit_bytes)
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
            _, oldest = self._entries.popitem(last=False)  # type: ignore[call-arg]
            self._bytes -= oldest.size
            dropped += 1
        entry = SpoolEntry(self._next_id, topic, payload)
        self._next_id += 1
        self._entries[entry.id] = entry
        self._bytes += size
        return entry.id, dropped

    def entries_after(self, after_id: int, limit: int) -> List[SpoolEntry]:
        """Up to ``limit`` entries with an id above ``after_id``, oldest first."""
        found: List[SpoolEntry] = []
        for entry_id, entry in self._entries.items():
            if entry_id > after_id:
                found.append(entry)
                if len(found) >= limit:
                    break
        return found

    def remove(self, entry_id: int) -> bool:
        """Forget an entry (the broker has it); False if it was not (or no longer) here."""
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


class SqliteSpool:
    """The same spool in a SQLite file: what waits survives a restart of the agent.

    A full disk fails :meth:`append` with :class:`SpoolError` (the bridge counts
    that message as dropped) but never :meth:`remove`: SQLite needs room even to
    delete, so an entry the broker acknowledged while the disk is full is
    forgotten in memory at once and deleted from the file when there is room
    again. If the agent stops first, the next start sends it once more, which
    QoS 1's "at least once" allows.
    """

    kind = "disk"

    def __init__(self, path: str, limit_bytes: int) -> None:
        self.limit_bytes = _checked_limit(limit_bytes)
        self.path = path
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
        self._count, self._bytes = int(row[0]), int(row[1])
        self._unsaved_removals: Dict[int, int] = {}  # id -> size: gone, still in the file
        self.found_at_open = self._count
        self.dropped_at_open = 0
        if self._bytes > self.limit_bytes:  # the limit was lowered since the last run
            self.dropped_at_open = self._write(self._make_room, 0)

    def append(self, topic: str, payload: bytes) -> Tuple[Optional[int], int]:
        size = entry_size(topic, payload)
        if size > self.limit_bytes:
            return None, 0

        def insert() -> Tuple[int, int]:
            dropped = self._make_room(size)
            cursor = self._db.execute(
                "INSERT INTO spool (topic, payload, size) VALUES (?, ?, ?)",
                (topic, sqlite3.Binary(payload), size),
            )
            if cursor.lastrowid is None:  # set by every INSERT; rolled back by _write if not
                raise sqlite3.DatabaseError("the spool insert reported no row id")
            return cursor.lastrowid, dropped

        entry_id, dropped = self._write(insert)
        self._count += 1
        self._bytes += size
        return entry_id, dropped

    def _make_room(self, size: int) -> int:
        """Delete the oldest entries until ``size`` more bytes fit (inside a transaction)."""
        dropped = 0
        while self._bytes + size > self.limit_bytes:
            row = self._db.execute("SELECT id, size FROM spool ORDER BY id LIMIT 1").fetchone()
            if row is None:
                break
            self._db.execute("DELETE FROM spool WHERE id = ?", (row[0],))
            self._count -= 1
            self._bytes -= int(row[1])
            dropped += 1
        return dropped

    def _write(self, change: Callable[..., _T], *args: Any) -> _T:
        """Run ``change`` in one transaction after the removals the disk refused before."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._delete_unsaved()
                result = change(*args)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back on its own
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._recount()
            raise SpoolError(f"cannot write the spool file {self.path}: {exc}")
        except BaseException:
            self._recount()
            raise
        self._unsaved_removals.clear()
        return result

    def _delete_unsaved(self) -> None:
        for entry_id in self._unsaved_removals:
            self._db.execute("DELETE FROM spool WHERE id = ?", (entry_id,))

    def _recount(self) -> None:
        """Counts from the file after a rolled-back change, less what is gone but unsaved."""
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM spool").fetchone()
        self._count = int(row[0]) - len(self._unsaved_removals)
        self._bytes = int(row[1]) - sum(self._unsaved_removals.values())

    def entries_after(self, after_id: int, limit: int) -> List[SpoolEntry]:
        rows = self._db.execute(
            "SELECT id, topic, payload FROM spool WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit + len(self._unsaved_removals)),
        ).fetchall()
        found = [
            SpoolEntry(int(r[0]), r[1], bytes(r[2]))
            for r in rows
            if int(r[0]) not in self._unsaved_removals
        ]
        return found[:limit]

    def remove(self, entry_id: int) -> bool:
        if entry_id in self._unsaved_removals:
            return False
        row = self._db.execute("SELECT size FROM spool WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            return False
        try:
            self._db.execute("DELETE FROM spool WHERE id = ?", (entry_id,))
        except sqlite3.Error:
            self._unsaved_removals[entry_id] = int(row[0])  # deleted by the next write
        self._count -= 1
        self._bytes -= int(row[0])
        return True

    def __len__(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        if self._unsaved_removals:
            try:
                self._write(lambda: None)
            except SpoolError:
                pass  # sent again on the next start: at least once
        try:
            self._db.close()
        except sqlite3.Error:
            pass


Spool = Union[MemorySpool, SqliteSpool]


def _checked_limit(limit_bytes: int) -> int:
    if limit_bytes <= 0:
        raise ConfigError(f"spool limit must be positive, got {limit_bytes} bytes")
    return int(limit_bytes)
