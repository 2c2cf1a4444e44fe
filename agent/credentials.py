"""ServiceNow credentials from the Greengrass secret resource, cached.

In the manner of the Powertools parameters utility: a small provider with a
cache and ``max_age``, and a ``force_fetch`` for the refetch a 401 earns (at
most once a minute: see ``agent.servicenow.auth_recovery``).
The secret's JSON is the value as stored in Secrets Manager:

* basic auth: ``{"username": ..., "password": ...}``
* OAuth: ``{"client_id": ..., "client_secret": ...}`` (client-credentials
  grant), plus ``username``/``password`` for the password grant. An optional
  ``"auth": "basic" | "oauth"`` picks explicitly when both are present.

Values never appear in ``repr``, logs or exception texts.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Callable, Optional, Tuple

from .clock import SYSTEM_CLOCK, Clock
from .errors import SecretError

log = logging.getLogger(__name__)


class Credentials:
    """Parsed credentials. ``repr`` shows the kind and user, never a secret."""

    __slots__ = ("kind", "username", "password", "client_id", "client_secret")

    def __init__(
        self,
        kind: str,
        username: Optional[str] = None,
        password: Optional[str] = None,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
    ) -> None:
        self.kind = kind
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret

    def __repr__(self) -> str:
        return f"Credentials(kind={self.kind!r}, username={self.username!r}, secrets=***)"

    def same_as(self, other: Optional[Credentials]) -> bool:
        """Whether ``other`` holds exactly these values (e.g. a refetch changed nothing)."""
        return other is not None and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    def secret_values(self) -> Tuple[str, ...]:
        """Every secret string here, for scrubbing; never log the result."""
        return tuple(v for v in (self.password, self.client_secret) if v)

    @classmethod
    def from_secret_string(cls, text: str, secret_id: str = "the secret") -> Credentials:
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            raise SecretError(f"{secret_id} is not a JSON object")
        if not isinstance(data, dict):
            raise SecretError(f"{secret_id} is not a JSON object")

        def field(name: str) -> Optional[str]:
            value = data.get(name)
            if value is None:
                return None
            if not isinstance(value, str) or not value:
                raise SecretError(f"{secret_id}: field {name!r} must be a non-empty string")
            return value

        kind = data.get("auth")
        username, password = field("username"), field("password")
        client_id, client_secret = field("client_id"), field("client_secret")
        if kind is None:
            kind = "oauth" if client_id else "basic"
        if kind == "basic":
            if not (username and password):
                raise SecretError(f"{secret_id} needs 'username' and 'password' for basic auth")
        elif kind == "oauth":
            if not (client_id and client_secret):
                raise SecretError(f"{secret_id} needs 'client_id' and 'client_secret' for OAuth")
            if bool(username) != bool(password):
                raise SecretError(
                    f"{secret_id}: the OAuth password grant needs both 'username' and 'password'"
                )
        else:
            raise SecretError(f"{secret_id}: 'auth' must be 'basic' or 'oauth'")
        return cls(kind, username, password, client_id, client_secret)


class CredentialsProvider:
    """Fetches the secret through the Greengrass shim and caches it for ``ttl`` seconds.

    ``fetch_fresh``, when given, is used for a forced fetch instead of ``fetch``:
    it bypasses caches below this one (Greengrass V2's SecretManager keeps its
    own copy; ``refresh=True`` makes the nucleus fetch the secret from the cloud).
    """

    def __init__(
        self,
        fetch: Callable[[str], str],
        secret_id: str,
        ttl: float = 3600.0,
        clock: Optional[Clock] = None,
        fetch_fresh: Optional[Callable[[str], str]] = None,
    ) -> None:
        self._fetch = fetch
        self._fetch_fresh = fetch_fresh or fetch
        self.secret_id = secret_id
        self.ttl = ttl
        self.clock = clock or SYSTEM_CLOCK
        self._cached: Optional[Credentials] = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()
        self.fetches = 0

    def get(self, force_fetch: bool = False) -> Credentials:
        """The credentials, from the cache unless expired or ``force_fetch``."""
        with self._lock:
            now = self.clock.monotonic()
            if self._cached is not None and not force_fetch and now - self._fetched_at < self.ttl:
                return self._cached
            self.fetches += 1
            fetch = self._fetch_fresh if force_fetch else self._fetch
            raw = fetch(self.secret_id)  # raises SecretError, which never holds the value
            creds = Credentials.from_secret_string(raw, self.secret_id)
            # Quiet when nothing changed: while logins are refused this runs every minute.
            level = logging.DEBUG if creds.same_as(self._cached) else logging.INFO
            log.log(
                level,
                "fetched ServiceNow credentials from %s (%s auth)",
                self.secret_id,
                creds.kind,
            )
            self._cached, self._fetched_at = creds, now
            return creds

    def cached(self) -> Optional[Credentials]:
        """The credentials in the cache (the ones requests use), without fetching."""
        with self._lock:
            return self._cached
