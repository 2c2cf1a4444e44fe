"""Who may call the stand-in: HTTP Basic users, OAuth clients and the tokens issued to them.

``POST /oauth_token.do`` serves the password, client-credentials and
refresh-token grants; access tokens expire after ``token_ttl`` seconds of the
stand-in's clock. Users can be changed while serving (a password rotation).
Credentials are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import parse_qs

from .responses import Response

DEFAULT_TOKEN_TTL = 1799

Counter = Callable[..., None]  # count(name, n=1)


class Authenticator:
    """Users (name → password), OAuth clients (id → secret) and issued tokens."""

    def __init__(
        self,
        users: Dict[str, str],
        oauth_clients: Dict[str, str],
        token_ttl: float,
        clock: Callable[[], float],
        count: Counter,
    ) -> None:
        self.token_ttl = token_ttl
        self._clock = clock
        self._count = count
        self._lock = threading.Lock()
        self._users = dict(users)
        self._oauth_clients = dict(oauth_clients)
        self._access_tokens: Dict[str, Tuple[str, float]] = {}
        self._refresh_tokens: Dict[str, Tuple[str, str]] = {}

    def set_users(self, users: Dict[str, str]) -> None:
        """Replace the users (e.g. rotate a password). Issued tokens stay valid."""
        with self._lock:
            self._users = dict(users)

    def expire_tokens(self) -> None:
        """Expire every issued access token now (refresh tokens stay valid)."""
        with self._lock:
            self._access_tokens.clear()

    # -- checking a request ------------------------------------------------------------
    def authenticate(self, headers: Any) -> Optional[str]:
        """The authenticated principal, or None. Never logs the credentials."""
        scheme, _, credentials = (headers.get("Authorization") or "").strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
            user, sep, password = decoded.partition(":")
            if sep and self._user_ok(user, password):
                return user
            return None
        if scheme == "bearer" and credentials:
            with self._lock:
                entry = self._access_tokens.get(credentials)
                if entry is None:
                    return None
                principal, expires = entry
                if self._clock() >= expires:
                    del self._access_tokens[credentials]
                    return None
            return principal
        return None

    def _client_ok(self, client_id: str, client_secret: str) -> bool:
        with self._lock:
            expected = self._oauth_clients.get(client_id)
        return expected is not None and secrets.compare_digest(
            expected.encode("utf-8"), client_secret.encode("utf-8")
        )

    def _user_ok(self, user: str, password: str) -> bool:
        with self._lock:
            expected = self._users.get(user)
        return expected is not None and secrets.compare_digest(
            expected.encode("utf-8"), password.encode("utf-8")
        )

    # -- the token endpoint ------------------------------------------------------------
    def token_request(self, headers: Any, body: bytes) -> Response:
        """Answer ``POST /oauth_token.do``."""
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        client_id = form.get("client_id", "")
        client_secret = form.get("client_secret", "")
        scheme, _, credentials = (headers.get("Authorization") or "").partition(" ")
        if not client_id and scheme.lower() == "basic":  # client_secret_basic
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
                client_id, _, client_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                pass
        grant = form.get("grant_type", "")

        def denied(description: str) -> Response:
            self._count("oauth_failures")
            return 401, {"error": "access_denied", "error_description": description}, {}

        if grant not in ("password", "client_credentials", "refresh_token"):
            self._count("oauth_failures")
            return (
                400,
                {"error": "unsupported_grant_type", "error_description": "Unsupported grant"},
                {},
            )
        if not self._client_ok(client_id, client_secret):
            return denied("Invalid client credentials")
        if grant == "password":
            principal = form.get("username", "")
            if not self._user_ok(principal, form.get("password", "")):
                return denied("Invalid user credentials")
            refresh = secrets.token_urlsafe(48)
        elif grant == "client_credentials":
            principal = client_id
            refresh = secrets.token_urlsafe(48)
        else:
            refresh = form.get("refresh_token", "")
            with self._lock:
                entry = self._refresh_tokens.get(refresh)
            if entry is None or entry[1] != client_id:
                return denied("Invalid refresh token")
            principal = entry[0]
        access = secrets.token_urlsafe(64)
        with self._lock:
            self._access_tokens[access] = (principal, self._clock() + self.token_ttl)
            self._refresh_tokens[refresh] = (principal, client_id)
        self._count("tokens_issued")
        return (
            200,
            {
                "access_token": access,
                "refresh_token": refresh,
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": int(self.token_ttl),
            },
            {"Cache-Control": "no-store"},
        )
