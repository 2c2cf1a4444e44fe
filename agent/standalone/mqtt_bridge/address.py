"""Where the broker is and how to talk to it: ``mqtt(s)://`` URLs, MQTT versions, TLS.

Pure configuration: nothing here opens a connection. The MQTT version is
``auto`` unless chosen: MQTT 5 first, and 3.1.1 if the broker refuses 5 with
the CONNACK the standards prescribe. MQTT 5 matters because its PUBACK says
when the broker refused a message (an ACL denial); with 3.1.1 Mosquitto
acknowledges and discards such a message, and nobody can tell.
"""

from __future__ import annotations

import os
import socket
import ssl
from typing import List, NamedTuple, Optional, Union
from urllib.parse import parse_qs, urlsplit

from ...errors import ConfigError

MQTT_PORT = 1883
MQTTS_PORT = 8883
AWS_IOT_ALPN = "x-amzn-mqtt-ca"  # AWS IoT Core's ALPN for MQTT with client certificates on 443

AUTO = "auto"  # MQTT 5, or 3.1.1 when the broker refuses 5
_PROTOCOLS = {
    "3.1.1": "3.1.1",
    "311": "3.1.1",
    "4": "3.1.1",
    "5": "5",
    "5.0": "5",
    AUTO: AUTO,
}


class BrokerAddress(NamedTuple):
    host: str
    port: int
    tls: bool
    protocol: str  # "3.1.1", "5" or "auto"
    client_id: Optional[str]

    def __str__(self) -> str:
        return "{}://{}:{}".format("mqtts" if self.tls else "mqtt", self.host, self.port)


def default_client_id() -> str:
    return "edge-agent-" + socket.gethostname()


def normalise_protocol(value: Union[str, int, None]) -> Optional[str]:
    """``"3.1.1"``, ``"5"`` or ``"auto"`` from the forms people write; None stays None."""
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text.startswith("v"):
        text = text[1:]
    if text.startswith("mqttv"):
        text = text[5:]
    try:
        return _PROTOCOLS[text]
    except KeyError:
        raise ConfigError(f"MQTT protocol must be 3.1.1, 5 or auto, got {value!r}")


def parse_mqtt_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``, with ``?protocol=5|3.1.1|auto&client_id=X``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad MQTT URL {url!r}: {exc}")
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise ConfigError(
            f"MQTT URL must start with mqtt:// or mqtts:// (TLS), got {parts.scheme or url!r}"
        )
    if not parts.hostname:
        raise ConfigError(f"MQTT URL {url!r} names no host")
    if parts.username or parts.password:
        # A password in a URL ends up in shell history and process lists.
        raise ConfigError(
            "credentials in the MQTT URL are not supported; authenticate with a client certificate"
        )
    if parts.path not in ("", "/"):
        raise ConfigError(f"MQTT URL {url!r} must not have a path")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"protocol", "client_id"})
    if unknown:
        raise ConfigError(f"unknown MQTT URL parameter(s): {', '.join(unknown)}")
    tls = scheme == "mqtts"
    protocol = normalise_protocol(query.get("protocol", [""])[-1]) or AUTO
    client_id = query.get("client_id", [""])[-1] or None
    return BrokerAddress(
        parts.hostname, port or (MQTTS_PORT if tls else MQTT_PORT), tls, protocol, client_id
    )


def tls_context(
    ca: Optional[str] = None,
    cert: Optional[str] = None,
    key: Optional[str] = None,
    alpn: Optional[List[str]] = None,
) -> ssl.SSLContext:
    """A client context: TLS 1.2 or newer, the server's certificate and host name checked.

    ``ca`` is the CA bundle the broker's certificate must chain to (the system's
    trust store if None); ``cert``/``key`` the client certificate and its
    private key, which is how AWS IoT Core authenticates a device.
    """
    if (cert is None) != (key is None):
        raise ConfigError("a client certificate needs its key, and a key its certificate")
    for what, path in (("CA certificate", ca), ("client certificate", cert), ("key", key)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{what} file {path} does not exist")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        if cert is not None:
            context.load_cert_chain(certfile=cert, keyfile=key)
        if alpn:
            context.set_alpn_protocols(alpn)
    except (ssl.SSLError, ValueError) as exc:
        # The message names the file's problem, never its contents.
        raise ConfigError(f"cannot load the TLS files (CA {ca}, certificate {cert}): {exc}")
    return context
