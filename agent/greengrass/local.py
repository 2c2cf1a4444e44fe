"""An in-process emulation of a Greengrass V1 core, for laptops and tests.

It routes every publish through the group's subscription table exactly as a
core does: a message reaches a target only if a subscription's source is the
publisher and its subject (with ``+`` and ``#``) matches the topic. Targets are
functions, whose handlers are invoked with the decoded JSON event and a
context whose ``client_context.custom['subject']`` is the topic, or ``cloud``,
where messages are recorded and handed to any attached cloud link (the MQTT
bridge). Secrets are served from a local mapping or from files, re-read when they change.

Invocations of one function are serialised, as a core queues invocations of
a pinned function one at a time.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

from ..errors import SecretError
from ..schema import encode
from ..topology import CLOUD, GroupTopology, default_topology
from .base import MessageHandler, Runtime
from .routing import route

log = logging.getLogger(__name__)

FunctionHandler = Callable[[Any, Any], Any]  # Lambda style: handler(event, context)
CloudLink = Callable[[str, bytes], None]


class ClientContext:
    def __init__(self, custom: Dict[str, str]) -> None:
        self.custom = custom


class LambdaContext:
    """The parts of a Lambda context object a Greengrass handler uses."""

    def __init__(self, function_name: str, subject: str, source: str) -> None:
        self.function_name = function_name
        self.client_context = ClientContext({"subject": subject, "source": source})


class LocalCore:
    """The group, running in this process."""

    def __init__(
        self,
        topology: Optional[GroupTopology] = None,
        secrets: Optional[Mapping[str, str]] = None,
        cloud_history: int = 1000,
    ) -> None:
        self.topology = topology or default_topology()
        self._secrets: Dict[str, str] = dict(secrets or {})
        self._secret_files: Dict[str, Tuple[str, Optional[Tuple[int, int, int]]]] = {}
        self._handlers: Dict[str, FunctionHandler] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self._cloud_links: List[CloudLink] = []
        self.cloud_messages: Deque[Tuple[str, Dict[str, Any]]] = collections.deque(
            maxlen=cloud_history
        )
        self.stats = collections.Counter()  # type: collections.Counter[str]
        # (source, topic) -> targets: the table is immutable, so match each pair once.
        self._routes: Dict[Tuple[str, str], List[str]] = {}

    # -- wiring --------------------------------------------------------------
    def register(self, function_id: str, handler: FunctionHandler) -> None:
        """Attach a function's handler, as the core does when the function starts."""
        self.topology.function(function_id)  # unknown ids are a wiring bug: fail loudly
        self._handlers[function_id] = handler
        self._locks.setdefault(function_id, threading.Lock())

    def add_cloud_link(self, link: CloudLink) -> None:
        """Also hand every message routed to ``cloud`` to ``link(topic, payload)``."""
        self._cloud_links.append(link)

    def add_secret(self, secret_id: str, value: str) -> None:
        self._secrets[secret_id] = value

    def load_secret_file(self, secret_id: str, path: str) -> None:
        """Serve the file's contents (the secret's value as stored in Secrets Manager).

        The file is read now (so a bad one fails at start) and again whenever
        the secret is fetched after it changed (inode, size or mtime), or with
        ``refresh``: a rotated password is picked up without a restart.
        """
        self._secrets[secret_id] = _read_secret_file(path)
        self._secret_files[secret_id] = (path, _file_identity(path))

    def runtime_for(self, function_id: str) -> LocalRuntime:
        self.topology.function(function_id)
        return LocalRuntime(self, function_id)

    # -- the core's work ------------------------------------------------------
    def publish(self, source: str, topic: str, message: Mapping[str, Any]) -> List[str]:
        """Route ``message`` from ``source`` on ``topic``; return the targets it reached."""
        payload = encode(message)
        targets = self._routes.get((source, topic))
        if targets is None:
            targets = route(self.topology.subscriptions, source, topic)
            if len(self._routes) < 1024:  # topics are few; don't grow without bound
                self._routes[(source, topic)] = targets
        if not targets:
            self.stats["unrouted"] += 1
            log.debug("no subscription for %s from %s; message dropped", topic, source)
            return []
        reached = []
        for target in targets:
            if target == CLOUD:
                self._to_cloud(topic, payload)
                reached.append(target)
            elif self._invoke(target, topic, payload, source):
                reached.append(target)
        return reached

    def deliver_from_cloud(self, topic: str, payload: bytes) -> List[str]:
        """A message that arrived from the cloud: route it with source ``cloud``."""
        targets = [t for t in route(self.topology.subscriptions, CLOUD, topic) if t != CLOUD]
        return [t for t in targets if self._invoke(t, topic, payload, CLOUD)]

    def get_secret(self, secret_id: str, refresh: bool = False) -> str:
        self.stats["secret_fetches"] += 1
        if secret_id in self._secret_files:
            path, seen = self._secret_files[secret_id]
            current = _file_identity(path)
            if refresh or current != seen:
                self._secrets[secret_id] = _read_secret_file(path)
                self._secret_files[secret_id] = (path, current)
        try:
            return self._secrets[secret_id]
        except KeyError:
            raise SecretError(
                f"secret {secret_id!r} is not available on this core; the group must grant the function "
                "a secret resource for it"
            )

    def _to_cloud(self, topic: str, payload: bytes) -> None:
        self.stats["to_cloud"] += 1
        self.cloud_messages.append((topic, json.loads(payload)))
        for link in self._cloud_links:
            try:
                link(topic, payload)
            except Exception:  # a broken link must not stop local routing
                log.exception("cloud link failed for %s", topic)

    def _invoke(self, function_id: str, topic: str, payload: bytes, source: str) -> bool:
        handler = self._handlers.get(function_id)
        if handler is None:
            self.stats["not_running"] += 1
            log.warning("function %s is not running; message on %s dropped", function_id, topic)
            return False
        # EncodingType json: the handler gets its own decoded copy, never the publisher's object.
        event = json.loads(payload)
        context = LambdaContext(self.topology.function(function_id).lambda_name, topic, source)
        with self._locks[function_id]:
            try:
                handler(event, context)
            except Exception:
                self.stats["handler_errors"] += 1
                log.exception("function %s failed on a message from %s", function_id, topic)
                return True
        self.stats["delivered"] += 1
        return True


