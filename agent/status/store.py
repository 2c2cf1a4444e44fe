"""Read-only views of the state directory: the outbox, the sensor's state files, the locks.

Used by the status function and by ``edge-agent status`` (which works with the
functions down). Nothing here writes:

* the outbox is opened with SQLite's ``file:...?mode=ro`` URI. In WAL mode a
  reader never blocks the anomaly function's writer, and each query is its own
  short read transaction (no cursor is left open), so checkpoints are not held
  back either. A read-only ``-shm`` (a volume mounted read-only) is fine on
  SQLite 3.22+ as long as the writer has created it;
* the sensor's state files are read whole (they are replaced atomically);
* locks are looked up in ``/proc/locks`` by the lock file's inode: probing with
  ``flock`` would, for an instant, make a starting function think another one
  holds its state.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from typing import Any, Dict, List, Optional, Tuple

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
SENSOR_STATE_PREFIX = "sensor-state-"  # sensor-state-<device>.json
LISTED = 20  # pending / dead-letter rows listed in a view
RECENT_DELIVERED = 50
KNOWN_INCIDENTS = 300
MAX_STATE_BYTES = 1 << 20


class OutboxReader:
    """Queries the anomaly function's outbox through a read-only connection."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: Optional[sqlite3.Connection] = None
        self._inode: Optional[int] = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db, self._inode = None, None

    def _connect(self) -> sqlite3.Connection:
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            self._close()
            raise
        if self._db is None or inode != self._inode:
            # A replaced file (moved aside and recreated) is a new database: reopen.
            self._close()
            from urllib.parse import quote

            uri = "file:{}?mode=ro".format(quote(os.path.abspath(self.path)))
            db = sqlite3.connect(uri, uri=True, timeout=2.0, check_same_thread=False)
            db.execute("PRAGMA query_only=1")
            db.execute("PRAGMA cache_size=-256")  # KiB: small tables; the device's memory is not
            self._db, self._inode = db, inode
        return self._db

    def view(self) -> Dict[str, Any]:
        """Pending, dead letters, known incidents and recent deliveries; ``available`` false
        (with a reason) when the file is missing or unreadable."""
        out: Dict[str, Any] = {"path": self.path, "available": False, "error": None}
        with self._lock:
            try:
                db = self._connect()
                out.update(_query(db))
                out["available"] = True
            except FileNotFoundError:
                out["error"] = "no outbox at {} (has the anomaly function started?)".format(
                    self.path
                )
            except sqlite3.Error as exc:
                self._close()
                out["error"] = "cannot read the outbox {}: {}".format(self.path, exc)
        return out


def _query(db: sqlite3.Connection) -> Dict[str, Any]:
    pending_count, oldest_pending, most_attempts = db.execute(
        "SELECT COUNT(*), MIN(created_at), MAX(attempts) FROM pending"
    ).fetchone()
    pending = [
        dict(
            zip(
                (
                    "key",
                    "kind",
                    "correlation_id",
                    "created_at",
                    "attempts",
                    "next_attempt_at",
                    "last_error",
                ),
                row,
            )
        )
        for row in db.execute(
            "SELECT key, kind, correlation_id, created_at, attempts, next_attempt_at, last_error"
            " FROM pending ORDER BY id LIMIT ?",
            (LISTED,),
        ).fetchall()
    ]
    dead_count, oldest_dead = db.execute(
        "SELECT COUNT(*), MIN(dead_at) FROM dead_letter"
    ).fetchone()
    dead = [
        dict(zip(("key", "kind", "correlation_id", "status", "reason", "dead_at"), row))
        for row in db.execute(
            "SELECT key, kind, correlation_id, status, reason, dead_at FROM dead_letter"
            " ORDER BY id DESC LIMIT ?",
            (LISTED,),
        ).fetchall()
    ]
    incidents = {
        corr: {"number": number, "sys_id": sys_id, "state": state}
        for corr, number, sys_id, state in db.execute(
            "SELECT correlation_id, number, sys_id, state FROM incidents"
            " ORDER BY rowid DESC LIMIT ?",
            (KNOWN_INCIDENTS,),
        ).fetchall()
    }
    delivered = [
        {"key": key, "at": at}
        for key, at in db.execute(
            "SELECT key, delivered_at FROM delivered ORDER BY delivered_at DESC LIMIT ?",
            (RECENT_DELIVERED,),
        ).fetchall()
    ]
    return {
        "pending": pending_count,
        "oldest_pending_at": oldest_pending,
        "most_attempts": most_attempts or 0,
        "pending_actions": pending,
        "dead_letters": dead_count,
        "oldest_dead_at": oldest_dead,
        "dead_letter_actions": dead,
        "incidents": incidents,
        "delivered": delivered,
    }


