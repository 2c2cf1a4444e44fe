"""``edge-agent check-servicenow``: is this configuration ready for production? In order,
stopping at the first failure with one line naming it and the fix.

1. the instance's host name resolves;
2. a connection opens and TLS verifies (and why not);
3. the instance answers as a Table API: its own JSON 401 to a call without
   credentials, not a login page, a redirect or a hibernating instance;
4. the credentials authenticate (basic, or the OAuth token request);
5. the user can read ``incident`` (and ``cmdb_ci`` when a CI is configured);
6. the configured CI exists;
7. with ``snowSink=event``, Event Management accepts a test event (severity 5,
   OK) and its clear (severity 0);
8. with ``create_test_incident``, an incident marked as a test is opened, given
   a work note and resolved; its number is printed.

Exit codes: 0 all good, 1 unreachable (name, connection, TLS, not a Table
API, no answer in time), 3 refused (credentials, roles, the CI missing); 2 is
the command line's.
"""

from __future__ import annotations

import socket
import time

from ..credentials import Credentials
from ..errors import SecretError
from .answers import Answer, json_document, not_json_cause
from .client import AuthFailed, RateLimited, Rejected, ServiceNowError, TableClient, Unavailable
from .cmdb import CiLink, is_sys_id
from .pacing import BudgetSpent

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Callable, Dict

    from ..config import AnomalySettings

OK, UNREACHABLE, REFUSED = 0, 1, 3
TEST_MARK = "[TEST] edge-agent check-servicenow"
INCIDENT_ROLE_FIX = "give the user the itil role, or a role with read, create and write on incident"


class CheckFailed(Exception):
    """One check failed: ``code`` the exit code, the message the line to print."""

    def __init__(self, code: int, check: str, what: str, fix: str) -> None:
        super().__init__("FAIL {}: {}. Fix: {}".format(check, what, fix))
        self.code = code


