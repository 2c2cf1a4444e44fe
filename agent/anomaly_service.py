"""The anomaly function's work: validate episode events, queue incident actions, deliver them.

The handler only validates and writes to the outbox, so it returns quickly and
loses nothing when ServiceNow is down. A worker thread (or the simulation, in
virtual time) delivers from the outbox. This is why the anomaly function runs
pinned: an on-demand Greengrass V1 function may not live between messages to
retry what is queued.

An action the outbox cannot take (disk full, I/O error, read-only file system,
a file-size limit) is held in memory, in order, and written as soon as a write
succeeds: retried on every new message and by the worker every few seconds.
While anything is held, ``health()`` says so and an ERROR is logged at most
once a minute; only when ``MAX_HELD_ACTIONS`` are held is the oldest dropped,
counted and logged. The outbox file itself is watched by
:class:`~agent.servicenow.outbox_guard.OutboxGuard` (lock, marker, integrity).
"""

from __future__ import annotations

import collections
import logging
import random
import sqlite3
import threading
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Mapping, Optional, Set

from .clock import SYSTEM_CLOCK, Clock, steady
from .config import AnomalySettings
from .credentials import CredentialsProvider
from .errors import MessageError
from .greengrass.base import Runtime, subject_of
from .schema import READING_SCHEMA, decode, validate_anomaly, validate_reading
from .servicenow.client import TableClient
from .servicenow.cmdb import CiLink
from .servicenow.delivery import Deliverer
from .servicenow.incidents import Action, action_for
from .servicenow.notices import Notices
from .servicenow.outbox import Outbox
from .servicenow.outbox_guard import CHECK_INTERVAL, OutboxGuard
from .servicenow.text import clean_text

if TYPE_CHECKING:
    from .site.gateway import SiteGateway

log = logging.getLogger(__name__)

PRUNE_DELIVERED_AFTER = 7 * 24 * 3600.0
MAX_HELD_ACTIONS = 1000  # a few MB at most; episodes are rare, so days of them
HELD_RETRY_SECONDS = 2.0
HOLD_LOG_INTERVAL = 60.0