def parse_action_key(key: str) -> Optional[Dict[str, Any]]:
    """``edge-agent:<episode>#<seq>:<event>`` (an outbox key) as its parts, or ``None``."""
    correlation, sep, rest = key.rpartition("#")
    seq, colon, event = rest.partition(":")
    if not sep or not colon or not seq.isdigit():
        return None
    return {"correlation_id": correlation, "seq": int(seq), "event": event}


def sensor_states(state_dir: str) -> List[Dict[str, Any]]:
    """Each sensor state file: its device, open episodes and unpublished events."""
    states = []
    for path in _files(state_dir, SENSOR_STATE_PREFIX, ".json"):
        entry: Dict[str, Any] = {"path": path, "error": None, "episodes": {}, "held_events": 0}
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.loads(handle.read(MAX_STATE_BYTES))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            episodes = data.get("episodes")
            held = data.get("held_events")
            entry["device"] = data.get("device") if isinstance(data.get("device"), str) else None
            entry["episodes"] = {
                metric: saved
                for metric, saved in (episodes.items() if isinstance(episodes, dict) else ())
                if isinstance(saved, dict) and isinstance(saved.get("episode_id"), str)
            }
            entry["held_events"] = len(held) if isinstance(held, list) else 0
            recovered = data.get("recovered")
            if isinstance(recovered, dict) and isinstance(recovered.get("what"), str):
                entry["recovered"] = {"what": recovered["what"][:500], "at": recovered.get("at")}
            entry["modified_at"] = os.stat(path).st_mtime
        except (OSError, ValueError) as exc:
            entry["error"] = "cannot read {}: {}".format(path, exc)
        states.append(entry)
    return states


def locks(state_dir: str, proc_locks: str = "/proc/locks") -> List[Dict[str, Any]]:
    """Every ``*.lock`` file in the state dir, with the processes ``/proc/locks`` says hold it."""
    files = _files(state_dir, "", ".lock")
    if not files:
        return []
    held = _held_inodes(proc_locks)
    out = []
    for path in files:
        entry: Dict[str, Any] = {"path": path, "holders": [], "recorded": None}
        try:
            stat = os.stat(path)
            with open(path, encoding="utf-8", errors="replace") as handle:
                entry["recorded"] = handle.read(200).strip() or None
        except OSError as exc:
            entry["error"] = str(exc)
            out.append(entry)
            continue
        for pid, kind in held.get(stat.st_ino, ()):
            entry["holders"].append({"pid": pid, "kind": kind, "alive": _alive(pid)})
        out.append(entry)
    return out


def _held_inodes(proc_locks: str) -> Dict[int, List[Tuple[int, str]]]:
    """``inode -> [(pid, "FLOCK WRITE"), ...]`` from ``/proc/locks``.

    Matched by inode alone: on an overlay the device numbers ``stat`` and the
    kernel report differ, and two lock files in one directory never share an inode.
    """
    held: Dict[int, List[Tuple[int, str]]] = {}
    try:
        with open(proc_locks, encoding="ascii", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        return held
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 812 08:02:1234567 0 EOF"; "1: -> FLOCK ..." waits, holds nothing.
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":
            continue
        try:
            kind, mode, pid = fields[1], fields[3], int(fields[4])
            inode = int(fields[5].rsplit(":", 1)[1])
        except (IndexError, ValueError):
            continue
        held.setdefault(inode, []).append((pid, "{} {}".format(kind, mode)))
    return held


def _files(directory: str, prefix: str, suffix: str) -> List[str]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(
        os.path.join(directory, n)
        for n in names
        if n.startswith(prefix) and n.endswith(suffix) and not n.startswith(".")
    )


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