class ServiceNowCheck:
    """The checks against one instance with one set of credentials."""

    def __init__(
        self,
        settings: AnomalySettings,
        credentials: Credentials,
        say: Callable[[str], None],
        session: Any = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self.say = say
        self.client = TableClient(
            settings.snow_url,
            lambda: credentials,
            timeout=settings.timeout,
            verify=settings.verify_tls,
            session=session,
            max_answer_bytes=settings.max_answer_bytes,
        )
        from urllib.parse import urlsplit

        parts = urlsplit(settings.snow_url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"

    def run(self, create_test_incident: bool = False) -> int:
        """Every check in order; the exit code. Prints one line per check."""
        try:
            self.resolves()
            self.connects()
            self.is_table_api()
            self.authenticates()
            if self.settings.cmdb_ci:
                self.ci_exists()
            if self.settings.sink == "event":
                self.accepts_events()
            if create_test_incident:
                self.test_incident()
        except CheckFailed as failed:
            self.say(str(failed))
            return failed.code
        except BudgetSpent as spent:  # the instance's hourly limit is nearly used up
            spent_line = CheckFailed(
                UNREACHABLE, "rate limit", str(spent), "run the check after the limit resets"
            )
            self.say(str(spent_line))
            return UNREACHABLE
        self.say("ServiceNow is ready for the edge agent ({} sink).".format(self.settings.sink))
        return OK

    # -- the checks --------------------------------------------------------------------
    def resolves(self) -> None:
        try:
            found = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            again = exc.errno == getattr(socket, "EAI_AGAIN", None)
            raise CheckFailed(
                UNREACHABLE,
                "name",
                "{} {}".format(
                    self.host, "got no answer from a DNS server" if again else "does not resolve"
                ),
                "check snowUrl (e.g. https://dev12345.service-now.com) and this device's DNS",
            )
        self.say("ok   name: {} resolves to {}".format(self.host, found[0][4][0]))

    def connects(self) -> None:
        where = "{}:{}".format(self.host, self.port)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.settings.timeout)
        except OSError as exc:
            refused = isinstance(exc, ConnectionRefusedError)
            raise CheckFailed(
                UNREACHABLE,
                "connection",
                "{} {}".format(
                    where,
                    "refused the connection"
                    if refused
                    else "did not answer ({})".format(exc.strerror or type(exc).__name__),
                ),
                "check the port in snowUrl, and any firewall or proxy between this device "
                "and the instance",
            )
        try:
            if not self.tls:
                self.say("ok   connection: {} (plain http: a local stand-in, no TLS)".format(where))
                return
            self._tls(sock)
        finally:
            sock.close()

    def _tls(self, sock: socket.socket) -> None:
        import ssl

        from .answers import network_cause

        verify = self.settings.verify_tls
        if verify is True:  # the bundle the agent's own calls use (see TableClient.session)
            import os

            verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            )
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        sock.settimeout(self.settings.timeout)
        try:
            context.wrap_socket(sock, server_hostname=self.host).close()
        except (ssl.SSLError, OSError) as exc:
            cause, _ = network_cause(exc)
            raise CheckFailed(
                UNREACHABLE,
                "TLS",
                cause,
                "snowVerifyTls can name the CA bundle of a site's TLS-inspecting proxy; "
                "check the device's clock and that snowUrl is the instance's own address",
            )
        if verify is False:
            self.say("ok   TLS: handshake done, certificate NOT verified (snowVerifyTls=false)")
        else:
            self.say("ok   TLS: the certificate of {} verifies".format(self.host))

    def is_table_api(self) -> None:
        """Without credentials the Table API answers its own JSON 401; anything else is not it."""
        from .transport import NoAnswer, fetch

        url = self.client.base_url + "/api/now/table/incident"
        try:
            answer: Answer = fetch(
                self.client.session,
                "GET",
                url,
                self.settings.timeout,
                self.settings.max_answer_bytes,
                params={"sysparm_limit": "1", "sysparm_fields": "sys_id"},
                verify=self.client.verify,
            )
        except NoAnswer as exc:
            raise CheckFailed(
                UNREACHABLE, "Table API", exc.cause, "check the instance's status and snowTimeout"
            )
        document = json_document(answer)
        if document is None:
            cause = not_json_cause(answer)
            fix = "snowUrl must be the instance's own address (https://NAME.service-now.com)"
            if "hibernat" in cause.lower():
                fix = "wake the instance (a developer instance hibernates: log in to it)"
            elif "login" in cause.lower():
                fix = "snowUrl must be the instance itself, not a single sign-on or login page"
            raise CheckFailed(
                UNREACHABLE,
                "Table API",
                "{} answered {}: {}".format(url, answer.status, cause),
                fix,
            )
        self.say(
            "ok   Table API: {} answers as ServiceNow's Table API".format(self.client.base_url)
        )

    def authenticates(self) -> None:
        kind = "OAuth" if self.credentials.kind == "oauth" else "basic"
        who = self.credentials.username or self.credentials.client_id or "?"
        try:
            self.client.table_get("incident", {"sysparm_limit": "1", "sysparm_fields": "sys_id"})
        except AuthFailed as exc:
            raise CheckFailed(
                REFUSED,
                "credentials",
                "ServiceNow refused the {} credentials of {} ({})".format(kind, who, exc),
                "correct the secret (username/password, or client_id/client_secret for OAuth) "
                "and check the user is active and not locked out",
            )
        except Rejected as exc:
            self.say("ok   credentials: {} ({} auth) authenticates".format(who, kind))
            raise CheckFailed(
                REFUSED,
                "read incident",
                "{} cannot read incident ({})".format(who, exc),
                INCIDENT_ROLE_FIX,
            )
        except (Unavailable, RateLimited, SecretError) as exc:
            raise self._unreachable("credentials", exc)
        self.say("ok   credentials: {} ({} auth) authenticates".format(who, kind))
        self.say("ok   read incident: {} can read the incident table".format(who))

    def ci_exists(self) -> None:
        link = CiLink(self.client, self.settings.cmdb_ci, self.settings.device_id)
        try:
            self.client.table_get("cmdb_ci", {"sysparm_limit": "1", "sysparm_fields": "sys_id"})
            self.say("ok   read cmdb_ci: the user can read configuration items")
            if is_sys_id(link.wanted):
                found: Any = self.client.table_get(
                    "cmdb_ci", {"sysparm_fields": "sys_id"}, link.wanted
                )
            else:
                found = link.sys_id()
        except Rejected as exc:
            raise CheckFailed(
                REFUSED,
                "read cmdb_ci",
                "the user cannot read cmdb_ci ({})".format(exc),
                "give the user itil (or cmdb_read), or a role with read on cmdb_ci",
            )
        except (ServiceNowError, SecretError) as exc:
            raise self._unreachable("CI", exc)
        if not found:
            raise CheckFailed(
                REFUSED,
                "CI",
                "no configuration item {} {} in cmdb_ci".format(
                    "with sys_id" if is_sys_id(link.wanted) else "named", repr(link.wanted)
                ),
                "correct snowCmdbCi (a sys_id or a CI name; {device} is the device id), or "
                "create the CI (incidents open without a CI meanwhile)",
            )
        self.say("ok   CI: {} is in cmdb_ci".format(link.wanted))

    def accepts_events(self) -> None:
        from .events import event_record

        key = "edge-agent:check:{}:{}".format(self.settings.device_id, int(time.time()))
        info = {"check": "edge-agent check-servicenow", "device": self.settings.device_id}
        try:
            for severity in ("5", "0"):
                self.client.send_events(
                    [
                        event_record(
                            node=self.settings.device_id,
                            resource="check",
                            metric_name="check-servicenow",
                            severity=severity,
                            message_key=key,
                            when=time.time(),
                            description="Test event from edge-agent check-servicenow",
                            info=info,
                        )
                    ]
                )
        except Rejected as exc:
            if exc.status == 403:
                raise CheckFailed(
                    REFUSED,
                    "events",
                    "Event Management refused the test event ({})".format(exc),
                    "give the user the evt_mgmt_integration role",
                )
            raise CheckFailed(
                REFUSED,
                "events",
                "Event Management refused the test event ({})".format(exc),
                "check Event Management is active on the instance, or set snowSink=incident",
            )
        except (ServiceNowError, SecretError) as exc:
            raise self._unreachable("events", exc)
        self.say("ok   events: Event Management took a test event (severity 5) and its clear")

    def test_incident(self) -> None:
        corr = "edge-agent:check:{}".format(int(time.time()))
        fields: Dict[str, str] = {
            "short_description": "{} from {} (safe to ignore)".format(
                TEST_MARK, self.settings.device_id
            )[:160],
            "description": "A test incident opened by edge-agent check-servicenow; it is resolved "
            "at once.",
            "category": self.settings.category,
            "impact": "3",
            "urgency": "3",
            "correlation_id": corr,
            "correlation_display": "edge-agent check",
        }
        number = ""
        try:
            record = self.client.create(fields)
            number = record.get("number", "") or record["sys_id"]
            self.client.update(record["sys_id"], {"work_notes": "Work note from the check."})
            self.client.update(
                record["sys_id"],
                {
                    "state": "6",
                    "close_code": self.settings.close_code,
                    "close_notes": "Test incident of edge-agent check-servicenow.",
                },
            )
        except Rejected as exc:
            step = "resolve" if number else "create"
            raise CheckFailed(
                REFUSED,
                "test incident",
                "ServiceNow refused to {} the test incident{} ({})".format(
                    step, " " + number if number else "", exc
                ),
                INCIDENT_ROLE_FIX
                + ("; closeCode must be one of the instance's close codes" if number else ""),
            )
        except (ServiceNowError, SecretError) as exc:
            raise self._unreachable("test incident", exc)
        self.say("ok   test incident: {} opened, noted and resolved".format(number))

    def _unreachable(self, check: str, exc: Exception) -> CheckFailed:
        return CheckFailed(
            UNREACHABLE, check, str(exc), "check the instance's status, then run the check again"
        )
