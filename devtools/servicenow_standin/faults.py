"""Fault injection: what the stand-in does wrong on purpose, changeable while it serves.

Latency, a slow commit, 5xx answers, 429 with ``Retry-After``, dropped
connections, a server that is down, and a write that commits but is never
confirmed. And what stands in front of an instance on a site's network: a
proxy, load balancer or single sign-on gateway answering with an HTML page of
any status (``html_status``, ``html_title``: a hibernating developer instance
is a 200 titled "Instance hibernating") or a redirect to a login page
(``redirect_to``); a server that trickles its answer a byte at a time
(``trickle_next``); and a lookup answered with megabytes (``huge_next``).
"""

from __future__ import annotations

import collections
import random
import threading
from typing import Any, Deque, Dict, Mapping, NamedTuple, Optional, Tuple

DEFAULT_RATE_LIMIT = 5000


class Fault(NamedTuple):
    """What to do with one request: ``kind`` is ``ok``, ``drop``, ``rate_limit`` (``arg``:
    Retry-After seconds), ``fail`` (``arg``: the status), ``commit_then_drop``, ``html``
    (``arg``: the status, ``detail``: the title), ``redirect`` (``detail``: the Location),
    ``trickle`` (answer as usual, ``detail`` seconds between bytes) or ``huge`` (``arg``:
    bytes, ``detail``: whether chunked)."""

    kind: str
    arg: int = 0
    detail: Any = None


OK = Fault("ok")
DROP = Fault("drop")
_SETTABLE = frozenset(
    {
        "latency",
        "commit_delay",
        "commit_jitter",
        "down",
        "fail_rate",
        "fail_status",
        "rate_limit_rate",
        "retry_after",
        "drop_rate",
        "html_status",
        "html_title",
        "redirect_to",
    }
)
_ONE_SHOT = frozenset(
    {
        "fail_next",
        "rate_limit_next",
        "drop_next",
        "fail_after_commit_next",
        "trickle_next",
        "huge_next",
    }
)
DEFAULT_HTML_TITLE = "Instance hibernating"


