"""The stand-in as a separate process, driven from a test or a benchmark.

A ServiceNow instance does not share the agent's interpreter: its request
handling should not take the agent's GIL, and some faults only exist between
processes (a server frozen with SIGSTOP, a slow commit that outlives a killed
client). :class:`StandInProcess` starts ``python -m devtools.servicenow_standin
--port 0``, reads the bound URL from its banner, and controls it through the
admin API (:mod:`.admin`) with a random token passed in the environment::

    with StandInProcess(users={"agent": password}) as snow:
        snow.faults.commit_delay = 2.0
        ...
        snow.pause()    # SIGSTOP: connections are accepted by the kernel, never answered
        snow.resume()
        assert len(snow.incidents()) == 1

The process is stopped (SIGTERM, then SIGKILL) by :meth:`stop`, on leaving the
``with`` block, and at the latest when the object is collected or the
interpreter exits. It is told to stop with SIGTERM, never SIGINT: a parent
started with SIGINT ignored (a background job) passes that on to children.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from .admin import ADMIN_HEADER

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN_ENV = "EDGE_AGENT_STANDIN_ADMIN_TOKEN"
BANNER = "ServiceNow stand-in listening on "


def _knob(name: str) -> Any:
    """A property of :class:`RemoteFaults`: read from and written to the other process."""

    def read(self: RemoteFaults) -> Any:
        return self._process.state()["faults"][name]

    def write(self: RemoteFaults, value: Any) -> None:
        self._process.configure_faults(**{name: value})

    return property(read, write, doc=f"``Faults.{name}`` of the stand-in process.")


class RemoteFaults:
    """``standin.faults`` of the other process: the same knob names, set over the admin API,
    so a test drives either stand-in the same way. Only these names: a misspelt knob is an
    AttributeError (``__slots__``), not a new attribute that injects nothing."""

    __slots__ = ("_process",)

    latency = _knob("latency")
    commit_delay = _knob("commit_delay")
    commit_jitter = _knob("commit_jitter")
    down = _knob("down")
    fail_rate = _knob("fail_rate")
    fail_status = _knob("fail_status")
    rate_limit_rate = _knob("rate_limit_rate")
    retry_after = _knob("retry_after")
    drop_rate = _knob("drop_rate")
    html_status = _knob("html_status")
    html_title = _knob("html_title")
    redirect_to = _knob("redirect_to")

    def __init__(self, process: StandInProcess) -> None:
        self._process = process

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        self._process.configure_faults(fail_next={"n": n, "status": status})

    def rate_limit_next(self, n: int = 1, retry_after: Optional[int] = 30) -> None:
        self._process.configure_faults(rate_limit_next={"n": n, "retry_after": retry_after})

    def drop_next(self, n: int = 1) -> None:
        self._process.configure_faults(drop_next=n)

    def fail_after_commit_next(self, n: int = 1) -> None:
        self._process.configure_faults(fail_after_commit_next=n)

    def trickle_next(self, n: int = 1, interval: float = 3.0) -> None:
        self._process.configure_faults(trickle_next={"n": n, "interval": interval})

    def huge_next(self, n: int = 1, size: int = 10 * 1024 * 1024, chunked: bool = True) -> None:
        self._process.configure_faults(huge_next={"n": n, "size": size, "chunked": chunked})

    def reset(self) -> None:
        self._process.configure_faults(reset=True)


class StandInProcess:
    """``python -m devtools.servicenow_standin`` in its own process, with a control handle."""

    def __init__(
        self,
        users: Optional[Dict[str, str]] = None,
        oauth_clients: Optional[Dict[str, str]] = None,
        db: str = ":memory:",
        extra_args: Sequence[str] = (),
        log_level: str = "WARNING",
        start_timeout: float = 30.0,
    ) -> None:
        self._token = secrets.token_urlsafe(24)
        args = [sys.executable, "-m", "devtools.servicenow_standin", "--port", "0", "--db", db]
        # Passwords on the command line would show in ps; this is a local test
        # server with throwaway credentials, as `./dev standin --user` takes them.
        for name, password in (users if users is not None else {"admin": "admin"}).items():
            args += ["--user", f"{name}:{password}"]
        for client, secret in (oauth_clients or {}).items():
            args += ["--oauth-client", f"{client}:{secret}"]
        args += ["--log-level", log_level, "--admin-token-env", TOKEN_ENV, *extra_args]
        env = dict(os.environ)
        env[TOKEN_ENV] = self._token
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH", "")) if p)
        self._proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._finalizer = weakref.finalize(self, _terminate, self._proc)
        self.pid = self._proc.pid
        self._output: Deque[str] = collections.deque(maxlen=200)
        self._lines: queue.Queue = queue.Queue()
        # The reader must not hold ``self``, or the object could never be collected.
        self._reader = threading.Thread(
            target=_read_output,
            args=(self._proc.stdout, self._output, self._lines),
            name=f"standin-{self.pid}-output",
            daemon=True,
        )
        self._reader.start()
        self.url = self._wait_for_banner(start_timeout)
        self.faults = RemoteFaults(self)
        self._paused = False

    # -- lifecycle -------------------------------------------------------------------
    def _wait_for_banner(self, timeout: float) -> str:
        try:
            while True:
                line = self._lines.get(timeout=timeout)
                if line is None:
                    break
                if line.startswith(BANNER):
                    return line[len(BANNER) :].strip()
        except queue.Empty:
            pass
        self.stop()
        raise RuntimeError(
            "the ServiceNow stand-in did not start: " + " | ".join(list(self._output)[-5:])
        )

    @property
    def output(self) -> List[str]:
        """The last lines the process printed (its log goes there too)."""
        return list(self._output)

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP: the server hangs (the kernel still accepts connections).

        Returns once every thread of the process is stopped: the signal is
        delivered asynchronously, and a request sent right after ``kill``
        could otherwise still be answered.
        """
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._paused = True
        deadline = time.monotonic() + timeout
        while not _all_threads_stopped(self._proc.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stand-in (pid {self._proc.pid}) did not stop")
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT: the server carries on with whatever queued up meanwhile."""
        os.kill(self._proc.pid, signal.SIGCONT)
        self._paused = False

    def stop(self) -> int:
        """Stop the process (SIGTERM, SIGKILL after 10 s); return its exit status."""
        if self._proc.poll() is None and self._paused:
            self.resume()
        _terminate(self._proc)
        self._finalizer.detach()
        return self._proc.returncode

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def __enter__(self) -> StandInProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- control ---------------------------------------------------------------------
    def _admin(self, method: str, name: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            f"{self.url}/__standin/{name}",
            data=data,
            method=method,
            headers={ADMIN_HEADER: self._token, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read().decode("utf-8"))["result"]
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise RuntimeError(f"stand-in admin {name} answered {exc.code}: {detail}") from None

    def state(self) -> Dict[str, Any]:
        """``{"counters", "faults", "requests"}`` as the process sees them."""
        return self._admin("GET", "state")

    def configure_faults(self, **settings: Any) -> None:
        """Set fault knobs by name (see ``Faults.configure``)."""
        self._admin("POST", "faults", settings)

    def set_users(self, users: Dict[str, str]) -> None:
        """Replace the users, e.g. to rotate a password."""
        self._admin("POST", "users", {"users": users})

    def expire_tokens(self) -> None:
        self._admin("POST", "expire-tokens", {})

    def reset_stats(self) -> None:
        self._admin("POST", "reset-stats", {})

    @property
    def counters(self) -> Dict[str, int]:
        return self.state()["counters"]

    @property
    def request_log(self) -> List[Tuple[str, str, Optional[int]]]:
        return [tuple(entry[1:]) for entry in self.state()["requests"]]  # type: ignore[misc]

    @property
    def timed_request_log(self) -> List[Tuple[float, str, str, Optional[int]]]:
        return [tuple(entry) for entry in self.state()["requests"]]  # type: ignore[misc]

    def incidents(self, query: Optional[str] = None) -> List[Dict[str, Any]]:
        """Stored incidents with their ``_journal``; ``query`` is an encoded query."""
        suffix = "" if query is None else "?" + urllib.parse.urlencode({"query": query})
        return self._admin("GET", "incidents" + suffix)


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in the stopped state (Linux /proc)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True  # gone, or not Linux: nothing more to wait for
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as handle:
                # "tid (comm) S ...": the state follows the last ')'.
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        if state not in ("T", "t"):
            return False
    return True


def _read_output(stream: Any, output: Deque[str], lines: queue.Queue) -> None:
    """Keep the pipe drained for the life of the process; remember the last lines."""
    with stream:
        for line in stream:
            output.append(line.rstrip("\n"))
            lines.put(line)
    lines.put(None)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        except OSError:
            pass
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
