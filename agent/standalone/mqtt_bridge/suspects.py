"""Which message makes the broker hang up: a publish it refuses by closing the connection.

With MQTT 3.1.1 there is no negative PUBACK; AWS IoT Core answers a publish
its policy denies by closing the connection. Resent on every reconnect, such a
message would block everything behind it forever. So each connection lost
with messages in flight counts against the oldest unacknowledged one, and at
``POISON_DISCONNECTS`` in a row it is dropped (and counted as rejected). While
any message is suspected, the bridge sends one message at a time: a lost
connection is then that message's doing, and no PUBACK for an earlier one can
vanish in the reset a broker sends when it closes on unread data, which would
put the blame on the wrong topic.
"""

from __future__ import annotations

from typing import Dict

POISON_DISCONNECTS = 5


class Suspects:
    """Spool id -> connections lost in a row while that message was the oldest in flight."""

    def __init__(self, limit: int = POISON_DISCONNECTS) -> None:
        self.limit = limit
        self._counts: Dict[int, int] = {}

    def __bool__(self) -> bool:
        """Whether any message is suspected: then send one at a time."""
        return bool(self._counts)

    def connection_lost(self, oldest_in_flight: int) -> bool:
        """Count a lost connection against the oldest message in flight; True: drop it now."""
        count = self._counts.get(oldest_in_flight, 0) + 1
        if count < self.limit:
            self._counts[oldest_in_flight] = count
            return False
        del self._counts[oldest_in_flight]
        return True

    def cleared(self, entry_id: int) -> None:
        """The broker answered for this message: not a suspect any more."""
        self._counts.pop(entry_id, None)

    def forget_below(self, oldest_spooled: int) -> None:
        """Forget suspects no longer in the spool (pushed out when it was full)."""
        for entry_id in [i for i in self._counts if i < oldest_spooled]:
            del self._counts[entry_id]
