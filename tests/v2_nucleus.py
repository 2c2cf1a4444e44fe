"""A Greengrass V2 nucleus's IPC server, at the wire, for the installed ``awsiotsdk`` to talk to.

A nucleus serves its components over a Unix domain socket
(``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT``) with the
event-stream RPC protocol: binary frames (prelude, typed headers, payload,
CRC32s), a CONNECT carrying the component's ``SVCUID`` as ``authToken``, then
one stream per operation. :class:`FakeNucleus` is such a server, in threads of
this process, with a tiny pub/sub, IoT Core recorder and secret store behind it,
and ShadowManager, component configuration and access control
(``nucleus_services.NucleusServices``).

The components are real ``GreengrassCoreIPCClientV2`` objects that connect with
``awsiot.greengrasscoreipc.connect()`` (awscrt's own event-stream client) to
the socket, so every request crosses the wire as the SDK encodes it. Requests
are parsed with the SDK's model classes (``model.SHAPE_INDEX``), type-checked
against those classes' annotations and the ``QOS``/``ReceiveMode`` enums, and
answered with real response, event (``SubscriptionResponseMessage``) and error
(``UnauthorizedError``, ``ResourceNotFoundError``, ``InvalidArgumentsError``)
shapes, which the client must decode.

The SDK is imported lazily, so importing this module needs none of it. (A little
over 500 lines: the socket server and the four operations it serves belong together;
the wire format is in ``eventstream_wire.py``, the request checks in
``ipc_model_checks.py``.)
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from eventstream_wire import (
    APPLICATION_ERROR,
    APPLICATION_MESSAGE,
    CONNECT,
    CONNECT_ACK,
    CONNECTION_ACCEPTED,
    INT32,
    PING,
    PING_RESPONSE,
    PROTOCOL_ERROR,
    STRING,
    TERMINATE_STREAM,
    FrameError,
    Header,
    encode_frame,
    read_frame,
)
from ipc_model_checks import check_enum, check_publish_topic, require, type_problems
from nucleus_authorization import AccessControl
from nucleus_secrets import SecretManager
from nucleus_services import (
    _SUBSCRIPTION_EVENT,
    SERVICE_OF,
    SUBSCRIBE_TO_CONFIGURATION_UPDATE,
    LocalPublication,
    NucleusServices,
    resource_of_request,
)
from v1_core import StoredSecret

from agent.greengrass.routing import topic_matches, validate_subject

# -- the nucleus ---------------------------------------------------------------------

PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
PUBLISH_TO_TOPIC = "aws.greengrass#PublishToTopic"
SUBSCRIBE_TO_TOPIC = "aws.greengrass#SubscribeToTopic"
GET_SECRET_VALUE = "aws.greengrass#GetSecretValue"


@dataclass(frozen=True)
class IoTCorePublication:
    component: str
    topic: str
    qos: str
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload.decode("utf-8"))


@dataclass
class _Subscription:
    component: str
    topic_filter: str
    receive_mode: Optional[str]
    stream: _Stream


class _Connection:
    """One component's connection, as the nucleus sees it."""

    def __init__(self, nucleus: FakeNucleus, sock: socket.socket) -> None:
        self.nucleus = nucleus
        self.sock = sock
        self.component: Optional[str] = None
        self.closed = False
        self.streams: Dict[int, _Stream] = {}
        self._write_lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, name="nucleus-connection", daemon=True)

    def send(
        self, message_type: int, flags: int, stream_id: int, headers: List[Header], payload: bytes
    ) -> None:
        frame = encode_frame(
            [
                (":message-type", INT32, message_type),
                (":message-flags", INT32, flags),
                (":stream-id", INT32, stream_id),
            ]
            + headers,
            payload,
        )
        with self._write_lock:
            if self.closed:
                return
            try:
                self.sock.sendall(frame)
            except OSError:
                self._close()

    def _serve(self) -> None:
        try:
            while True:
                frame = read_frame(self.sock)
                if frame is None:
                    break
                self._on_message(*frame)
        except (OSError, FrameError):
            pass
        finally:
            self._close()

    def _on_message(self, headers: Dict[str, Any], payload: bytes) -> None:
        message_type = headers.get(":message-type")
        flags = headers.get(":message-flags", 0)
        stream_id = headers.get(":stream-id", 0)
        if message_type == CONNECT:
            token = json.loads(payload.decode("utf-8") or "{}").get("authToken")
            self.component = self.nucleus._components.get(token)
            accepted = self.component is not None and headers.get(":version") == "0.1.0"
            # Refused: the client reads the ACK without CONNECTION_ACCEPTED and hangs up.
            self.send(CONNECT_ACK, CONNECTION_ACCEPTED if accepted else 0, 0, [], b"")
            return
        if self.component is None:
            self.send(PROTOCOL_ERROR, 0, 0, [], b"CONNECT first")
            self._close()
            return
        if message_type == PING:
            self.send(PING_RESPONSE, 0, 0, [], b"")
            return
        if message_type != APPLICATION_MESSAGE or stream_id <= 0:
            return
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = self.streams[stream_id] = _Stream(self, stream_id, headers.get("operation"))
            self.nucleus._handle(stream, headers.get("service-model-type", ""), payload)
        if flags & TERMINATE_STREAM:
            stream.terminate(send=False)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in list(self.streams.values()):
            stream.terminate(send=False)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class _Stream:
    """One operation's continuation: the request, a response, and for subscriptions events."""

    def __init__(self, connection: _Connection, stream_id: int, operation: Optional[str]) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.operation = operation
        self.closed = False

    def reply(self, shape: Any, terminate: bool) -> None:
        self.send_shape_payload(
            shape._model_name(), json.dumps(shape._to_payload()).encode(), terminate=terminate
        )

    def reply_error(self, error: Any) -> None:
        self.send_shape_payload(
            error._model_name(),
            json.dumps(error._to_payload()).encode(),
            message_type=APPLICATION_ERROR,
            terminate=True,
        )

    def send_shape_payload(
        self,
        model_name: str,
        payload: bytes,
        message_type: int = APPLICATION_MESSAGE,
        terminate: bool = False,
    ) -> None:
        if self.closed:
            return
        headers: List[Header] = [
            (":content-type", STRING, "application/json"),
            ("service-model-type", STRING, model_name),
        ]
        flags = TERMINATE_STREAM if terminate else 0
        self.connection.send(message_type, flags, self.stream_id, headers, payload)
        if terminate:
            self.terminate(send=False)

    def terminate(self, send: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        if send:
            self.connection.send(APPLICATION_MESSAGE, TERMINATE_STREAM, self.stream_id, [], b"")
        self.connection.nucleus._drop_stream(self)


class FakeNucleus(NucleusServices):
    """A tiny Greengrass V2 nucleus serving real ``GreengrassCoreIPCClientV2`` objects over a socket.

    Like the real one it refuses every IPC operation no ``accessControl`` policy of the
    component grants (``nucleus_authorization``): :meth:`deploy` a ``deploy v2 plan``
    deployment to run components under the access control it gives them, or give a
    test's own component a policy with :meth:`access_control`. Secrets are served as
    the SecretManager component does (``nucleus_secrets``): only those the deployment's
    ``cloudSecrets`` names, a name resolved to its ARN before the policy is checked.

    Knobs: ``secrets``, ``socket_dir`` (where the socket's folder is made),
    ``deny(operation, resource)``, ``fail_next(operation, error)``.
    Records: ``iot_core[topic]``, ``local[topic]``, ``secret_requests``, ``requests``,
    ``connections``. Local pub/sub delivers to every matching subscriber before it
    answers the publisher, with MQTT wildcards and ``receive_mode`` (default: all
    messages, own ones too, except on a wildcard filter: then only others', as
    ``PubSubIPCEventStreamAgent.validateReceiveMode`` decides). Use as a context
    manager, or call :meth:`close`.
    """

    def __init__(
        self,
        secrets: Optional[Mapping[str, Union[str, bytes]]] = None,
        socket_dir: Optional[str] = None,
    ) -> None:
        self.iot_core: Dict[str, List[IoTCorePublication]] = defaultdict(list)
        self.local: Dict[str, List[LocalPublication]] = defaultdict(list)
        self.secret_manager = SecretManager()
        self.secrets: Dict[str, StoredSecret] = self.secret_manager.cloud  # by name
        self.access = AccessControl()
        self.secret_requests: List[Dict[str, Any]] = []
        self.requests: List[Tuple[str, str, Dict[str, Any]]] = []
        self.connections: List[_Connection] = []
        self._components: Dict[str, str] = {}  # SVCUID -> component name
        self._denied: List[Tuple[str, str]] = []
        self._failures: Dict[str, List[Exception]] = defaultdict(list)
        self._subscriptions: List[_Subscription] = []
        self._clients: List[Any] = []
        self._lock = threading.RLock()
        self._init_services()
        for name, value in (secrets or {}).items():
            self.add_secret(name, value)
        # A short path: Unix socket paths are limited to 108 bytes. ``socket_dir``: a
        # folder a chroot sees too (a Pi's userland), so a component there can connect.
        self._dir = tempfile.mkdtemp(prefix="nucleus-", dir=socket_dir)
        self.socket_path = os.path.join(self._dir, "ipc.socket")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket_path)
        self._listener.listen(16)
        self._closed = False
        self._accepting = threading.Thread(target=self._accept, name="nucleus", daemon=True)
        self._accepting.start()

    # -- test helpers ----------------------------------------------------

    def environ(self, component: str = "com.example.EdgeAgent") -> Dict[str, str]:
        """What the nucleus sets for a component: its socket and its SVCUID."""
        token = "svcuid-" + uuid.uuid4().hex
        self._components[token] = component
        return {
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": self.socket_path,
            "SVCUID": token,
        }

    def client(self, component: str = "com.example.EdgeAgent", executor: Any = None) -> Any:
        """A real ``GreengrassCoreIPCClientV2``, connected over the socket as ``component``.

        ``executor=None`` runs stream callbacks on the client's event-loop thread;
        pass ``True`` for the SDK's default thread pool.
        """
        from awsiot.greengrasscoreipc import connect
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        env = self.environ(component)
        client = GreengrassCoreIPCClientV2(
            client=connect(
                ipc_socket=env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
                authtoken=env["SVCUID"],
            ),
            executor=executor,
        )
        self._clients.append(client)
        return client

    def add_secret(self, name: str, value: Union[str, bytes], **kwargs: Any) -> StoredSecret:
        secret = StoredSecret(name, value, **kwargs)
        self.secrets[name] = secret
        return secret

    def deny(self, operation: str, resource: str = "*") -> None:
        """Refuse ``operation`` on ``resource`` whatever the policies grant (as if the
        deployment had left it out of the component's accessControl)."""
        self._denied.append((operation, resource))

    def rotate_in_cloud(self, name: str, value: Union[str, bytes]) -> None:
        """Change the secret in Secrets Manager: the nucleus keeps serving its cached copy
        until a component asks with ``refresh=True`` (nucleus 2.13+)."""
        self.secrets[name].cloud_value = value

    def fail_next(self, operation: str, error: Exception) -> None:
        """Answer the next ``operation`` request with ``error`` (a model error shape)."""
        self._failures[operation].append(error)

    def iot_core_messages(self, topic: str) -> List[Any]:
        return [p.json() for p in self.iot_core.get(topic, [])]

    def local_messages(self, topic: str) -> List[Any]:
        return [
            p.json_message if p.json_message is not None else p.binary_message
            for p in self.local.get(topic, [])
        ]

    def subscriptions(self, topic: Optional[str] = None) -> List[str]:
        """Open subscription filters (optionally those matching ``topic``)."""
        with self._lock:
            return [
                s.topic_filter
                for s in self._subscriptions
                if not s.stream.closed and (topic is None or topic_matches(s.topic_filter, topic))
            ]

    def deliver_raw(self, topic: str, payload: Union[bytes, Dict[str, Any]]) -> int:
        """Send a raw ``SubscriptionResponseMessage`` payload to ``topic``'s subscribers.

        For events no well-behaved publisher can produce (bad JSON on the wire,
        an empty union). Returns how many subscribers it reached.
        """
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        targets = self._matching(topic, publisher=None)
        for sub in targets:
            sub.stream.send_shape_payload(_SUBSCRIPTION_EVENT, raw)
        return len(targets)

    def close(self) -> None:
        """Stop serving: clients' connections end; the socket file goes."""
        if self._closed:
            return
        self._closed = True
        for client in self._clients:
            try:
                client.close(executor_wait=False)
            except Exception:
                pass
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._accepting.join(5)
        for connection in list(self.connections):
            connection._close()
            connection.thread.join(5)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> FakeNucleus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the nucleus' side of the IPC ------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            connection = _Connection(self, sock)
            with self._lock:
                self.connections.append(connection)
            connection.thread.start()

    def _handle(self, stream: _Stream, model_name: str, payload: bytes) -> None:
        from awsiot.greengrasscoreipc import model

        operation = stream.operation or ""
        request_type = model.SHAPE_INDEX.find_shape_type(model_name)
        if request_type is None:
            return stream.reply_error(model.ServiceError(message="unknown shape " + model_name))
        obj = json.loads(payload.decode("utf-8"))
        request = request_type._from_payload(obj)
        component = stream.connection.component or ""
        with self._lock:
            self.requests.append((component, operation, obj))
        problems = type_problems(request)
        if problems:
            return stream.reply_error(model.InvalidArgumentsError(message="; ".join(problems)))
        handlers: Dict[str, Callable[[str, Any], Any]] = {
            PUBLISH_TO_IOT_CORE: self._publish_to_iot_core,
            PUBLISH_TO_TOPIC: self._publish_to_topic,
            SUBSCRIBE_TO_TOPIC: self._subscribe_to_topic,
            GET_SECRET_VALUE: self._get_secret_value,
        }
        handlers.update(self._service_handlers())
        handler = handlers.get(operation)
        if handler is None:
            return stream.reply_error(
                model.ServiceError(message="FakeNucleus does not emulate " + operation)
            )
        try:
            with self._lock:
                failures = self._failures.get(operation)
                if failures:
                    raise failures.pop(0)
            self._authorize(component, operation, self._resource(operation, request))
            if operation == SUBSCRIBE_TO_CONFIGURATION_UPDATE:
                response = handler(component, request)
                self._keep_configuration_stream(component, request, stream)
                stream.reply(response, terminate=False)
                return
            if operation == SUBSCRIBE_TO_TOPIC:
                response = handler(component, request)
                with self._lock:
                    self._subscriptions.append(
                        _Subscription(component, request.topic, _receive_mode(request), stream)
                    )
                stream.reply(response, terminate=False)
                return
            response = handler(component, request)
        except model.GreengrassCoreIPCError as error:
            return stream.reply_error(error)
        stream.reply(response, terminate=True)

    def _resource(self, operation: str, request: Any) -> str:
        """What the service authorizes the request on, after the checks it makes first."""
        if operation == GET_SECRET_VALUE:
            require(request, "secret_id")
            # SecretManager resolves a name to its ARN, then authorizes the ARN.
            return self.secret_manager.arn_for(request.secret_id)
        if operation == PUBLISH_TO_IOT_CORE:
            require(request, "topic_name")  # MqttProxyIPCAgent.validateTopic comes first
            return request.topic_name
        if operation in (PUBLISH_TO_TOPIC, SUBSCRIBE_TO_TOPIC):
            require(request, "topic")
            return request.topic
        return resource_of_request(operation, request) or ""

    def _authorize(self, component: str, operation: str, resource: str) -> None:
        from awsiot.greengrasscoreipc import model

        service = SERVICE_OF.get(operation)
        if service is None:
            return  # configuration operations: a component reads its own without a policy
        if any(op == operation and r in ("*", resource) for op, r in self._denied):
            raise model.UnauthorizedError(
                message="Principal {} is not authorized to perform {}:{} on resource {}".format(
                    component, service, operation, resource
                )
            )
        self.access.check(service, component, operation, resource)

    def _publish_to_iot_core(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model

        require(request, "topic_name", "qos")
        check_enum(model.QOS, "qos", request.qos)
        check_publish_topic(request.topic_name)
        publication = IoTCorePublication(
            component, request.topic_name, request.qos, request.payload or b""
        )
        with self._lock:
            self.iot_core[request.topic_name].append(publication)
        return model.PublishToIoTCoreResponse()

    def _publish_to_topic(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model

        require(request, "topic", "publish_message")
        check_publish_topic(request.topic)
        if "*" in request.topic:  # PubSubIPCEventStreamAgent refuses the glob too
            raise model.InvalidArgumentsError(message="Publish topic must not contain a wildcard.")
        message = request.publish_message
        if (message.json_message is None) == (message.binary_message is None):
            raise model.InvalidArgumentsError(
                message="publish_message must set exactly one of json_message, binary_message"
            )
        if message.json_message is not None:
            require(message.json_message, "message")
            publication = LocalPublication(
                component, request.topic, json_message=message.json_message.message
            )
            event: Dict[str, Any] = {
                "jsonMessage": {
                    "message": message.json_message.message,
                    "context": {"topic": request.topic},
                }
            }
        else:
            body = message.binary_message.message or b""
            publication = LocalPublication(component, request.topic, binary_message=body)
            event = {
                "binaryMessage": {
                    "message": base64.b64encode(body).decode("ascii"),
                    "context": {"topic": request.topic},
                }
            }
        with self._lock:
            self.local[request.topic].append(publication)
            targets = self._matching(request.topic, publisher=component)
        raw = json.dumps(event).encode("utf-8")
        for sub in targets:
            sub.stream.send_shape_payload(_SUBSCRIPTION_EVENT, raw)
        return model.PublishToTopicResponse()

    def _subscribe_to_topic(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model

        require(request, "topic")
        if request.receive_mode is not None:
            check_enum(model.ReceiveMode, "receive_mode", request.receive_mode)
        try:
            validate_subject(request.topic)
        except ValueError as exc:
            raise model.InvalidArgumentsError(message=str(exc)) from None
        return model.SubscribeToTopicResponse()

    def _get_secret_value(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model

        require(request, "secret_id")
        self.secret_requests.append(
            {
                "secret_id": request.secret_id,
                "version_id": request.version_id,
                "version_stage": request.version_stage,
                "refresh": request.refresh,
            }
        )
        secret = self.secret_manager.get(
            request.secret_id,
            self.secret_manager.arn_for(request.secret_id),
            request.version_id,
            request.version_stage,
        )
        if request.refresh and secret.cloud_value is not None:
            secret.value, secret.cloud_value = secret.cloud_value, None
        if isinstance(secret.value, bytes):
            value = model.SecretValue(secret_binary=secret.value)
        else:
            value = model.SecretValue(secret_string=secret.value)
        return model.GetSecretValueResponse(
            secret_id=secret.arn,
            version_id=secret.version_id,
            version_stage=list(secret.stages),
            secret_value=value,
        )

    def _matching(self, topic: str, publisher: Optional[str]) -> List[_Subscription]:
        with self._lock:
            return [
                s
                for s in self._subscriptions
                if not s.stream.closed
                and topic_matches(s.topic_filter, topic)
                and not (
                    s.receive_mode == "RECEIVE_MESSAGES_FROM_OTHERS" and s.component == publisher
                )
            ]

    def _drop_stream(self, stream: _Stream) -> None:
        with self._lock:
            self._subscriptions = [s for s in self._subscriptions if s.stream is not stream]


def _receive_mode(request: Any) -> str:
    """The mode a subscription gets: the asked one, else for a filter with a wildcard level
    only others' messages (PubSubIPCEventStreamAgent.validateReceiveMode)."""
    if request.receive_mode is not None:
        return str(request.receive_mode)
    levels = request.topic.split("/")
    if "+" in levels or levels[-1] == "#":
        return "RECEIVE_MESSAGES_FROM_OTHERS"
    return "RECEIVE_ALL_MESSAGES"
