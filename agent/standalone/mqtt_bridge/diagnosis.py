"""Why a connection failed, in words that name the broker, the file at fault and what to do.

Pure functions of an exception, a paho log line or a CONNACK reason code, so
each is tested without a network. Each returns a :class:`Diagnosis`: the text
the console shows, and the *kind* of failure, by which the bridge says each
distinct failure once. Two texts can be one kind: a broker that refuses a
client certificate after a TLS 1.3 handshake sends an alert and closes, and
the alert reaches the client, or is lost in the TCP reset that closing on the
client's unread CONNECT causes; the cause is the same.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import Any, NamedTuple, Optional, Tuple

from .address import BrokerAddress

# CONNACK reason codes (MQTT 5; paho maps 3.1.1's return codes onto them).
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_ID_NOT_VALID = 0x85
BAD_USER_NAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SERVER_UNAVAILABLE = 0x88
SERVER_BUSY = 0x89

# X509 verify codes from ssl.SSLCertVerificationError.verify_code (OpenSSL's).
_CERT_NOT_YET_VALID = 9
_CERT_HAS_EXPIRED = 10
_HOSTNAME_MISMATCH = 62
_IP_ADDRESS_MISMATCH = 64

_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")
_CLIENT_CERT_REQUIRED = "tls-client-certificate-required"
_CLIENT_CERT_REFUSED = "tls-client-certificate-refused"


class TlsFiles(NamedTuple):
    ca: Optional[str]
    cert: Optional[str]


class Diagnosis(NamedTuple):
    text: str  # one line for the console
    kind: str  # the same for every attempt that failed the same way


def describe_connect_error(
    exc: BaseException, address: BrokerAddress, files: TlsFiles
) -> Diagnosis:
    """Why a connection attempt raised ``exc``."""
    reason, kind = _reason(exc, address, files)
    return Diagnosis(f"cannot connect to {address}: {reason}", kind)


def describe_early_close(socket_error: str, address: BrokerAddress, files: TlsFiles) -> Diagnosis:
    """The broker closed the connection before its CONNACK; ``socket_error`` is paho's log line.

    With TLS 1.3 a broker checks the client certificate after the handshake, so
    its refusal arrives as an alert on the first read, seen only in paho's log,
    or not at all (see the module's docstring).
    """
    code = _ssl_code(socket_error)
    if code:
        reason, kind = _ssl_reason(code, socket_error, address, files)
        return Diagnosis(f"cannot connect to {address}: {reason}", kind)
    detail = f" ({_short(socket_error)})" if socket_error else ""
    if address.tls and files.cert is None:
        return Diagnosis(
            f"cannot connect to {address}: TLS: the broker closed the connection after the "
            f"handshake{detail}; it probably requires a client certificate, and none is given",
            _CLIENT_CERT_REQUIRED,
        )
    if address.tls:
        return Diagnosis(
            f"cannot connect to {address}: TLS: the broker closed the connection after the "
            f"handshake{detail}; it probably refused the client certificate {files.cert} "
            "(expired, revoked, or not from a CA it trusts?)",
            _CLIENT_CERT_REFUSED,
        )
    return Diagnosis(
        f"{address} closed the connection before accepting it{detail}; a broker does this to "
        "a client it does not allow (AWS IoT Core: a client id its policy does not allow), a "
        "TLS port to plain MQTT (then use mqtts://)",
        "early-close",
    )


def describe_refusal(reason: Any, address: BrokerAddress) -> Diagnosis:
    """A CONNACK that refused the connection, with what to check."""
    value = getattr(reason, "value", None)
    hints = {
        NOT_AUTHORIZED: "check the client id (AWS IoT Core allows iot:Connect only for "
        "client id = thing name) and what the certificate or user may do",
        BAD_USER_NAME_OR_PASSWORD: "the broker wants a user name and password, or a client "
        "certificate whose name it knows",
        CLIENT_ID_NOT_VALID: f"client id {address.client_id!r} is not accepted; set another "
        "with --client-id or ?client_id=",
        UNSUPPORTED_PROTOCOL_VERSION: "choose the MQTT version the broker speaks with "
        "?protocol=3.1.1 or ?protocol=5",
        SERVER_UNAVAILABLE: "the broker is up but not serving; retrying",
        SERVER_BUSY: "the broker is up but busy; retrying",
    }
    hint = hints.get(value) if isinstance(value, int) else None
    text = "{} refused the connection: {}{}".format(address, reason, f" ({hint})" if hint else "")
    return Diagnosis(text, f"refused:{value if value is not None else reason}")


def is_protocol_refusal(reason: Any) -> bool:
    """Whether a CONNACK refused the MQTT version (3.1.1's code 1 arrives as 0x84 too)."""
    return getattr(reason, "value", None) == UNSUPPORTED_PROTOCOL_VERSION


def _reason(exc: BaseException, address: BrokerAddress, files: TlsFiles) -> Tuple[str, str]:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _verify_reason(exc, address, files)
    if isinstance(exc, ssl.SSLError):
        code = getattr(exc, "reason", None) or _ssl_code(str(exc)) or ""
        return _ssl_reason(code, str(exc), address, files)
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"connection refused: nothing listens on port {address.port} (is the broker running?)",
            "connection-refused",
        )
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name {address.host!r} ({exc.strerror or exc})", "dns"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no answer in time (the wrong host or port, or a firewall dropping packets?)", (
            "timeout"
        )
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        hint = " (a plain MQTT port? use mqtt://)" if address.tls else " (a TLS port? use mqtts://)"
        return "the broker closed the connection at once" + hint, "reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror, f"errno:{exc.errno}"
    text = "{}: {}".format(type(exc).__name__, exc) if str(exc) else type(exc).__name__
    return text, text


def _verify_reason(
    exc: ssl.SSLCertVerificationError, address: BrokerAddress, files: TlsFiles
) -> Tuple[str, str]:
    code = getattr(exc, "verify_code", None)
    message = getattr(exc, "verify_message", None) or _short(str(exc))
    kind = f"tls-verify:{code}"
    if code in (_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH):
        return (
            f"TLS: the broker's certificate does not name {address.host!r} ({message}); "
            "connect with a host name its certificate lists",
            kind,
        )
    if code == _CERT_HAS_EXPIRED:
        return f"TLS: the broker's certificate has expired ({message})", kind
    if code == _CERT_NOT_YET_VALID:
        return (
            f"TLS: the broker's certificate is not valid yet ({message}); "
            "is this device's clock right?",
            kind,
        )
    trusted = f"the CA in {files.ca}" if files.ca else "the system's trusted CAs"
    return (
        f"TLS: the broker's certificate is not signed by {trusted} ({message}); the CA file "
        "must hold the CA that signed the broker's certificate (AWS IoT Core: AmazonRootCA1.pem)",
        kind,
    )


def _ssl_code(text: str) -> str:
    found = _SSL_REASON.search(text)
    return found.group(1) if found else ""


def _ssl_reason(code: str, text: str, address: BrokerAddress, files: TlsFiles) -> Tuple[str, str]:
    cert = files.cert or "(none given)"
    if code.endswith("ALERT_CERTIFICATE_EXPIRED"):
        return (
            f"TLS: the broker refused the client certificate {cert}: it has expired; renew it",
            _CLIENT_CERT_REFUSED,
        )
    if code.endswith("ALERT_CERTIFICATE_REVOKED"):
        return (
            f"TLS: the broker refused the client certificate {cert}: it was revoked",
            _CLIENT_CERT_REFUSED,
        )
    if code.endswith("ALERT_CERTIFICATE_REQUIRED"):
        return (
            "TLS: the broker requires a client certificate, and none is given",
            _CLIENT_CERT_REQUIRED,
        )
    if code.endswith(("ALERT_UNKNOWN_CA", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN")):
        return (
            f"TLS: the broker refused the client certificate {cert} ({_short(text)}); "
            "is it signed by a CA the broker trusts, and is it this device's?",
            _CLIENT_CERT_REFUSED,
        )
    if code in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return (
            f"the broker at port {address.port} does not speak TLS (a plain MQTT port? "
            "use mqtt://)",
            "not-tls",
        )
    if code.endswith("ALERT_HANDSHAKE_FAILURE"):
        return (
            f"TLS handshake refused by the broker ({_short(text)}); "
            "it may want a client certificate, or another TLS version",
            f"tls:{code}",
        )
    return f"TLS: {_short(text)}", f"tls:{code or _short(text)}"


def _short(text: str) -> str:
    """An OpenSSL message without the source location: stable from one attempt to the next."""
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", text).strip()
