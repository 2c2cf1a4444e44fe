"""What an HTTP answer or a failed connection means, named by its cause. Pure, no I/O.

Between the agent and the Table API there may be a proxy, a load balancer, a
single sign-on gateway or a hibernating developer instance. They answer with
HTML pages, redirects to a login page, or bodies that are not JSON, of any
status, 200 and 404 included. Only a JSON document is the Table API speaking;
everything else is a transient fault, told in words that name its cause
(``redirected to sso.example.com/login.do (a login page?)``, ``an HTML page
titled 'Instance hibernating'``), the same words on the console, in ``edge-agent
status`` and on the status page. A 404 means "no such record" only when it is
the Table API's own error for it::

    {"error": {"message": "No Record found", "detail": "..."}, "status": "failure"}

:func:`network_cause` does the same for a connection that failed before any
answer: a name that does not resolve, a certificate for another host or one
that has expired.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin, urlsplit

from .text import clean_text

TYPE_CHECKING = False  # mypy reads this block; nothing imports typing at run time
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple

NO_RECORD_MESSAGE = "No Record found"
TITLE_LIMIT = 80
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_HTML_START = (b"<!doctype html", b"<html", b"<head", b"<body")
# X.509 verify codes (OpenSSL's), from ssl.SSLCertVerificationError.verify_code.
_NOT_YET_VALID, _EXPIRED = 9, 10
_HOST_MISMATCH, _IP_MISMATCH = 62, 64
_UNTRUSTED = (2, 18, 19, 20, 21)
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")


class Answer:
    """One HTTP answer, read whole (within the size cap): status, headers, body, request URL."""

    __slots__ = ("status", "headers", "body", "url")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, url: str) -> None:
        self.status = status
        self.headers = headers  # case-insensitive when it comes from requests
        self.body = body
        self.url = url

    def header(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:  # a plain dict: look without regard to case
            wanted = name.lower()
            value = next((v for k, v in self.headers.items() if k.lower() == wanted), "")
        return value or ""


def json_document(answer: Answer) -> Optional[Dict[str, Any]]:
    """The answer's JSON object, or ``None`` when the body is not one (HTML, text, empty, a list)."""
    if 300 <= answer.status < 400 or _is_html(answer):
        return None
    try:
        document = json.loads(answer.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def not_json_cause(answer: Answer) -> str:
    """Why an answer that :func:`json_document` refused is not the Table API, in words."""
    if 300 <= answer.status < 400:
        return redirect_cause(answer)
    if _is_html(answer):
        title = html_title(answer.body)
        return "an HTML page titled '{}'".format(title) if title else "an HTML page without a title"
    if not answer.body.strip():
        return "an empty answer"
    kind = answer.header("Content-Type").split(";")[0].strip()
    if "json" in kind.lower():
        return "a body that is not a JSON object ({})".format(kind)
    return "an answer that is not JSON ({})".format(kind or "no Content-Type")


def redirect_cause(answer: Answer) -> str:
    """``redirected to HOST/PATH (a login page?)``; the query is left out (it may hold tokens)."""
    location = answer.header("Location").strip()
    if not location:
        return "a redirect ({}) without a Location".format(answer.status)
    try:
        parts = urlsplit(urljoin(answer.url, location))
        host = parts.netloc.rsplit("@", 1)[-1]  # never a user name or password
    except ValueError:
        return "redirected to an address that cannot be read"
    target = clean_text(host + (parts.path or "/"), 120)
    if parts.path.startswith("/api/"):
        return "redirected to {} (is snowUrl the instance's own address?)".format(target)
    return "redirected to {} (a login page?)".format(target)


def html_title(body: bytes) -> str:
    """The page's ``<title>``, made safe for a log line and cut to ``TITLE_LIMIT``; or ``""``."""
    found = _TITLE.search(body[:65536])
    if not found:
        return ""
    import html  # deferred: only an HTML answer pays for it

    text = html.unescape(found.group(1).decode("utf-8", "replace"))
    title = clean_text(text, TITLE_LIMIT + 1)
    if title == "(unnamed)":
        return ""
    return title if len(title) <= TITLE_LIMIT else title[: TITLE_LIMIT - 1] + "…"


def is_no_record(document: Mapping[str, Any]) -> bool:
    """Whether a 404's JSON is the Table API's own "No Record found"."""
    error = document.get("error")
    return (
        isinstance(error, dict)
        and str(error.get("message", "")).strip().lower() == NO_RECORD_MESSAGE.lower()
        and document.get("status") == "failure"
    )


def error_detail(document: Mapping[str, Any]) -> str:
    """The Table API's error message and detail, at most 200 characters; ``""`` if none."""
    error = document.get("error")
    if isinstance(error, dict):
        parts = [str(error.get("message") or ""), str(error.get("detail") or "")]
        return " - ".join(p for p in parts if p)[:200]
    return str(error)[:200] if error else ""


# -- failures before any answer ---------------------------------------------------------------


def network_cause(exc: BaseException) -> Tuple[str, bool]:
    """Why a request got no answer, in words; and whether it never left (DNS, refused, TLS)."""
    import socket  # both loaded already by whatever opened the connection
    import ssl

    chain = _chain(exc)
    for error in chain:
        if isinstance(error, ssl.SSLCertVerificationError):
            return _certificate_cause(error), True
    for error in chain:
        if isinstance(error, ssl.SSLError):
            code = getattr(error, "reason", None) or _ssl_code(str(error))
            if code in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE"):
                return "the server does not speak TLS on this port (http:// instead?)", True
            return "the TLS handshake failed ({})".format(code or _short(str(error))), True
    names = [type(e).__name__ for e in chain]
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in names:
        again = any(getattr(e, "errno", None) == socket.EAI_AGAIN for e in chain)
        if again:
            return "no DNS server answered for the host name", True
        return "the host name does not resolve", True
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "the connection was refused (nothing listens on that port?)", True
    if "ConnectTimeoutError" in names or "ConnectTimeout" in names:
        return "no answer to the connection attempt", True
    if "ProxyError" in names:
        return "the proxy refused or failed the connection", True
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return "the connection was reset before an answer", False
    if "RemoteDisconnected" in names or "IncompleteRead" in names:
        return "the server closed the connection before a complete answer", False
    for error in chain:
        if isinstance(error, OSError) and error.strerror:
            return error.strerror[:1].lower() + error.strerror[1:], "NewConnectionError" in names
    return type(exc).__name__, False


def _certificate_cause(error: BaseException) -> str:
    code = getattr(error, "verify_code", None)
    message = getattr(error, "verify_message", None) or _short(str(error))
    if code in (_HOST_MISMATCH, _IP_MISMATCH):
        return "the certificate is for another host ({})".format(message)
    if code == _EXPIRED:
        return "the certificate has expired"
    if code == _NOT_YET_VALID:
        return "the certificate is not valid yet (is this device's clock set?)"
    if code in _UNTRUSTED:
        return "the certificate is not from a CA this device trusts ({}; snowVerifyTls can name a CA bundle)".format(
            message
        )
    return "the certificate was refused ({})".format(message)


def _chain(exc: BaseException) -> List[BaseException]:
    """``exc`` and what it wraps: causes, contexts, urllib3's ``reason``, exceptions in ``args``."""
    seen: List[BaseException] = []
    todo: List[Any] = [exc]
    while todo and len(seen) < 24:
        error = todo.pop(0)
        if not isinstance(error, BaseException) or any(error is s for s in seen):
            continue
        seen.append(error)
        todo += [getattr(error, "reason", None), error.__cause__, error.__context__]
        todo += list(error.args)
    return seen


def _ssl_code(text: str) -> str:
    found = _SSL_REASON.search(text)
    return found.group(1) if found else ""


def _short(text: str) -> str:
    """An OpenSSL message without its source location."""
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", text).strip()[:160]


def _is_html(answer: Answer) -> bool:
    kind = answer.header("Content-Type").lower()
    if "html" in kind:
        return True
    return answer.body[:512].lstrip().lower().startswith(_HTML_START)
