"""The incident table's shape and ServiceNow's encoded queries, as pure functions.

What a record looks like (every value a string, ``priority`` from the impact x
urgency matrix, system fields a client cannot write) and how
``sysparm_query`` is read: terms joined by ``^``, unknown fields and
unparsable terms silently ignored, as an instance does.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

TABLE = "incident"
JOURNAL_FIELDS = ("work_notes", "comments")
RESOLVED_STATE = "6"
INACTIVE_STATES = frozenset({"7", "8"})  # closed, canceled
PRIORITY_MATRIX = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("2", "1"): "2",
    ("1", "3"): "3",
    ("2", "2"): "3",
    ("3", "1"): "3",
    ("2", "3"): "4",
    ("3", "2"): "4",
    ("3", "3"): "5",
}
# Set by the server; a client cannot write them.
SYSTEM_FIELDS = frozenset(
    {
        "sys_id",
        "number",
        "priority",
        "active",
        "sys_class_name",
        "sys_created_on",
        "sys_created_by",
        "sys_updated_on",
        "sys_updated_by",
        "sys_mod_count",
        "opened_at",
        "resolved_at",
        "closed_at",
    }
)
# String columns' sizes (the dictionary's max_length): a longer value is cut to it on
# write, silently, as an instance does; a query by the uncut value then finds nothing.
MAX_LENGTHS = {"correlation_id": 100, "correlation_display": 100}
# The incident table's schema as far as queries are concerned: a query term on
# any other field is ignored, as ServiceNow does. Custom ``u_`` fields are known.
INCIDENT_FIELDS = frozenset(
    {
        "active",
        "approval",
        "assigned_to",
        "assignment_group",
        "business_service",
        "caller_id",
        "category",
        "close_code",
        "close_notes",
        "closed_at",
        "closed_by",
        "cmdb_ci",
        "comments",
        "company",
        "contact_type",
        "correlation_display",
        "correlation_id",
        "description",
        "escalation",
        "hold_reason",
        "impact",
        "incident_state",
        "knowledge",
        "location",
        "made_sla",
        "notify",
        "number",
        "opened_at",
        "opened_by",
        "parent_incident",
        "priority",
        "problem_id",
        "reopen_count",
        "resolved_at",
        "resolved_by",
        "service_offering",
        "severity",
        "short_description",
        "state",
        "subcategory",
        "sys_class_name",
        "sys_created_by",
        "sys_created_on",
        "sys_domain",
        "sys_id",
        "sys_mod_count",
        "sys_updated_by",
        "sys_updated_on",
        "urgency",
        "work_notes",
    }
)
DEFAULT_FIELDS = (
    "short_description",
    "description",
    "category",
    "correlation_id",
    "correlation_display",
    "close_code",
    "close_notes",
    "cmdb_ci",
    "business_service",
    "contact_type",
)
FIELD_RE = re.compile(r"^[a-z0-9_]+$")
_QUERY_TERM_RE = re.compile(
    r"^([a-z0-9_]+)(!=|=|ISNOTEMPTY|ISEMPTY|NOT IN|IN|LIKE|NOT LIKE|STARTSWITH|ENDSWITH)(.*)$",
    re.S,
)

Filter = Tuple[str, str, str]  # (field, operator, value)
Order = Tuple[str, bool]  # (field, descending)


def priority_for(impact: Any, urgency: Any) -> str:
    """ServiceNow's default priority lookup; ``"5"`` when either value is off the scale."""
    return PRIORITY_MATRIX.get((str(impact).strip(), str(urgency).strip()), "5")


def to_str(value: Any) -> str:
    """How a JSON value sent to ServiceNow reads back: always as a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "value" in value:  # {"value": ..., "display_value": ...}
        return to_str(value["value"])
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def parse_query(
    query: str, known: Optional[Iterable[str]] = None
) -> Tuple[List[Filter], List[Order], List[str]]:
    """An encoded query as (filters, order, ignored terms); ``known``: the table's fields
    (the incident table's by default)."""
    fields = INCIDENT_FIELDS if known is None else frozenset(known)
    filters: List[Filter] = []
    order: List[Order] = []
    ignored: List[str] = []
    for term in query.split("^"):
        if not term:
            continue
        if term.startswith("ORDERBYDESC"):
            order.append((term[len("ORDERBYDESC") :], True))
            continue
        if term.startswith("ORDERBY"):
            order.append((term[len("ORDERBY") :], False))
            continue
        match = _QUERY_TERM_RE.match(term)
        if match is None:
            ignored.append(term)
            continue
        field, op, value = match.groups()
        if field not in fields and not field.startswith("u_"):
            ignored.append(term)
            continue
        filters.append((field, op, value))
    return filters, order, ignored


def matches(record: Dict[str, Any], filters: Iterable[Filter]) -> bool:
    """Whether ``record`` satisfies every filter (terms are ANDed)."""
    for field, op, value in filters:
        actual = str(record.get(field, ""))
        if op == "=":
            ok = actual == value
        elif op == "!=":
            ok = actual != value
        elif op == "ISEMPTY":
            ok = actual == ""
        elif op == "ISNOTEMPTY":
            ok = actual != ""
        elif op == "IN":
            ok = actual in value.split(",")
        elif op == "NOT IN":
            ok = actual not in value.split(",")
        elif op == "LIKE":
            ok = value.lower() in actual.lower()
        elif op == "NOT LIKE":
            ok = value.lower() not in actual.lower()
        elif op == "STARTSWITH":
            ok = actual.lower().startswith(value.lower())
        else:  # ENDSWITH
            ok = actual.lower().endswith(value.lower())
        if not ok:
            return False
    return True


def sort_records(records: List[Dict[str, Any]], order: List[Order]) -> List[Dict[str, Any]]:
    """``records`` (oldest first) sorted by the ORDERBY terms; ties go by creation
    order in the direction of the first term, so ``ORDERBYDESCsys_created_on``
    puts the newest of several created in the same second first."""

    def compare(a: Tuple[int, Dict[str, Any]], b: Tuple[int, Dict[str, Any]]) -> int:
        for field, descending in order:
            x, y = str(a[1].get(field, "")), str(b[1].get(field, ""))
            if x != y:
                return (1 if x > y else -1) * (-1 if descending else 1)
        return (a[0] - b[0]) * (-1 if order[0][1] else 1)

    ranked = sorted(enumerate(records), key=functools.cmp_to_key(compare))
    return [record for _, record in ranked]


def public(record: Dict[str, Any], fields: Optional[List[str]] = None) -> Dict[str, str]:
    """A stored record as the API shows it: no private keys, optionally projected."""
    shown = {k: v for k, v in record.items() if not k.startswith("_")}
    if fields:
        return {f: shown[f] for f in fields if f in shown}
    return shown
