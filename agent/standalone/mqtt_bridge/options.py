"""Everything a bridge is configured with, in one validated object."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional, Tuple

from ...errors import ConfigError
from .address import BrokerAddress, default_client_id, normalise_protocol, parse_mqtt_url
from .spool import DEFAULT_SPOOL_LIMIT_BYTES

DEFAULT_MAX_INFLIGHT = 20


@dataclass(frozen=True)
class BridgeOptions:
    """How to reach the broker and how much to keep while it cannot be reached.

    ``url`` is ``mqtt://host[:1883]`` or ``mqtts://host[:8883]`` (see
    :func:`~.address.parse_mqtt_url`); ``client_id`` and ``protocol`` override
    the URL's (``protocol`` ``auto``, the default: MQTT 5, or 3.1.1 if the
    broker refuses 5). ``ca``/``cert``/``key`` are PEM files for TLS
    (``mqtts://`` only). ``spool_path`` keeps the spool in a SQLite file
    instead of memory. Reconnecting backs off from ``reconnect_delay[0]`` to
    at most ``reconnect_delay[1]`` seconds; :meth:`MqttBridge.close` waits up
    to ``close_timeout`` seconds for the broker to take what is spooled.
    """

    url: str
    client_id: Optional[str] = None
    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    protocol: Optional[str] = None
    spool_limit_bytes: int = DEFAULT_SPOOL_LIMIT_BYTES
    spool_path: Optional[str] = None
    qos: int = 1
    keepalive: int = 30
    reconnect_delay: Tuple[float, float] = (1.0, 10.0)
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    close_timeout: float = 10.0
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        address = parse_mqtt_url(self.url)  # raises ConfigError for a bad URL
        normalise_protocol(self.protocol)
        if self.qos not in (0, 1):
            raise ConfigError(f"qos must be 0 or 1, got {self.qos}")
        if (self.ca or self.cert or self.key) and not address.tls:
            raise ConfigError("certificates need a TLS broker URL (mqtts://)")
        low, high = self.reconnect_delay
        if not 0 < low <= high:
            raise ConfigError(
                f"reconnect delay must be 0 < min <= max seconds, got {self.reconnect_delay}"
            )
        if not self.close_timeout >= 0:
            raise ConfigError(f"close timeout must be 0 or more seconds, got {self.close_timeout}")
        if not self.connect_timeout > 0:
            raise ConfigError(f"connect timeout must be positive, got {self.connect_timeout}")
        if self.keepalive < 5:
            raise ConfigError(f"keepalive must be 5 seconds or more, got {self.keepalive}")

    def retry_delay(self, failures: int) -> float:
        """Seconds before the next attempt after ``failures`` failed ones in a row.

        Doubles from ``reconnect_delay[0]`` up to ``reconnect_delay[1]`` (10 s by
        default, so a spool drains within about 10 s of the broker's return),
        less up to a fifth at random so devices that lost one broker spread out.
        """
        low, high = self.reconnect_delay
        delay = min(high, low * 2.0 ** min(max(0, failures - 1), 30))
        return delay * random.uniform(0.8, 1.0)

    def address(self) -> BrokerAddress:
        """The broker's address, with this object's protocol and client id applied."""
        address = parse_mqtt_url(self.url)
        return address._replace(
            protocol=normalise_protocol(self.protocol) or address.protocol,
            client_id=self.client_id or address.client_id or default_client_id(),
        )
