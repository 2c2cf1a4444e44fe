"""A small ServiceNow Table API client for the ``incident`` table.

One ``requests.Session`` is reused for every call, and no more than
``max_requests_per_second`` start in any second (:mod:`.pacing`). Every call,
the OAuth token request included, has an overall deadline (``timeout``: the
connect plus the whole answer) and reads at most ``max_answer_bytes`` of its
answer (:mod:`.transport`). Failures are sorted into what the delivery worker
must do about them:

* :class:`Unavailable` (no answer, too slow, too large, 5xx, 408, 409, and any
  answer that is not the Table API's JSON: an HTML page, a redirect, a proxy's
  404): retry later;
* :class:`RateLimited` (429): retry after ``Retry-After``;
* :class:`AuthFailed` (401): refetch the credentials (at most once a minute), then wait;
* :class:`Rejected` (any other 4xx in the Table API's JSON): do not retry, dead-letter.

A 404 is "no such record" only when it is the Table API's own JSON error for it.
Exception texts name the operation, the status and the cause (:mod:`.answers`),
never credentials.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, TypeVar, Union
from urllib.parse import quote, urlsplit

from ..clock import SYSTEM_CLOCK, Clock
from ..credentials import Credentials
from ..errors import SecretError
from .answers import (
    Answer,
    error_detail,
    is_no_record,
    json_document,
    not_json_cause,
)
from .pacing import RequestPacer
from .query_safe import is_query_safe

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)
T = TypeVar("T")

TABLE_PATH = "/api/now/table/incident"
TABLE_ROOT = "/api/now/table/"
EVENT_PATH = "/api/global/em/jsonv2"
TOKEN_PATH = "/oauth_token.do"
RETRYABLE_4XX = (408, 409)
WRITE_METHODS = ("POST", "PATCH")
# The lookup asks for one record and every answer is one record: a few kB. An
# answer this large is not the Table API's answer to what was asked.
DEFAULT_MAX_ANSWER_BYTES = 262144


class ServiceNowError(Exception):
    """``cause``: why, in the words the console, ``edge-agent status`` and the status page
    show (``redirected to HOST/PATH (a login page?)``); empty when the status says it."""

    def __init__(self, message: str, status: Optional[int] = None, cause: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.cause = cause


class Unavailable(ServiceNowError, ConnectionError):
    """ServiceNow could not be reached or failed; the call may be retried.

    ``ambiguous`` is true when a write (create or update) was sent and may have
    been committed although no answer confirmed it.
    """

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        ambiguous: bool = False,
        never_sent: bool = False,
        cause: str = "",
    ) -> None:
        super().__init__(message, status, cause)
        self.ambiguous = ambiguous
        self.never_sent = never_sent  # failed before the request left (refused, TLS, DNS)


class RateLimited(ServiceNowError):
    def __init__(self, message: str, retry_after: Optional[float]) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class AuthFailed(ServiceNowError, PermissionError):
    """401: the credentials were refused.

    ``token_rejected`` is true when what was refused is an OAuth access token
    (expired or revoked early): a new token may work with the same credentials.
    """

    def __init__(
        self, message: str, status: Optional[int] = None, token_rejected: bool = False
    ) -> None:
        super().__init__(message, status)
        self.token_rejected = token_rejected


class Rejected(ServiceNowError, ValueError):
    """A 4xx in the Table API's JSON that retrying will not fix (bad request, ACL, data policy)."""


# What the agent reads of an incident: enough to know whether it may still be
# changed (state) and whether a timed-out work note landed (sys_mod_count,
# sys_updated_by; journal fields read back empty, so the note itself cannot be).
INCIDENT_FIELDS = "sys_id,number,state,correlation_id,sys_mod_count,sys_updated_by"


