"""The durable outbox: every ServiceNow action is written here before it is attempted.

SQLite in WAL mode, one connection guarded by a lock (the handler thread
enqueues, the delivery worker takes). An action leaves ``pending`` only when
ServiceNow has confirmed it (→ ``delivered``) or has refused it for good
(→ ``dead_letter``). Keys are unique across all three tables, so a repeated
anomaly message never queues its action twice.

Actions of one incident are delivered in order: only the oldest pending action
per ``correlation_id`` is ever due.

The file itself (one process at a time, never silently missing, damaged or
replaced) is looked after by :mod:`.outbox_guard`; this class only offers it
what it needs: :meth:`Outbox.progress`, :meth:`Outbox.restore` and
:meth:`Outbox.replace_file`, with :func:`.outbox_salvage.read_tables`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .incidents import Action
from .outbox_salvage import TABLES, insert_rows, pending_sequence, read_tables

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    correlation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL,
    open_fields TEXT,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    scheduled_at REAL
);
CREATE INDEX IF NOT EXISTS pending_corr ON pending (correlation_id, id);
CREATE TABLE IF NOT EXISTS delivered (
    key TEXT PRIMARY KEY,
    delivered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    correlation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL,
    open_fields TEXT,
    status INTEGER,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    correlation_id TEXT PRIMARY KEY,
    sys_id TEXT NOT NULL,
    number TEXT NOT NULL,
    state TEXT NOT NULL
);
"""


