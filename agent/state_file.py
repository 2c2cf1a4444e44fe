"""Small JSON state files, written atomically: a crash leaves the old or the new file, never half.

A power cut on an SD card can still tear a file the kernel had not written out
(an older version wrote without syncing, or the card lies about its cache); so a
file written with ``keep_previous`` keeps its last good copy beside it
(``<name>.prev``, a hard link to the version it replaces), and
:func:`read_json_recovering` falls back to it, saying so.
"""

from __future__ import annotations

import json
import logging
import os

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

log = logging.getLogger(__name__)


PREVIOUS_SUFFIX = ".prev"
TORN_SUFFIX = ".unreadable"


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
    path: str,
    data: Dict[str, Any],
    sync: bool = True,
    sync_dir: bool = False,
    keep_previous: bool = False,
) -> Optional[str]:
    """:func:`write_json_atomic` for callers that rate-limit their own log line: returns the
    error's text instead of logging it, ``None`` on success. ``keep_previous``: the
    version replaced stays as ``<path>.prev``, the last good copy."""
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
            if keep_previous:
                _keep_previous(path)
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


def _keep_previous(path: str) -> None:
    """Link the current ``path`` as ``<path>.prev`` (the file stays where it is, so a crash
    at any point leaves a complete one under ``path``)."""
    link = path + PREVIOUS_SUFFIX + ".tmp"
    try:
        if os.path.lexists(link):
            os.unlink(link)
        os.link(path, link)
        os.replace(link, path + PREVIOUS_SUFFIX)
    except FileNotFoundError:
        pass  # the first write: nothing to keep
    except OSError as exc:  # a file system without hard links: no copy, still a state
        log.debug("could not keep the previous %s: %s", path, exc)


def read_json_recovering(path: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """The JSON object in ``path``, else in its last good copy; and what was recovered.

    Returns ``(data, None)`` when ``path`` is good or missing (``data`` is then ``None``),
    else ``(data or None, what happened)``: the unreadable file is moved aside to
    ``<path>.unreadable`` (kept for a person to look at) and its last good copy, if
    readable, is used. Nothing is logged here: the caller says it, once.
    """
    data, problem = _read(path)
    if problem is None:
        return data, None
    name = os.path.basename(path)
    try:
        os.replace(path, path + TORN_SUFFIX)
        aside = "moved aside to {}{}".format(name, TORN_SUFFIX)
    except OSError as exc:
        aside = "could not be moved aside ({})".format(exc.strerror or exc)
    previous, previous_problem = _read(path + PREVIOUS_SUFFIX)
    if previous is not None:
        return previous, "{} was unreadable ({}; {}): continued from its last good copy".format(
            name, problem, aside
        )
    return None, "{} was unreadable ({}; {}) and there is no good copy{}".format(
        name, problem, aside, "" if previous_problem is None else " ({})".format(previous_problem)
    )


def _read(path: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``(data, None)``, ``(None, None)`` if missing, ``(None, why)`` if unreadable."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, exc.strerror or str(exc)
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is one: a torn or zeroed file
        if not raw.strip(b"\0 \n"):
            return None, "empty" if not raw else "only zero bytes"
        return None, "not JSON: {}".format(str(exc)[:80])
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None


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
