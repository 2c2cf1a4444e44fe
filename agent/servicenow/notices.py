"""What delivery wants a person to know, kept beside the outbox for ``edge-agent status``.

``servicenow.json`` in the state dir holds the configuration item name that
was not found (``ci_missing``) and the rate-limit budget ServiceNow announced
(``rate_limit``): things the outbox does not record but an operator asks
about. It is rewritten only when its content changes (the budget at most
every :data:`BUDGET_WRITE_INTERVAL` seconds), atomically, and never fails
delivery: a write error is logged once.
"""

from __future__ import annotations

import logging
import os

from ..state_file import read_json, try_write_json

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

    from ..clock import Clock

log = logging.getLogger(__name__)

NOTICES_FILE = "servicenow.json"
BUDGET_WRITE_INTERVAL = 30.0


class Notices:
    """Writes ``servicenow.json`` when what it says changes."""

    def __init__(self, state_dir: str, clock: Clock) -> None:
        self.path = os.path.join(state_dir, NOTICES_FILE)
        self.clock = clock
        self._written: Optional[Dict[str, Any]] = None
        self._written_at = float("-inf")
        self._failed = False

    def update(self, notices: Dict[str, Any]) -> None:
        if notices == self._written:
            return
        now = self.clock.monotonic()
        same_but_budget = self._written is not None and {
            k: v for k, v in notices.items() if k != "rate_limit"
        } == {k: v for k, v in self._written.items() if k != "rate_limit"}
        if same_but_budget and now - self._written_at < BUDGET_WRITE_INTERVAL:
            return  # the budget moves with every call: not a write per call
        error = try_write_json(self.path, dict(notices, written_at=self.clock.time()), sync=False)
        if error is not None:
            if not self._failed:
                log.warning("could not write %s: %s", self.path, error)
            self._failed = True
            return
        self._failed = False
        self._written, self._written_at = dict(notices), now


def read_notices(state_dir: str) -> Dict[str, Any]:
    """What ``servicenow.json`` says; ``{}`` when there is none."""
    return read_json(os.path.join(state_dir, NOTICES_FILE)) or {}