class LocalRuntime(Runtime):
    """One function's view of a :class:`LocalCore`."""

    name = "local"

    def __init__(self, core: LocalCore, function_id: str) -> None:
        super().__init__(function_id)
        self.core = core

    def publish(self, topic: str, message: Mapping[str, Any]) -> None:
        self.core.publish(self.function_id, topic, message)

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """No-op: the subscription table routes to the registered handler."""

    def get_secret(self, secret_id: str, *, refresh: bool = False) -> str:
        return self.core.get_secret(secret_id, refresh=refresh)


def _read_secret_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
        json.loads(value)
    except OSError as exc:
        raise SecretError(f"cannot read secret file {path}: {exc.strerror}")
    except ValueError:
        raise SecretError(f"secret file {path} is not JSON")
    return value


def _file_identity(path: str) -> Optional[Tuple[int, int, int]]:
    """What changes when a file is rewritten or replaced: (inode, size, mtime in ns)."""
    import os

    try:
        info = os.stat(path)
    except OSError:
        return None  # gone: reading it will say so
    return info.st_ino, info.st_size, info.st_mtime_ns


_default_core: Optional[LocalCore] = None
_default_lock = threading.Lock()


def default_core() -> LocalCore:
    """The process-wide core used when a function is loaded outside any Greengrass.

    Secrets come from the file named by ``EDGE_AGENT_SECRET_FILE`` (the secret's
    value as stored in Secrets Manager), served under every secret resource of
    the topology.
    """
    import os

    global _default_core
    with _default_lock:
        if _default_core is None:
            core = LocalCore()
            path = os.environ.get("EDGE_AGENT_SECRET_FILE")
            if path:
                for secret in core.topology.secrets:
                    core.load_secret_file(secret.secret_name, path)
            _default_core = core
        return _default_core