class Faults:
    """Fault-injection knobs, safe to change from any thread while serving.

    One-shot faults (``fail_next`` and friends) are consumed in this order per
    request: ``down``, ``drop_next``, then what stands in front of the instance
    (``redirect_to``, ``html_status``: while set, every request gets it), then
    ``rate_limit_next``, ``fail_next``, ``trickle_next``, ``huge_next``, then
    the random rates (``drop_rate``, ``rate_limit_rate``, ``fail_rate``).
    ``fail_after_commit_next`` only counts write requests on the table,
    ``huge_next`` only queries of it. Injected faults apply to every request,
    the token endpoint included, and come before authentication.
    """

    def __init__(self, seed: Optional[int] = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._latency = 0.0
        self._commit_delay = 0.0
        self._down = False
        self._fail: Deque[int] = collections.deque()
        self._rate_limit: Deque[Optional[int]] = collections.deque()
        self._drop = 0
        self._commit_then_drop = 0
        self._trickle: Deque[float] = collections.deque()
        self._huge: Deque[Tuple[int, bool]] = collections.deque()
        self.html_status = 0  # 0: off; else every request gets an HTML page with this status
        self.html_title = DEFAULT_HTML_TITLE
        self.redirect_to = ""  # "": off; else every request is redirected (302) there
        self.fail_rate = 0.0
        self.fail_status = 503
        self.rate_limit_rate = 0.0
        self.retry_after = 30
        self.drop_rate = 0.0
        self.rate_limit_limit = DEFAULT_RATE_LIMIT
        self.commit_jitter = 0.0

    @property
    def latency(self) -> float:
        """Seconds added before every response (and before every drop)."""
        with self._lock:
            return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = float(seconds)

    @property
    def commit_delay(self) -> float:
        """Seconds a table write takes before it commits (and then answers).

        Unlike ``latency``, which answers late what is already stored, a read
        during this time does not see the write yet, and a client that gives up
        (or dies) meanwhile does not stop it: the record appears later anyway,
        as with a slow instance.
        """
        with self._lock:
            return self._commit_delay

    @commit_delay.setter
    def commit_delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("commit_delay must be >= 0")
        with self._lock:
            self._commit_delay = float(seconds)

    def write_delay(self) -> float:
        """How long this table write takes to commit: ``commit_delay`` plus a uniform
        random share of ``commit_jitter`` seconds."""
        with self._lock:
            jitter = self._rng.uniform(0, self.commit_jitter) if self.commit_jitter > 0 else 0.0
            return self._commit_delay + jitter

    @property
    def down(self) -> bool:
        """While true every request is answered by resetting the connection."""
        with self._lock:
            return self._down

    @down.setter
    def down(self, value: bool) -> None:
        with self._lock:
            self._down = bool(value)

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status`` (a 5xx) and the error envelope."""
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status")
        with self._lock:
            self._fail.extend([status] * n)

    def rate_limit_next(self, n: int = 1, retry_after: Optional[int] = 30) -> None:
        """Answer the next ``n`` requests with 429 and ``Retry-After: retry_after`` (``None``:
        no Retry-After, as a proxy or gateway in front of an instance may answer)."""
        with self._lock:
            self._rate_limit.extend([None if retry_after is None else int(retry_after)] * n)

    def drop_next(self, n: int = 1) -> None:
        """Close the connection of the next ``n`` requests without answering."""
        with self._lock:
            self._drop += n

    def fail_after_commit_next(self, n: int = 1) -> None:
        """Perform the next ``n`` table writes, then drop the connection unanswered."""
        with self._lock:
            self._commit_then_drop += n

    def trickle_next(self, n: int = 1, interval: float = 3.0) -> None:
        """Write the next ``n`` answers (status line, headers and body) one byte every
        ``interval`` seconds, then close the connection."""
        if interval < 0:
            raise ValueError("interval must be >= 0")
        with self._lock:
            self._trickle.extend([float(interval)] * n)

    def huge_next(self, n: int = 1, size: int = 10 * 1024 * 1024, chunked: bool = True) -> None:
        """Answer the next ``n`` queries of the table with 200 and a JSON list of records that
        match nothing asked for, ``size`` bytes in all, chunked or with a Content-Length."""
        if size < 64:
            raise ValueError("size must be at least 64 bytes")
        with self._lock:
            self._huge.extend([(int(size), bool(chunked))] * n)

    def reset(self) -> None:
        """Clear every pending fault and rate, the latency and commit delay; bring the server up."""
        with self._lock:
            self._latency = 0.0
            self._commit_delay = 0.0
            self.commit_jitter = 0.0
            self._down = False
            self._fail.clear()
            self._rate_limit.clear()
            self._drop = 0
            self._commit_then_drop = 0
            self._trickle.clear()
            self._huge.clear()
            self.html_status = 0
            self.html_title = DEFAULT_HTML_TITLE
            self.redirect_to = ""
            self.fail_rate = self.rate_limit_rate = self.drop_rate = 0.0

    def pending(self) -> Dict[str, int]:
        """How many one-shot faults are still queued, by kind."""
        with self._lock:
            return {
                "fail": len(self._fail),
                "rate_limit": len(self._rate_limit),
                "drop": self._drop,
                "fail_after_commit": self._commit_then_drop,
                "trickle": len(self._trickle),
                "huge": len(self._huge),
            }

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Apply knobs by name, as the admin API and the CLI hand them over.

        Settable: ``latency``, ``commit_delay``, ``commit_jitter``, ``down``, ``fail_rate``,
        ``fail_status``, ``rate_limit_rate``, ``retry_after``, ``drop_rate``,
        ``html_status`` (0 or a status), ``html_title``, ``redirect_to`` ("" or a URL);
        one-shot: ``fail_next`` (``{"n", "status"}``), ``rate_limit_next`` (``{"n",
        "retry_after"}``), ``trickle_next`` (``{"n", "interval"}``), ``huge_next``
        (``{"n", "size", "chunked"}``), ``drop_next`` and ``fail_after_commit_next`` (a
        count); ``reset`` (true) first clears everything. Unknown names raise ValueError.
        """
        unknown = sorted(set(settings) - _SETTABLE - _ONE_SHOT - {"reset"})
        if unknown:
            raise ValueError("unknown fault setting(s): " + ", ".join(unknown))
        if settings.get("reset"):
            self.reset()
        for name in sorted(_SETTABLE & set(settings)):
            value = settings[name]
            if name == "down":
                self.down = bool(value)
            elif name in ("fail_status", "retry_after"):
                setattr(self, name, int(value))
            elif name == "html_status":
                status = int(value)
                if status and not 100 <= status <= 599:
                    raise ValueError("html_status must be 0 (off) or an HTTP status")
                self.html_status = status
            elif name in ("html_title", "redirect_to"):
                setattr(self, name, str(value))
            elif name in ("latency", "commit_delay", "commit_jitter"):
                if float(value) < 0:
                    raise ValueError(f"{name} must be >= 0")
                setattr(self, name, float(value))
            else:
                rate = float(value)
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"{name} must be between 0 and 1")
                setattr(self, name, rate)
        if "fail_next" in settings:
            spec = dict(settings["fail_next"])
            self.fail_next(int(spec.get("n", 1)), int(spec.get("status", 503)))
        if "rate_limit_next" in settings:
            spec = dict(settings["rate_limit_next"])
            after = spec.get("retry_after", 30)
            self.rate_limit_next(int(spec.get("n", 1)), None if after is None else int(after))
        if "drop_next" in settings:
            self.drop_next(int(settings["drop_next"]))
        if "fail_after_commit_next" in settings:
            self.fail_after_commit_next(int(settings["fail_after_commit_next"]))
        if "trickle_next" in settings:
            spec = dict(settings["trickle_next"])
            self.trickle_next(int(spec.get("n", 1)), float(spec.get("interval", 3.0)))
        if "huge_next" in settings:
            spec = dict(settings["huge_next"])
            self.huge_next(
                int(spec.get("n", 1)),
                int(spec.get("size", 10 * 1024 * 1024)),
                bool(spec.get("chunked", True)),
            )

    def describe(self) -> Dict[str, Any]:
        """Every knob's current value and the one-shot faults still queued."""
        with self._lock:
            knobs: Dict[str, Any] = {
                "latency": self._latency,
                "commit_delay": self._commit_delay,
                "commit_jitter": self.commit_jitter,
                "down": self._down,
            }
        for name in sorted(_SETTABLE - set(knobs)):
            knobs[name] = getattr(self, name)
        knobs["pending"] = self.pending()
        return knobs

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def for_request(self, writes_record: bool, queries_table: bool = False) -> Fault:
        """The fault to inject into one request; ``writes_record`` is true for a
        POST, PATCH, PUT or DELETE on the table (``commit_then_drop`` only hits those),
        ``queries_table`` for a GET of its records (``huge`` only hits those)."""
        with self._lock:
            if self._down:
                return DROP
            if self._drop > 0:
                self._drop -= 1
                return DROP
            if self.redirect_to:
                return Fault("redirect", 302, self.redirect_to)
            if self.html_status:
                return Fault("html", self.html_status, self.html_title)
            if self._rate_limit:
                return Fault("rate_limit", self._rate_limit.popleft())
            if self._fail:
                return Fault("fail", self._fail.popleft())
            if self._trickle:
                return Fault("trickle", 0, self._trickle.popleft())
            if queries_table and self._huge:
                size, chunked = self._huge.popleft()
                return Fault("huge", size, chunked)
            if self._chance(self.drop_rate):
                return DROP
            if self._chance(self.rate_limit_rate):
                return Fault("rate_limit", int(self.retry_after))
            if self._chance(self.fail_rate):
                return Fault("fail", int(self.fail_status))
            if writes_record and self._commit_then_drop > 0:
                self._commit_then_drop -= 1
                return Fault("commit_then_drop")
            return OK
