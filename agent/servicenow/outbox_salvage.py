"""Salvage: what can still be read from an outbox file, written into a fresh one.

When the outbox file is damaged, or deleted or replaced under a running agent,
:mod:`.outbox_guard` has every readable row copied into a new file
(:meth:`.outbox.Outbox.restore`, :meth:`.outbox.Outbox.replace_file`). These are
the table-level parts of that copy: reading up to the damage, and inserting
only rows the new schema can take and delivery could use.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Dict, List, Tuple

# Carried into a fresh outbox when the file is damaged or replaced: the delivery
# state too, so a create that may have been sent keeps its wait after the move.
TABLES = (
    "pending",
    "delivered",
    "dead_letter",
    "incidents",
    "create_intents",
    "note_attempts",
    "site_state",
)
_JSON_COLUMNS = ("fields", "open_fields")


def read_tables(db: sqlite3.Connection) -> Dict[str, Any]:
    """Every row ``db`` can still read, per table, and its id sequence; stops at damage."""
    snapshot: Dict[str, Any] = {"sequence": 0}
    for table in TABLES:
        columns: List[str] = []
        rows: List[Tuple[Any, ...]] = []
        try:
            cursor = db.execute(f"SELECT * FROM {table}")
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                rows.append(row)
        except sqlite3.DatabaseError:
            pass  # keep what was read before the damage
        snapshot[table] = (columns, rows)
    try:
        snapshot["sequence"] = pending_sequence(db)
    except sqlite3.DatabaseError:
        pass
    return snapshot


def insert_rows(
    db: sqlite3.Connection, table: str, columns: List[str], rows: List[Tuple[Any, ...]]
) -> int:
    """Insert ``rows`` (with ``columns``, from :func:`read_tables`) into ``table``; the count added.

    Columns ``table`` does not have are left out; rows whose JSON is garbled, or whose
    key is already there, are skipped."""
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    keep = [i for i, name in enumerate(columns) if name in present]
    if not keep:
        return 0
    sql = "INSERT OR IGNORE INTO {} ({}) VALUES ({})".format(
        table, ", ".join(columns[i] for i in keep), ", ".join("?" * len(keep))
    )
    json_at = [i for i in keep if columns[i] in _JSON_COLUMNS]
    copied = 0
    for row in rows:
        if not all(_json_or_null(row[i]) for i in json_at):
            continue  # garbled by the damage: delivering it would fail forever
        try:
            copied += db.execute(sql, [row[i] for i in keep]).rowcount
        except sqlite3.IntegrityError:
            continue
    return copied


def _json_or_null(value: Any) -> bool:
    if value is None:
        return True
    try:
        return isinstance(json.loads(value), dict)
    except (TypeError, ValueError):
        return False


def pending_sequence(db: sqlite3.Connection) -> int:
    """The highest id ever given to a pending action (AUTOINCREMENT's sequence); 0 if none."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pending'").fetchone()
    return int(row[0]) if row else 0
