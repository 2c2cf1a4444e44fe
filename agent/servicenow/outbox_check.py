"""Is an outbox file intact? SQLite's own answer: ``PRAGMA quick_check``.

``quick_check`` finds damaged pages and "file is not a database". It cannot
see a damaged write-ahead log: SQLite replays WAL frames only up to the first
one whose checksum fails and silently ignores the rest. At start the outbox
marker catches what that loses (the file is behind the marker's action id,
see :mod:`.outbox_guard`); ``edge-agent outbox --check`` reads the log itself
(``devtools/outbox_wal.py``) to find every committed transaction SQLite would
skip.
"""

from __future__ import annotations

import sqlite3
from typing import Optional


def open_for_check(path: str) -> sqlite3.Connection:
    """A connection for :func:`problem`; raises ``sqlite3.DatabaseError`` on a non-database."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def problem(db: sqlite3.Connection) -> Optional[str]:
    """What SQLite finds wrong with the outbox ``db``; ``None`` if nothing."""
    return _quick_check(db)


def read_only_problem(path: str) -> Optional[str]:
    """``quick_check`` through a read-only connection, for a live or stopped agent's outbox.

    Never writes, checkpoints or deletes the WAL, so it is safe beside a
    running agent and leaves a damaged file as it found it.
    """
    try:
        db = sqlite3.connect("file:{}?mode=ro".format(path), uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        return _quick_check(db)
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        db.close()


def _quick_check(db: sqlite3.Connection) -> Optional[str]:
    rows = db.execute("PRAGMA quick_check").fetchall()
    if [tuple(r) for r in rows] != [("ok",)]:
        return "SQLite's integrity check fails: {}".format("; ".join(str(r[0]) for r in rows[:3]))
    return None
