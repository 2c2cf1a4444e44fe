"""A local stand-in for the part of the ServiceNow Table API the edge agent uses.

It speaks real HTTP on a real socket, so the agent's client (``requests``), the
``edge-agent simulate`` command and the test suite exercise the same code path
they use against an instance. Only the ``incident`` table is served, on both
``/api/now/table/incident`` (v1) and ``/api/now/v2/table/incident`` (v2), plus
``POST /oauth_token.do``. Behaviour copied from ServiceNow on purpose:

* every value in a record is a string; ``number`` is ``INC0010001``, ...;
  ``priority`` follows the default impact x urgency matrix;
* ``work_notes`` and ``comments`` are journal fields: they append and read back
  as ``""``;
* a query term naming an unknown field, or one it cannot parse, is silently
  ignored (so a typo widens the query instead of failing it);
* v1 answers a query without matches with 404, v2 with ``200 {"result": []}``;
* resolving (state 6) needs ``close_code`` and ``close_notes`` (403 otherwise);
  state 7 (closed) and 8 (canceled) make the record inactive, 6 does not;
* errors use the ``{"error": {"message", "detail"}, "status": "failure"}``
  envelope, 401 carries ``WWW-Authenticate: Basic realm="Service-now"``.

Beside the incident table: ``cmdb_ci`` (read-only; an incident's ``cmdb_ci``
must name a CI's sys_id, see :mod:`.cmdb`), Event Management's
``POST /api/global/em/jsonv2`` with the alerts it derives (:mod:`.events`),
roles per user (:mod:`.roles`: ``itil``, ``cmdb_read``, ``evt_mgmt_integration``;
a user given none is an administrator) and an hourly rate-limit rule announced
by ``X-RateLimit-*`` on every answer (:mod:`.rate_rule`).

Faults can be injected at run time through :attr:`ServiceNowStandIn.faults`
(latency, a slow commit, 5xx, 429 with ``Retry-After``, dropped connections, a
server that is down, a write that commits but is never confirmed).

The parts, one responsibility each: :mod:`.records` (the record shape and
encoded queries), :mod:`.store` (SQLite), :mod:`.table` (Table API semantics),
:mod:`.auth` (Basic, OAuth), :mod:`.faults`, :mod:`.handler` (HTTP),
:mod:`.standin` (the instance), :mod:`.admin` (a control API for tests),
:mod:`.cli` (the command line), :mod:`.process` (the stand-in as a separate
process, driven from a test), :mod:`.cmdb`, :mod:`.events`, :mod:`.roles` and
:mod:`.rate_rule`.

Run it on its own with ``python -m devtools.servicenow_standin --help``.
Standard library only.
"""

from .auth import DEFAULT_TOKEN_TTL
from .cli import build_parser, main
from .faults import Fault, Faults
from .handler import MAX_BODY_BYTES
from .process import StandInProcess
from .records import priority_for
from .responses import error_envelope, redact_path
from .standin import COUNTER_NAMES, ServiceNowStandIn

__all__ = [
    "COUNTER_NAMES",
    "DEFAULT_TOKEN_TTL",
    "MAX_BODY_BYTES",
    "Fault",
    "Faults",
    "ServiceNowStandIn",
    "StandInProcess",
    "build_parser",
    "error_envelope",
    "main",
    "priority_for",
    "redact_path",
]
