"""A Greengrass V1 core's local IPC endpoint, for the installed ``greengrasssdk`` to talk to.

A V1 core runs an HTTP server on ``localhost:$GG_DAEMON_PORT``; a function's
``greengrasssdk`` clients post work to the core's system functions there
(``GGRouter`` for publish, ``GGSecretManager`` for secrets) with its
authorization token. :class:`V1CoreStandIn` is that server, on a free port in
a thread, for one function of a deployed group (by default the function and
subscription definitions ``deploy v1 plan`` generates for the default topology:
``generated_group``), with a router and secret store that refuse what a core
refuses (``v1_group``): a message goes only where a subscription routes it (the
others are dropped, silently for the publisher), a secret is served only to a
function its resource is attached to, and a message over 128 KB is refused
(AWS General Reference, "AWS IoT Greengrass V1 endpoints and quotas": maximum
message size 128 KB). And ``GGShadowService``
(the SDK's ``get_thing_shadow``/``update_thing_shadow``), which serves shadows
with the agent's own semantics module (``agent.greengrass.local_shadow``) and
sends its answers and deltas, as a core routes them, to the handlers of
:meth:`V1CoreStandIn.subscribe_function` in the order it publishes them.

:meth:`V1CoreStandIn.installed` makes this process look like a function on
the core: the environment a core sets (``MY_FUNCTION_ARN``, ``GG_DAEMON_PORT``,
``AWS_CONTAINER_AUTHORIZATION_TOKEN``, the system functions' ARNs) and, on
``sys.path``, stand-ins of the two packages only a core has
(``tests/stand_ins/v1_core``). Inside it, ``import greengrasssdk`` is the real
package, and every call crosses a real socket.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from generated_group import SECRET_ARN_PREFIX, SECRET_SUFFIX, v1_definitions
from v1_group import V1Group

from agent.greengrass.local_shadow import LocalShadowService
from agent.greengrass.routing import topic_matches
from agent.greengrass.shadow_document import parse_topic
from agent.names import ROUTES_VARIABLE, SENSOR_FUNCTION_ID

HERE = os.path.dirname(os.path.abspath(__file__))
CORE_MODULES_DIR = os.path.join(HERE, "stand_ins", "v1_core")

# The core's system functions, as a core names them in every function's environment.
ROUTER_FUNCTION_ARN = "arn:aws:lambda:::function:GGRouter"
SHADOW_FUNCTION_ARN = "arn:aws:lambda:::function:GGShadowService"
SECRETS_MANAGER_FUNCTION_ARN = "arn:aws:lambda:::function:GGSecretManager"
API_PREFIX = "/2016-11-01/functions/"
# The largest message a V1 core carries (AWS General Reference, "AWS IoT Greengrass V1
# endpoints and quotas": maximum message size 128 KB).
MAX_MESSAGE_BYTES = 128 * 1024

# Modules that read the core's environment at import: re-imported inside installed().
_CORE_BOUND_MODULES = (
    "greengrass_common",
    "greengrass_ipc_python_sdk",
    "greengrasssdk.Lambda",
    "greengrasssdk.IoTDataPlane",
    "greengrasssdk.SecretsManager",
    "greengrasssdk.utils",
)


@dataclass(frozen=True)
class V1Publication:
    """One message the core's router accepted (or dropped)."""

    topic: str
    payload: bytes
    source: Optional[str]
    queue_full_policy: str  # as the SDK sends it: '', 'BestEffort' or 'AllOrError'
    targets: Tuple[str, ...] = ()  # where the group's subscriptions send it

    def json(self) -> Any:
        return json.loads(self.payload.decode("utf-8"))


@dataclass
class StoredSecret:
    """A secret as a core holds it after a deployment."""

    name: str
    value: Union[str, bytes]
    arn: str = ""
    version_id: str = "00000000-0000-0000-0000-000000000001"
    stages: Tuple[str, ...] = ("AWSCURRENT",)
    created: float = field(default_factory=time.time)
    # V2: a value rotated in Secrets Manager that the nucleus' SecretManager has
    # not fetched yet; it serves it only after a request with refresh=True.
    cloud_value: Optional[Union[str, bytes]] = None

    def __post_init__(self) -> None:
        if not self.arn:
            self.arn = SECRET_ARN_PREFIX + self.name + SECRET_SUFFIX

    def matches(self, secret_id: str) -> bool:
        return secret_id in (self.name, self.arn)


