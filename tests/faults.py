"""Real faults for the durability tests: a small tmpfs to fill, a real anomaly process to drive."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import tempfile
import threading
from typing import Any, Dict, Iterator, List

import pytest
from helpers import wait_until

WORKER = os.path.join(os.path.dirname(__file__), "anomaly_worker.py")


@contextlib.contextmanager
def tmpfs(size: str = "4m", options: str = "") -> Iterator[str]:
    """A fresh tmpfs of ``size`` (we run as root); skips the test, saying why, if it cannot mount."""
    directory = tempfile.mkdtemp(prefix="edge-agent-tmpfs-")
    opts = "size={}{}".format(size, "," + options if options else "")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", directory], capture_output=True, text=True
    )
    if result.returncode != 0:
        os.rmdir(directory)
        pytest.skip("cannot mount a tmpfs here (needs root): {}".format(result.stderr.strip()))
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", directory], check=False)
        os.rmdir(directory)


def fill(directory: str) -> str:
    """Write a ballast file in ``directory`` until the file system is full; return its path."""
    path = os.path.join(directory, "ballast")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return path


class AnomalyProcess:
    """``tests/anomaly_worker.py`` in its own process; stderr (its log) is collected."""

    def __init__(
        self, snow_url: str, state_dir: str, secret_path: str, *extra: str, wait: bool = True
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, snow_url, state_dir, secret_path, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: List[str] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        self.first_line = self.proc.stdout.readline().strip()
        if wait:
            assert self.first_line.startswith("READY"), self.first_line + self.log_text()
        self.pid = self.proc.pid

    def _read_log(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def log_text(self) -> str:
        return "\n".join(self.log)

    def send(self, message: Dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def ask(self, command: str) -> str:
        """Send a command; its one-line answer (empty if the process died)."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def health(self) -> Dict[str, Any]:
        line = self.ask("health")
        assert line.startswith("HEALTH "), line + self.log_text()
        return json.loads(line[len("HEALTH ") :])

    def summary(self) -> Dict[str, Any]:
        line = self.ask("summary")
        assert line.startswith("SUMMARY "), line + self.log_text()
        return json.loads(line[len("SUMMARY ") :])

    def wait_for_log(self, text: str, timeout: float = 20.0) -> str:
        def line_with_text() -> Any:
            return next((line for line in list(self.log) if text in line), None)

        if wait_until(lambda: line_with_text() is not None, timeout):
            return str(line_with_text())
        raise AssertionError("no log line with {!r}:\n{}".format(text, self.log_text()))

    def quit(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                stream.close()


def episode_events(count: int, device: str = "pi-disk", start: float = 1_790_000_000.0) -> List:
    """``count`` episodes, each a breach and a recovery, in order."""
    from helpers import anomaly

    events = []
    for i in range(count):
        t0 = start + 1000 * i
        episode = "{}:humidity:upper:{}".format(device, int(t0))
        events.append(anomaly("breach", 0, episode, ts=t0 + 15, started_at=t0))
        events.append(anomaly("recovered", 1, episode, value=40.0, ts=t0 + 300, started_at=t0))
    return events


def moved_aside(state_dir: str) -> List[str]:
    return sorted(n for n in os.listdir(state_dir) if n.startswith("outbox.broken-"))
