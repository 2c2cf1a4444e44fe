"""Everything a bridge is configured with, in one validated object."""

from __future__ import annotations

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
    the URL's. ``ca``/``cert``/``key`` are PEM files for TLS (``mqtts://``
    only). ``spool_path`` keeps the spool in a SQLite file instead of memory.
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
    reconnect_delay: Tuple[float, float] = (1.0, 60.0)
    max_inflight: int = DEFAULT_MAX_INFLIGHT

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

    def address(self) -> BrokerAddress:
        """The broker's address, with this object's protocol and client id applied."""
        address = parse_mqtt_url(self.url)
        return address._replace(
            protocol=normalise_protocol(self.protocol) or address.protocol,
            client_id=self.client_id or address.client_id or default_client_id(),
        )
