#!/usr/bin/env python3
"""Make a throwaway local CA, a broker certificate and a device certificate for Mosquitto.

This mirrors how AWS IoT Core authenticates a device: mutual TLS, the device
presenting a certificate whose subject names the thing, the broker presenting
one the device checks against a CA it was given. Run::

    python certs-example/make_local_ca.py --out certs/local --device pi-kitchen --port 8883
    mosquitto -c certs/local/mosquitto.conf

Writes ``ca.pem``, ``broker.pem``, ``broker.key`` (SAN localhost, 127.0.0.1),
``device.pem``, ``device.key`` (CN = the device/thing name) and
``mosquitto.conf`` (a listener on 127.0.0.1 that requires a client certificate
and takes its CN as the user name). Keys are written mode 0600. The CA's own
key is never written: nothing more can be signed with it once this exits, so
to add a device, make a new set. ``certs/`` is gitignored: never commit what
this writes. See ``certs-example/LOCAL-MQTT.md``.

Development tooling (Python 3.11+, ``cryptography``); not device code.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_OUT = "certs/local"
FILES = ("ca.pem", "broker.pem", "broker.key", "device.pem", "device.key", "mosquitto.conf")


@dataclass(frozen=True)
class LocalCA:
    """Where everything was written."""

    out: Path
    ca: Path
    broker_cert: Path
    broker_key: Path
    device_cert: Path
    device_key: Path
    mosquitto_conf: Path
    device: str
    port: int

    def listener_settings(self) -> list[str]:
        """The listener's settings after its ``listener`` line (for a test's own config)."""
        return listener_settings(self.ca, self.broker_cert, self.broker_key)


def listener_settings(ca: Path, cert: Path, key: Path) -> list[str]:
    return [
        f"cafile {ca}",
        f"certfile {cert}",
        f"keyfile {key}",
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
    ]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edge-agent local test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_name: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    days: int,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # also when the file existed with looser permissions
        os.write(fd, data)
    finally:
        os.close(fd)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_local_ca(
    out: str | os.PathLike[str] = DEFAULT_OUT,
    device: str = "edge-agent-dev",
    port: int = 8883,
    *,
    days: int = 30,
    hosts: tuple[str, ...] = (),
    force: bool = False,
) -> LocalCA:
    """Write the CA certificate, broker and device certificates and keys, and mosquitto.conf."""
    if not device or "/" in device or any(c in device for c in "#+\0"):
        raise ValueError(f"device name must be a plain thing name, got {device!r}")
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port}")
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    existing = [f for f in FILES if (out_dir / f).exists()]
    if existing and not force:
        raise FileExistsError(
            f"{out_dir} already holds {', '.join(existing)}; use --force to replace them"
        )
    dns = ["localhost"]
    ips = ["127.0.0.1"]
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            dns.append(host)
        else:
            ips.append(host)

    ca_key = _key()
    ca_name = _name("edge-agent local test CA")
    ca_cert = _issue("edge-agent local test CA", ca_key, ca_name, ca_key, days, ca=True)
    broker_key = _key()
    broker_cert = _issue(
        "localhost",
        broker_key,
        ca_name,
        ca_key,
        days,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        dns=tuple(dns),
        ips=tuple(ips),
    )
    device_key = _key()
    device_cert = _issue(
        device, device_key, ca_name, ca_key, days, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )

    result = LocalCA(
        out=out_dir,
        ca=out_dir / "ca.pem",
        broker_cert=out_dir / "broker.pem",
        broker_key=out_dir / "broker.key",
        device_cert=out_dir / "device.pem",
        device_key=out_dir / "device.key",
        mosquitto_conf=out_dir / "mosquitto.conf",
        device=device,
        port=port,
    )
    _write(result.ca, _pem(ca_cert))
    _write(result.broker_cert, _pem(broker_cert))
    _write(result.broker_key, _key_pem(broker_key), private=True)
    _write(result.device_cert, _pem(device_cert))
    _write(result.device_key, _key_pem(device_key), private=True)
    conf = [
        "# Written by certs-example/make_local_ca.py: mutual TLS, as AWS IoT Core does it.",
        "# Run as your own user: mosquitto -c " + str(result.mosquitto_conf),
        f"listener {port} 127.0.0.1",
        *result.listener_settings(),
        "",
    ]
    _write(result.mosquitto_conf, "\n".join(conf).encode("utf-8"))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Make a throwaway local CA and certificates for a mutual-TLS Mosquitto."
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--device",
        default="edge-agent-dev",
        help="device (thing) name: the device certificate's CN",
    )
    parser.add_argument("--port", type=int, default=8883, help="TLS listener port (default 8883)")
    parser.add_argument("--days", type=int, default=30, help="validity in days (default 30)")
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        help="another broker host name or IP for the broker certificate (repeatable)",
    )
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    try:
        made = make_local_ca(
            args.out,
            args.device,
            args.port,
            days=args.days,
            hosts=tuple(args.host),
            force=args.force,
        )
    except (ValueError, OSError) as exc:
        print(f"make_local_ca: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(FILES)} to {made.out}")
    print(f"start the broker:  mosquitto -c {made.mosquitto_conf}")
    print(
        f"watch messages:    mosquitto_sub -h 127.0.0.1 -p {made.port} --cafile {made.ca} "
        f"--cert {made.device_cert} --key {made.device_key} -t 'IoTBlog/#' -v"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
