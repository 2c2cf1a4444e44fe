"""The outbox file is never silently lost, replaced or corrupt, and has one process at a time.

At open (:meth:`OutboxGuard.open`), in the anomaly function's ``stateDir``:

* the directory must be writable (else a clear error naming it) and the lock
  ``outbox.lock`` free (a second anomaly process on the directory is refused);
* ``outbox.marker.json`` remembers that an outbox exists, its pending count
  and its id sequence. An outbox the marker knows of that is missing or
  damaged (SQLite's ``quick_check``, "file is not a database") is never
  silently replaced: its files are moved into ``outbox.broken-<UTC time>/``
  (never deleted), the rows still readable are carried over into a fresh
  outbox, a CRITICAL line says how many actions may be lost, and
  ``report.json`` there makes ``edge-agent outbox`` exit 3 until someone
  acknowledges it. One behind the marker's sequence (committed transactions
  gone: its WAL deleted, or frames after a damaged one, which SQLite skips
  silently) is kept in use and reported the same way; a copy of its WAL is
  kept there for ``edge-agent outbox --check``, which counts what the marker
  could not (``devtools/outbox_wal.py``).

While running (:meth:`OutboxGuard.maintain`, from the delivery worker, at most
every ``CHECK_INTERVAL`` seconds): a stat tells whether the file at the path is
still the one opened. If it was deleted or replaced, this process's rows (its
connection still reads the old file) go into a fresh file, whatever was put at
the path is moved aside, and the same CRITICAL line and report are written.
The marker's counts are refreshed when they change, at most every
``MARKER_INTERVAL`` and without an fsync (never in the handler): the marker may
lag a few seconds behind, never run ahead, so "behind the marker" always means
lost transactions. Only a new outbox file's marker is synced.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from typing import Any, Dict, List, Optional, Tuple

from ..state_dir import StateDirError, StateLock, lock_state, prepare_state_dir
from ..state_file import read_json, try_write_json, write_json_atomic
from .outbox import Outbox
from .outbox_check import open_for_check, problem
from .outbox_salvage import pending_sequence, read_tables

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
MARKER_FILE = "outbox.marker.json"
LOCK_FILE = "outbox.lock"
QUARANTINE_PREFIX = "outbox.broken-"
REPORT_FILE = "report.json"
SIDE_FILES = ("", "-wal", "-shm", "-journal")
CHECK_INTERVAL = 5.0  # seconds between stats of the outbox file
MARKER_INTERVAL = 1.0  # seconds between marker refreshes (only when the counts changed)
MARKER_VERSION = 1
ERROR_LOG_INTERVAL = 60.0

Identity = Optional[Tuple[int, int]]


class OutboxGuard:
    """Owns the anomaly function's outbox file: lock, marker, checks, moving aside."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, OUTBOX_FILE)
        self.marker_path = os.path.join(state_dir, MARKER_FILE)
        self.reports: List[Dict[str, Any]] = []  # what this process found and moved aside
        self._lock: Optional[StateLock] = None
        self._identity: Identity = None
        self._written: Optional[Tuple[int, int]] = None
        self._next_check = 0.0
        self._next_marker = 0.0
        self._last_error_log = float("-inf")

    # -- start ------------------------------------------------------------------------
    def open(self) -> Outbox:
        """Lock the state dir, check the outbox, and return it (fresh if it had to be)."""
        prepare_state_dir(self.state_dir, "anomaly")
        self._lock = lock_state(self.state_dir, LOCK_FILE, "anomaly")
        try:
            outbox = self._open_checked()
        except sqlite3.OperationalError as exc:
            self.release()
            raise OSError("anomaly function cannot open its outbox {}: {}".format(self.path, exc))
        except BaseException:
            self.release()
            raise
        outbox.on_close.append(self.release)
        return outbox

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _open_checked(self) -> Outbox:
        marker, marker_state = read_marker(self.marker_path)
        if not os.path.exists(self.path):
            leftovers = [s for s in SIDE_FILES if os.path.exists(self.path + s)]
            if marker_state == "absent" and not leftovers:
                return self._use_and_mark(Outbox(self.path))  # a first start
            folder, moved_files = self._move_aside()
            outbox = self._use_and_mark(
                Outbox(self.path), min_sequence=marker_value(marker, "sequence")
            )
            kept = "its leftover files are kept in" if moved_files else "the record is in"
            self._report(
                folder,
                "missing",
                "is missing",
                "continuing with a fresh outbox; {} {}".format(kept, folder),
                marker,
                moved_files,
                marker_value(marker, "pending", None),
                {},
            )
            return outbox
        _require_writable(self.path)
        check: Optional[sqlite3.Connection] = None
        try:
            check = open_for_check(self.path)
            what = problem(check)
        except sqlite3.OperationalError:
            # Locked, read-only, an I/O error: a fault of the moment, not of the file.
            if check is not None:
                check.close()
            raise
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
            what = str(exc)
        if what is None and check is not None:
            evidence = None
            if marker_value(marker, "sequence") > _sequence_or_zero(check):
                evidence = self._keep_wal()  # before closing: that checkpoints and deletes it
            check.close()  # checkpoints the WAL into the file
            return self._open_healthy(marker, marker_state, evidence)
        snapshot = read_tables(check) if check is not None else {}
        folder, moved_files = self._move_aside()
        if check is not None:
            check.close()  # after the move, so closing cannot delete the damaged WAL
        outbox = Outbox(self.path)
        carried = outbox.restore(snapshot, marker_value(marker, "sequence"))
        self._use_and_mark(outbox)
        lost = _possibly_lost(marker, carried.get("pending", 0), snapshot.get("sequence", 0))
        outcome = (
            "{} pending actions it could still read were carried over into a fresh outbox;"
            " the damaged files are kept in {}".format(carried.get("pending", 0), folder)
        )
        self._report(
            folder,
            "damaged",
            "is damaged ({})".format(what),
            outcome,
            marker,
            moved_files,
            lost,
            carried,
        )
        return outbox

    def _open_healthy(
        self,
        marker: Optional[Dict[str, Any]],
        marker_state: str,
        evidence: Optional[Tuple[str, List[str]]] = None,
    ) -> Outbox:
        outbox = Outbox(self.path)
        pending, sequence = outbox.progress()
        marker_sequence = marker_value(marker, "sequence")
        if marker_sequence > sequence:
            # Committed enqueues are gone (its WAL deleted or damaged, a backup restored):
            # what is left is consistent, so keep using it, but say so.
            folder, copied = evidence or self._move_aside(move=False)
            lost = marker_sequence - sequence
            what = "lost committed transactions (its last action id is {}, the marker's {})".format(
                sequence, marker_sequence
            )
            outbox.restore({}, marker_sequence)
            outcome = "continuing with its {} pending actions; {} {}".format(
                pending,
                "a copy of its write-ahead log is kept in" if copied else "the record is in",
                folder,
            )
            self._report(
                folder, "rolled back", what, outcome, marker, copied, lost, {"pending": pending}
            )
        elif marker is not None and _identity(self.path) != tuple(marker.get("identity") or ()):
            log.warning(
                "outbox %s is not the file the agent last used (copied or restored?); using it",
                self.path,
            )
        if marker_state == "unreadable":
            log.warning("outbox marker %s was unreadable; writing it again", self.marker_path)
        return self._use_and_mark(outbox, marker)

    def _use_and_mark(
        self, outbox: Outbox, marker: Optional[Dict[str, Any]] = None, min_sequence: int = 0
    ) -> Outbox:
        """Use ``outbox`` from now on and record it in the marker; synced only when the marker
        did not know this file (a first start, a fresh or moved file)."""
        if min_sequence:
            outbox.restore({}, min_sequence)
        self._identity = None if outbox.in_memory else _identity(self.path)
        marker_knows_file = (
            marker is not None and tuple(marker.get("identity") or ()) == self._identity
        )
        self._write_marker(outbox, durable=not marker_knows_file)
        return outbox

    # -- while running ------------------------------------------------------------------
    def maintain(self, outbox: Outbox, force: bool = False) -> None:
        """Check the file is still the one opened and refresh the marker; cheap, rate-limited."""
        now = time.monotonic()
        try:
            if force or now >= self._next_check:
                self._next_check = now + CHECK_INTERVAL
                identity = None if outbox.in_memory else _identity(self.path)
                if outbox.in_memory or identity != self._identity:
                    self._replaced_while_running(outbox, identity)
                    return
            if now >= self._next_marker and outbox.progress() != self._written:
                self._next_marker = now + MARKER_INTERVAL
                self._write_marker(outbox, durable=False)
        except (sqlite3.Error, OSError) as exc:
            self._log_error("could not check the outbox %s: %s", self.path, exc)

    def _replaced_while_running(self, outbox: Outbox, identity: Identity) -> None:
        if outbox.in_memory:  # a fresh file could not be created last time: try again
            outbox.replace_file(lambda: None)
            if not outbox.in_memory:
                self._use_and_mark(outbox)
                log.warning("outbox %s written to disk again", self.path)
            return
        marker = self._marker()
        what = "was deleted" if identity is None else "was replaced by another file"
        (folder, moved_files), carried = outbox.replace_file(
            lambda: self._move_aside(split_own=True)
        )
        self._use_and_mark(outbox)
        outcome = "its {} pending actions were carried over into a fresh outbox".format(
            carried.get("pending", 0)
        )
        if identity is not None:
            foreign = _pending_in(os.path.join(folder, OUTBOX_FILE))
            holds = (
                "unreadable"
                if foreign is None
                else "{} pending actions this agent will not send".format(foreign)
            )
            outcome += "; the file found there ({}) is kept in {}".format(holds, folder)
        self._report(
            folder,
            "replaced",
            what + " while the agent ran",
            outcome,
            marker,
            moved_files,
            0,
            carried,
        )

    # -- marker, moving aside, reports ---------------------------------------------------
    def _marker(self) -> Optional[Dict[str, Any]]:
        return read_marker(self.marker_path)[0]

    def _write_marker(self, outbox: Outbox, durable: bool) -> None:
        pending, sequence = outbox.progress()
        data = {
            "version": MARKER_VERSION,
            "outbox": OUTBOX_FILE,
            "identity": list(self._identity) if self._identity else None,
            "pending": pending,
            "sequence": sequence,
            "updated_at": stamp(time.time(), iso=True),
        }
        error = try_write_json(self.marker_path, data, sync=durable, sync_dir=durable)
        if error is None:
            self._written = (pending, sequence)
        else:
            self._log_error("could not update the outbox marker %s: %s", self.marker_path, error)

    def _move_aside(self, move: bool = True, split_own: bool = False) -> Tuple[str, List[str]]:
        """Make ``outbox.broken-<time>/`` and move the outbox's files into it; never delete.

        With ``split_own``, a WAL or shared-memory file this process has open
        (the old file's, when the file was deleted or replaced under it) is
        renamed ``previous-…``: next to a stranger's database under its own
        name, SQLite would replay it into that database.
        """
        base = os.path.join(self.state_dir, QUARANTINE_PREFIX + stamp(time.time()))
        folder, n = base, 1
        while os.path.exists(folder):
            n += 1
            folder = "{}-{}".format(base, n)
        os.mkdir(folder)
        moved_files = []
        for suffix in SIDE_FILES if move else ():
            source = self.path + suffix
            if os.path.exists(source):
                name = OUTBOX_FILE + suffix
                if split_own and suffix and _open_here(source):
                    name = "previous-" + name
                os.rename(source, os.path.join(folder, name))
                moved_files.append(name)
        return folder, moved_files

    def _keep_wal(self) -> Tuple[str, List[str]]:
        """Copy the outbox and its WAL, as they are before SQLite checkpoints them, into a
        fresh ``outbox.broken-<time>/``: the evidence ``edge-agent outbox --check`` reads."""
        folder, _ = self._move_aside(move=False)
        copied = []
        if os.path.exists(self.path + "-wal"):
            for suffix in ("", "-wal"):
                shutil.copyfile(self.path + suffix, os.path.join(folder, OUTBOX_FILE + suffix))
                copied.append(OUTBOX_FILE + suffix)
        return folder, copied

    def _report(
        self,
        folder: str,
        reason: str,
        what: str,
        outcome: str,
        marker: Optional[Dict[str, Any]],
        moved_files: List[str],
        possibly_lost: Optional[int],
        carried: Dict[str, int],
    ) -> None:
        """Write ``report.json`` into ``folder`` and say it in one CRITICAL line."""
        if possibly_lost is None:
            loss = "an unknown number of queued ServiceNow actions may be lost (no readable marker)"
        elif possibly_lost:
            loss = "up to {} queued ServiceNow actions may be lost (the marker counted {})".format(
                possibly_lost, describe_marker(marker)
            )
        else:
            loss = "no queued ServiceNow action of this agent was lost"
        detail = "outbox {} {}: {}; {}".format(self.path, what, loss, outcome)
        record = {
            "detected_at": stamp(time.time(), iso=True),
            "reason": reason,
            "detail": detail,
            "possibly_lost": possibly_lost,
            "carried_over": carried,
            "marker": marker,
            "moved": moved_files,
            "acknowledged_at": None,
        }
        self.reports.append(dict(record, folder=folder))
        write_json_atomic(os.path.join(folder, REPORT_FILE), record, sync_dir=True)
        log.critical(
            "%s. Check ServiceNow for the episodes of that time, then run "
            "`edge-agent outbox --state-dir %s --acknowledge`.",
            detail,
            self.state_dir,
        )

    def _log_error(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error(message, *args)


# -- helpers -------------------------------------------------------------------------
def read_marker(path: str) -> Tuple[Optional[Dict[str, Any]], str]:
    if not os.path.exists(path):
        return None, "absent"
    data = read_json(path)
    if data is None or data.get("version") != MARKER_VERSION:
        return None, "unreadable"
    return data, "ok"


def marker_value(marker: Optional[Dict[str, Any]], key: str, default: Any = 0) -> Any:
    value = (marker or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _possibly_lost(
    marker: Optional[Dict[str, Any]], carried_pending: int, carried_sequence: int
) -> Optional[int]:
    """Pending actions the marker knew of that were not carried over, or enqueues after the
    last one that was (whichever is more); ``None`` without a marker."""
    if marker is None:
        return None
    pending: int = marker_value(marker, "pending")
    sequence: int = marker_value(marker, "sequence")
    return max(0, pending - carried_pending, sequence - carried_sequence)


def _sequence_or_zero(db: sqlite3.Connection) -> int:
    """The outbox's action id sequence; 0 when its tables were never written."""
    try:
        return pending_sequence(db)
    except sqlite3.DatabaseError:
        return 0


def _require_writable(path: str) -> None:
    for suffix in SIDE_FILES:
        name = path + suffix
        if os.path.exists(name) and not os.access(name, os.R_OK | os.W_OK):
            uid = os.geteuid()
            raise StateDirError(
                "anomaly function cannot write its outbox file {} (running as uid {}): make it "
                "owned by that user, e.g. `sudo chown {} {}*`, or set stateDir to another "
                "directory.".format(name, uid, uid, path)
            )


def describe_marker(marker: Optional[Dict[str, Any]]) -> str:
    if marker is None:
        return "no readable marker"
    return "{} pending at {}".format(
        marker_value(marker, "pending", "?"), marker.get("updated_at", "?")
    )


def _identity(path: str) -> Identity:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _open_here(path: str) -> bool:
    """Whether this process has ``path`` open (Linux: /proc/self/fd); ``True`` if unknown."""
    try:
        target = os.stat(path)
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return True
    for fd in fds:
        try:
            st = os.stat("/proc/self/fd/" + fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def _pending_in(path: str) -> Optional[int]:
    try:
        db = sqlite3.connect("file:{}?mode=ro".format(path), uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return None


def stamp(ts: float, iso: bool = False) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ" if iso else "%Y%m%dT%H%M%SZ", time.gmtime(ts))
