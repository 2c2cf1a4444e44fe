"""Delivery of queued actions to ServiceNow: retries, backoff, dead letters, one refetch on 401.

``Deliverer.pump()`` delivers every due action once and returns; the anomaly
function's worker thread calls it whenever something is queued or a retry
comes due, and the simulation calls it in virtual time. All timers use the
injected clock.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Optional

from ..clock import SYSTEM_CLOCK, Clock
from ..credentials import CredentialsProvider
from ..errors import SecretError
from .client import AuthFailed, RateLimited, Rejected, TableClient, Unavailable
from .incidents import RESOLVED_STATES, Action
from .outbox import Incident, Outbox, QueuedAction

log = logging.getLogger(__name__)

# Refused credentials do not fix themselves in seconds: the first retry after a
# 401 streak waits at least this long. A streak earns one forced refetch of the
# secret; after that the cache's TTL decides when it is read again.
AUTH_RETRY_BASE = 60.0


@dataclass
class DeliveryStats:
    opened: int = 0
    reused: int = 0  # "open" found the incident already there (a retried create)
    noted: int = 0
    resolved: int = 0
    skipped: int = 0  # nothing to do, e.g. the incident was already resolved by hand
    retries: int = 0
    dead_lettered: int = 0
    auth_failures: int = 0


class Deliverer:
    def __init__(
        self,
        outbox: Outbox,
        client: TableClient,
        credentials: CredentialsProvider,
        clock: Optional[Clock] = None,
        retry_base: float = 2.0,
        retry_max: float = 300.0,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.credentials = credentials
        self.clock = clock or SYSTEM_CLOCK
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.rng = rng or random.Random()
        self.stats = DeliveryStats()
        self._auth_failures_in_row = 0
        self.paused_until = 0.0

    def next_attempt_at(self) -> Optional[float]:
        """When delivery should next be tried; ``None`` when the outbox is empty."""
        next_at = self.outbox.next_attempt_at()
        if next_at is None:
            return None
        return max(next_at, self.paused_until)

    def pump(self, limit: int = 1000) -> int:
        """Deliver due actions until none is due or one fails; return how many were finished."""
        finished = 0
        if self.clock.time() < self.paused_until:
            return 0  # ServiceNow asked us to wait, or is down: new actions wait too
        while finished < limit:
            batch = self.outbox.due(self.clock.time(), limit=min(50, limit - finished))
            if not batch:
                break
            for queued in batch:
                if not self._deliver(queued):
                    return finished  # ServiceNow is unhappy: stop, do not hammer it
                finished += 1
        return finished

    # -- one action -----------------------------------------------------------------
    def _deliver(self, queued: QueuedAction) -> bool:
        """Try one action; ``False`` means stop this round (the action was rescheduled)."""
        try:
            try:
                incident = self._execute(queued.action)
            except AuthFailed:
                if self._auth_failures_in_row:
                    raise  # this streak already had its refetch
                # Perhaps the password was rotated: one forced refetch, one retry.
                log.warning(
                    "ServiceNow refused the credentials; fetching %s again once",
                    self.credentials.secret_id,
                )
                self.credentials.get(force_fetch=True)
                self.client.forget_auth()
                incident = self._execute(queued.action)
        except AuthFailed as exc:
            self.stats.auth_failures += 1
            self._auth_failures_in_row += 1
            delay = self._backoff(self._auth_failures_in_row, base=AUTH_RETRY_BASE)
            log.error(
                "ServiceNow refused the credentials from secret %s (%s); %s kept in the outbox,"
                " next try in %.0fs. Fix the secret or the integration user.",
                self.credentials.secret_id,
                exc.status,
                queued.action.key,
                delay,
            )
            self._reschedule(queued, delay, str(exc))
            return False
        except SecretError as exc:
            delay = self._backoff(queued.attempts + 1)
            log.error(
                "cannot get ServiceNow credentials: %s; %s kept, next try in %.0fs",
                exc,
                queued.action.key,
                delay,
            )
            self._reschedule(queued, delay, str(exc))
            return False
        except RateLimited as exc:
            delay = (
                exc.retry_after
                if exc.retry_after is not None
                else self._backoff(queued.attempts + 1)
            )
            log.warning("ServiceNow rate limit hit; waiting %.0fs as Retry-After asks", delay)
            self._reschedule(queued, delay, str(exc))
            return False
        except Unavailable as exc:
            delay = self._backoff(queued.attempts + 1)
            log.warning(
                "%s; %s kept in the outbox, try %d again in %.1fs",
                exc,
                queued.action.key,
                queued.attempts + 1,
                delay,
            )
            self._reschedule(queued, delay, str(exc))
            return False
        except Rejected as exc:
            self.stats.dead_lettered += 1
            log.error(
                "ServiceNow rejected %s for good (%s); moved to the dead-letter table",
                queued.action.key,
                exc,
            )
            self.outbox.dead_letter(queued, self.clock.time(), str(exc), exc.status)
            return True
        self._auth_failures_in_row = 0
        self.outbox.delivered(queued, self.clock.time(), incident)
        return True

    def _execute(self, action: Action) -> Optional[Incident]:
        if action.kind == "open":
            return self._open(action)
        known = self._find(action.correlation_id)
        if known is None:
            self.stats.skipped += 1
            log.warning(
                "no incident with correlation id %s; %s dropped", action.correlation_id, action.kind
            )
            return None
        if known.state in RESOLVED_STATES and action.kind == "resolve":
            self.stats.skipped += 1
            log.info("incident %s is already resolved", known.number)
            return known
        record = self.client.update(known.sys_id, action.fields)
        now = self.clock.time()
        state = str(record.get("state", known.state))
        if action.kind == "resolve":
            self.stats.resolved += 1
            log.info("resolved incident %s (%s)", known.number, action.correlation_id)
        else:
            self.stats.noted += 1
            log.info("added a work note to incident %s", known.number)
        return Incident(action.correlation_id, known.sys_id, known.number, state, now)

    def _open(self, action: Action) -> Incident:
        # Query first, always: after a crash between a POST and its confirmation
        # the incident exists, and creating it again would be a duplicate.
        existing = self.client.find_by_correlation(action.correlation_id)
        if existing is not None:
            self.stats.reused += 1
            log.info(
                "incident %s already open for %s", existing.get("number"), action.correlation_id
            )
            record = existing
        else:
            record = self.client.create(action.fields)
            self.stats.opened += 1
            log.info(
                "opened incident %s: %s",
                record.get("number"),
                action.fields.get("short_description", ""),
            )
        return Incident(
            action.correlation_id,
            str(record["sys_id"]),
            str(record.get("number", "")),
            str(record.get("state", "1")),
            0.0,
        )

    def _find(self, correlation_id: str) -> Optional[Incident]:
        known = self.outbox.incident(correlation_id)
        if known is not None:
            return known
        record = self.client.find_by_correlation(correlation_id)
        if record is None:
            return None
        return Incident(
            correlation_id,
            str(record["sys_id"]),
            str(record.get("number", "")),
            str(record.get("state", "1")),
            0.0,
        )

    # -- timing ----------------------------------------------------------------------
    def _backoff(self, attempt: int, base: Optional[float] = None) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        base = self.retry_base if base is None else max(base, self.retry_base)
        ceiling = min(self.retry_max, base * (2 ** min(max(attempt, 1) - 1, 30)))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def _reschedule(self, queued: QueuedAction, delay: float, error: str) -> None:
        self.stats.retries += 1
        when = self.clock.time() + delay
        self.outbox.retry_later(queued, when, error)
        self.paused_until = max(self.paused_until, when)
