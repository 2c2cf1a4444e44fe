"""What the bridge tells people, and how often.

The consoles of ``edge-agent simulate`` and ``run`` show WARNING and above
without ``-v``, so everything a user must act on is logged at WARNING or
ERROR: each distinct connection failure once per outage (with the broker and
the reason), the recovery from it, every loss with its count. Repeats are
rate-limited, never silent: drops and lost connections are summed up at most
once a minute, the same failure is recalled every ten minutes while it lasts.
"""

from __future__ import annotations

import logging
from typing import Dict, Optional, Set, Tuple

from ...clock import Clock
from .address import AUTO, BrokerAddress
from .diagnosis import Diagnosis, TlsFiles
from .spool import Spool
from .stats import BridgeStats

log = logging.getLogger("agent.standalone.mqtt_bridge")

DROP_LOG_INTERVAL_S = 60.0
REFUSAL_LOG_INTERVAL_S = 60.0
STILL_FAILING_LOG_INTERVAL_S = 600.0
LOSS_LOG_INTERVAL_S = 60.0


class Reporter:
    """The bridge's log lines, with their rate limits (call with the bridge's lock held)."""

    def __init__(self, address: BrokerAddress, clock: Clock) -> None:
        self.address = address
        self.clock = clock
        self._down_since: Optional[float] = None
        self._failures_seen: Set[str] = set()  # the kinds of failure seen in this outage
        self._failed_attempts = 0
        self._last_failure_log = float("-inf")
        self._loud = False  # a WARNING about the connection was shown since it last worked
        self._last_loss_log = float("-inf")
        self._losses_unlogged = 0
        self._drops_unlogged = 0
        self._last_drop_log = float("-inf")
        self._refusals_seen: Set[Tuple[str, str]] = set()
        self._refusals_unlogged: Dict[str, int] = {}
        self._last_refusal_log = float("-inf")
        self._spool_errors_seen: Set[str] = set()

    # -- start ------------------------------------------------------------------------
    def spool_opened(self, spool: Spool, dropped_at_open: int) -> None:
        if dropped_at_open:
            log.warning(
                "spool file over its %d-byte limit: dropped its %d oldest messages",
                spool.limit_bytes,
                dropped_at_open,
            )
        if len(spool):
            log.info(
                "%d messages (%d bytes) from an earlier run wait in the spool",
                len(spool),
                spool.bytes,
            )

    def starting(self, tls: Optional[TlsFiles], spool: Spool) -> None:
        tls_text = ""
        if tls is not None:
            tls_text = ", TLS, CA {}, {}".format(
                tls.ca or "system store",
                f"client certificate {tls.cert}" if tls.cert else "no client certificate",
            )
        log.info(
            "MQTT bridge to %s as %s (MQTT %s%s); spool %s, %d bytes max",
            self.address,
            self.address.client_id,
            "5, or 3.1.1 if the broker refuses 5"
            if self.address.protocol == AUTO
            else self.address.protocol,
            tls_text,
            spool.kind,
            spool.limit_bytes,
        )

    # -- the connection -------------------------------------------------------------------
    def connect_failed(self, failure: Diagnosis, waiting: int) -> None:
        now = self.clock.monotonic()
        if self._down_since is None:
            self._down_since = now
        self._failed_attempts += 1
        text = failure.text
        if failure.kind not in self._failures_seen:
            self._failures_seen.add(failure.kind)
            self._last_failure_log = now
            self._loud = True
            log.warning("%s; %d message(s) wait in the spool; retrying", text, waiting)
        elif now - self._last_failure_log >= STILL_FAILING_LOG_INTERVAL_S:
            self._last_failure_log = now
            log.warning(
                "still cannot connect to %s after %.0f s (%d attempts): %s; %d message(s) waiting",
                self.address,
                now - self._down_since,
                self._failed_attempts,
                text,
                waiting,
            )
        else:
            log.debug("%s; retrying", text)

    def connected(self, first: bool, waiting: int, client_id: str, protocol: str) -> None:
        now = self.clock.monotonic()
        down_for = None if self._down_since is None else now - self._down_since
        level = logging.WARNING if self._loud else logging.INFO
        sending = f"; sending {waiting} spooled message(s) first" if waiting else ""
        if first:
            log.log(
                level,
                "connected to %s as %s (MQTT %s)%s%s",
                self.address,
                client_id,
                protocol,
                "" if down_for is None else " after %.1f s of failed attempts" % down_for,
                sending,
            )
        else:
            log.log(
                level,
                "reconnected to %s after %.1f s%s",
                self.address,
                down_for or 0.0,
                sending,
            )
        self._down_since = None
        self._failures_seen.clear()
        self._failed_attempts = 0
        self._loud = False

    def connection_lost(self, reason: object, waiting: int) -> None:
        """Loud at most once a minute: a broker that keeps kicking us (two devices with one
        client id do that to each other) must not flood the console."""
        now = self.clock.monotonic()
        self._down_since = now
        if now - self._last_loss_log < LOSS_LOG_INTERVAL_S:
            self._losses_unlogged += 1
            log.info("lost the connection to %s (%s); reconnecting", self.address, reason)
            return
        log.warning(
            "lost the connection to %s (%s)%s; %d message(s) wait in the spool; reconnecting",
            self.address,
            reason,
            f"; {self._losses_unlogged} more time(s) since the last report"
            if self._losses_unlogged
            else "",
            waiting,
        )
        self._last_loss_log = now
        self._losses_unlogged = 0
        self._loud = True

    def fell_back(self, reason: object) -> None:
        log.info(
            "%s does not take MQTT 5 (%s); using MQTT 3.1.1, with which a message the broker's "
            "ACL denies cannot be told from a delivered one",
            self.address,
            reason,
        )

    # -- messages -----------------------------------------------------------------------
    def dropped(self, count: int, why: str, total: int, limit: int) -> None:
        """Every drop is counted by the caller; logged at most once a minute."""
        self._drops_unlogged += count
        now = self.clock.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            log.warning(
                "MQTT spool: dropped %d message(s) (%s; %d dropped in all, limit %d bytes)",
                self._drops_unlogged,
                why,
                total,
                limit,
            )
            self._drops_unlogged = 0
            self._last_drop_log = now

    def unlogged_drops(self, total: int) -> None:
        """Sum up the drops not logged yet (on reconnect and at close)."""
        if self._drops_unlogged:
            log.warning(
                "MQTT spool: dropped %d more message(s) since the last report (%d dropped in all)",
                self._drops_unlogged,
                total,
            )
            self._drops_unlogged = 0

    def spool_error(self, error: Exception) -> None:
        text = str(error)
        if text not in self._spool_errors_seen:
            self._spool_errors_seen.add(text)
            log.error("%s; messages for %s are dropped until it can", text, self.address)

    def refused(self, topic: str, reason: object) -> None:
        """A message the broker refused: the first per topic and reason at once, then sums."""
        key = (topic, str(reason))
        now = self.clock.monotonic()
        if key not in self._refusals_seen:
            self._refusals_seen.add(key)
            self._last_refusal_log = now
            log.error(
                "%s refused a message on %s: %s (does the broker's ACL, or the device's IoT "
                "policy, allow publishing there?); it is dropped",
                self.address,
                topic,
                reason,
            )
            return
        self._refusals_unlogged[topic] = self._refusals_unlogged.get(topic, 0) + 1
        if now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL_S:
            self.unlogged_refusals()

    def unlogged_refusals(self) -> None:
        """Sum up the refusals not logged yet (at most once a minute, and at close)."""
        for topic, count in sorted(self._refusals_unlogged.items()):
            log.error("%s refused %d more message(s) on %s", self.address, count, topic)
        self._refusals_unlogged.clear()
        self._last_refusal_log = self.clock.monotonic()

    def poison(self, topic: str, disconnects: int) -> None:
        log.error(
            "%s closed the connection %d times while a message on %s was the oldest "
            "unacknowledged one; dropped it (is the topic allowed by the device's policy?)",
            self.address,
            disconnects,
            topic,
        )

    def closed(self, stats: BridgeStats, waited: float, kind: str) -> None:
        self.unlogged_drops(stats.dropped)
        self.unlogged_refusals()
        if stats.lost:
            log.error(
                "MQTT bridge closed with %d message(s) for %s unsent after waiting %.1f s; they are "
                "lost%s",
                stats.lost,
                self.address,
                waited,
                f" (last error: {stats.last_error})" if stats.last_error else "",
            )
        if stats.kept:
            log.warning(
                "MQTT bridge closed with %d message(s) unsent; they stay in the %s spool for the "
                "next start",
                stats.kept,
                kind,
            )
        log.info(
            "MQTT bridge closed: %d published, %d rejected, %d dropped, %d lost, %d kept; "
            "%d delivered from the cloud",
            stats.published,
            stats.rejected,
            stats.dropped,
            stats.lost,
            stats.kept,
            stats.delivered_from_cloud,
        )
