"""The stand-in's own control API, so a test can drive a stand-in in another process.

Off unless the stand-in was given an admin token (``--admin-token-env NAME``);
then every request under ``/__standin/`` must carry it in ``X-Standin-Admin``.
ServiceNow has no such path: these requests bypass fault injection (a test
must be able to bring a "down" server back up), are not counted and do not
appear in the request log.

=======  ==============================  ==========================================
method   path                            body / answer
=======  ==============================  ==========================================
GET      ``/__standin/state``            counters, faults, timed request log
GET      ``/__standin/incidents``        records with ``_journal`` (``?query=``)
POST     ``/__standin/faults``           knobs for :meth:`Faults.configure`
POST     ``/__standin/users``            ``{"users": {name: password}}``
GET      ``/__standin/alerts``           Event Management alerts derived so far
POST     ``/__standin/roles``            ``{"roles": {user: [role, ...]}}``
POST     ``/__standin/cmdb``             ``{"add": [{"name": ..., "sys_id"?: ...}]}``
POST     ``/__standin/rate-limit``       ``{"limit": requests per hour}``
POST     ``/__standin/expire-tokens``    ``{}``
POST     ``/__standin/reset-stats``      ``{}``
=======  ==============================  ==========================================
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any, Dict
from urllib.parse import parse_qs, urlsplit

from .responses import Response, error_envelope

if TYPE_CHECKING:
    from .contracts import AdminTarget

ADMIN_PREFIX = "/__standin/"
ADMIN_HEADER = "X-Standin-Admin"


class AdminApi:
    """Answers ``/__standin/...`` requests for one stand-in."""

    def __init__(self, standin: AdminTarget, token: str) -> None:
        if not token:
            raise ValueError("the admin API needs a non-empty token")
        self._standin = standin
        self._token = token.encode("utf-8")

    @staticmethod
    def handles(path: str) -> bool:
        return urlsplit(path).path.startswith(ADMIN_PREFIX)

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> Response:
        given = (headers.get(ADMIN_HEADER) or "").encode("utf-8")
        if not secrets.compare_digest(given, self._token):
            return 403, error_envelope("Forbidden", "admin token missing or wrong"), {}
        split = urlsplit(raw_path)
        name = split.path[len(ADMIN_PREFIX) :].strip("/")
        standin = self._standin
        if method == "GET" and name == "state":
            return 200, {"result": self.state()}, {}
        if method == "GET" and name == "alerts":
            return 200, {"result": standin.alerts()}, {}
        if method == "GET" and name == "incidents":
            query = parse_qs(split.query).get("query", [None])[0]
            return 200, {"result": standin.incidents(query)}, {}
        if method != "POST":
            return 404, error_envelope("No such admin call", name), {}
        try:
            data = json.loads(body.decode("utf-8") or "{}")
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            if name == "faults":
                standin.faults.configure(data)
            elif name == "users":
                users = data["users"]
                if not isinstance(users, dict):
                    raise ValueError("users must be an object of name: password")
                standin.set_users({str(k): str(v) for k, v in users.items()})
            elif name == "roles":
                for user, roles in dict(data["roles"]).items():
                    standin.set_roles(str(user), [str(r) for r in roles])
            elif name == "cmdb":
                for ci in list(data["add"]):
                    standin.cmdb.add(str(ci["name"]), sys_id=str(ci.get("sys_id", "")))
            elif name == "rate-limit":
                standin.rate_rule.limit = int(data["limit"])
            elif name == "expire-tokens":
                standin.expire_tokens()
            elif name == "reset-stats":
                standin.reset_stats()
            else:
                return 404, error_envelope("No such admin call", name), {}
        except (KeyError, TypeError, ValueError) as exc:
            return 400, error_envelope("Bad admin request", str(exc)), {}
        return 200, {"result": self.state()}, {}

    def state(self) -> Dict[str, Any]:
        standin = self._standin
        return {
            "counters": standin.counters,
            "faults": standin.faults.describe(),
            "requests": [list(entry) for entry in standin.timed_request_log],
        }
