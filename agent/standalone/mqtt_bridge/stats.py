"""What a bridge did with the messages it was given: a snapshot, and its one balance.

Every message handed to the bridge ends in exactly one of these: published
(the broker acknowledged it), rejected (the broker refused it, or MQTT cannot
carry it), dropped (pushed out of a full spool, bigger than the spool, the
spool file could not take it, or handed over after close), lost (still in a
memory spool at close), kept (still in a spool file at close; the next start
sends it), or pending (still waiting, while the bridge runs). So, always::

    submitted + carried_over == published + rejected + dropped + lost + kept + pending
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class BridgeStats:
    broker: str
    submitted: int = 0  # handed to publish()
    carried_over: int = 0  # found in the spool file at start, from an earlier run
    published: int = 0  # acknowledged by the broker
    rejected: int = 0  # refused by the broker (PUBACK reason >= 0x80), or not publishable
    dropped: int = 0  # spool full, bigger than the spool, spool file unwritable, after close
    lost: int = 0  # left in a memory spool at close
    kept: int = 0  # left in a spool file at close, for the next start
    pending: int = 0  # in the spool now (waiting, or sent and not yet acknowledged)
    pending_bytes: int = 0
    spooled: int = 0  # handed over while not connected, so they waited
    resent: int = 0  # sent again after a reconnect because no PUBACK had come
    delivered_from_cloud: int = 0  # broker messages handed to the core
    dropped_from_cloud: int = 0  # broker messages lost because the inbound queue was full
    connects: int = 0
    reconnects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    connected: bool = False
    protocol: Optional[str] = None  # the MQTT version of the last connection attempt
    last_error: Optional[str] = None  # why the last connection attempt failed or ended

    @property
    def undelivered(self) -> int:
        """Messages that did not reach the broker and will not in this run."""
        return self.rejected + self.dropped + self.lost + self.kept

    @property
    def unaccounted(self) -> int:
        """Always 0: the balance in this module's docstring."""
        return (
            self.submitted
            + self.carried_over
            - self.published
            - self.rejected
            - self.dropped
            - self.lost
            - self.kept
            - self.pending
        )

    def summary(self) -> Dict[str, Any]:
        """The counts a run's ``--json`` summary carries."""
        return {
            "broker": self.broker,
            "published": self.published,
            "lost": self.lost,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "spooled": self.spooled,
            "kept": self.kept,
            "last_error": self.last_error,
        }

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)
