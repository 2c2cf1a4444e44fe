"""The status function's configuration, from its variables (see ``agent.variables.VARIABLES``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from ..config import _topic
from ..errors import ConfigError
from ..names import ANOMALY_FUNCTION_ID, HEALTH_TOPIC, SENSOR_FUNCTION_ID
from ..variables import VariableReader

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MIN_STALE_SECONDS = 15.0


@dataclass(frozen=True)
class StatusSettings:
    port: Optional[int]  # None: no server (the function only listens to messages)
    bind: str
    state_dir: str
    readings_topic: str
    anomaly_topic: str
    stale_seconds: Optional[float]  # None: derived from the sensor's period
    stuck_seconds: float

    @classmethod
    def from_mapping(cls, source: Mapping[str, str]) -> StatusSettings:
        v = VariableReader(source)
        port = v.get("statusPort")
        if port is not None and not 0 <= port <= 65535:
            raise ConfigError(f"statusPort must be a port number from 0 to 65535, got {port}")
        bind = (v.get("statusBind") or "").strip()
        if not bind:
            raise ConfigError("statusBind must be an address such as 127.0.0.1 or 0.0.0.0")
        stale = v.get("statusStaleSeconds")
        if stale is not None and stale <= 0:
            raise ConfigError(f"statusStaleSeconds must be positive, got {stale}")
        stuck = v.get("statusStuckSeconds")
        if stuck <= 0:
            raise ConfigError(f"statusStuckSeconds must be positive, got {stuck}")
        return cls(
            port=port,
            bind=bind,
            state_dir=v.get("stateDir"),
            readings_topic=_topic(v, "readingsTopic"),
            anomaly_topic=_topic(v, "anomalyTopic"),
            stale_seconds=stale,
            stuck_seconds=stuck,
        )

    @property
    def loopback_only(self) -> bool:
        return self.bind in LOOPBACK

    def topics(self) -> Tuple[str, ...]:
        """What the status function subscribes to (V2 subscribes itself; V1 is routed)."""
        return (
            self.readings_topic,
            self.anomaly_topic,
            HEALTH_TOPIC.format(function=SENSOR_FUNCTION_ID),
            HEALTH_TOPIC.format(function=ANOMALY_FUNCTION_ID),
        )

    def stale_after(self, period: Optional[float]) -> float:
        """Seconds without a reading after which ``/healthz`` fails."""
        if self.stale_seconds is not None:
            return self.stale_seconds
        return max(MIN_STALE_SECONDS, 3.0 * (period or 5.0))


def parse_address(text: str, option: str = "--serve") -> Tuple[str, int]:
    """``[HOST:]PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``; host defaults to 127.0.0.1."""
    text = text.strip()
    host, port_text = "127.0.0.1", text
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise ValueError(f"{option} takes [HOST:]PORT, e.g. 8080 or [::1]:8080, got {text!r}")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, port_text = text.rsplit(":", 1)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535 or not host:
        raise ValueError(
            f"{option} takes [HOST:]PORT with a port from 0 to 65535, e.g. 8080 or "
            f"0.0.0.0:8080, got {text!r}"
        )
    return host, int(port_text)
