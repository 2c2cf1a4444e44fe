"""Delivery of queued actions to ServiceNow: retries, backoff, pacing, dead letters.

``Deliverer.pump()`` delivers every due action once and returns; the anomaly
function's worker thread calls it whenever something is queued or a retry
comes due, and the simulation calls it in virtual time. All timers use the
injected clock. What one action does is ``actions.ActionRunner``'s business;
here is what a failure means for the queue:

* ServiceNow unreachable, timing out or answering 5xx: everything waits, with
  exponential backoff and jitter from ``retryBaseSeconds``; once that reaches
  half a minute, one request (the oldest action) probes every 30-60 s,
  whatever ``retryMaxSeconds`` says and however many actions wait, so a
  backlog starts draining within a minute of ServiceNow answering again.
* 429: everything waits for ``Retry-After`` (at least ``retryBaseSeconds``, at
  most an hour).
* 401: see ``auth_recovery``; everything waits a minute between tries.
* Other 4xx: the action goes to the dead-letter table; the rest carry on.
* A local fault (the outbox cannot be written: a full disk, an I/O error):
  everything waits, until the disk takes writes again or a back-off ends.

:class:`Pause` is the one owner of that waiting; the anomaly service reports
to it (through :meth:`Deliverer.pause_for_local_fault` and
:meth:`Deliverer.local_fault_cleared`) and keeps no part of it.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
from typing import Callable, Dict, List, Optional

from ..clock import SYSTEM_CLOCK, Clock, steady
from ..credentials import CredentialsProvider
from ..errors import SecretError
from .actions import ActionRunner, DeliveryStats, NotYet, Outcome
from .auth_recovery import AuthRecovery
from .client import AuthFailed, RateLimited, Rejected, TableClient, Unavailable
from .cmdb import CiLink
from .incidents import Action
from .outbox import Incident, Outbox, QueuedAction
from .pacing import BudgetSpent

__all__ = ["AfterAttempt", "Deliverer", "DeliveryStats", "Outcome", "Pause"]

log = logging.getLogger(__name__)

# Refused credentials do not fix themselves in seconds: a retry after a 401
# waits at least this long (plus up to AUTH_RETRY_JITTER).
AUTH_RETRY_SECONDS = 60.0
AUTH_RETRY_JITTER = 10.0
# Longest wait a Retry-After header may impose (ServiceNow's limits are hourly).
MAX_RETRY_AFTER = 3600.0
# While ServiceNow is down the probe interval grows to [ceiling/2, ceiling]:
# never more than one request per 30 s, never more than a minute of delay.
OUTAGE_BACKOFF_CEILING = 60.0
# Floor of the backoff after an unexpected (local) error.
UNEXPECTED_ERROR_BASE = 60.0


class AfterAttempt(enum.Enum):
    """What one delivery attempt means for the rest of the queue."""

    FINISHED = "finished"  # the action left the queue: delivered or dead-lettered
    WAITS = "waits"  # this action waits; the others may go
    ALL_WAIT = "all wait"  # ServiceNow (or the disk) is unhappy: stop, do not hammer it


class Pause:
    """When delivery may start again, and why.

    What ServiceNow asked for (an outage's back-off, ``Retry-After``, refused
    credentials, a secret that cannot be read) and a local fault (the outbox
    cannot be written) are kept apart: the end of a local fault resumes delivery
    at once, and a wait ServiceNow asked for before or during it still stands.
    The actions a local fault put off (by outbox id) are due again at its end,
    not after their back-off.
    """

    def __init__(self) -> None:
        self.servicenow_until = 0.0
        self.local_until: Optional[float] = None  # None: no local fault
        self.put_off: Dict[int, str] = {}

    @property
    def until(self) -> float:
        """No delivery starts before this time."""
        local = 0.0 if self.local_until is None else self.local_until
        return max(self.servicenow_until, local)

    @property
    def local_fault(self) -> bool:
        return self.local_until is not None

    def servicenow_asks(self, until: float) -> None:
        self.servicenow_until = max(self.servicenow_until, until)

    def local(self, until: float) -> None:
        """A local fault: wait until ``until`` at most (or until :meth:`local_cleared`)."""
        self.local_until = until if self.local_until is None else max(self.local_until, until)

    def local_cleared(self) -> List[int]:
        """The local fault is over; return the ids of the actions it put off."""
        self.local_until = None
        ids = list(self.put_off)
        self.put_off.clear()
        return ids


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
        ci: Optional[CiLink] = None,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.credentials = credentials
        # Never steps while running: a wall clock moved back by NTP must not add its
        # step to a back-off or a Retry-After (see rebase_after_clock_step for restarts).
        self.clock = steady(clock or SYSTEM_CLOCK)
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.rng = rng or random.Random()
        self.stats = DeliveryStats()
        self.auth = AuthRecovery(credentials, self.clock)
        self.runner = ActionRunner(
            outbox, client, self.clock, self.stats, self._user, self._emit, ci
        )
        self.pause = Pause()
        self._outage_streak = 0  # failed tries in a row while ServiceNow is unavailable
        # The outbox's times were written by an earlier process, maybe before the wall
        # clock stepped back: checked once, at the first pump (this clock never steps).
        self._rebased = False
        self._stop = threading.Event()
        # Observers of every outcome, called on the delivering thread; one that
        # raises is logged and never stops delivery.
        self.on_outcome: List[Callable[[Outcome], None]] = []

    def _rebase(self, now: float) -> None:
        self._rebased = True
        moved = self.outbox.rebase_after_clock_step(now)
        if moved:
            log.warning(
                "%d queued actions were scheduled at a later time than the clock says now (it"
                " was stepped back): each waits its own back-off from now, not the step too",
                moved,
            )

    @property
    def paused_until(self) -> float:
        """No delivery starts before this time (see :class:`Pause`)."""
        return self.pause.until

    def next_attempt_at(self) -> Optional[float]:
        """When delivery should next be tried; ``None`` when the outbox is empty."""
        next_at = self.outbox.next_attempt_at()
        if next_at is None:
            return None
        return max(next_at, self.pause.until)

    def stop(self) -> None:
        """Make a running :meth:`pump` return after the action it is on."""
        self._stop.set()

    def pump(self, limit: int = 1000) -> int:
        """Deliver due actions until none is due or one fails; return how many were finished."""
        finished = 0
        now = self.clock.time()
        if not self._rebased:
            self._rebase(now)
        if now < self.pause.until:
            return 0  # ServiceNow asked us to wait, or is down: new actions wait too
        while finished < limit and not self._stop.is_set():
            batch = self.outbox.due(self.clock.time(), limit=min(50, limit - finished))
            if not batch:
                break
            for queued in batch:
                if self._stop.is_set():
                    break
                after = self._deliver(queued)
                if after is AfterAttempt.ALL_WAIT:
                    return finished
                if after is AfterAttempt.FINISHED:
                    finished += 1
        return finished

    # -- one action -----------------------------------------------------------------
    def _deliver(self, queued: QueuedAction) -> AfterAttempt:
        """Try one action; say what that means for the others."""
        key = queued.action.key
        try:
            wait = self.auth.wait_before_request()
            if wait > 0:
                # Refused credentials, unchanged: no login until the secret changes
                # or the next probe. Every action needs them, so all wait.
                self._reschedule(queued, wait, "credentials refused; waiting for the secret")
                return AfterAttempt.ALL_WAIT
            incident = self._run(queued)
        except NotYet as exc:
            self.outbox.retry_later(queued, exc.when, str(exc), self.clock.time())
            log.info("%s waits until %.0f: %s", key, exc.when, exc)
            return AfterAttempt.WAITS
        except AuthFailed as exc:
            self.stats.auth_failures += 1
            delay = AUTH_RETRY_SECONDS + self.rng.uniform(0, AUTH_RETRY_JITTER)
            log.error(
                "ServiceNow refused the credentials from secret %s (%s); %s kept in the outbox,"
                " next try in %.0fs. Fix the secret or the integration user.",
                self.credentials.secret_id,
                exc.status,
                key,
                delay,
            )
            self._reschedule(queued, delay, str(exc))
            return AfterAttempt.ALL_WAIT
        except SecretError as exc:
            delay = self._backoff(queued.attempts + 1)
            log.error(
                "cannot get ServiceNow credentials: %s; %s kept, next try in %.0fs", exc, key, delay
            )
            self._reschedule(queued, delay, str(exc))
            return AfterAttempt.ALL_WAIT
        except BudgetSpent as exc:
            # Nothing was sent: the rest of the hour's budget is spread until its reset.
            log.info("%s", exc)
            self._reschedule(queued, exc.delay, str(exc))
            return AfterAttempt.ALL_WAIT
        except RateLimited as exc:
            if exc.retry_after is None:
                delay = self._backoff(queued.attempts + 1)
                log.warning(
                    "ServiceNow rate limit hit (no Retry-After); waiting %.0fs",
                    delay,
                    extra={"observed": bool(self.on_outcome)},
                )
            else:
                # Bounded: "Retry-After: 0" must not turn into a loop of 429s.
                delay = min(max(exc.retry_after, self.retry_base), MAX_RETRY_AFTER)
                log.warning(
                    "ServiceNow rate limit hit; waiting %.0fs as Retry-After asks",
                    delay,
                    extra={"observed": bool(self.on_outcome)},
                )
            self._reschedule(queued, delay, str(exc))
            return AfterAttempt.ALL_WAIT
        except Unavailable as exc:
            self._outage_streak += 1
            delay = self._backoff(self._outage_streak, ceiling=OUTAGE_BACKOFF_CEILING)
            if exc.ambiguous:
                # The create may still commit on ServiceNow's side; looking again
                # before it has would find nothing and POST a duplicate.
                delay = max(delay, self.runner.ambiguity_window)
            log.warning(
                "%s; %s kept in the outbox, try %d again in %.1fs",
                exc,
                key,
                queued.attempts + 1,
                delay,
                extra={"observed": bool(self.on_outcome)},  # a console sums retries up
            )
            self._reschedule(queued, delay, str(exc))
            return AfterAttempt.ALL_WAIT
        except Rejected as exc:
            self._outage_streak = 0
            self.stats.dead_lettered += 1
            log.error(
                "ServiceNow rejected %s for good (%s); moved to the dead-letter table", key, exc
            )
            self.outbox.dead_letter(queued, self.clock.time(), str(exc), exc.status)
            self._emit("dead_lettered", queued.action, None, str(exc))
            return AfterAttempt.FINISHED
        except Exception as exc:
            # A bug or a local fault (disk full, say): back off like an outage
            # rather than spin. Only the type is logged: texts of such errors
            # can quote the data that caused them.
            delay = self._backoff(queued.attempts + 1, floor=UNEXPECTED_ERROR_BASE)
            log.error(
                "unexpected %s while delivering %s; next try in %.0fs",
                type(exc).__name__,
                key,
                delay,
            )
            self.pause_for_local_fault(delay)
            self.pause.put_off[queued.id] = key
            try:
                self._retry_later(queued, delay, type(exc).__name__)
            except Exception:
                pass  # the disk takes not even this: the pause in memory holds it back
            return AfterAttempt.ALL_WAIT
        self._outage_streak = 0
        try:
            self.outbox.delivered(queued, self.clock.time(), incident)
        except Exception as exc:
            log.error(
                "could not record the delivery of %s (%s); it will be checked again",
                key,
                type(exc).__name__,
            )
            self.pause_for_local_fault(self._backoff(1, floor=UNEXPECTED_ERROR_BASE))
            return AfterAttempt.ALL_WAIT
        return AfterAttempt.FINISHED

    @property
    def waiting_on_local_fault(self) -> bool:
        """Whether delivery waits out the back-off of a local (not ServiceNow) error."""
        return self.pause.local_fault

    def pause_for_local_fault(self, delay: float) -> None:
        """A local error (a full disk, say): pause all delivery for ``delay`` s, or until
        :meth:`local_fault_cleared`."""
        self.pause.local(self.clock.time() + delay)

    def local_fault_cleared(self) -> None:
        """The disk takes writes again: what waited on a local error is due now; a wait
        ServiceNow asked for stands."""
        ids = self.pause.local_cleared()
        if ids:
            self.outbox.make_due(ids, self.clock.time())

    def _run(self, queued: QueuedAction) -> Optional[Incident]:
        """Run the action; after a 401, once more at once if the recovery policy says so."""
        try:
            incident = self.runner.run(queued)
        except AuthFailed as exc:
            if not self.auth.on_refused(exc):
                raise
            self.client.forget_auth()
            try:
                incident = self.runner.run(queued)
            except AuthFailed as again:
                self.auth.on_refused(again)  # these are refused too; no third try now
                raise
        self.auth.on_success()
        return incident

    def _user(self) -> Optional[str]:
        cached = self.credentials.cached()
        return cached.username if cached is not None else None

    # -- timing ----------------------------------------------------------------------
    def _backoff(
        self, attempt: int, floor: Optional[float] = None, ceiling: Optional[float] = None
    ) -> float:
        """Exponential backoff with equal jitter: half fixed, half random.

        The delay doubles from ``retry_base`` up to ``retry_max`` (or ``ceiling``
        if lower), and is at least ``floor`` (for failures that never clear in
        seconds).
        """
        low = 0.0 if floor is None else floor
        start = max(low, self.retry_base)
        top = self.retry_max if ceiling is None else min(self.retry_max, ceiling)
        limit = max(low, min(top, start * (2.0 ** min(max(attempt, 1) - 1, 30))))
        return max(low, limit / 2 + self.rng.uniform(0, limit / 2))

    def _reschedule(self, queued: QueuedAction, delay: float, error: str) -> None:
        """ServiceNow's answer (or its silence) makes everything wait ``delay`` s."""
        when = self._retry_later(queued, delay, error)
        self.pause.servicenow_asks(when)

    def _retry_later(self, queued: QueuedAction, delay: float, error: str) -> float:
        """Try ``queued`` again in ``delay`` s; return when."""
        self.stats.retries += 1
        now = self.clock.time()
        when = now + delay
        self.outbox.retry_later(queued, when, error, now)
        self._emit("retry", queued.action, None, error, retry_at=when)
        return when

    def _emit(
        self,
        kind: str,
        action: Action,
        incident: Optional[Incident] = None,
        detail: str = "",
        retry_at: Optional[float] = None,
    ) -> None:
        if not self.on_outcome:
            return
        outcome = Outcome(kind, action, incident, detail, retry_at)
        for callback in list(self.on_outcome):
            try:
                callback(outcome)
            except Exception:
                log.exception("an outcome observer failed on %s", action.key)