class AnomalyService:
    def __init__(
        self,
        settings: AnomalySettings,
        runtime: Runtime,
        clock: Optional[Clock] = None,
        outbox: Optional[Outbox] = None,
        rng: Optional[random.Random] = None,
        session: Any = None,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        # Never steps while running (NTP moving the wall clock must not stretch a wait);
        # what the outbox keeps is rebased after a restart (Deliverer).
        self.clock = steady(clock or SYSTEM_CLOCK)
        self.guard: Optional[OutboxGuard] = None
        if outbox is None:
            self.guard = OutboxGuard(settings.state_dir)
            outbox = self.guard.open()
        self.outbox = outbox
        self.credentials = CredentialsProvider(
            runtime.get_secret,
            settings.secret_id,
            ttl=settings.secret_ttl,
            clock=self.clock,
            fetch_fresh=lambda secret_id: runtime.get_secret(secret_id, refresh=True),
        )
        self.client = TableClient(
            settings.snow_url,
            self.credentials.get,
            timeout=settings.timeout,
            verify=settings.verify_tls,
            clock=self.clock,
            session=session,
            max_requests_per_second=settings.max_requests_per_second,
            max_answer_bytes=settings.max_answer_bytes,
        )
        self.ci = CiLink(self.client, settings.cmdb_ci, settings.device_id)
        self.notices = Notices(settings.state_dir, self.clock)
        self.deliverer = Deliverer(
            self.outbox,
            self.client,
            self.credentials,
            clock=self.clock,
            retry_base=settings.retry_base,
            retry_max=settings.retry_max,
            rng=rng,
            ci=self.ci,
        )
        self.counts: Dict[str, int] = {
            "received": 0,
            "readings": 0,  # on a site gateway: every device's readings, for its silence
            "rejected": 0,
            "queued": 0,
            "duplicates": 0,
            "throttled": 0,
            "out_of_order": 0,
            "held": 0,
            "dropped": 0,
            "errors": 0,
        }
        self._last_update_ts: Dict[str, float] = {}
        # Actions the outbox could not take yet, oldest first (see the module doc).
        self._held: Deque[Action] = collections.deque()
        self._held_keys: Set[str] = set()
        self._held_lock = threading.RLock()
        self._held_since: Optional[float] = None
        self._next_flush_at = 0.0
        self._write_error: Optional[str] = None
        self._last_hold_log = float("-inf")
        self._check_now = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        # A site gateway groups the episodes of many devices (agent/site/).
        self.site: Optional[SiteGateway] = None
        if settings.site is not None:
            from .site import gateway  # deferred: a single Pi never loads it

            self.site = gateway.SiteGateway(settings, self.outbox, self.clock, self._queue_site)

    # -- the handler ---------------------------------------------------------------
    def handle(self, message: Any, topic: str = "") -> bool:
        """Take one anomaly message; return whether its action was queued (or held). Never raises."""
        try:
            return self._handle(message, topic)
        except Exception as exc:  # a bug must not take the function down
            self.counts["errors"] += 1
            log.error(
                "unexpected %s while handling a message on %s; message dropped",
                type(exc).__name__,
                clean_text(topic) or "?",
                exc_info=True,
            )
            return False

    def _handle(self, message: Any, topic: str) -> bool:
        self.counts["received"] += 1
        try:
            # Readings are most of a gateway's messages: checked field by field, without
            # encoding the message again to measure it (what is kept of it is small).
            if (
                self.site is not None
                and isinstance(message, dict)
                and message.get("schema") == READING_SCHEMA
            ):
                return self._reading(validate_reading(message))
            decoded = decode(message)
            if self.site is not None and decoded.get("schema") == READING_SCHEMA:
                return self._reading(validate_reading(decoded))
            event = validate_anomaly(decoded)
        except MessageError as exc:
            self.counts["rejected"] += 1
            log.warning("rejected a message on %s: %s", clean_text(topic) or "?", exc)
            return False
        except Exception:  # a validator bug must not take the function down
            self.counts["rejected"] += 1
            log.exception("could not validate a message on %s", clean_text(topic) or "?")
            return False
        if self.site is not None:
            return self._handle_on_site(event)
        action = action_for(event, self.settings)
        episode = clean_text(event["episode_id"])
        if self._out_of_order(action, event, episode):
            self.counts["out_of_order"] += 1
            return False
        event_time = _event_time(event)
        if event["event"] == "update" and self._throttled(action.correlation_id, event_time):
            self.counts["throttled"] += 1
            log.info("work note for %s throttled (updateMinutes)", episode)
            return False
        with self._held_lock:
            if self._held:
                self._flush_held()  # keep order: what waits goes first
            if self._held:
                queued = self._hold(action)
            else:
                try:
                    queued = self.outbox.enqueue(action, self.clock.time())
                    if queued:
                        self.counts["queued"] += 1
                    if self.deliverer.waiting_on_local_fault:
                        self.deliverer.local_fault_cleared()  # this write went through
                except Exception as exc:
                    if not _storage_error(exc):
                        raise
                    queued = self._hold(action)
                    self._write_failed(exc)
        if not queued:
            self.counts["duplicates"] += 1
            log.info("ignored a repeated %s event for %s", event["event"], episode)
            return False
        if event["event"] == "update":
            self._last_update_ts[action.correlation_id] = event_time
        log.info("queued %s for %s (%s %s)", action.kind, episode, event["metric"], event["event"])
        self._wake.set()
        return True

    def _handle_on_site(self, event: Dict[str, Any]) -> bool:
        assert self.site is not None
        with self._held_lock:
            changed = self.site.handle(event)
        if not changed:
            self.counts["duplicates"] += 1
            log.info(
                "ignored a repeated or stale %s event for %s",
                event["event"],
                clean_text(event["episode_id"]),
            )
        return changed

    def _reading(self, reading: Dict[str, Any]) -> bool:
        """A site gateway's reading: the device is alive (see agent/site/silence.py)."""
        assert self.site is not None
        self.counts["readings"] += 1
        with self._held_lock:
            self.site.reading(reading)
        return True

    def _queue_site(self, actions: List[Action], state: Dict[str, Optional[str]]) -> bool:
        """Queue a site gateway's actions with the group state they came from; ``False``
        when the outbox could not take them (the actions are held, in order)."""
        with self._held_lock:
            if self._held:
                self._flush_held()  # keep order: what waits goes first
            if not self._held:
                try:
                    queued = self.outbox.enqueue_with_state(actions, state, self.clock.time())
                except Exception as exc:
                    if not _storage_error(exc):
                        raise
                    self._write_failed(exc)
                else:
                    self.counts["queued"] += sum(queued)
                    self.counts["duplicates"] += len(queued) - sum(queued)
                    if self.deliverer.waiting_on_local_fault:
                        self.deliverer.local_fault_cleared()
                    if actions:
                        self._wake.set()
                    return True
            for action in actions:
                self._hold(action)
            self._wake.set()
            return False

    def _out_of_order(self, action: Action, event: Dict[str, Any], episode: str) -> bool:
        """An event older than one already seen for its episode (by ``seq``) is dropped.

        What was seen is what the outbox holds for the correlation id (queued,
        delivered or dead-lettered keys) plus what is held in memory, so it
        survives a restart. A repeat of the same event is not out of order:
        the outbox's key check ignores it.
        """
        corr = action.correlation_id
        with self._held_lock:  # the worker may be writing held actions out
            keys = [k for k in self._held_keys if k.startswith(corr + "#")]
        try:
            keys.extend(self.outbox.keys_for(corr))
        except Exception as exc:
            if not _storage_error(exc):
                raise
        if action.key in keys:
            return False
        seen = [s for s in (_key_seq(k, corr) for k in keys) if s is not None]
        if not seen or event["seq"] > max(seen):
            return False
        log.warning(
            "dropped an out-of-order %s event (seq %d) for %s: seq %d was already seen",
            event["event"],
            event["seq"],
            episode,
            max(seen),
        )
        return True

    # -- actions the outbox could not take yet ------------------------------------------
    def _hold(self, action: Action) -> bool:
        if action.key in self._held_keys:
            return False
        if len(self._held) >= MAX_HELD_ACTIONS:
            oldest = self._held.popleft()
            self._held_keys.discard(oldest.key)
            self.counts["dropped"] += 1
            log.error(
                "%d actions are held and the outbox still cannot be written: dropped the oldest,"
                " %s (%d dropped so far)",
                MAX_HELD_ACTIONS,
                oldest.key,
                self.counts["dropped"],
            )
        self._held.append(action)
        self._held_keys.add(action.key)
        self.counts["held"] += 1
        if self._held_since is None:
            self._held_since = self.clock.time()
        return True

    def _write_failed(self, exc: BaseException) -> None:
        self._write_error = "{}: {}".format(type(exc).__name__, exc)
        self._next_flush_at = self.clock.time() + HELD_RETRY_SECONDS
        self._check_now = True  # perhaps the file was replaced or removed
        self._wake.set()
        now = self.clock.monotonic()
        if now - self._last_hold_log >= HOLD_LOG_INTERVAL:
            self._last_hold_log = now
            log.error(
                "cannot write the outbox %s (%s); %d actions held in memory (at most %d), written"
                " as soon as it accepts them. Free space or fix the file system under %s.",
                self.outbox.path,
                self._write_error,
                len(self._held),
                MAX_HELD_ACTIONS,
                self.settings.state_dir,
            )

    def _flush_held(self) -> int:
        """Write held actions to the outbox in order until one fails; return how many went."""
        written = 0
        while self._held:
            action = self._held[0]
            try:
                queued = self.outbox.enqueue(action, self.clock.time())
            except Exception as exc:
                if _storage_error(exc):
                    self._write_failed(exc)
                    return written
                # Not the disk: this action can never be written. Drop it, loudly,
                # rather than block every action behind it.
                queued = False
                self.counts["dropped"] += 1
                log.error(
                    "could not queue the held action %s (%s); dropped",
                    action.key,
                    type(exc).__name__,
                )
            self._held.popleft()
            self._held_keys.discard(action.key)
            written += 1
            self.counts["queued" if queued else "duplicates"] += 1
        log.warning(
            "the outbox accepts writes again: %d held actions written after %.0fs",
            written,
            self.clock.time() - (self._held_since or self.clock.time()),
        )
        self._held_since = None
        self._write_error = None
        # Delivery may have paused during the fault (it could not record its outcomes);
        # the disk takes writes again: the pause's owner resumes what the fault held back.
        self.deliverer.local_fault_cleared()
        self._wake.set()
        return written

    def function_handler(self, event: Any, context: Any) -> None:
        """The Greengrass V1 / Lambda-style handler."""
        self.handle(event, subject_of(context))

    def _throttled(self, correlation_id: str, event_time: float) -> bool:
        # Judged on the events' own times, so delivery latency cannot make an
        # update that is exactly one interval later look too early: their duration
        # (the device's monotonic clock), or for an older sender their wall times,
        # apart in either direction (NTP steps them back too). Kept in memory:
        # after a restart one extra note is harmless.
        last = self._last_update_ts.get(correlation_id)
        return last is not None and abs(event_time - last) < self.settings.update_seconds

    # -- delivery --------------------------------------------------------------------
    def pump(self) -> int:
        """Check the outbox file, write held actions, deliver what is due; return how many
        actions were finished."""
        self.maintain()
        finished = self.deliverer.pump()
        self.notices.update(self.servicenow_notices())
        return finished

    def servicenow_notices(self) -> Dict[str, Any]:
        """What ``edge-agent status`` and the status page say about ServiceNow beyond the
        outbox: the CI name not found, the sink, the rate-limit budget left."""
        return {
            "sink": self.settings.sink,
            "ci_missing": self.ci.missing,
            "rate_limit": self.client.pacer.budget.snapshot(self.clock.time()),
        }

    def maintain(self) -> None:
        """The outbox guard's periodic check, and a retry of held actions when due."""
        if self.guard is not None:
            force, self._check_now = self._check_now, False
            self.guard.maintain(self.outbox, force=force)
        if self._held and self.clock.time() >= self._next_flush_at:
            with self._held_lock:
                if self._held:
                    self._flush_held()
        if self.site is not None and not self._held:
            with self._held_lock:
                self.site.tick()

    def wake(self) -> None:
        """Make the worker look at the outbox now instead of at its next timer."""
        self._wake.set()

    def next_attempt_at(self) -> Optional[float]:
        """When delivery (or writing held actions) should next be tried; ``None`` when
        nothing is pending."""
        next_at = self.deliverer.next_attempt_at()
        group_at = self.site.next_due_at() if self.site is not None else None
        if group_at is not None:
            next_at = group_at if next_at is None else min(next_at, group_at)
        if self._held:
            next_at = self._next_flush_at if next_at is None else min(next_at, self._next_flush_at)
        return next_at

    def run_worker(self) -> None:
        """Deliver until stopped, sleeping until the next retry or a new action."""
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.pump()
                self.outbox.prune_delivered(self.clock.time() - PRUNE_DELIVERED_AFTER)
            except Exception as exc:
                # Never spin: wait as after an outage. Type only: see Deliverer.
                log.error("unexpected %s in the delivery worker", type(exc).__name__)
                # Most likely the disk (a bug otherwise): the next successful write ends it.
                self.deliverer.pause_for_local_fault(self.settings.retry_max)
            next_at = self.next_attempt_at()
            delay = CHECK_INTERVAL if next_at is None else max(0.05, next_at - self.clock.time())
            # Wakes at least every CHECK_INTERVAL for the outbox guard's cheap check.
            self.clock.wait(self._wake, min(delay, CHECK_INTERVAL))

    def start(self) -> threading.Thread:
        self._first_start_hint()
        self._thread = threading.Thread(target=self.run_worker, name="snow-delivery", daemon=True)
        self._thread.start()
        return self._thread

    def _first_start_hint(self) -> None:
        """On a device's first start (nothing ever queued), say how to check ServiceNow
        before the first breach rather than after it."""
        try:
            counts = self.outbox.counts()
        except sqlite3.Error:
            return
        if any(counts.values()):
            return
        log.info(
            "first start: check ServiceNow (%s) before the first breach with"
            "  edge-agent check-servicenow --snow-url %s --secret-file FILE",
            self.settings.sink,
            self.settings.snow_url,
        )

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.deliverer.stop()  # a long, paced drain returns after its current action
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Close the outbox (and release the state directory's lock)."""
        self.outbox.close()

    def health(self) -> Dict[str, Any]:
        """Whether every event received is safely on disk, for a status page or a summary."""
        reports: List[Dict[str, Any]] = self.guard.reports if self.guard is not None else []
        held = len(self._held)
        in_memory = self.outbox.in_memory
        return {
            "ok": not held and not in_memory and not reports and not self.counts["dropped"],
            "outbox_writable": self._write_error is None and not in_memory,
            "write_error": self._write_error,
            "actions_held": held,
            "held_since": self._held_since,
            "actions_dropped": self.counts["dropped"],
            "outbox_in_memory": in_memory,
            "outbox_problems": [r["detail"] for r in reports],
        }

    def summary(self) -> Dict[str, Any]:
        stats = self.deliverer.stats
        counts: Mapping[str, Optional[int]]
        try:
            counts = self.outbox.counts()
        except (sqlite3.Error, OSError):
            counts = {"pending": None, "dead_letter": None}
        health = self.health()
        return {
            "incidents_opened": stats.opened,
            "incidents_reused": stats.reused,
            "incidents_updated": stats.noted,
            "incidents_resolved": stats.resolved,
            "events_sent": stats.events_sent,
            "events_cleared": stats.events_cleared,
            "actions_queued": self.counts["queued"],
            "actions_pending": counts["pending"],
            "actions_dead_lettered": counts["dead_letter"],
            "actions_held": health["actions_held"],
            "actions_dropped": health["actions_dropped"],
            "outbox_ok": health["ok"],
            "messages_rejected": self.counts["rejected"],
            "events_out_of_order": self.counts["out_of_order"],
            "updates_throttled": self.counts["throttled"],
            "retries": stats.retries,
            "auth_failures": stats.auth_failures,
            "secret_fetches": self.credentials.fetches,
            "servicenow_calls": dict(self.client.calls),
        }


def _storage_error(exc: BaseException) -> bool:
    """A fault of the disk or the file (full, I/O error, read-only, locked, damaged), which
    passes or is repaired, as opposed to a bug in what was written."""
    return isinstance(exc, OSError) or type(exc) in (
        sqlite3.OperationalError,
        sqlite3.DatabaseError,
    )


def _event_time(event: Mapping[str, Any]) -> float:
    """When an event happened, for comparing two of one episode: its monotonic duration
    when the sender gives one (the same episode's events all do), else its wall time."""
    measured = event.get("duration")
    return float(measured if measured is not None else event["ts"])


def _key_seq(key: str, correlation_id: str) -> Optional[int]:
    """The ``seq`` in an outbox key ``<correlation id>#<seq>:<event>``."""
    number, sep, _event = key[len(correlation_id) + 1 :].partition(":")
    return int(number) if sep and number.isdigit() else None