def find_secret(secrets: Mapping[str, StoredSecret], secret_id: Any) -> Optional[StoredSecret]:
    for secret in secrets.values():
        if isinstance(secret_id, str) and secret.matches(secret_id):
            return secret
    return None


class V1CoreStandIn:
    """The core's side of the IPC for one function of ``group``, over HTTP on a free port.

    ``function`` is the function's definition ``Id`` or ARN; ``group`` a
    :class:`v1_group.V1Group` (by default the generated definitions of the default
    topology). ``on_publish(publication)`` is called, in the core's request thread,
    for each message the router sends on.

    Knobs: ``queue_full`` (the router's queue is full), ``ipc_reachable``
    (the server listens), ``secret_errors[name] = (status, message)``.
    Records: ``published[topic]`` (routed), ``unrouted`` (no subscription: dropped),
    ``dropped`` (queue full), ``secret_requests``, ``requests``.
    """

    def __init__(
        self,
        function: str = SENSOR_FUNCTION_ID,
        secrets: Optional[Mapping[str, Union[str, bytes]]] = None,
        group: Optional[V1Group] = None,
        on_publish: Optional[Callable[[V1Publication], None]] = None,
    ) -> None:
        self.group = group if group is not None else V1Group.from_definitions(v1_definitions())
        self.function_arn = self.group.function_arn(function)
        self.on_publish = on_publish
        self.token = "core-token-" + base64.b32encode(os.urandom(10)).decode().lower()
        self.published: Dict[str, List[V1Publication]] = defaultdict(list)
        self.unrouted: List[V1Publication] = []
        self.dropped: List[V1Publication] = []
        self.queue_full = False
        self.secrets: Dict[str, StoredSecret] = {}
        self.secret_errors: Dict[str, Tuple[int, str]] = {}
        self.secret_requests: List[Dict[str, Any]] = []
        self.requests: List[Tuple[str, str, Any]] = []  # (method, path, headers)
        self._results: Dict[str, bytes] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.shadows = LocalShadowService(time.time)
        self.shadow_requests: List[Tuple[str, str]] = []  # (topic, payload) as the SDK sent them
        self.shadow_reachable = True  # False: GGShadowService answers 500 (it is restarting)
        self._shadow_subscribers: List[Tuple[str, Callable[[Any, str], None]]] = []
        self._deliveries: Any = None
        for name, value in (secrets or {}).items():
            self.add_secret(name, value)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.port = 0
        self._listen()

    # -- test helpers ------------------------------------------------------

    def add_secret(self, name: str, value: Union[str, bytes], **kwargs: Any) -> StoredSecret:
        secret = StoredSecret(name, value, **kwargs)
        self.secrets[name] = secret
        return secret

    def messages(self, topic: str) -> List[Any]:
        """The decoded JSON payloads the router accepted on ``topic``."""
        with self._lock:
            return [p.json() for p in self.published.get(topic, [])]

    def subscribe_function(self, subject: str, handler: Callable[[Any, str], None]) -> None:
        """Route GGShadowService's messages on ``subject`` to ``handler(message, topic)``, one
        at a time on the core's own thread, as a core invokes a pinned function's handler."""
        self._shadow_subscribers.append((subject, handler))

    def cloud_update(self, thing: str, document: Mapping[str, Any]) -> Dict[str, Any]:
        """An update from AWS IoT, as the core's shadow sync brings it: the accepted
        document (or the error document); deltas and documents go to the subscribers."""
        answer, publications = self.shadows.handle(thing, "update", dict(document))
        self._publish(publications)
        return answer

    def wait_deliveries(self, timeout: float = 5.0) -> bool:
        """Wait until every message routed to a function so far was handled."""
        if self._deliveries is None:
            return True
        done = threading.Event()
        self._deliveries.put(done)
        return done.wait(timeout)

    @property
    def environ(self) -> Dict[str, str]:
        """The variables a V1 core sets for this function (its container's environment).

        Of the variables its definition gives it, only the route table is set: the
        others (``stateDir``, the sensor backend, limits) are the test's to choose.
        """
        routes = self.group.variables(self.function_arn).get(ROUTES_VARIABLE)
        return {
            **({ROUTES_VARIABLE: routes} if routes is not None else {}),
            "MY_FUNCTION_ARN": self.function_arn,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": self.token,
            "GG_DAEMON_PORT": str(self.port),
            "ROUTER_FUNCTION_ARN": ROUTER_FUNCTION_ARN,
            "SHADOW_FUNCTION_ARN": SHADOW_FUNCTION_ARN,
            "SECRETS_MANAGER_FUNCTION_ARN": SECRETS_MANAGER_FUNCTION_ARN,
            "ENCODING_TYPE": "json",
            "GGC_MAX_INTERFACE_VERSION": "1.5",
        }

    @property
    def ipc_reachable(self) -> bool:
        return self._server is not None

    @ipc_reachable.setter
    def ipc_reachable(self, reachable: bool) -> None:
        if reachable and self._server is None:
            self._listen(self.port)
        elif not reachable and self._server is not None:
            self._stop_listening()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Within the block, this process is a function on this core (see the module doc)."""
        saved_env = {k: os.environ.get(k) for k in self.environ}
        os.environ.update(self.environ)
        sys.path.insert(0, CORE_MODULES_DIR)
        _forget_core_bound_modules()
        try:
            yield
        finally:
            _forget_core_bound_modules()
            with contextlib.suppress(ValueError):
                sys.path.remove(CORE_MODULES_DIR)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def close(self) -> None:
        self._stop_listening()

    def __enter__(self) -> V1CoreStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the server --------------------------------------------------------

    def _listen(self, port: int = 0) -> None:
        core = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the test's log guard reads the agent's log, not the core's

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                core._serve(self, "POST")

            def do_GET(self) -> None:  # noqa: N802
                core._serve(self, "GET")

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _read_chunked(handler.rfile)  # urllib sends a file-like payload this way
        else:
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length) if length else b""
            if len(body) < length:
                return  # the client died mid-request: a real server drops it, as here
        headers = handler.headers  # case-insensitive, as urllib capitalises names its own way
        with self._lock:
            self.requests.append((method, handler.path, headers))
        status, reply_headers, reply = self._answer(method, handler.path, headers, body)
        handler.send_response(status)
        for name, value in reply_headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)

    def _answer(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Tuple[int, Dict[str, str], bytes]:
        if not path.startswith(API_PREFIX):
            return 404, {}, b"not found"
        if headers.get("Authorization") != self.token:
            return 403, {}, b"invalid authorization token"  # assumed status
        function_arn = path[len(API_PREFIX) :]
        if method == "GET":
            invocation_id = headers.get("X-Amz-InvocationId", "")
            with self._lock:
                result = self._results.pop(invocation_id, None)
            if result is None:
                return 404, {}, b"no such invocation"
            # Always there, empty when the function did not fail: greengrasssdk's shadow
            # client compares it with '' (IoTDataPlane._shadow_op).
            return 200, {"X-Amz-Function-Error": ""}, result
        invocation_id = "invocation-{}".format(next(self._ids))
        if function_arn == ROUTER_FUNCTION_ARN:
            status = self._route(headers, body)
            if status == 413:
                return status, {}, b"message larger than 128 KB"
            if status != 202:
                return status, {}, b"queue is full"
        elif function_arn == SECRETS_MANAGER_FUNCTION_ARN:
            with self._lock:
                self._results[invocation_id] = self._secret_payload(body)
        elif function_arn == SHADOW_FUNCTION_ARN:
            answer = self._shadow(headers, body)
            with self._lock:
                self._results[invocation_id] = answer
        else:
            return 404, {}, b"function not found"
        return 202, {"X-Amz-InvocationId": invocation_id}, b""

    def _route(self, headers: Mapping[str, str], body: bytes) -> int:
        assert headers.get("X-Amz-Invocation-Type") == "Event", "the SDK publishes asynchronously"
        context = json.loads(base64.b64decode(headers["X-Amz-Client-Context"]).decode("utf-8"))
        custom = context["custom"]
        source = custom.get("source")
        publication = V1Publication(
            topic=custom["subject"],
            payload=body,
            source=source,
            queue_full_policy=custom.get("queueFullPolicy", ""),
            targets=tuple(self.group.route(source or "", custom["subject"])),
        )
        if len(body) > MAX_MESSAGE_BYTES:
            return 413  # assumed status, as for a full queue: the SDK raises on any error
        with self._lock:
            if not publication.targets:
                self.unrouted.append(publication)  # a core drops it, and says nothing
                return 202
            if self.queue_full:
                if publication.queue_full_policy == "AllOrError":
                    return 429  # assumed: the public SDK does not say which status the router uses
                self.dropped.append(publication)
                return 202
            self.published[publication.topic].append(publication)
        if self.on_publish is not None:
            self.on_publish(publication)
        return 202

    def _secret_payload(self, body: bytes) -> bytes:
        request = json.loads(body.decode("utf-8"))
        self.secret_requests.append(request)
        secret_id = request.get("SecretId")
        stage = request.get("VersionStage") or "AWSCURRENT"
        # Only the secret resources attached to this function are there for it.
        attached = self.group.secret_arns(self.function_arn)
        secret = find_secret(
            {n: s for n, s in self.secrets.items() if s.arn in attached}, secret_id
        )
        if secret is not None and secret.name in self.secret_errors:
            status, message = self.secret_errors[secret.name]
        elif secret_id in self.secret_errors:
            status, message = self.secret_errors[secret_id]
        elif secret is None or stage not in secret.stages:
            # The example in greengrasssdk/SecretsManager.py's own comment (assumed also for
            # a secret of the group that is not attached to this function).
            status, message = 404, "Resource not found"
        else:
            answer: Dict[str, Any] = {
                "ARN": secret.arn,
                "Name": secret.name,
                "VersionId": secret.version_id,
                "VersionStages": list(secret.stages),
                "CreatedDate": int(secret.created * 1000),  # the core sends epoch milliseconds
            }
            if isinstance(secret.value, bytes):
                # JSON cannot carry bytes: binary travels base64-encoded.
                answer["SecretBinary"] = base64.b64encode(secret.value).decode("ascii")
            else:
                answer["SecretString"] = secret.value
            return json.dumps(answer).encode("utf-8")
        return json.dumps({"Status": status, "Message": message}).encode("utf-8")

    # -- GGShadowService ---------------------------------------------------------

    def _shadow(self, headers: Mapping[str, str], body: bytes) -> bytes:
        context = json.loads(base64.b64decode(headers["X-Amz-Client-Context"]).decode("utf-8"))
        topic = context["custom"]["subject"]
        with self._lock:
            self.shadow_requests.append((topic, body.decode("utf-8", "replace")))
        parsed = parse_topic(topic)
        if parsed is None or parsed[2]:
            return json.dumps({"code": 400, "message": "Bad topic"}).encode()
        thing, operation, _ = parsed
        if not self.shadow_reachable:
            answer, publications = self.shadows.refuse(500, "Internal service failure")
        else:
            answer, publications = self.shadows.handle(thing, operation, body)
        self._publish(publications)
        return json.dumps(answer).encode("utf-8")

    def _publish(self, publications: List[Tuple[str, Dict[str, Any]]]) -> None:
        import queue

        for topic, document in publications:
            for subject, handler in self._shadow_subscribers:
                if topic_matches(subject, topic):
                    if self._deliveries is None:
                        self._deliveries = queue.SimpleQueue()
                        threading.Thread(target=self._deliver, daemon=True).start()
                    self._deliveries.put((handler, json.loads(json.dumps(document)), topic))

    def _deliver(self) -> None:
        while True:
            item = self._deliveries.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            handler, message, topic = item
            try:
                handler(message, topic)
            except Exception:  # a core logs a handler's failure and goes on
                import logging

                logging.getLogger(__name__).exception("handler failed on %s", topic)


def _read_chunked(stream: Any) -> bytes:
    body = b""
    while True:
        size = int(stream.readline().split(b";")[0].strip(), 16)
        if size == 0:
            stream.readline()  # the blank line after the last chunk (no trailers)
            return body
        body += stream.read(size)
        stream.readline()


def _forget_core_bound_modules() -> None:
    for name in list(sys.modules):
        if any(name == m or name.startswith(m + ".") for m in _CORE_BOUND_MODULES):
            del sys.modules[name]
    greengrasssdk = sys.modules.get("greengrasssdk")
    if greengrasssdk is not None:
        for attr in ("Lambda", "IoTDataPlane", "SecretsManager", "utils"):
            greengrasssdk.__dict__.pop(attr, None)
