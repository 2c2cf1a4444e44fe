"""Small JSON state files, written atomically: a crash leaves the old or the new file, never half."""

from __future__ import annotations

import json
import logging
import os

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

log = logging.getLogger(__name__)


def write_json_atomic(
    path: str, data: Dict[str, Any], sync: bool = True, sync_dir: bool = False
) -> bool:
    """Write ``data`` to ``path`` via a temporary file and a rename; log and return False on error.

    ``sync`` flushes the file to disk before the rename (a power cut then
    leaves the old or the new content); ``sync_dir`` also syncs the directory,
    so the rename itself survives a power cut.
    """
    error = try_write_json(path, data, sync=sync, sync_dir=sync_dir)
    if error is not None:
        log.error("could not save state to %s: %s", path, error)
        return False
    return True


def try_write_json(
    path: str, data: Dict[str, Any], sync: bool = True, sync_dir: bool = False
) -> Optional[str]:
    """:func:`write_json_atomic` for callers that rate-limit their own log line: returns the
    error's text instead of logging it, ``None`` on success."""
    import tempfile  # deferred: only paid when state changes

    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".state-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
                handle.flush()
                if sync:
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        if sync_dir:
            fsync_dir(directory)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def fsync_dir(directory: str) -> None:
    """Make renames and new files in ``directory`` durable (POSIX: sync the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: str) -> Optional[Dict[str, Any]]:
    """The JSON object in ``path``; ``None`` if missing, unreadable (logged) or not an object."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("ignoring unreadable state file %s: %s", path, exc)
        return None
    if not isinstance(data, dict):
        log.error("ignoring state file %s: not a JSON object", path)
        return None
    return data
