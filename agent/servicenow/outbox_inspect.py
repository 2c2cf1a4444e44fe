"""What `edge-agent outbox` shows: the outbox's counts and any sign that queued actions were lost.

It only reads (SQLite's read-only mode, which never checkpoints or deletes a
WAL), so it is safe beside a running agent and leaves a damaged file as it
found it. The agent itself acts on what it finds (see :mod:`.outbox_guard`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any, Dict, List

from ..state_dir import is_locked
from ..state_file import read_json, write_json_atomic
from .outbox_check import read_only_problem
from .outbox_guard import (
    LOCK_FILE,
    MARKER_FILE,
    OUTBOX_FILE,
    QUARANTINE_PREFIX,
    REPORT_FILE,
    describe_marker,
    marker_value,
    read_marker,
    stamp,
)


def inspect(state_dir: str) -> Dict[str, Any]:
    """What ``edge-agent outbox`` shows: status, problems, counts. Reads only.

    ``status`` is the worst that applies: ``loss`` (a report not yet
    acknowledged, a missing or damaged outbox, or one behind its marker),
    ``absent`` (no outbox was ever made here), ``dead_letters`` (ServiceNow
    refused actions for good), ``pending`` (actions wait to be delivered), or
    ``ok`` (every action delivered).
    """
    path = os.path.join(state_dir, OUTBOX_FILE)
    marker, marker_state = read_marker(os.path.join(state_dir, MARKER_FILE))
    result: Dict[str, Any] = {
        "state_dir": state_dir,
        "outbox": path,
        "marker": marker,
        "running": is_locked(os.path.join(state_dir, LOCK_FILE)),
        "reports": list_reports(state_dir),
        "problems": [],
    }
    problems = result["problems"]
    problems.extend(
        "{}: {}".format(r["folder"], r.get("detail"))
        for r in result["reports"]
        if not r.get("acknowledged_at")
    )
    if not os.path.exists(path):
        if marker_state != "absent":
            problems.append(
                "outbox {} is missing; {}: those actions may be lost".format(
                    path, describe_marker(marker)
                )
            )
        result["status"] = "loss" if problems else "absent"
        return result
    what = read_only_problem(path)
    sequence = 0
    if what is None:
        try:
            sequence = _read_only_counts(path, result)
        except sqlite3.DatabaseError as exc:
            what = str(exc)
    if what is not None:
        problems.append("outbox {} is damaged ({})".format(path, what))
    elif marker_value(marker, "sequence") > sequence:
        problems.append(
            "outbox {} lost committed transactions (last action id {}, the marker's {})".format(
                path, sequence, marker_value(marker, "sequence")
            )
        )
    result["status"] = "loss" if problems else _queue_status(result.get("counts") or {})
    return result


def _queue_status(counts: Dict[str, int]) -> str:
    if counts.get("dead_letter"):
        return "dead_letters"
    return "pending" if counts.get("pending") else "ok"


def _read_only_counts(path: str, result: Dict[str, Any]) -> int:
    """Fill in counts and dead letters; return the id sequence. A file whose tables were
    never written (its WAL is gone) counts as empty."""
    db = sqlite3.connect("file:{}?mode=ro".format(path), uri=True)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        result["counts"] = {
            t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] if t in tables else 0
            for t in ("pending", "delivered", "dead_letter", "incidents")
        }
        rows = []
        if "dead_letter" in tables:
            rows = db.execute(
                "SELECT key, kind, status, reason, dead_at FROM dead_letter ORDER BY id"
            ).fetchall()
        result["dead_letters"] = [
            dict(zip(("key", "kind", "status", "reason", "dead_at"), r)) for r in rows
        ]
        if "sqlite_sequence" not in tables:
            return 0
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pending'").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


def list_reports(state_dir: str) -> List[Dict[str, Any]]:
    """Every ``outbox.broken-*/report.json`` in ``state_dir``, oldest first."""
    reports = []
    try:
        names = sorted(n for n in os.listdir(state_dir) if n.startswith(QUARANTINE_PREFIX))
    except OSError:
        return []
    for name in names:
        folder = os.path.join(state_dir, name)
        record = read_json(os.path.join(folder, REPORT_FILE)) or {
            "detail": "moved-aside outbox files without a readable report"
        }
        reports.append(dict(record, folder=folder))
    return reports


def acknowledge(state_dir: str) -> int:
    """Mark every unacknowledged report as seen (the files stay); return how many."""
    count = 0
    for record in list_reports(state_dir):
        if record.get("acknowledged_at"):
            continue
        folder = record.pop("folder")
        record["acknowledged_at"] = stamp(time.time(), iso=True)
        if write_json_atomic(os.path.join(folder, REPORT_FILE), record):
            count += 1
    return count
