"""The Table API's semantics for the incident table: list, read, create, update, delete.

Behaviour copied from ServiceNow on purpose: journal fields append and read
back as ``""``; v1 answers a query without matches with 404, v2 with an empty
list; resolving (state 6) needs ``close_code`` and ``close_notes`` (403
otherwise); 7 and 8 make a record inactive, 6 does not; every update that
changes something increments ``sys_mod_count`` and stamps ``sys_updated_on``
and ``sys_updated_by``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Union

from .records import (
    DEFAULT_FIELDS,
    INACTIVE_STATES,
    JOURNAL_FIELDS,
    MAX_LENGTHS,
    RESOLVED_STATE,
    SYSTEM_FIELDS,
    TABLE,
    matches,
    parse_query,
    priority_for,
    public,
    sort_records,
    to_str,
)
from .responses import Response, bad_request, error_envelope, not_found
from .store import IncidentStore

LOG = logging.getLogger("edge_agent.standin")

Counter = Callable[..., None]  # count(name, n=1)


class IncidentTable:
    """The incident table as the Table API serves it, over an :class:`IncidentStore`."""

    def __init__(
        self,
        store: IncidentStore,
        clock: Callable[[], float],
        count: Counter,
        base_url: Callable[[], str],
    ) -> None:
        self.store = store
        self._clock = clock
        self._count = count
        self._base_url = base_url

    def now(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self._clock()))

    # -- reads -----------------------------------------------------------------------
    def list(self, params: Dict[str, str], fields: List[str], v2: bool) -> Response:
        filters, order, ignored = parse_query(params.get("sysparm_query", ""))
        if ignored:
            self._count("ignored_query_terms", len(ignored))
            LOG.info("ignored %d query term(s) ServiceNow would ignore", len(ignored))
        records = [r for r in self.store.candidates(filters) if matches(r, filters)]
        if order:
            records = sort_records(records, order)
        try:
            offset = max(0, int(params.get("sysparm_offset") or 0))
        except ValueError:
            offset = 0
        try:
            limit = max(0, int(params.get("sysparm_limit") or 10000))
        except ValueError:
            limit = 10000
        records = records[offset : offset + limit]
        if not records and not v2:
            return not_found()
        return 200, {"result": [public(r, fields) for r in records]}, {}

    def read(self, sys_id: str, fields: List[str]) -> Response:
        record = self.store.get(sys_id)
        if record is None:
            return not_found()
        return 200, {"result": public(record, fields)}, {}

    # -- writes ----------------------------------------------------------------------
    @staticmethod
    def parse_write(headers: Any, body: bytes) -> Union[Dict[str, Any], Response]:
        """The JSON object of a write request, or the 400 :data:`Response` refusing it."""
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        accept = (headers.get("Accept") or "").lower()
        if content_type != "application/json" or "application/json" not in accept:
            return bad_request(
                "Invalid request", "Content-Type and Accept must both be application/json"
            )
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return bad_request("Exception while reading request", "The payload is not valid JSON.")
        if not isinstance(data, dict):
            return bad_request("Exception while reading request", "The payload is not an object.")
        return data

    def create(self, data: Dict[str, Any], user: str) -> Response:
        now = self.now()
        record: Dict[str, Any] = {
            "sys_id": uuid.uuid4().hex,
            "number": "",
            "state": "1",
            "impact": "3",
            "urgency": "3",
            "priority": "5",
            "active": "true",
            **dict.fromkeys(DEFAULT_FIELDS, ""),
            "work_notes": "",
            "comments": "",
            "resolved_at": "",
            "closed_at": "",
            "opened_at": now,
            "sys_class_name": TABLE,
            "sys_created_on": now,
            "sys_created_by": user,
            "sys_updated_on": now,
            "sys_updated_by": user,
            "sys_mod_count": "0",
        }
        journal = _apply(record, data, user, now)
        _derive(record, None, now)
        refused = _data_policy(record)
        if refused is not None:
            return refused
        record["_journal"] = journal
        record = self.store.insert(record)
        self._count("created")
        return (
            201,
            {"result": public(record)},
            {"Location": f"{self._base_url()}/api/now/table/{TABLE}/{record['sys_id']}"},
        )

    def update(self, sys_id: str, data: Dict[str, Any], user: str, fields: List[str]) -> Response:
        with self.store.lock:  # read-modify-write of one record is atomic
            record = self.store.get(sys_id)
            if record is None:
                return not_found()
            before = dict(record)
            now = self.now()
            journal = _apply(record, data, user, now)
            _derive(record, before.get("state"), now)
            refused = _data_policy(record)
            if refused is not None:
                return refused
            if journal or record != before:
                record["_journal"] = list(record.get("_journal", [])) + journal
                record["sys_updated_on"] = now
                record["sys_updated_by"] = user
                record["sys_mod_count"] = str(int(record.get("sys_mod_count") or 0) + 1)
                self.store.save(record)
                self._count("updated")
        return 200, {"result": public(record, fields)}, {}

    def delete(self, sys_id: str) -> Response:
        if not self.store.delete(sys_id):
            return not_found()
        self._count("deleted")
        return 204, None, {}


def _data_policy(record: Dict[str, Any]) -> Optional[Response]:
    if record.get("state") != RESOLVED_STATE:
        return None
    missing = []
    if not str(record.get("close_code", "")).strip():
        missing.append("Close code is mandatory")
    if not str(record.get("close_notes", "")).strip():
        missing.append("Close notes is mandatory")
    if not missing:
        return None
    detail = "Data Policy Exception: " + "".join("\n " + m for m in missing)
    return 403, error_envelope("Operation Failed", detail), {}


def _apply(
    record: Dict[str, Any], data: Dict[str, Any], user: str, now: str
) -> List[Dict[str, str]]:
    """Copy client fields onto ``record``; return the journal entries to append."""
    entries = []
    for key, value in data.items():
        if key.startswith("_") or key in SYSTEM_FIELDS:
            continue
        text = to_str(value)
        if key in JOURNAL_FIELDS:
            if text.strip():
                entries.append({"field": key, "value": text, "at": now, "by": user})
            continue
        record[key] = text[: MAX_LENGTHS.get(key, len(text))]
    return entries


def _derive(record: Dict[str, Any], previous_state: Optional[str], now: str) -> None:
    """Fields the instance computes: priority, active, resolved_at, closed_at."""
    record["priority"] = priority_for(record.get("impact", "3"), record.get("urgency", "3"))
    state = record.get("state", "1")
    record["incident_state"] = state
    record["active"] = "false" if state in INACTIVE_STATES else "true"
    if state != previous_state:
        if state == RESOLVED_STATE:
            record["resolved_at"] = now
        if state in INACTIVE_STATES:
            record["closed_at"] = now
