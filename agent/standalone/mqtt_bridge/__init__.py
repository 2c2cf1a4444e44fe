"""A bridge from the local core's ``cloud`` target to a real MQTT broker.

Messages the group routes to ``cloud`` are published to the broker with QoS 1;
messages the broker delivers on the subjects of subscriptions whose source is
``cloud`` are routed into the group's functions. Pointed at
``mqtts://<prefix>-ats.iot.<region>.amazonaws.com:8883`` with the device
certificate, its key and AmazonRootCA1, and with the thing name as client id,
this is exactly the connection AWS IoT Core accepts, so the agent can run
without Greengrass; pointed at a local Mosquitto it shows the IoT topics off
the Pi.

The package, by responsibility:

- :mod:`.address`: ``mqtt(s)://`` URLs, MQTT versions, the TLS context;
- :mod:`.options`: :class:`BridgeOptions`, everything a bridge is given;
- :mod:`.spool`: the bounded spools (memory and SQLite), no MQTT in them;
- :mod:`.session`: one connection, a fresh paho client driven by the bridge;
- :mod:`.suspects`: which message makes the broker hang up (3.1.1 denials);
- :mod:`.inbound`: messages from the broker into the functions, on their own thread;
- :mod:`.diagnosis`: why a connection failed, in words;
- :mod:`.reporting`: the log lines, once per distinct failure, drops summed up;
- :mod:`.stats`: :class:`BridgeStats`, where every message went;
- :mod:`.bridge`: :class:`MqttBridge`, the spool in front of one connection at a time;
- :mod:`.core_link`: :func:`attach_bridge`, the local core's ``cloud`` target.

Device code: importable on Python 3.8; paho-mqtt (2.x, the ``mqtt`` extra) is
imported only when a bridge is created.
"""

from __future__ import annotations

from .address import AUTO, BrokerAddress, normalise_protocol, parse_mqtt_url, tls_context
from .bridge import MqttBridge
from .core_link import attach_bridge, cloud_subjects
from .options import BridgeOptions
from .spool import (
    DEFAULT_SPOOL_LIMIT_BYTES,
    MemorySpool,
    SpoolEntry,
    SpoolError,
    SqliteSpool,
    entry_size,
)
from .stats import BridgeStats

__all__ = [
    "AUTO",
    "DEFAULT_SPOOL_LIMIT_BYTES",
    "BridgeOptions",
    "BridgeStats",
    "BrokerAddress",
    "MemorySpool",
    "MqttBridge",
    "SpoolEntry",
    "SpoolError",
    "SqliteSpool",
    "attach_bridge",
    "cloud_subjects",
    "entry_size",
    "normalise_protocol",
    "parse_mqtt_url",
    "tls_context",
]
