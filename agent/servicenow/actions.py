"""One queued action against ServiceNow, decided by what is true there now.

* ``open``: every POST is preceded by a durable (synced) record in the outbox
  that a create for this correlation id may be sent. While such a record is
  younger than ``AMBIGUOUS_CREATE_WAIT_TIMEOUTS`` client timeouts the action
  waits, in this process or after a restart, because a slow instance may still
  commit that create and a lookup now would miss it and POST a duplicate. Then
  the incident is looked up by correlation id and created only if it is not
  there.
* ``note`` / ``resolve``: the incident's current state is read first (by
  sys_id, or by correlation id). One a person resolved, closed or canceled
  (state 6, 7, 8) is left alone: no note, no resolve, never reopened; the next
  episode has its own correlation id and opens a new incident.
* A work note whose PATCH may have been sent before (the incident's
  ``sys_mod_count`` was recorded durably just before it) is not sent again if
  the count has moved since and the last update was by the agent's own user,
  nor before the same ambiguity window has passed: a slow or hung instance
  that applies a timed-out PATCH late gets it once (twice at worst, when it
  hangs for longer than the window and answers the check before the PATCH).

Nothing here retries or sleeps; the delivery worker (``delivery.py``) decides
what a failure means.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Callable, Dict, Final, Literal, Optional, Tuple, Union

from ..clock import Clock
from ..errors import SecretError
from .client import AuthFailed, RateLimited, Rejected, TableClient, Unavailable
from .cmdb import CiLink, invalid_reference
from .incidents import RESOLVED_STATES, Action, safe_correlation_id
from .outbox import Incident, NoteAttempt, Outbox, QueuedAction
from .pacing import BudgetSpent

log = logging.getLogger(__name__)

# After a create that may have been sent (a timeout, a reset after sending, a
# 5xx), wait this many client timeouts before looking for the incident again.
AMBIGUOUS_CREATE_WAIT_TIMEOUTS = 3
STATE_NAMES = {"6": "resolved", "7": "closed", "8": "canceled"}

Record = Dict[str, str]


@dataclass
class DeliveryStats:
    opened: int = 0
    reused: int = 0  # "open" found the incident already there (a retried create)
    noted: int = 0
    resolved: int = 0
    skipped: int = 0  # nothing done: resolved or closed in ServiceNow, or gone
    retries: int = 0
    dead_lettered: int = 0
    auth_failures: int = 0
    events_sent: int = 0  # snowSink=event: events Event Management took (clears not counted)
    events_cleared: int = 0  # clears (severity 0) it took


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt at an action, for observers such as the simulation's console.

    ``kind`` is ``opened``, ``reused`` (found by correlation id), ``noted``,
    ``resolved``, ``skipped`` (nothing to do), ``retry`` or ``dead_lettered``.
    ``incident`` is the incident acted on when known; ``detail`` a short
    reason (the error text for ``retry`` and ``dead_lettered``), never a secret;
    ``retry_at`` when a ``retry`` is due.
    """

    kind: str
    action: Action
    incident: Optional[Incident] = None
    detail: str = ""
    retry_at: Optional[float] = None


Emit = Callable[[str, Action, Optional[Incident], str], None]


def _ignore(kind: str, action: Action, incident: Optional[Incident], detail: str) -> None:
    """The default observer: nothing to tell."""


class NotYet(Exception):
    """The action must wait until ``when`` (epoch seconds); nothing was sent."""

    def __init__(self, when: float, reason: str) -> None:
        super().__init__(reason)
        self.when = when


