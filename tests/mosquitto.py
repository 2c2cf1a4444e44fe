"""A Mosquitto broker of the test's own, on a free port, that can be stopped and restarted.

Tests need brokers with special settings (TLS, persistence, restarts), so they
never use a system broker. If ``mosquitto`` is not installed the test fails
with a message saying how to install it: CI installs it, and a silent skip
would hide that the bridge went untested.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional, Sequence

import pytest

CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in CANDIDATES if os.access(p, os.X_OK)), None
    )
    if not found:
        pytest.fail(
            "mosquitto is not installed, and the MQTT bridge tests need a real broker: "
            "apt-get install mosquitto (or brew install mosquitto)",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    """``mosquitto -c <dir>/mosquitto.conf`` with one listener on 127.0.0.1:``port``.

    ``listener_settings`` go under the listener (TLS files, ...). With
    ``persistence`` the broker keeps sessions and queued QoS 1 messages across
    :meth:`restart` (it saves them on a clean stop), so a subscriber with a
    persistent session misses nothing while the broker is down.
    """

    def __init__(
        self,
        directory: Path,
        port: Optional[int] = None,
        listener_settings: Sequence[str] = (),
        persistence: bool = True,
        allow_anonymous: bool = True,
    ) -> None:
        self.binary = mosquitto_binary()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.directory / "mosquitto.conf"
        self.log_path = self.directory / "mosquitto.log"
        self.process: Optional[subprocess.Popen] = None
        lines: List[str] = [
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",  # as root, don't drop to 'mosquitto'
            f"listener {self.port} 127.0.0.1",
            *listener_settings,
        ]
        if allow_anonymous:
            lines.append("allow_anonymous true")
        if persistence:
            lines += ["persistence true", f"persistence_location {self.directory}/"]
        lines += [
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "",
        ]
        self.conf.write_text("\n".join(lines))

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://localhost:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 5.0) -> Mosquitto:
        if self.running:
            return self
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(
                    f"mosquitto exited with {self.process.returncode}: {err.strip()}\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"mosquitto did not listen on {self.port} within {timeout} s\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """A clean stop (SIGTERM): the broker saves its persistence file."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def restart(self, down_for: float = 0.0) -> Mosquitto:
        self.stop()
        if down_for:
            time.sleep(down_for)
        return self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no mosquitto log)"

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