# What the delivery worker must remember across a crash about requests whose
# outcome it may not have seen (added after the first release: see
# migrate_delivery_state).
# * create_intents: a create for this correlation id may have been sent at
#   sent_at; before looking for the incident again (and maybe creating it), wait
#   until it would have committed.
# * note_attempts: the incident's sys_mod_count just before a work-note PATCH,
#   so a retry can tell whether the note already landed.
# * site_state: a site gateway's groups (agent/site/grouping.py), written in the
#   transaction that queues the actions decided from them (enqueue_with_state).
DELIVERY_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS create_intents (
    correlation_id TEXT PRIMARY KEY,
    sent_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS note_attempts (
    key TEXT PRIMARY KEY,
    sys_id TEXT NOT NULL,
    mod_count INTEGER NOT NULL,
    sent_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS site_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def migrate_delivery_state(db: sqlite3.Connection) -> None:
    """Add the delivery-state tables (and ``pending.scheduled_at``) to an outbox made by an
    older version. Idempotent."""
    db.executescript(DELIVERY_STATE_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(pending)")}
    if "scheduled_at" not in columns:
        # When a retry was scheduled: with next_attempt_at, its back-off, so a wall
        # clock stepped back since can be told from a long wait (rebase_after_clock_step).
        db.execute("ALTER TABLE pending ADD COLUMN scheduled_at REAL")


@dataclass(frozen=True)
class NoteAttempt:
    """A work-note PATCH that was (maybe) sent: the incident's state just before it."""

    key: str
    sys_id: str
    mod_count: int
    sent_at: float


@dataclass(frozen=True)
class QueuedAction:
    id: int
    action: Action
    attempts: int
    next_attempt_at: float


@dataclass(frozen=True)
class Incident:
    correlation_id: str
    sys_id: str
    number: str
    state: str


class Outbox:
    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._lock = threading.Lock()
        # Called after close(), e.g. to release the state directory's lock.
        self.on_close: List[Callable[[], None]] = []
        # True while the rows live in memory only: the file was replaced and a
        # fresh one could not be created yet (see replace_file).
        self.in_memory = False
        self._db = self._connect(path)

    def _connect(self, path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL (WAL): a commit survives a crash of the process, and a power cut
            # may roll back the last ones. Only enqueue() must be durable (nothing
            # sends its event again), so it syncs its own commit. A lost delivered()
            # just means the action is sent again, which is harmless: an open finds
            # its incident by correlation id first, a resolve finds it resolved; at
            # worst a work note repeats. Saves an fsync per delivered action.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
            migrate_delivery_state(db)
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()
        callbacks, self.on_close = self.on_close, []
        for callback in callbacks:
            callback()

    # -- queueing ---------------------------------------------------------------
    def enqueue(self, action: Action, now: float) -> bool:
        """Queue ``action``; ``False`` if its key was already queued, delivered or dead.

        Durable when it returns: this commit is synced (``synchronous=FULL``).
        """
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                return self._enqueue(action, now)
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def _enqueue(self, action: Action, now: float) -> bool:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            return self._insert(action, now)

    def _insert(self, action: Action, now: float) -> bool:
        """Insert one action inside the caller's transaction; ``False`` if its key is known."""
        for table in ("delivered", "dead_letter"):
            row = self._db.execute(f"SELECT 1 FROM {table} WHERE key = ?", (action.key,)).fetchone()
            if row:
                return False
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO pending (key, correlation_id, kind, fields, open_fields,"
            " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                action.key,
                action.correlation_id,
                action.kind,
                json.dumps(action.fields),
                json.dumps(action.open_fields) if action.open_fields else None,
                now,
                now,
            ),
        )
        return cursor.rowcount == 1

    def enqueue_with_state(
        self, actions: List[Action], state: Dict[str, Optional[str]], now: float
    ) -> List[bool]:
        """Queue ``actions`` and write the ``site_state`` rows they were decided from
        (``None`` deletes a row), all or nothing; per action, whether it was new.

        Synced when it queues actions (as ``enqueue``). State alone (a device seen, a
        member that joined a waiting group) survives a crash of the process without a
        sync, as every WAL commit does; a power cut may roll it back, which costs at
        worst a repeated note, never an action."""
        with self._lock:
            self._db.execute("PRAGMA synchronous={}".format("FULL" if actions else "NORMAL"))
            try:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    queued = [self._insert(action, now) for action in actions]
                    for name, value in state.items():
                        if value is None:
                            self._db.execute("DELETE FROM site_state WHERE name = ?", (name,))
                        else:
                            self._db.execute(
                                "INSERT OR REPLACE INTO site_state (name, value) VALUES (?, ?)",
                                (name, value),
                            )
                    return queued
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def site_state(self) -> Dict[str, str]:
        """Every ``site_state`` row: what a site gateway decided its groups from."""
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM site_state").fetchall())

    def due(self, now: float, limit: int = 50) -> List[QueuedAction]:
        """Head-of-line action per incident whose retry time has come, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT p.id, p.key, p.correlation_id, p.kind, p.fields, p.open_fields, p.attempts,"
                " p.next_attempt_at FROM pending p"
                " WHERE p.id = (SELECT MIN(q.id) FROM pending q"
                "               WHERE q.correlation_id = p.correlation_id)"
                " AND p.next_attempt_at <= ? ORDER BY p.id LIMIT ?",
                (now, limit),
            ).fetchall()
        return [_queued(row) for row in rows]

    def next_attempt_at(self) -> Optional[float]:
        """When the earliest head-of-line action comes due; ``None`` if nothing is pending."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(p.next_attempt_at) FROM pending p"
                " WHERE p.id = (SELECT MIN(q.id) FROM pending q"
                "               WHERE q.correlation_id = p.correlation_id)"
            ).fetchone()
        earliest: Optional[float] = row[0]  # MIN() of no rows is NULL
        return earliest

    # -- outcomes ----------------------------------------------------------------
    def delivered(
        self, queued: QueuedAction, now: float, incident: Optional[Incident] = None
    ) -> None:
        """ServiceNow confirmed the action: remove it, remember its key and the incident."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM pending WHERE id = ?", (queued.id,))
            self._db.execute(
                "INSERT OR REPLACE INTO delivered (key, delivered_at) VALUES (?, ?)",
                (queued.action.key, now),
            )
            self._db.execute("DELETE FROM note_attempts WHERE key = ?", (queued.action.key,))
            if incident is not None:
                # The incident is known now: no create for it can be in doubt any more.
                self._db.execute(
                    "DELETE FROM create_intents WHERE correlation_id = ?",
                    (incident.correlation_id,),
                )
                # INSERT OR REPLACE, not UPSERT: SQLite before 3.24 (old Raspbian) lacks it.
                self._db.execute(
                    "INSERT OR REPLACE INTO incidents (correlation_id, sys_id, number, state)"
                    " VALUES (?, ?, ?, ?)",
                    (incident.correlation_id, incident.sys_id, incident.number, incident.state),
                )

    def retry_later(
        self, queued: QueuedAction, when: float, error: str, now: Optional[float] = None
    ) -> None:
        """Try ``queued`` again at ``when``; ``now`` (when this was decided) lets
        :meth:`rebase_after_clock_step` keep the wait's length across a clock step."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE pending SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?,"
                " scheduled_at = ? WHERE id = ?",
                (when, error[:500], now, queued.id),
            )

    def rebase_after_clock_step(self, now: float) -> int:
        """Times kept here that lie after ``now`` were written before the wall clock stepped
        back (across a restart: within a process the deliverer's clock never steps). Move
        them to ``now``, keeping each wait's length: a retry then waits no more than its
        back-off, a create or note in doubt no more than its window. Returns how many
        pending actions moved."""
        with self._lock, self._db:
            moved: int = self._db.execute(
                "UPDATE pending SET next_attempt_at = ? + MAX(0, next_attempt_at"
                " - COALESCE(scheduled_at, created_at)), scheduled_at = ?"
                " WHERE COALESCE(scheduled_at, created_at) > ?",
                (now, now, now),
            ).rowcount
            for table in ("create_intents", "note_attempts"):
                self._db.execute(f"UPDATE {table} SET sent_at = ? WHERE sent_at > ?", (now, now))
        return moved

    def make_due(self, ids: List[int], now: float) -> None:
        """Make these pending actions due at ``now`` (attempts unchanged)."""
        with self._lock, self._db:
            self._db.executemany(
                "UPDATE pending SET next_attempt_at = ? WHERE id = ? AND next_attempt_at > ?",
                [(now, i, now) for i in ids],
            )

    def dead_letter(
        self, queued: QueuedAction, now: float, reason: str, status: Optional[int]
    ) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM pending WHERE id = ?", (queued.id,))
            self._db.execute(
                "INSERT OR REPLACE INTO dead_letter (key, correlation_id, kind, fields,"
                " open_fields, status, reason, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    queued.action.key,
                    queued.action.correlation_id,
                    queued.action.kind,
                    json.dumps(queued.action.fields),
                    json.dumps(queued.action.open_fields) if queued.action.open_fields else None,
                    status,
                    reason[:500],
                    now,
                ),
            )

    # -- requests whose outcome may be unknown ---------------------------------------
    def record_create_intent(self, correlation_id: str, now: float) -> None:
        """Remember, durably (synced) before the POST leaves, that a create may be sent."""
        self._synced(
            "INSERT OR REPLACE INTO create_intents (correlation_id, sent_at) VALUES (?, ?)",
            (correlation_id, now),
        )

    def create_intent(self, correlation_id: str) -> Optional[float]:
        """When a create for ``correlation_id`` may last have been sent; ``None`` if never."""
        with self._lock:
            row = self._db.execute(
                "SELECT sent_at FROM create_intents WHERE correlation_id = ?", (correlation_id,)
            ).fetchone()
        return row[0] if row else None

    def clear_create_intent(self, correlation_id: str) -> None:
        """The create surely did not commit (refused, or never sent)."""
        with self._lock, self._db:
            self._db.execute(
                "DELETE FROM create_intents WHERE correlation_id = ?", (correlation_id,)
            )

    def record_note_attempt(self, key: str, sys_id: str, mod_count: int, now: float) -> None:
        """Remember, durably (synced) before the PATCH leaves, the incident's sys_mod_count."""
        self._synced(
            "INSERT OR REPLACE INTO note_attempts (key, sys_id, mod_count, sent_at)"
            " VALUES (?, ?, ?, ?)",
            (key, sys_id, mod_count, now),
        )

    def note_attempt(self, key: str) -> Optional[NoteAttempt]:
        with self._lock:
            row = self._db.execute(
                "SELECT key, sys_id, mod_count, sent_at FROM note_attempts WHERE key = ?", (key,)
            ).fetchone()
        return NoteAttempt(*row) if row else None

    def _synced(self, sql: str, args: Tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                with self._db:
                    self._db.execute(sql, args)
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    # -- incidents we know about -------------------------------------------------------
    def incident(self, correlation_id: str) -> Optional[Incident]:
        with self._lock:
            row = self._db.execute(
                "SELECT correlation_id, sys_id, number, state FROM incidents"
                " WHERE correlation_id = ?",
                (correlation_id,),
            ).fetchone()
        return Incident(*row) if row else None

    # -- reporting ---------------------------------------------------------------
    def counts(self) -> Dict[str, int]:
        with self._lock:
            return {
                table: self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("pending", "delivered", "dead_letter", "incidents")
            }

    def dead_letters(self) -> List[Dict[str, object]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, kind, status, reason, dead_at FROM dead_letter ORDER BY id"
            ).fetchall()
        return [dict(zip(("key", "kind", "status", "reason", "dead_at"), r)) for r in rows]

    def requeue_dead_letters(self, now: float, keys: Optional[List[str]] = None) -> int:
        """Put dead-lettered actions back in the queue (all, or those ``keys``), e.g. after
        the integration user's roles were fixed. Returns how many."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            rows = self._db.execute(
                "SELECT id, key, correlation_id, kind, fields, open_fields FROM dead_letter"
                " ORDER BY id"
            ).fetchall()
            count = 0
            for id_, key, corr, kind, fields, open_fields in rows:
                if keys is not None and key not in keys:
                    continue
                self._db.execute(
                    "INSERT OR IGNORE INTO pending (key, correlation_id, kind, fields, open_fields,"
                    " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, corr, kind, fields, open_fields, now, now),
                )
                self._db.execute("DELETE FROM dead_letter WHERE id = ?", (id_,))
                count += 1
            return count

    def prune_delivered(self, older_than: float) -> int:
        """Forget delivered keys older than ``older_than``; returns how many."""
        with self._lock, self._db:
            return self._db.execute(
                "DELETE FROM delivered WHERE delivered_at < ?", (older_than,)
            ).rowcount

    # -- what the outbox guard needs ------------------------------------------------
    def keys_for(self, correlation_id: str) -> List[str]:
        """Every key queued, delivered or dead-lettered for ``correlation_id``.

        Keys are ``<correlation id>#<seq>:<event>``; a range on the unique key
        index finds them without a scan.
        """
        low, high = correlation_id + "#", correlation_id + "$"
        with self._lock:
            keys: List[str] = []
            for table in ("pending", "delivered", "dead_letter"):
                keys.extend(
                    row[0]
                    for row in self._db.execute(
                        f"SELECT key FROM {table} WHERE key >= ? AND key < ?", (low, high)
                    )
                )
        return keys

    def progress(self) -> Tuple[int, int]:
        """``(pending actions, highest id ever queued)``: what the state dir's marker records.

        The id only grows (AUTOINCREMENT), so an outbox whose id is behind the
        marker's lost transactions that had been committed.
        """
        with self._lock:
            pending = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
            return pending, pending_sequence(self._db)

    def restore(self, snapshot: Dict[str, Any], min_sequence: int = 0) -> Dict[str, int]:
        """Add the well-formed rows of ``snapshot`` (:func:`read_tables` of a damaged outbox).

        Also raises the id sequence to ``min_sequence`` (the marker's), so ids
        keep growing across the change. Returns the rows added per table.
        """
        with self._lock:
            return self._restore(snapshot, min_sequence)

    def replace_file(self, move_aside: Callable[[], Any]) -> Tuple[Any, Dict[str, int]]:
        """The file under this outbox was deleted or replaced while open: start a fresh one.

        This connection still reads the file it opened, so its rows are kept,
        ``move_aside()`` moves whatever is at the path now, and the rows go into
        a fresh file there. If that file cannot be created (a full disk), they
        stay in memory (``in_memory``) until this is called again.
        """
        with self._lock:
            snapshot = read_tables(self._db)
            result = move_aside()
            try:
                self._db.close()  # before the new file exists: closing unlinks "<path>-wal"
            except sqlite3.Error:
                pass
            try:
                self._db = self._connect(self.path)
                self.in_memory = False
            except (sqlite3.Error, OSError):
                self._db = self._connect(":memory:")
                self.in_memory = True
            counts = self._restore(snapshot, 0)
        return result, counts

    def _restore(self, snapshot: Dict[str, Any], min_sequence: int) -> Dict[str, int]:
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                counts = {}
                for table in TABLES:
                    columns, rows = snapshot.get(table, ([], []))
                    counts[table] = insert_rows(self._db, table, columns, rows)
                sequence = max(min_sequence, snapshot.get("sequence", 0))
                if sequence > pending_sequence(self._db):
                    self._db.execute("DELETE FROM sqlite_sequence WHERE name = 'pending'")
                    self._db.execute(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES ('pending', ?)",
                        (sequence,),
                    )
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")
        return counts


def _queued(row: Tuple[Any, ...]) -> QueuedAction:
    id_, key, corr, kind, fields, open_fields, attempts, next_at = row
    action = Action(
        kind, key, corr, json.loads(fields), json.loads(open_fields) if open_fields else None
    )
    return QueuedAction(id_, action, attempts, next_at)
