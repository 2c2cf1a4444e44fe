"""The ``cmdb_ci`` table: configuration items the incidents' ``cmdb_ci`` field refers to.

Read-only through the Table API (an integration user reads CIs; creating them
is the CMDB's discovery, not ours); tests add CIs with :meth:`CmdbTable.add`.
A query by ``name`` is answered as the incident table answers its queries
(v1: 404 for no match, v2: ``[]``). :meth:`CmdbTable.refuse_reference` is the
stand-in's strict side: an incident whose ``cmdb_ci`` names no CI by sys_id is
refused with ``Invalid reference`` (ServiceNow stores such a value as a broken
reference, and many sites' data policies refuse it; refusing is what lets the
agent notice a CI that was deleted or renamed).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Dict, List, Optional

from .records import matches, parse_query, public
from .responses import Response, error_envelope, not_found

TABLE = "cmdb_ci"
CI_FIELDS = frozenset(
    {"sys_id", "name", "sys_class_name", "operational_status", "short_description"}
)


class CmdbTable:
    """Configuration items by sys_id, in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: Dict[str, Dict[str, str]] = {}

    def add(self, name: str, sys_class_name: str = "cmdb_ci_iot", sys_id: str = "") -> str:
        """Add a CI; return its sys_id."""
        sys_id = sys_id or uuid.uuid4().hex
        with self._lock:
            self._items[sys_id] = {
                "sys_id": sys_id,
                "name": name,
                "sys_class_name": sys_class_name,
                "operational_status": "1",
                "short_description": "",
            }
        return sys_id

    def remove(self, sys_id: str) -> bool:
        with self._lock:
            return self._items.pop(sys_id, None) is not None

    def rename(self, sys_id: str, name: str) -> None:
        with self._lock:
            self._items[sys_id]["name"] = name

    def all(self) -> List[Dict[str, str]]:
        with self._lock:
            return [dict(item) for item in self._items.values()]

    def exists(self, sys_id: str) -> bool:
        with self._lock:
            return sys_id in self._items

    def list(self, params: Dict[str, str], fields: List[str], v2: bool) -> Response:
        filters, _, _ = parse_query(params.get("sysparm_query", ""), CI_FIELDS)
        records = [r for r in self.all() if matches(r, filters)]
        try:
            limit = max(0, int(params.get("sysparm_limit") or 10000))
        except ValueError:
            limit = 10000
        records = records[:limit]
        if not records and not v2:
            return not_found()
        return 200, {"result": [public(r, fields) for r in records]}, {}

    def read(self, sys_id: str, fields: List[str]) -> Response:
        with self._lock:
            item = self._items.get(sys_id)
        if item is None:
            return not_found()
        return 200, {"result": public(dict(item), fields)}, {}

    def refuse_reference(self, data: Dict[str, Any]) -> Optional[Response]:
        """The 400 for an incident write whose ``cmdb_ci`` is set to no CI's sys_id."""
        value = data.get("cmdb_ci")
        if value is None or str(value) == "" or self.exists(str(value)):
            return None
        return (
            400,
            error_envelope(
                "Invalid reference",
                "cmdb_ci: no record in table cmdb_ci with sys_id {}".format(str(value)[:64]),
            ),
            {},
        )