class TableClient:
    """Create, find, read and update incidents, at most ``max_requests_per_second``."""

    def __init__(
        self,
        base_url: str,
        credentials: Callable[[], Credentials],
        timeout: float = 10.0,
        verify: Union[bool, str] = True,
        clock: Optional[Clock] = None,
        session: Optional[requests.Session] = None,
        max_requests_per_second: float = 0.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        if "@" in urlsplit(base_url).netloc:
            # The configuration refuses these; never carry one into a log line.
            raise ValueError("the ServiceNow URL must not hold credentials")
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self.timeout = timeout  # seconds for a whole call: connect and the complete answer
        self.max_answer_bytes = max_answer_bytes
        self.verify = verify
        self.clock = clock or SYSTEM_CLOCK
        self._session = session
        self._token: Optional[str] = None
        self._token_expires = 0.0
        self._token_for: Optional[str] = None
        self.calls: Dict[str, int] = {"GET": 0, "POST": 0, "PATCH": 0, "TOKEN": 0}
        # Observers of every HTTP call (the status function's counters):
        # on_call(method, path, outcome, seconds, cause), outcome a status code or
        # "unreachable" (never sent) / "no_answer" / "error"; cause as in ServiceNowError.
        self.on_call: List[Callable[[str, str, str, float, str], None]] = []
        self.pacer = RequestPacer(max_requests_per_second, self.clock)

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests  # deferred: the sensor function never pays for it

            from .transport import DeadlineAdapter

            session = requests.Session()
            adapter = DeadlineAdapter()
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update(
                {
                    "Accept": "application/json",
                    "Content-Type": "application/json",
                    "User-Agent": "edge-agent/0.1",
                    # The size cap counts the bytes received: no compressed bodies.
                    "Accept-Encoding": "identity",
                }
            )
            # With trust_env on, requests walks the whole environment for proxy
            # variables on every call. A function's environment is fixed when it
            # starts: take proxies and the CA bundle from it once, then stop looking.
            session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            if self.verify is True:
                self.verify = (
                    os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
                )
            session.trust_env = False
            self._session = session
        return self._session

    def forget_auth(self) -> None:
        """Drop a cached OAuth token, e.g. after the credentials were refetched."""
        self._token = None

    # -- table operations -------------------------------------------------------
    def find_by_correlation(self, correlation_id: str) -> Optional[Dict[str, str]]:
        """The newest incident with this ``correlation_id`` in any state, or ``None``.

        Resolved and closed ones count: an episode has one incident, and one a
        person closed is left closed, not opened again (see the delivery).
        """
        if not is_query_safe(correlation_id):
            # A programming error: a '^' or '=' here would silently change the query.
            raise ValueError("correlation id is not safe in an encoded query")
        params = {
            "sysparm_query": f"correlation_id={correlation_id}^ORDERBYDESCsys_created_on",
            "sysparm_limit": "1",
            "sysparm_fields": INCIDENT_FIELDS,
        }
        document = self._request("GET", TABLE_PATH, params=params, not_found_ok=True)
        if document is None:
            return None
        results = _result(document, "GET " + TABLE_PATH)
        if not isinstance(results, list):
            raise Unavailable(
                "ServiceNow answered a query with an unexpected body",
                cause="a JSON answer that is not a list of records",
            )
        for record in results:
            # ServiceNow silently ignores query terms it does not understand, so
            # a bad query can return unrelated incidents: check what came back.
            if isinstance(record, dict) and record.get("correlation_id") == correlation_id:
                return record
        return None

    def read(self, sys_id: str) -> Optional[Dict[str, str]]:
        """The incident as it is now (``INCIDENT_FIELDS``), or ``None`` if it is gone."""
        path = f"{TABLE_PATH}/{quote(sys_id)}"
        document = self._request(
            "GET", path, params={"sysparm_fields": INCIDENT_FIELDS}, not_found_ok=True
        )
        return None if document is None else _record(document, "GET " + path)

    def create(self, fields: Dict[str, str]) -> Dict[str, str]:
        document = self._request("POST", TABLE_PATH, json=fields)
        return _record(document, "POST " + TABLE_PATH, write=True)

    def update(self, sys_id: str, fields: Dict[str, str]) -> Dict[str, str]:
        path = f"{TABLE_PATH}/{quote(sys_id)}"
        document = self._request("PATCH", path, json=fields)
        return _record(document, "PATCH " + path, write=True)

    def table_get(
        self, table: str, params: Dict[str, str], sys_id: str = ""
    ) -> Union[List[Dict[str, str]], Dict[str, str], None]:
        """Records of any table (a list), or one by ``sys_id`` (a dict); ``None`` for the
        Table API's own "No Record found"."""
        path = TABLE_ROOT + quote(table) + ("/" + quote(sys_id) if sys_id else "")
        document = self._request("GET", path, params=params, not_found_ok=True)
        if document is None:
            return None
        result = _result(document, "GET " + path)
        if not isinstance(result, (list, dict)):
            raise Unavailable(
                "GET {} answered with an unexpected body".format(path),
                cause="a JSON answer that is not a record or a list",
            )
        return result

    def send_events(self, records: List[Dict[str, str]]) -> Dict[str, Any]:
        """POST events to Event Management; its answer's ``result`` (no sys_id in it)."""
        document = self._request("POST", EVENT_PATH, json={"records": records})
        result = _result(document or {}, "POST " + EVENT_PATH, write=True)
        return result if isinstance(result, dict) else {}

    # -- plumbing --------------------------------------------------------------
    def _auth(self) -> Dict[str, Any]:
        creds = self._credentials()
        if creds.kind == "basic":
            if not creds.username or not creds.password:
                # Credentials.from_secret_string refuses these; one made in code may lack them.
                raise SecretError("basic auth needs a username and a password")
            # Bytes: requests would encode str as Latin-1 and fail on other characters.
            return {"auth": (creds.username.encode("utf-8"), creds.password.encode("utf-8"))}
        return {"headers": {"Authorization": "Bearer " + self._bearer(creds)}}

    def _bearer(self, creds: Credentials) -> str:
        identity = f"{creds.client_id}/{creds.username}"
        if (
            self._token
            and self._token_for == identity
            and self.clock.monotonic() < self._token_expires
        ):
            return self._token
        data = {"client_id": creds.client_id, "client_secret": creds.client_secret}
        if creds.username:
            data.update(grant_type="password", username=creds.username, password=creds.password)
        else:
            data["grant_type"] = "client_credentials"
        self.calls["TOKEN"] += 1
        body = self._call(
            "POST",
            TOKEN_PATH,
            self._judge_token,
            data=data,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 1800))
        except (ValueError, KeyError, TypeError):
            raise Unavailable(
                "ServiceNow's token endpoint answered without a token",
                cause="a JSON answer without a token",
            )
        if not isinstance(token, str) or not token:
            # null, a number, "": the header would fail to build, or carry no token at all.
            raise Unavailable(
                "ServiceNow's token endpoint answered without a token",
                cause="a JSON answer without a token",
            )
        # Renew a minute early so a token never expires mid-request.
        self._token, self._token_for = token, identity
        self._token_expires = self.clock.monotonic() + max(0.0, lifetime - 60)
        return token

    def _judge_token(self, answer: Answer) -> Dict[str, Any]:
        document = _table_json(answer, "token request", write=False)
        if answer.status in (400, 401):
            raise AuthFailed(
                f"ServiceNow refused the OAuth client or user ({answer.status})", answer.status
            )
        _raise_for(answer, document, "token request", write=False)
        return document

    def _request(
        self, method: str, path: str, not_found_ok: bool = False, **kwargs: Any
    ) -> Optional[Dict[str, Any]]:
        """The Table API's JSON document for this call; ``None`` for its own "No Record
        found" when ``not_found_ok`` (the v1 Table API answers a query with no match so)."""
        extra = self._auth()
        if "headers" in extra:
            kwargs["headers"] = extra["headers"]
        else:
            kwargs["auth"] = extra["auth"]
        self.calls[method] = self.calls.get(method, 0) + 1
        what = "{} {}".format(method, path)
        write = method in WRITE_METHODS

        def judge(answer: Answer) -> Optional[Dict[str, Any]]:
            token_rejected = answer.status == 401 and self._token is not None
            if token_rejected:
                self._token = None  # an expired or revoked token: the caller's retry gets a new one
            document = _table_json(answer, what, write)
            if not_found_ok and answer.status == 404 and is_no_record(document):
                return None
            try:
                _raise_for(answer, document, what, write)
            except AuthFailed as exc:
                exc.token_rejected = token_rejected
                raise
            return document

        return self._call(method, path, judge, **kwargs)

    def _call(self, method: str, path: str, judge: Callable[[Answer], T], **kwargs: Any) -> T:
        """One HTTP call within the deadline and the size cap; ``judge`` says what its answer
        means (or raises). Observers hear of every call, with the cause of a failure."""
        from .transport import NoAnswer, fetch

        self.pacer.acquire()  # before the clock starts: a paced wait is not ServiceNow's latency
        from time import perf_counter

        started, outcome, cause = perf_counter(), "error", ""
        try:
            try:
                answer = fetch(
                    self.session,
                    method,
                    self.base_url + path,
                    self.timeout,
                    self.max_answer_bytes,
                    verify=self.verify,
                    **kwargs,
                )
            except NoAnswer as exc:
                raise self._no_answer(method, path, exc)
            self.pacer.budget.observe(answer.headers)  # X-RateLimit-*, on every answer
            outcome = str(answer.status)
            return judge(answer)
        except ServiceNowError as exc:
            if outcome == "error":  # no answer judged: the status if headers came, else why not
                if exc.status is not None:
                    outcome = str(exc.status)
                elif isinstance(exc, Unavailable):
                    outcome = "unreachable" if exc.never_sent else "no_answer"
            cause = exc.cause
            raise
        finally:
            for observe in self.on_call:
                observe(method, path, outcome, perf_counter() - started, cause)

    def _no_answer(self, method: str, path: str, exc: Any) -> Unavailable:
        write = method in WRITE_METHODS
        if exc.status is not None:
            message = "{} {} answered {}: {}".format(method, path, exc.status, exc.cause)
        elif exc.timed_out:
            message = "{} {}: {}".format(method, path, exc.cause)
        else:
            message = "ServiceNow unreachable at {}: {}".format(self.base_url, exc.cause)
        # A write that left may have been committed although no answer confirmed it.
        return Unavailable(
            message,
            exc.status,
            ambiguous=write and not exc.never_sent,
            never_sent=exc.never_sent,
            cause=exc.cause,
        )


