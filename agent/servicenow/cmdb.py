"""The configuration item an incident is linked to (``snowCmdbCi``), found once and cached.

``snowCmdbCi`` is a sys_id (32 hex characters) or a CI's name; ``{device}`` in
it becomes the device id, so one deployment serves a fleet whose CIs are named
after the Pis. A name is looked up in ``cmdb_ci`` by ``name`` once and the
sys_id kept; when ServiceNow says the reference is invalid (the CI was
deleted or renamed) :meth:`CiLink.invalidate` drops it and the next incident
looks again. A name that is not found is no reason to hold an incident back:
it opens without the link, and :attr:`CiLink.missing` names what was not
found, logged once, for the console, ``status`` and the status page.
"""

from __future__ import annotations

import logging
import re
import threading

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Dict, Optional

    from .client import TableClient

log = logging.getLogger(__name__)

SYS_ID = re.compile(r"^[0-9a-f]{32}$")
DEVICE_PLACEHOLDER = "{device}"


def expand(value: str, device_id: str) -> str:
    """``snowCmdbCi`` for this device: ``{device}`` replaced by its id."""
    return value.replace(DEVICE_PLACEHOLDER, device_id).strip()


def is_sys_id(value: str) -> bool:
    return SYS_ID.match(value) is not None


def invalid_reference(detail: str) -> bool:
    """Whether a refusal's text says the ``cmdb_ci`` reference does not hold."""
    lowered = detail.lower()
    return "cmdb_ci" in lowered and ("invalid reference" in lowered or "no record" in lowered)


class CiLink:
    """The sys_id to put in ``cmdb_ci``, or ``None`` (no CI configured, or none found)."""

    def __init__(self, client: TableClient, value: str, device_id: str) -> None:
        self.client = client
        self.wanted = expand(value, device_id) if value else ""
        self.missing: Optional[str] = None  # the name that was not found, if any
        self._sys_id: Optional[str] = None
        self._looked = False
        self._lock = threading.Lock()

    def fields(self) -> Dict[str, str]:
        """``{"cmdb_ci": sys_id}``, or ``{}`` when there is nothing to link. A user who may
        not read ``cmdb_ci`` opens incidents without the link, and it is said once."""
        from .client import Rejected

        try:
            sys_id = self.sys_id()
        except Rejected as exc:
            with self._lock:
                self._looked = True
                self._sys_id = None
                if self.missing != self.wanted:
                    self.missing = self.wanted
                    log.warning(
                        "cannot look up CI %r in cmdb_ci (%s); incidents open without a CI",
                        self.wanted,
                        exc,
                    )
            return {}
        return {"cmdb_ci": sys_id} if sys_id else {}

    def sys_id(self) -> Optional[str]:
        """The CI's sys_id; may call ServiceNow once (the exceptions of :class:`TableClient`)."""
        if not self.wanted:
            return None
        if is_sys_id(self.wanted):
            return None if self.missing == self.wanted else self.wanted
        with self._lock:
            if not self._looked:
                self._sys_id = self._look_up(self.wanted)
                self._looked = True
            return self._sys_id

    def invalidate(self) -> None:
        """ServiceNow refused the reference: look the name up again next time."""
        with self._lock:
            self._looked = False
            self._sys_id = None
            if is_sys_id(self.wanted) and self.missing != self.wanted:
                self.missing = self.wanted
                log.warning(
                    "ServiceNow refused cmdb_ci %s (no such CI); incidents open without it",
                    self.wanted,
                )

    def _look_up(self, name: str) -> Optional[str]:
        found = self.client.table_get(
            "cmdb_ci",
            {
                "sysparm_query": "name=" + name,
                "sysparm_limit": "1",
                "sysparm_fields": "sys_id,name",
            },
        )
        for record in found if isinstance(found, list) else []:
            # An unreadable query term is ignored by ServiceNow: check what came back.
            if isinstance(record, dict) and record.get("name") == name and record.get("sys_id"):
                self.missing = None
                return str(record["sys_id"])
        if self.missing != name:
            self.missing = name
            log.warning(
                "no configuration item named %r in cmdb_ci; incidents open without a CI"
                " (snowCmdbCi)",
                name,
            )
        return None
