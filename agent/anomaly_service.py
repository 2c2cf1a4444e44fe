"""The anomaly function's work: validate episode events, queue incident actions, deliver them.

The handler only validates and writes to the outbox, so it returns quickly and
loses nothing when ServiceNow is down. A worker thread (or the simulation, in
virtual time) delivers from the outbox. This is why the anomaly function runs
pinned: an on-demand Greengrass V1 function may not live between messages to
retry what is queued.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from typing import Any, Dict, Optional

from .clock import SYSTEM_CLOCK, Clock
from .config import AnomalySettings
from .credentials import CredentialsProvider
from .errors import MessageError
from .greengrass.base import Runtime
from .schema import decode, validate_anomaly
from .servicenow.client import TableClient
from .servicenow.delivery import Deliverer
from .servicenow.incidents import action_for
from .servicenow.outbox import Outbox

log = logging.getLogger(__name__)

PRUNE_DELIVERED_AFTER = 7 * 24 * 3600.0


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
        self.clock = clock or SYSTEM_CLOCK
        self.outbox = outbox or Outbox(os.path.join(settings.state_dir, "outbox.sqlite3"))
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
        )
        self.deliverer = Deliverer(
            self.outbox,
            self.client,
            self.credentials,
            clock=self.clock,
            retry_base=settings.retry_base,
            retry_max=settings.retry_max,
            rng=rng,
        )
        self.counts: Dict[str, int] = {
            "received": 0,
            "rejected": 0,
            "queued": 0,
            "duplicates": 0,
            "throttled": 0,
        }
        self._last_update_ts: Dict[str, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- the handler ---------------------------------------------------------------
    def handle(self, message: Any, topic: str = "") -> bool:
        """Take one anomaly message; return whether an action was queued. Never raises."""
        self.counts["received"] += 1
        try:
            event = validate_anomaly(decode(message))
        except MessageError as exc:
            self.counts["rejected"] += 1
            log.warning("rejected a message on %s: %s", topic or "?", exc)
            return False
        except Exception:  # a validator bug must not take the function down
            self.counts["rejected"] += 1
            log.exception("could not validate a message on %s", topic or "?")
            return False
        action = action_for(event, self.settings)
        now = self.clock.time()
        if event["event"] == "update" and self._throttled(action.correlation_id, event["ts"]):
            self.counts["throttled"] += 1
            log.info("work note for %s throttled (updateMinutes)", action.correlation_id)
            return False
        if not self.outbox.enqueue(action, now):
            self.counts["duplicates"] += 1
            log.info("ignored a repeated %s event for %s", event["event"], event["episode_id"])
            return False
        if event["event"] == "update":
            self._last_update_ts[action.correlation_id] = event["ts"]
        self.counts["queued"] += 1
        log.info(
            "queued %s for %s (%s %s)",
            action.kind,
            event["episode_id"],
            event["metric"],
            event["event"],
        )
        self._wake.set()
        return True

    def function_handler(self, event: Any, context: Any) -> None:
        """The Greengrass V1 / Lambda-style handler."""
        topic = ""
        try:
            topic = context.client_context.custom["subject"]
        except (AttributeError, KeyError, TypeError):
            pass
        self.handle(event, topic)

    def _throttled(self, correlation_id: str, event_ts: float) -> bool:
        # Judged on the events' own times, so delivery latency cannot make an
        # update that is exactly one interval later look too early. Kept in
        # memory: after a restart one extra note is harmless.
        last = self._last_update_ts.get(correlation_id)
        return last is not None and event_ts - last < self.settings.update_seconds

    # -- delivery --------------------------------------------------------------------
    def pump(self) -> int:
        """Deliver what is due now; return how many actions were finished."""
        return self.deliverer.pump()

    def wake(self) -> None:
        """Make the worker look at the outbox now instead of at its next timer."""
        self._wake.set()

    def next_attempt_at(self) -> Optional[float]:
        """When delivery should next be tried; ``None`` when nothing is pending."""
        return self.deliverer.next_attempt_at()

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
                self.deliverer.paused_until = self.clock.time() + self.settings.retry_max
            next_at = self.next_attempt_at()
            delay = 60.0 if next_at is None else max(0.05, next_at - self.clock.time())
            self.clock.wait(self._wake, min(delay, 60.0))

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run_worker, name="snow-delivery", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.deliverer.stop()  # a long, paced drain returns after its current action
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def summary(self) -> Dict[str, Any]:
        stats = self.deliverer.stats
        counts = self.outbox.counts()
        return {
            "incidents_opened": stats.opened,
            "incidents_reused": stats.reused,
            "incidents_updated": stats.noted,
            "incidents_resolved": stats.resolved,
            "actions_queued": self.counts["queued"],
            "actions_pending": counts["pending"],
            "actions_dead_lettered": counts["dead_letter"],
            "messages_rejected": self.counts["rejected"],
            "updates_throttled": self.counts["throttled"],
            "retries": stats.retries,
            "auth_failures": stats.auth_failures,
            "secret_fetches": self.credentials.fetches,
            "servicenow_calls": dict(self.client.calls),
        }