def _table_json(answer: Answer, what: str, write: bool) -> Dict[str, Any]:
    """The answer's JSON document; anything else (HTML, a redirect, text) is a transient
    fault named by its cause, whatever the status. A 429 is a rate limit whatever its body."""
    document = json_document(answer)
    if document is not None:
        return document
    if answer.status == 429:
        return {}
    cause = not_json_cause(answer)
    # After a write, a 2xx or 5xx may hide a commit; a redirect or a 4xx was not processed.
    sent_on = write and (200 <= answer.status < 300 or answer.status >= 500)
    raise Unavailable(
        "{} answered {}: {}".format(what, answer.status, cause),
        answer.status,
        ambiguous=sent_on,
        cause=cause,
    )


def _raise_for(answer: Answer, document: Dict[str, Any], what: str, write: bool) -> None:
    status = answer.status
    if 200 <= status < 300:
        return
    detail = error_detail(document)
    message = "{} answered {}{}".format(what, status, ": " + detail if detail else "")
    if status == 401:
        raise AuthFailed(message, status)
    if status == 429:
        raise RateLimited(message, _retry_after(answer.header("Retry-After")))
    if status >= 500 or status in RETRYABLE_4XX:
        raise Unavailable(message, status, ambiguous=write)  # a 5xx after a write may hide a commit
    raise Rejected(message, status)


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        import time
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _result(document: Dict[str, Any], what: str, write: bool = False) -> Any:
    if "result" not in document:
        cause = "a JSON answer that is not a Table API result"
        raise Unavailable("{} answered with {}".format(what, cause), ambiguous=write, cause=cause)
    return document["result"]


def _record(document: Optional[Dict[str, Any]], what: str, write: bool = False) -> Dict[str, str]:
    record = _result(document or {}, what, write)
    if not isinstance(record, dict) or not record.get("sys_id"):
        cause = "a Table API answer without a record"
        raise Unavailable("{} answered with {}".format(what, cause), ambiguous=write, cause=cause)
    return record
