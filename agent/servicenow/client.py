"""A small ServiceNow Table API client for the ``incident`` table.

One ``requests.Session`` is reused for every call, and no more than
``max_requests_per_second`` start in any second (:mod:`.pacing`). Failures are
sorted into what the delivery worker must do about them:

* :class:`Unavailable` (connection errors, timeouts, 5xx, 408, 409): retry later;
* :class:`RateLimited` (429): retry after ``Retry-After``;
* :class:`AuthFailed` (401): refetch the credentials (at most once a minute), then wait;
* :class:`Rejected` (any other 4xx): do not retry, dead-letter.

Exception texts name the operation and status, never credentials.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union
from urllib.parse import quote, urlsplit

from ..clock import SYSTEM_CLOCK, Clock
from ..credentials import Credentials
from ..errors import SecretError
from .pacing import RequestPacer
from .query_safe import is_query_safe

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

TABLE_PATH = "/api/now/table/incident"
TOKEN_PATH = "/oauth_token.do"
RETRYABLE_4XX = (408, 409)
WRITE_METHODS = ("POST", "PATCH")


class ServiceNowError(Exception):
    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


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
    ) -> None:
        super().__init__(message, status)
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
    """A 4xx that retrying will not fix (bad request, ACL, data policy, not found)."""


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
    ) -> None:
        if "@" in urlsplit(base_url).netloc:
            # The configuration refuses these; never carry one into a log line.
            raise ValueError("the ServiceNow URL must not hold credentials")
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self.timeout = timeout
        self.verify = verify
        self.clock = clock or SYSTEM_CLOCK
        self._session = session
        self._token: Optional[str] = None
        self._token_expires = 0.0
        self._token_for: Optional[str] = None
        self.calls: Dict[str, int] = {"GET": 0, "POST": 0, "PATCH": 0, "TOKEN": 0}
        # Observers of every HTTP call (the status function's counters):
        # on_call(method, path, outcome, seconds), outcome a status code or
        # "unreachable" (never sent) / "no_answer" / "error".
        self.on_call: List[Callable[[str, str, str, float], None]] = []
        self.pacer = RequestPacer(max_requests_per_second, self.clock)

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests  # deferred: the sensor function never pays for it

            session = requests.Session()
            session.headers.update(
                {
                    "Accept": "application/json",
                    "Content-Type": "application/json",
                    "User-Agent": "edge-agent/0.1",
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
        response = self._request("GET", TABLE_PATH, params=params, not_found_ok=True)
        if response is None:
            return None
        results = _result(response)
        if not isinstance(results, list):
            raise Unavailable("ServiceNow answered a query with an unexpected body")
        for record in results:
            # ServiceNow silently ignores query terms it does not understand, so
            # a bad query can return unrelated incidents: check what came back.
            if isinstance(record, dict) and record.get("correlation_id") == correlation_id:
                return record
        return None

    def read(self, sys_id: str) -> Optional[Dict[str, str]]:
        """The incident as it is now (``INCIDENT_FIELDS``), or ``None`` if it is gone."""
        response = self._request(
            "GET",
            f"{TABLE_PATH}/{quote(sys_id)}",
            params={"sysparm_fields": INCIDENT_FIELDS},
            not_found_ok=True,
        )
        return None if response is None else _record(response)

    def create(self, fields: Dict[str, str]) -> Dict[str, str]:
        response = self._request("POST", TABLE_PATH, json=fields)
        return _record(response)

    def update(self, sys_id: str, fields: Dict[str, str]) -> Dict[str, str]:
        response = self._request("PATCH", f"{TABLE_PATH}/{quote(sys_id)}", json=fields)
        return _record(response)

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
        if self._token and self._token_for == identity and self.clock.time() < self._token_expires:
            return self._token
        data = {"client_id": creds.client_id, "client_secret": creds.client_secret}
        if creds.username:
            data.update(grant_type="password", username=creds.username, password=creds.password)
        else:
            data["grant_type"] = "client_credentials"
        self.calls["TOKEN"] += 1
        response = self._send(
            "POST",
            TOKEN_PATH,
            data=data,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if response.status_code in (400, 401):
            raise AuthFailed(
                f"ServiceNow refused the OAuth client or user ({response.status_code})",
                response.status_code,
            )
        self._raise_for(response, "token request")
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 1800))
        except (ValueError, KeyError, TypeError):
            raise Unavailable("ServiceNow's token endpoint answered without a token")
        if not isinstance(token, str) or not token:
            # null, a number, "": the header would fail to build, or carry no token at all.
            raise Unavailable("ServiceNow's token endpoint answered without a token")
        # Renew a minute early so a token never expires mid-request.
        self._token, self._token_for = token, identity
        self._token_expires = self.clock.time() + max(0.0, lifetime - 60)
        return token

    def _request(self, method: str, path: str, not_found_ok: bool = False, **kwargs: Any) -> Any:
        extra = self._auth()
        if "headers" in extra:
            kwargs["headers"] = extra["headers"]
        else:
            kwargs["auth"] = extra["auth"]
        self.calls[method] = self.calls.get(method, 0) + 1
        try:
            response = self._send(method, path, **kwargs)
        except Unavailable as exc:
            if method in WRITE_METHODS and not exc.never_sent:
                exc.ambiguous = True
            raise
        token_rejected = response.status_code == 401 and self._token is not None
        if token_rejected:
            self._token = None  # an expired or revoked token: the caller's retry gets a new one
        if not_found_ok and response.status_code == 404:
            return None  # the v1 Table API answers a query with no match with 404
        try:
            self._raise_for(response, "{} {}".format(method, path))
        except Unavailable as exc:
            exc.ambiguous = method in WRITE_METHODS  # a 5xx after a write may hide a commit
            raise
        except AuthFailed as exc:
            exc.token_rejected = token_rejected
            raise
        return response

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        self.pacer.acquire()  # before the clock starts: a paced wait is not ServiceNow's latency
        if not self.on_call:
            return self._send_request(method, path, **kwargs)
        from time import perf_counter

        started, outcome = perf_counter(), "error"
        try:
            response = self._send_request(method, path, **kwargs)
            outcome = str(response.status_code)
            return response
        except Unavailable as exc:
            outcome = "unreachable" if exc.never_sent else "no_answer"
            raise
        finally:
            for observe in self.on_call:
                observe(method, path, outcome, perf_counter() - started)

    def _send_request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        import requests

        try:
            return self.session.request(
                method, self.base_url + path, timeout=self.timeout, verify=self.verify, **kwargs
            )
        except requests.exceptions.SSLError as exc:
            raise Unavailable(
                f"TLS verification of {self.base_url} failed: {type(exc).__name__}",
                never_sent=True,
            )
        except requests.exceptions.ConnectTimeout:
            raise Unavailable(
                f"ServiceNow unreachable at {self.base_url} (ConnectTimeout)", never_sent=True
            )
        except requests.exceptions.Timeout:
            raise Unavailable(f"ServiceNow did not answer {method} within {self.timeout}s")
        except requests.exceptions.RequestException as exc:
            # Refused or unresolvable: nothing reached ServiceNow.
            never_sent = "NewConnectionError" in repr(exc) or "NameResolution" in repr(exc)
            raise Unavailable(
                f"ServiceNow unreachable at {self.base_url} ({type(exc).__name__})",
                never_sent=never_sent,
            )

    @staticmethod
    def _raise_for(response: requests.Response, what: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = _error_message(response)
        message = "{} answered {}{}".format(what, status, ": " + detail if detail else "")
        if status == 401:
            raise AuthFailed(message, status)
        if status == 429:
            raise RateLimited(message, _retry_after(response.headers.get("Retry-After")))
        if status >= 500 or status in RETRYABLE_4XX:
            raise Unavailable(message, status)
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


def _error_message(response: requests.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    if isinstance(error, dict):
        parts = [str(error.get("message") or ""), str(error.get("detail") or "")]
        return " - ".join(p for p in parts if p)[:200]
    return str(error)[:200] if error else ""


def _result(response: Any) -> Any:
    try:
        return response.json()["result"]
    except (ValueError, KeyError, TypeError):
        raise Unavailable("ServiceNow answered with a body that is not a Table API result")


def _record(response: Any) -> Dict[str, str]:
    record = _result(response)
    if not isinstance(record, dict) or not record.get("sys_id"):
        raise Unavailable("ServiceNow answered without a record")
    return record
