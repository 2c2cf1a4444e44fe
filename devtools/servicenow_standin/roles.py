"""Which roles a request needs, as an instance's out-of-the-box ACLs grant them. Pure.

A user the stand-in was given no roles for is an administrator (as the default
``admin`` user is), so nothing changes for tests that do not care about roles.
A user with roles gets what those roles grant and a 403 for the rest, in the
words an instance uses: a table's read ACL answers ``User Not Authorized``, a
create or write ACL ``ACL Exception ... Failed due to security constraints``.

* ``incident``: ``itil`` (or ``sn_incident_read`` to read,
  ``sn_incident_write`` to read, create and write);
* ``cmdb_ci``: read with ``itil``, ``cmdb_read`` or ``sn_cmdb_user``; writes are
  an administrator's;
* ``/api/global/em/jsonv2``: ``evt_mgmt_integration`` (ServiceNow's Event
  Management docs, "send events via web service").
"""

from __future__ import annotations

from typing import FrozenSet, Optional

from .responses import Response, error_envelope

ADMIN = "admin"
EVENT_ROLE = "evt_mgmt_integration"
_READ = {
    "incident": frozenset({"itil", "sn_incident_read", "sn_incident_write"}),
    "cmdb_ci": frozenset({"itil", "cmdb_read", "sn_cmdb_user"}),
}
_WRITE = {
    "incident": frozenset({"itil", "sn_incident_write"}),
    "cmdb_ci": frozenset(),
}


def table_refusal(roles: FrozenSet[str], table: str, method: str) -> Optional[Response]:
    """The 403 for ``method`` on ``table`` by a user with ``roles``; ``None`` if allowed."""
    if ADMIN in roles:
        return None
    if method == "GET":
        if roles & _READ.get(table, frozenset()):
            return None
        return (
            403,
            error_envelope(
                "User Not Authorized",
                f"Failed ACL validation: no read access to table {table}",
            ),
            {},
        )
    if roles & _WRITE.get(table, frozenset()):
        return None
    verb = "Insert" if method == "POST" else "Delete" if method == "DELETE" else "Update"
    return (
        403,
        error_envelope(
            "Operation Failed", f"ACL Exception {verb} Failed due to security constraints"
        ),
        {},
    )


def event_refusal(roles: FrozenSet[str]) -> Optional[Response]:
    """The 403 for posting events without ``evt_mgmt_integration``; ``None`` if allowed."""
    if ADMIN in roles or EVENT_ROLE in roles:
        return None
    return (
        403,
        error_envelope(
            "User Not Authorized",
            f"The user does not have the {EVENT_ROLE} role needed to send events",
        ),
        {},
    )
