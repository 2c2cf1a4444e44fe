"""An in-process emulation of a Greengrass V1 core, for laptops and tests.

It routes every publish through the group's subscription table exactly as a
core does: a message reaches a target only if a subscription's source is the
publisher and its subject (with ``+`` and ``#``) matches the topic. Targets are
functions, whose handlers are invoked with the decoded JSON event and a
context whose ``client_context.custom['subject']`` is the topic, or ``cloud``,
where messages are recorded and handed to any attached cloud link (the MQTT
bridge), or ``GGShadowService``, the local shadow service
(:mod:`agent.greengrass.local_shadow`), whose answers are routed the same way
with that source. Secrets are served from a local mapping or from files, re-read when
they change.

Invocations of one function are serialised, as a core queues invocations of
a pinned function one at a time: a message for a function published from
inside that function's own handler waits until the handler returns.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import SecretError
from ..schema import encode
from ..topology import CLOUD, SHADOW_SERVICE, GroupTopology, default_topology
from .base import MessageHandler, Runtime
from .local_shadow import LocalShadowService, answer_error
from .routing import route
from .shadow_document import parse_topic, topic_prefix

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
        clock: Optional[Clock] = None,
        shadow_path: Optional[str] = None,
    ) -> None:
        """``clock`` stamps shadow documents (a simulation's virtual time); ``shadow_path``
        keeps the shadows in a file across restarts, as a core's shadow database does."""
        self.topology = topology or default_topology()
        self.clock = clock or SYSTEM_CLOCK
        self.shadows = LocalShadowService(self.clock.time, shadow_path)
        self._secrets: Dict[str, str] = dict(secrets or {})
        self._secret_files: Dict[str, Tuple[str, Optional[Tuple[int, int, int]]]] = {}
        self._handlers: Dict[str, FunctionHandler] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self._queues: Dict[str, Any] = {}  # function id -> inbox, for register(queued=True)
        self._cloud_links: List[CloudLink] = []
        self.cloud_messages: Deque[Tuple[str, Dict[str, Any]]] = collections.deque(
            maxlen=cloud_history
        )
        self.stats = collections.Counter()  # type: collections.Counter[str]
        # Messages no subscription matched, by (source, topic): each pair is
        # logged as a WARNING once, and counted every time.
        self.unrouted = collections.Counter()  # type: collections.Counter[Tuple[str, str]]
        # (source, topic) -> targets, matched once per pair; rebuilt when the table changes.
        self._routes: Dict[Tuple[str, str], List[str]] = {}
        self._table_lock = threading.Lock()
        # function id -> messages published to it from inside its own handler (see _invoke_now)
        self._running: Dict[str, Optional[int]] = {}
        self._deferred: Dict[str, Deque[Tuple[str, bytes, str]]] = {}

    # -- wiring --------------------------------------------------------------
    def register(self, function_id: str, handler: FunctionHandler, queued: bool = False) -> None:
        """Attach a function's handler, as the core does when the function starts.

        ``queued=True`` delivers to it as a real core does, from a queue on the
        function's own thread: the publisher only enqueues, so an observer such
        as the status function costs the sensor path nothing but the enqueue.
        """
        self.topology.function(function_id)  # unknown ids are a wiring bug: fail loudly
        self._handlers[function_id] = handler
        self._locks.setdefault(function_id, threading.Lock())
        if queued and function_id not in self._queues:
            import queue

            inbox: Any = queue.SimpleQueue()
            self._queues[function_id] = inbox
            worker = threading.Thread(
                target=self._drain_queue,
                args=(function_id, inbox),
                name="core-{}".format(function_id),
                daemon=True,
            )
            worker.start()

    def wait_idle(self, function_id: str, timeout: float = 5.0) -> bool:
        """Wait until a queued function has handled everything sent to it so far."""
        inbox = self._queues.get(function_id)
        if inbox is None:
            return True
        done = threading.Event()
        inbox.put(done)
        return done.wait(timeout)

    def _drain_queue(self, function_id: str, inbox: Any) -> None:
        while True:
            item = inbox.get()
            if isinstance(item, threading.Event):
                item.set()  # a wait_idle() marker: everything before it was handled
                continue
            self._invoke_now(function_id, *item)

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

    def route_topics(self, function_id: str, topics: Mapping[str, str]) -> None:
        """Route ``function_id``'s messages by the topic variables it runs with.

        The subscriptions that follow a topic variable (see
        :class:`agent.topology.Subscription`) take the function's value, as a
        deployment built from the same variables would.
        """
        with self._table_lock:
            topology = self.topology.with_topics(function_id, topics)
            if topology is not self.topology:
                self.topology = topology
                self._routes = {}

    def bind_thing(self, thing: str) -> None:
        """Put ``thing`` in the topology's shadow subjects (see ``agent.topology.THING_TOKEN``)."""
        with self._table_lock:
            topology = self.topology.for_thing(thing)
            if topology is not self.topology:
                self.topology = topology
                self._routes = {}

    # -- the core's work ------------------------------------------------------
    def publish(self, source: str, topic: str, message: Mapping[str, Any]) -> List[str]:
        """Route ``message`` from ``source`` on ``topic``; return the targets it reached."""
        payload = encode(message)
        routes = self._routes
        targets = routes.get((source, topic))
        if targets is None:
            targets = route(self.topology.subscriptions, source, topic)
            if len(routes) < 1024:  # topics are few; don't grow without bound
                routes[(source, topic)] = targets
        if not targets:
            self._count_unrouted(source, topic)
            return []
        reached = []
        for target in targets:
            if target == CLOUD:
                self._to_cloud(topic, payload)
                reached.append(target)
            elif target == SHADOW_SERVICE:
                self._shadow_request(source, topic, payload, routed=True)
                reached.append(target)
            elif target in self._queues:  # inline: the enqueue is on the publisher's path
                self._queues[target].put((topic, payload, source))
                reached.append(target)
            elif self._invoke(target, topic, payload, source):
                reached.append(target)
        return reached

    def _count_unrouted(self, source: str, topic: str) -> None:
        self.stats["unrouted"] += 1
        key = (source, topic)
        self.unrouted[key] += 1
        if self.unrouted[key] == 1:
            log.warning(
                "no subscription of group %r routes %r from function %r: the message is "
                "dropped, as a Greengrass core drops it (warned once per topic; counted in "
                "stats['unrouted']). Publish on the topic the group routes, or route this one.",
                self.topology.name,
                topic,
                source,
            )

    def deliver_from_cloud(self, topic: str, payload: bytes) -> List[str]:
        """A message that arrived from the cloud: route it with source ``cloud``."""
        targets = [t for t in route(self.topology.subscriptions, CLOUD, topic) if t != CLOUD]
        return [t for t in targets if self._invoke(t, topic, payload, CLOUD)]

    # -- the shadow service ------------------------------------------------------
    def shadow_call(self, source: str, thing: str, operation: str, payload: Any) -> Dict[str, Any]:
        """A function's SDK call to the shadow service (``update_thing_shadow``...): the
        accepted document, or :class:`agent.errors.ShadowError`. The answers are also
        published to the subscribers of the shadow topics, as a core does."""
        topic = "{}/{}".format(topic_prefix(thing), operation)
        answer = self._shadow_request(source, topic, payload, routed=False)
        error = answer_error(answer)
        if error is not None:
            raise error
        return answer

    def update_shadow_from_cloud(self, thing: str, document: Any) -> Dict[str, Any]:
        """An update that came from AWS IoT (``SyncShadow``): applied and announced (delta,
        documents) to the subscribers; the accepted document, or ShadowError."""
        answer, publications = self.shadows.handle(thing, "update", document)
        self._announce(publications)
        error = answer_error(answer)
        if error is not None:
            raise error
        return answer

    def _shadow_request(
        self, source: str, topic: str, payload: Any, routed: bool
    ) -> Dict[str, Any]:
        parsed = parse_topic(topic)
        if parsed is None or parsed[2]:
            self.stats["shadow_bad_topic"] += 1
            log.warning("the shadow service ignores %r from %r: not a request topic", topic, source)
            return {"code": 400, "message": "Bad topic"}
        thing, operation, _ = parsed
        if isinstance(payload, (bytes, bytearray)):
            payload = bytes(payload)
        if not any(f.id == source for f in self.topology.functions):
            answer, publications = self.shadows.refuse(401, "Unauthorized")
        elif not routed and SHADOW_SERVICE not in route(self.topology.subscriptions, source, topic):
            log.warning(
                "function %r has no subscription to %s on %r: the shadow service refuses it",
                source,
                SHADOW_SERVICE,
                topic,
            )
            answer, publications = self.shadows.refuse(403, "Forbidden")
        else:
            answer, publications = self.shadows.handle(thing, operation, payload)
        self._announce(publications)
        return answer

    def _announce(self, publications: List[Tuple[str, Dict[str, Any]]]) -> None:
        for topic, document in publications:
            targets = route(self.topology.subscriptions, SHADOW_SERVICE, topic)
            if targets:
                self.publish(SHADOW_SERVICE, topic, document)

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
        inbox = self._queues.get(function_id)
        if inbox is not None:
            inbox.put((topic, payload, source))
            return True
        return self._invoke_now(function_id, topic, payload, source)

    def _invoke_now(self, function_id: str, topic: str, payload: bytes, source: str) -> bool:
        handler = self._handlers.get(function_id)
        if handler is None:
            self.stats["not_running"] += 1
            log.warning("function %s is not running; message on %s dropped", function_id, topic)
            return False
        me = threading.get_ident()
        if self._running.get(function_id) == me:
            # Published from inside this function's own handler: a core queues it behind
            # the invocation under way (a nested call would deadlock on the lock).
            self._deferred.setdefault(function_id, collections.deque()).append(
                (topic, payload, source)
            )
            return True
        with self._locks[function_id]:
            self._running[function_id] = me
            try:
                self._call(function_id, handler, topic, payload, source)
                deferred = self._deferred.get(function_id)
                while deferred:
                    self._call(function_id, handler, *deferred.popleft())
            finally:
                self._running[function_id] = None
        return True

    def _call(
        self, function_id: str, handler: FunctionHandler, topic: str, payload: bytes, source: str
    ) -> None:
        # EncodingType json: the handler gets its own decoded copy, never the publisher's object.
        event = json.loads(payload)
        context = LambdaContext(self.topology.function(function_id).lambda_name, topic, source)
        try:
            handler(event, context)
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("function %s failed on a message from %s", function_id, topic)
            return
        self.stats["delivered"] += 1


class LocalRuntime(Runtime):
    """One function's view of a :class:`LocalCore`."""

    name = "local"

    def __init__(self, core: LocalCore, function_id: str) -> None:
        super().__init__(function_id)
        self.core = core

    def publish(self, topic: str, message: Mapping[str, Any]) -> None:
        self.core.publish(self.function_id, topic, message)

    def route_topics(self, topics: Mapping[str, str]) -> None:
        self.core.route_topics(self.function_id, topics)

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """No-op: the subscription table routes to the registered handler."""

    def get_secret(self, secret_id: str, *, refresh: bool = False) -> str:
        return self.core.get_secret(secret_id, refresh=refresh)

    shadow_supported = True

    def bind_thing(self, thing: str) -> None:
        self.core.bind_thing(thing)

    def get_thing_shadow(self, thing: str) -> Dict[str, Any]:
        return self.core.shadow_call(self.function_id, thing, "get", b"")

    def update_thing_shadow(self, thing: str, document: Mapping[str, Any]) -> Dict[str, Any]:
        return self.core.shadow_call(self.function_id, thing, "update", encode(document))


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
