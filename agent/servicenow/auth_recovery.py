"""What delivery does while ServiceNow refuses the credentials (HTTP 401).

After a password rotation the secret usually changes too, sooner or later: the
agent must notice without a restart, and must never turn a wrong password into
a storm of failed logins (an instance may lock the integration user).

* The secret is re-read, bypassing every cache (the provider's, and on
  Greengrass V2 the nucleus' with ``refresh=True``), at most once per
  ``REFETCH_INTERVAL`` (a minute) while logins are refused.
* A login is retried at once only with credentials that differ from the
  refused ones, or once after an OAuth access token was refused (a new token
  may do with the same credentials).
* Credentials that were refused and have not changed since are tried again at
  most every ``PROBE_INTERVAL`` (ten minutes), in case the fix was made on
  ServiceNow's side (the user unlocked, the old password set back).

So while the secret is wrong there is at most one failed login per minute (one
more only at the moment the secret changes to another wrong value), usually
one per ten minutes; once the secret is fixed the next re-read, within a
minute, finds it and delivery resumes.
"""

from __future__ import annotations

import logging
from typing import Optional

from ..clock import SYSTEM_CLOCK, Clock
from ..credentials import Credentials, CredentialsProvider
from .client import AuthFailed

log = logging.getLogger(__name__)

REFETCH_INTERVAL = 60.0
PROBE_INTERVAL = 600.0


class AuthRecovery:
    """Remembers refused credentials and decides when to re-read the secret and log in."""

    def __init__(self, credentials: CredentialsProvider, clock: Optional[Clock] = None) -> None:
        self.credentials = credentials
        self.clock = clock or SYSTEM_CLOCK
        self._refused: Optional[Credentials] = None
        self._refused_at = 0.0  # monotonic time of the last refused login
        self._refetched_at: Optional[float] = None  # monotonic time of the last forced fetch

    @property
    def refused(self) -> bool:
        """Whether the credentials in use were refused and have not worked since."""
        return self._refused is not None

    def wait_before_request(self) -> float:
        """Seconds to wait before the next request may go out (0: now).

        While credentials are refused this re-reads the secret when a re-read is
        due; a changed secret may be tried at once. Raises SecretError if the
        secret cannot be read.
        """
        if self._refused is None:
            return 0.0
        now = self.clock.monotonic()
        if self._refetch_due(now):
            fresh = self._refetch(now)
            if not fresh.same_as(self._refused):
                log.info("the secret %s changed; trying it", self.credentials.secret_id)
                self._refused = None
                return 0.0
        next_probe = self._refused_at + PROBE_INTERVAL
        if now >= next_probe:
            return 0.0  # unchanged, but perhaps fixed on ServiceNow's side
        next_refetch = (self._refetched_at or now) + REFETCH_INTERVAL
        return max(0.0, min(next_probe, next_refetch) - now)

    def on_refused(self, exc: AuthFailed) -> bool:
        """A request got 401. Return whether to retry it at once (with new credentials or
        a new token); the caller drops the cached token before it does."""
        now = self.clock.monotonic()
        used = self.credentials.cached()
        first = self._refused is None
        self._refused, self._refused_at = used, now
        changed = False
        if self._refetch_due(now):
            changed = not self._refetch(now).same_as(used)
        if changed:
            log.warning(
                "ServiceNow refused the credentials; the secret %s has changed, trying it",
                self.credentials.secret_id,
            )
            return True
        return exc.token_rejected and first

    def on_success(self) -> None:
        """A request was accepted: the credentials in use work."""
        if self._refused is not None:
            log.info("ServiceNow accepts the credentials from %s again", self.credentials.secret_id)
        self._refused = None

    def _refetch_due(self, now: float) -> bool:
        return self._refetched_at is None or now - self._refetched_at >= REFETCH_INTERVAL

    def _refetch(self, now: float) -> Credentials:
        self._refetched_at = now  # before fetching: a failing read is not retried sooner
        return self.credentials.get(force_fetch=True)
