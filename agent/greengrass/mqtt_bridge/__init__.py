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
- :mod:`.spool`: the bounded spools (memory and SQLite), no MQTT in them;
- :mod:`.options`: :class:`BridgeOptions`, everything a bridge is given;
- :mod:`.bridge`: :class:`MqttBridge` and :func:`attach_bridge`.

Device code: importable on Python 3.8; paho-mqtt (2.x, the ``mqtt`` extra) is
imported only when a bridge is created.
"""

from __future__ import annotations

from .address import BrokerAddress, normalise_protocol, parse_mqtt_url, tls_context
from .bridge import MqttBridge, attach_bridge, cloud_subjects
from .options import BridgeOptions
from .spool import DEFAULT_SPOOL_LIMIT_BYTES, MemorySpool, SpoolEntry, SqliteSpool, entry_size

__all__ = [
    "DEFAULT_SPOOL_LIMIT_BYTES",
    "BridgeOptions",
    "BrokerAddress",
    "MemorySpool",
    "MqttBridge",
    "SpoolEntry",
    "SqliteSpool",
    "attach_bridge",
    "cloud_subjects",
    "entry_size",
    "normalise_protocol",
    "parse_mqtt_url",
    "tls_context",
]