class ActionRunner:
    """Carries out queued actions with the outbox's records of unconfirmed requests."""

    def __init__(
        self,
        outbox: Outbox,
        client: TableClient,
        clock: Clock,
        stats: DeliveryStats,
        user: Callable[[], Optional[str]],
        emit: Emit = _ignore,
        ci: Optional[CiLink] = None,
    ) -> None:
        self.outbox = outbox
        self.ci = ci  # the configuration item new incidents link to (snowCmdbCi)
        self.emit = emit  # told of every outcome (the Deliverer's observers)
        self.client = client
        self.clock = clock
        self.stats = stats
        self._user = user  # the integration user's name, when the credentials say it

    @property
    def ambiguity_window(self) -> float:
        return AMBIGUOUS_CREATE_WAIT_TIMEOUTS * self.client.timeout

    def run(self, queued: QueuedAction) -> Optional[Incident]:
        """Carry out one action; return the incident as ServiceNow has it now."""
        action = queued.action
        if action.kind == "event":
            self._event(action)
            return None  # an event has no incident: ServiceNow's answer names none
        corr = safe_correlation_id(action.correlation_id)
        record: Union[Record, None, Literal[_Gone.GONE]]
        if action.kind == "open":
            record, created = self._open(corr, action.fields)
            opened = _incident(corr, record)
            self.emit("opened" if created else "reused", action, opened, "")
            return opened
        record = self._current(corr, action.correlation_id)
        if record is _GONE:
            self.stats.skipped += 1
            log.warning(
                "the incident for %s no longer exists in ServiceNow; the %s is dropped",
                corr,
                action.kind,
            )
            self.emit("skipped", action, None, "the incident no longer exists")
            return None
        if record is None:
            if not action.open_fields:
                self.stats.skipped += 1
                log.warning("no incident with correlation id %s; %s dropped", corr, action.kind)
                self.emit("skipped", action, None, "no incident with this correlation id")
                return None
            # The breach never arrived (lost before it was queued): record the
            # episode anyway, then apply this update to it.
            log.warning("no incident for %s yet; opening it before the %s", corr, action.kind)
            record, created = self._open(corr, action.open_fields)
            self.emit("opened" if created else "reused", action, _incident(corr, record), "")
        incident = _incident(corr, record)
        if incident.state in RESOLVED_STATES:
            state = STATE_NAMES.get(incident.state, incident.state)
            if action.kind == "resolve" and incident.state == "6" and queued.attempts:
                # Most likely our own earlier PATCH, unconfirmed but applied.
                self.stats.resolved += 1
                log.info(
                    "resolved incident %s (%s): an earlier, unconfirmed resolve landed"
                    " (or a person resolved it meanwhile)",
                    incident.number,
                    corr,
                )
                self.emit("resolved", action, incident, "an earlier resolve had landed")
                return incident
            self.stats.skipped += 1
            self.emit("skipped", action, incident, "already {} in ServiceNow".format(state))
            if action.kind == "resolve" and incident.state == "6":
                log.info("incident %s is already resolved", incident.number)
            else:
                log.warning(
                    "incident %s is %s in ServiceNow; the %s is not applied: a closed"
                    " incident is left as it is",
                    incident.number,
                    state,
                    "work note" if action.kind == "note" else action.kind,
                )
            return incident
        if action.kind == "note":
            attempt = self.outbox.note_attempt(action.key)
            if attempt is not None:
                if self._landed(attempt, record):
                    self.stats.noted += 1
                    log.info(
                        "the work note for incident %s had landed although its PATCH was"
                        " not confirmed; not sending it again",
                        incident.number,
                    )
                    self.emit("noted", action, incident, "an earlier note had landed")
                    return incident
                ready_at = attempt.sent_at + self.ambiguity_window
                if self.clock.time() < ready_at:
                    raise NotYet(ready_at, "a work note sent earlier may still be committing")
            self.outbox.record_note_attempt(
                action.key, incident.sys_id, _mod_count(record), self.clock.time()
            )
        updated = self.client.update(incident.sys_id, action.fields)
        state = str(updated.get("state", incident.state))
        if action.kind == "resolve":
            self.stats.resolved += 1
            log.info("resolved incident %s (%s)", incident.number, corr)
        else:
            self.stats.noted += 1
            log.info("added a work note to incident %s", incident.number)
        done = Incident(corr, incident.sys_id, incident.number, state)
        self.emit("resolved" if action.kind == "resolve" else "noted", action, done, "")
        return done

    # -- the steps -------------------------------------------------------------------
    def _event(self, action: Action) -> None:
        """Send one Event Management event. Re-sending is harmless: the same
        ``message_key`` lands on the same alert, so no intent needs recording."""
        self.client.send_events([action.fields])
        severity = action.fields.get("severity", "")
        if severity == "0":
            self.stats.events_cleared += 1
            log.info("sent the clear for %s to Event Management", action.correlation_id)
        else:
            self.stats.events_sent += 1
            log.info(
                "sent an event (severity %s) for %s to Event Management",
                severity,
                action.correlation_id,
            )
        self.emit("event", action, None, severity)

    def _open(self, corr: str, fields: Record) -> Tuple[Record, bool]:
        """The incident for ``corr``, found or created; and whether it was created now."""
        sent_at = self.outbox.create_intent(corr)
        if sent_at is not None:
            ready_at = sent_at + self.ambiguity_window
            if self.clock.time() < ready_at:
                raise NotYet(ready_at, "a create sent earlier may still be committing")
        # Look first, always: a create may have committed without its answer
        # reaching us, and creating it again would be a duplicate.
        existing = self.client.find_by_correlation(corr)
        if existing is not None:
            self.stats.reused += 1
            log.info("incident %s already exists for %s", existing.get("number"), corr)
            return existing, False
        self.outbox.record_create_intent(corr, self.clock.time())
        try:
            record = self._create(dict(fields, correlation_id=corr))
        except Unavailable as exc:
            if not exc.ambiguous:
                self.outbox.clear_create_intent(corr)  # it never left
            raise
        except (AuthFailed, RateLimited, Rejected, SecretError, BudgetSpent):
            self.outbox.clear_create_intent(corr)  # refused or not sent: nothing was created
            raise
        self.stats.opened += 1
        log.info(
            "opened incident %s: %s", record.get("number"), fields.get("short_description", "")
        )
        return record, True

    def _create(self, fields: Record) -> Record:
        """POST the incident, linked to the configured CI when there is one; a reference
        ServiceNow refuses (the CI deleted or renamed) is looked up again, once."""
        if self.ci is None or "cmdb_ci" in fields:
            return self.client.create(fields)
        try:
            return self.client.create(dict(fields, **self.ci.fields()))
        except Rejected as exc:
            if not invalid_reference(str(exc)):
                raise
            self.ci.invalidate()
        return self.client.create(dict(fields, **self.ci.fields()))

    def _current(self, corr: str, queued_corr: str) -> Union[Record, None, Literal[_Gone.GONE]]:
        """The incident as ServiceNow has it now; ``None`` if there is none, ``_GONE`` if
        the one this outbox knew was deleted."""
        recorded = self.outbox.incident(corr)
        if recorded is None and queued_corr != corr:
            recorded = self.outbox.incident(queued_corr)  # recorded by an older version
        if recorded is None:
            return self.client.find_by_correlation(corr)
        record = self.client.read(recorded.sys_id)
        return _GONE if record is None else record

    def _landed(self, attempt: NoteAttempt, record: Record) -> bool:
        """Whether the note sent after ``attempt`` was recorded is on the incident."""
        if record.get("sys_id") != attempt.sys_id or attempt.mod_count < 0:
            return False
        if _mod_count(record) <= attempt.mod_count:
            return False
        # Someone else may have updated it meanwhile; then send the note again
        # (at worst one extra copy) rather than lose it.
        me, last = self._user(), record.get("sys_updated_by")
        return not me or not last or last == me


class _Gone(enum.Enum):
    """A sentinel a type checker can tell apart from a record (``_current``'s third answer)."""

    GONE = "gone"


_GONE: Final = _Gone.GONE


def _mod_count(record: Record) -> int:
    try:
        return int(record.get("sys_mod_count", ""))
    except ValueError:
        return -1  # not readable: a timed-out note will be sent again


def _incident(corr: str, record: Record) -> Incident:
    return Incident(
        corr,
        str(record["sys_id"]),
        str(record.get("number", "")),
        str(record.get("state", "1")),
    )
