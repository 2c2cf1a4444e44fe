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
from typing import Callable, List, Optional

from ..clock import SYSTEM_CLOCK, Clock
from ..credentials import CredentialsProvider
from ..errors import SecretError
from .client import AuthFailed, RateLimited, Rejected, TableClient, Unavailable
from .incidents import RESOLVED_STATES, Action
from .outbox import Incident, Outbox, QueuedAction

log = logging.getLogger(__name__)

# Refused credentials do not fix themselves in seconds: every retry after a 401
# waits at least this long. A streak of 401s earns one forced refetch of the
# secret; after that the cache's TTL decides when it is read again.
AUTH_RETRY_BASE = 60.0
# Longest wait a Retry-After header may impose (ServiceNow's limits are hourly).
MAX_RETRY_AFTER = 3600.0
# After a create failed in a way that may still have committed (a timeout, a
# reset after sending, a 5xx), wait this many client timeouts before looking.
AMBIGUOUS_CREATE_WAIT_TIMEOUTS = 3


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


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt at an action, for observers such as the simulation's console.

    ``kind`` is ``opened``, ``reused`` (found by correlation id), ``noted``,
    ``resolved``, ``skipped`` (nothing to do), ``retry`` or ``dead_lettered``.
    ``incident`` is the incident acted on when known; ``detail`` a short
    reason (the error text for ``retry`` and ``dead_lettered``), never a secret.
    """

    kind: str
    action: Action
    incident: Optional[Incident] = None
    detail: str = ""


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
        # Observers of every outcome, called on the delivering thread; one that
        # raises is logged and never stops delivery.
        self.on_outcome: List[Callable[[Outcome], None]] = []

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
            if exc.retry_after is None:
                delay = self._backoff(queued.attempts + 1)
                log.warning("ServiceNow rate limit hit (no Retry-After); waiting %.0fs", delay)
            else:
                # Bounded: "Retry-After: 0" must not turn into a loop of 429s.
                delay = min(max(exc.retry_after, self.retry_base), MAX_RETRY_AFTER)
                log.warning("ServiceNow rate limit hit; waiting %.0fs as Retry-After asks", delay)
            self._reschedule(queued, delay, str(exc))
            return False
        except Unavailable as exc:
            delay = self._backoff(queued.attempts + 1)
            if exc.ambiguous:
                # The create may still commit on ServiceNow's side; looking again
                # before it has would find nothing and POST a duplicate.
                delay = max(delay, AMBIGUOUS_CREATE_WAIT_TIMEOUTS * self.client.timeout)
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
            self._emit("dead_lettered", queued.action, detail=str(exc))
            return True
        except Exception as exc:
            # A bug or a local fault (disk full, say): back off like an outage
            # rather than spin. Only the type is logged: texts of such errors
            # can quote the data that caused them.
            delay = self._backoff(queued.attempts + 1, base=AUTH_RETRY_BASE)
            log.error(
                "unexpected %s while delivering %s; next try in %.0fs",
                type(exc).__name__,
                queued.action.key,
                delay,
            )
            self._reschedule(queued, delay, type(exc).__name__)
            return False
        self._auth_failures_in_row = 0
        try:
            self.outbox.delivered(queued, self.clock.time(), incident)
        except Exception as exc:
            log.error(
                "could not record the delivery of %s (%s); it will be checked again",
                queued.action.key,
                type(exc).__name__,
            )
            self.paused_until = self.clock.time() + self._backoff(1, base=AUTH_RETRY_BASE)
            return False
        return True

    def _execute(self, action: Action) -> Optional[Incident]:
        if action.kind == "open":
            return self._open(action)
        known = self._find(action.correlation_id)
        if known is None:
            if not action.open_fields:
                self.stats.skipped += 1
                log.warning(
                    "no incident with correlation id %s; %s dropped",
                    action.correlation_id,
                    action.kind,
                )
                self._emit("skipped", action, detail="no incident with this correlation id")
                return None
            # The breach never arrived (lost before it was queued): record the
            # episode anyway, then apply this update to it.
            log.warning(
                "no incident for %s yet; opening it before the %s",
                action.correlation_id,
                action.kind,
            )
            known = self._open(
                Action("open", action.key, action.correlation_id, action.open_fields)
            )
        if known.state in RESOLVED_STATES and action.kind == "resolve":
            self.stats.skipped += 1
            log.info("incident %s is already resolved", known.number)
            self._emit("skipped", action, known, "already resolved")
            return known
        record = self.client.update(known.sys_id, action.fields)
        state = str(record.get("state", known.state))
        if action.kind == "resolve":
            self.stats.resolved += 1
            log.info("resolved incident %s (%s)", known.number, action.correlation_id)
        else:
            self.stats.noted += 1
            log.info("added a work note to incident %s", known.number)
        done = Incident(action.correlation_id, known.sys_id, known.number, state)
        self._emit("resolved" if action.kind == "resolve" else "noted", action, done)
        return done

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
        incident = Incident(
            action.correlation_id,
            str(record["sys_id"]),
            str(record.get("number", "")),
            str(record.get("state", "1")),
        )
        self._emit("reused" if existing is not None else "opened", action, incident)
        return incident

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
        )

    # -- timing ----------------------------------------------------------------------
    def _backoff(self, attempt: int, base: Optional[float] = None) -> float:
        """Exponential backoff with equal jitter: half fixed, half random.

        With ``base`` given, the delay is also at least ``base`` (a floor for
        failures that never clear in seconds, such as refused credentials).
        """
        floor = 0.0 if base is None else base
        start = max(floor, self.retry_base)
        ceiling = max(floor, min(self.retry_max, start * (2 ** min(max(attempt, 1) - 1, 30))))
        return max(floor, ceiling / 2 + self.rng.uniform(0, ceiling / 2))

    def _reschedule(self, queued: QueuedAction, delay: float, error: str) -> None:
        self.stats.retries += 1
        when = self.clock.time() + delay
        self.outbox.retry_later(queued, when, error)
        self.paused_until = max(self.paused_until, when)
        self._emit("retry", queued.action, detail=error)

    def _emit(
        self, kind: str, action: Action, incident: Optional[Incident] = None, detail: str = ""
    ) -> None:
        if not self.on_outcome:
            return
        outcome = Outcome(kind, action, incident, detail)
        for callback in list(self.on_outcome):
            try:
                callback(outcome)
            except Exception:
                log.exception("an outcome observer failed on %s", action.key)
