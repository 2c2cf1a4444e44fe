"""A function's state directory: usable at start, and held by one process at a time.

Both functions keep their state in ``stateDir`` (the anomaly function its
outbox, the sensor function its episode state), often the same directory (a
V1 local volume shared by both). Each takes an exclusive ``flock`` on its own
lock file there, so a second process of the *same* function fails at start
with a message naming the directory and the PID holding it, instead of
duplicating incidents; the two functions never block each other.

The lock is per process: asking again for a lock this process already holds
shares it (a restart inside one process, as tests and ``edge-agent simulate``
do, is not a conflict). The kernel drops the lock when the process dies, so a
crash never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time

from .errors import AgentError, ConfigError

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Dict, Optional

log = logging.getLogger(__name__)

# A conflicting lock is retried this long before giving up: `edge-agent outbox`
# takes it for an instant to see whether an agent is running.
LOCK_GRACE_SECONDS = 1.0
_PERMANENT = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST)


class StateDirError(ConfigError):
    """The state directory cannot be created or written; the message says what to do."""


class StateDirLocked(AgentError, RuntimeError):
    """Another process of the same function holds the state directory."""

    def __init__(self, message: str, holder: Dict[str, object]) -> None:
        super().__init__(message)
        self.holder = holder


def unusable_dir_error(path: str, function: str, exc: OSError) -> Exception:
    """The error for an OSError met while preparing ``path``: permanent ones name the fix."""
    reason = exc.strerror or str(exc)
    if exc.errno not in _PERMANENT:
        # Full disk, I/O error: may pass; the caller's retry decides.
        return OSError(
            exc.errno, "{} function cannot use stateDir {}: {}".format(function, path, reason)
        )
    uid = os.geteuid()
    where = "its stateDir {}".format(path)
    if exc.filename and os.path.abspath(str(exc.filename)) != os.path.abspath(path):
        where = "{} in its stateDir".format(exc.filename)
    return StateDirError(
        "{fn} function cannot write {where}: {reason} (running as uid {uid}{user}). Make the "
        "directory and its files writable by that user, e.g. `sudo install -d -o {uid} -m 0750 "
        "{path}` or `sudo chown -R {uid} {path}`, or set stateDir to a writable "
        "directory.".format(
            fn=function, where=where, path=path, reason=reason, uid=uid, user=_user_name(uid)
        )
    )


def prepare_state_dir(path: str, function: str) -> str:
    """Create ``path`` if needed; raise :class:`StateDirError` naming it when that fails.

    Writability itself is proven by :func:`lock_state`, which creates a file there.
    """
    if not path:
        raise StateDirError(
            "{} function: stateDir is empty; set it to a writable directory".format(function)
        )
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise unusable_dir_error(path, function, exc)
    if not os.path.isdir(path):
        raise StateDirError(
            "{} function: stateDir {} is not a directory; set stateDir to a directory".format(
                function, path
            )
        )
    return path


class StateLock:
    """An exclusive lock on one lock file, shared by every holder in this process."""

    def __init__(self, key: str, path: str) -> None:
        self.key = key
        self.path = path
        self._released = False

    def release(self) -> None:
        """Give this holder's share back; the file is unlocked when the last one does."""
        if self._released:
            return
        self._released = True
        with _REGISTRY_LOCK:
            entry = _HELD.get(self.key)
            if entry is None:
                return
            entry.count -= 1
            if entry.count <= 0:
                del _HELD[self.key]
                os.close(entry.fd)  # closing drops the flock


class _Held:
    """This process's open, locked lock file and how many holders share it."""

    __slots__ = ("fd", "count")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.count = 1


_REGISTRY_LOCK = threading.Lock()
_HELD: Dict[str, _Held] = {}


def lock_state(
    state_dir: str, name: str, function: str, grace: Optional[float] = None
) -> StateLock:
    """Take the exclusive lock ``state_dir/name`` for ``function``, or raise.

    :class:`StateDirLocked` names the directory and the PID holding it;
    :class:`StateDirError` says the directory is not writable.
    """
    import fcntl  # deferred: not on every platform the tooling imports this from

    path = os.path.join(state_dir, name)
    key = os.path.realpath(path)
    with _REGISTRY_LOCK:
        entry = _HELD.get(key)
        if entry is not None:
            entry.count += 1
            return StateLock(key, path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise unusable_dir_error(state_dir, function, exc)
        deadline = time.monotonic() + (LOCK_GRACE_SECONDS if grace is None else grace)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise unusable_dir_error(state_dir, function, exc)
                if time.monotonic() >= deadline:
                    holder = read_holder(path)
                    os.close(fd)
                    raise StateDirLocked(
                        _conflict_message(state_dir, path, function, holder), holder
                    )
                time.sleep(0.05)
        _write_holder(fd, path, function)
        _HELD[key] = _Held(fd)
        return StateLock(key, path)


def read_holder(path: str) -> Dict[str, object]:
    """What the lock file at ``path`` says about its holder (``{}`` if nothing readable)."""
    try:
        with open(path) as handle:
            data = json.loads(handle.read() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_locked(path: str) -> Optional[Dict[str, object]]:
    """The holder of the lock file ``path`` if a process holds it now, else ``None``.

    Takes and drops the lock when it is free, so keep the check short.
    """
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return read_holder(path) or {"pid": "?"}
    finally:
        os.close(fd)
    return None


def _write_holder(fd: int, path: str, function: str) -> None:
    record = {
        "pid": os.getpid(),
        "function": function,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError as exc:  # a full disk: the lock works without its note
        log.warning("could not write this process's PID into %s: %s", path, exc.strerror)


def _conflict_message(state_dir: str, path: str, function: str, holder: Dict[str, object]) -> str:
    pid = holder.get("pid", "unknown")
    since = holder.get("since")
    return (
        "another {fn} function process (PID {pid}{since}) is using stateDir {dir} (lock {lock}); "
        "two processes on one state directory send duplicate incidents. Stop that process, or "
        "give this one its own stateDir.".format(
            fn=function,
            pid=pid,
            since=", since {}".format(since) if since else "",
            dir=state_dir,
            lock=path,
        )
    )


def _user_name(uid: int) -> str:
    try:
        import pwd

        return " ({})".format(pwd.getpwuid(uid).pw_name)
    except (ImportError, KeyError):
        return ""
