"""The ServiceNow servers the benchmarks run against, and what each one does.

* ``standin``: the project's stand-in (``devtools.servicenow_standin``), in
  its own process by default (``StandInProcess``), or in a thread of the
  benchmark process (``--standin thread``, as the tests run it).
* ``plain``: :mod:`benchmarks.plain_table_server`, a plain ``http.server``
  with keep-alive and Nagle on, in its own process.
* ``outside``: any server (``--snow-url`` with ``--secret-file``), for
  example a ServiceNow developer instance. It gets real incidents.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Callable, Dict

from .common import REPO_ROOT, SNOW_USER, new_password, secret_json, start_standin
from .plain_table_server import READY_PREFIX

TABLE_PATH = "/api/now/table/incident"

DESCRIPTIONS = {
    "standin-process": {
        "server": "devtools.servicenow_standin in its own process",
        "nagle": "off (disable_nagle_algorithm = True)",
        "threads": "ThreadingHTTPServer: a thread per connection",
        "persistence": "SQLite in memory, lost when it exits",
        "keep_alive": "yes (HTTP/1.1, Content-Length)",
    },
    "standin-thread": {
        "server": "devtools.servicenow_standin in a thread of the benchmark process "
        "(shares its GIL)",
        "nagle": "off (disable_nagle_algorithm = True)",
        "threads": "ThreadingHTTPServer: a thread per connection",
        "persistence": "SQLite in memory, lost when it exits",
        "keep_alive": "yes (HTTP/1.1, Content-Length)",
    },
    "plain-http-server": {
        "server": "benchmarks.plain_table_server in its own process",
        "nagle": "on (http.server's default); headers and body are two writes",
        "threads": "ThreadingHTTPServer: a thread per connection",
        "persistence": "a dict in memory, lost when it exits",
        "keep_alive": "yes (HTTP/1.1, Content-Length)",
    },
}


class Server:
    """A running ServiceNow: ``url`` (the instance), ``secret`` (the credentials'
    JSON as Secrets Manager holds it), ``name``, ``description`` and ``stop()``."""

    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        description: Dict[str, str],
        stop: Callable[[], None],
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.secret = secret
        self.description = description
        self._stop = stop

    @property
    def table_url(self) -> str:
        """The blog's form of ``snowUrl``: the full incident table URL."""
        return self.url + TABLE_PATH

    def stop(self) -> None:
        self._stop()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _PlainServerProcess:
    def __init__(self, password: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.plain_table_server", "--port", "0"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            # Credentials through a pipe, never on a command line other users can read.
            self._proc.stdin.write(f"{SNOW_USER}:{password}\n")  # type: ignore[union-attr]
            self._proc.stdin.close()  # type: ignore[union-attr]
            line = self._proc.stdout.readline()  # type: ignore[union-attr]
        except BaseException:
            self.stop()
            raise
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"the plain http.server did not start: {line!r}")
        self.url = line[len(READY_PREFIX) :].strip()

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def start_server(kind: str, standin_mode: str = "process") -> Server:
    """Start the ``standin`` or the ``plain`` server with a fresh password."""
    password = new_password()
    if kind == "standin":
        standin = start_standin(password, standin_mode)
        name = f"standin-{standin_mode}"
        return Server(name, standin.url, secret_json(password), DESCRIPTIONS[name], standin.stop)
    if kind == "plain":
        plain = _PlainServerProcess(password)
        name = "plain-http-server"
        return Server(name, plain.url, secret_json(password), DESCRIPTIONS[name], plain.stop)
    raise ValueError(f"unknown server kind {kind!r}")


def outside_server(url: str, secret_file: str) -> Server:
    """The server at ``url``, with the credentials in ``secret_file``; nothing is started."""
    try:
        with open(secret_file, encoding="utf-8") as handle:
            secret = handle.read()
    except OSError as exc:
        raise ValueError(f"cannot read --secret-file {secret_file}: {exc.strerror}") from None
    try:
        parsed = json.loads(secret)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(
            f"--secret-file {secret_file} must hold a JSON object such as "
            '{"username": "...", "password": "..."}'
        )
    description = {
        "server": f"the server at {url} (--snow-url)",
        "nagle": "unknown",
        "threads": "unknown",
        "persistence": "its own: the benchmarks create real incidents there",
        "keep_alive": "unknown",
    }
    return Server("outside", url, secret, description, lambda: None)
