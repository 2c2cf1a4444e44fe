"""Small JSON state files, written atomically: a crash leaves the old or the new file, never half."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)


def write_json_atomic(path: str, data: Dict[str, Any]) -> bool:
    """Write ``data`` to ``path`` via a synced temporary file and a rename; log and return False on error."""
    import tempfile  # deferred: only paid when state changes

    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".state-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as exc:
        log.error("could not save state to %s: %s", path, exc)
        return False
    return True


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
