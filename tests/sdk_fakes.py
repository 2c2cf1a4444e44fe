"""Fakes of the two Greengrass SDKs that run the *installed* SDKs' own client code.

Neither fake copies an SDK signature by hand. Each replaces only the transport
under the SDK and plays a tiny core on the other side of it, so whatever the
real client code checks (keyword-only parameters, required arguments, enum
values, serialisation of the model classes) is checked here too.

* :class:`FakeGreengrassV1Core` loads the installed ``greengrasssdk``
  (``Lambda``, ``IoTDataPlane``, ``SecretsManager``) against stand-ins for the
  two packages that exist only on a V1 core (``greengrass_common`` and
  ``greengrass_ipc_python_sdk``), and answers the SDK's IPC calls. The real
  ``IoTDataPlane.Client.publish(**kwargs)`` therefore raises its own
  ValueError for a missing ``topic`` or a bad ``queueFullPolicy``; the real
  ``SecretsManager.Client`` raises its own ``SecretsManagerError``. The IPC
  client's body goes through ``urllib`` as the real one does (``post_work``
  builds ``urllib.request.Request(url, input_bytes or b'')``), so a ``str``
  payload fails exactly as on a core. The stand-in IPC client mirrors the
  public ``greengrass_ipc_python_sdk/ipc_client.py`` signatures.
* :class:`FakeNucleus` hands out real ``GreengrassCoreIPCClientV2`` objects
  over a fake event-stream connection. Requests arrive as the JSON the real
  client serialised, are parsed with the real model classes
  (``model.SHAPE_INDEX``), type-checked against those classes' annotations
  and the ``QOS``/``ReceiveMode`` enums, and answered with real response,
  event (``SubscriptionResponseMessage``) and error (``UnauthorizedError``,
  ``ResourceNotFoundError``, ``InvalidArgumentsError``) shapes.
  The fake continuation binds every call to ``awscrt``'s own
  ``ClientContinuation`` signatures.

Both fakes load the SDKs lazily, so importing this module needs neither.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import inspect
import itertools
import json
import sys
import threading
import time
import types
import typing
import urllib.error
import urllib.request
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from agent.greengrass.routing import topic_matches, validate_subject

_MISSING = object()

# ---------------------------------------------------------------------------
# Greengrass V1
# ---------------------------------------------------------------------------

# The core's system functions; any distinct ARNs do, the SDK only passes them back.
ROUTER_FUNCTION_ARN = "arn:aws:lambda:::function:GGRouter"
SHADOW_FUNCTION_ARN = "arn:aws:lambda:::function:GGShadowService"
SECRETS_MANAGER_FUNCTION_ARN = "arn:aws:lambda:::function:GGSecretManager"
DEFAULT_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:edge-agent-sensor:1"
SECRET_ARN_PREFIX = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"

# The installed SDK modules this fake loads privately, and the package
# attributes importing them sets; both are restored afterwards, so the real
# ``greengrasssdk.client(...)`` still fails off a core for every other test.
_SDK_MODULES = (
    "greengrasssdk.utils",
    "greengrasssdk.utils.testing",
    "greengrasssdk.Lambda",
    "greengrasssdk.IoTDataPlane",
    "greengrasssdk.SecretsManager",
)
_SDK_PACKAGE_ATTRS = ("utils", "Lambda", "IoTDataPlane", "SecretsManager")
_CORE_ONLY_MODULES = (
    "greengrass_common",
    "greengrass_common.env_vars",
    "greengrass_common.function_arn_fields",
    "greengrass_ipc_python_sdk",
    "greengrass_ipc_python_sdk.ipc_client",
)
_OVERLAY_LOCK = threading.RLock()


@dataclass(frozen=True)
class V1Publication:
    """One message the core's router accepted (or dropped)."""

    topic: str
    payload: bytes
    source: Optional[str]
    queue_full_policy: str  # as the SDK sends it: '', 'BestEffort' or 'AllOrError'

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
            self.arn = SECRET_ARN_PREFIX + self.name + "-AbCdEf"

    def matches(self, secret_id: str) -> bool:
        return secret_id in (self.name, self.arn)


def _find_secret(secrets: Mapping[str, StoredSecret], secret_id: Any) -> Optional[StoredSecret]:
    for secret in secrets.values():
        if isinstance(secret_id, str) and secret.matches(secret_id):
            return secret
    return None


class FakeGreengrassV1Core:
    """A V1 core seen from one Lambda function, driving the installed greengrasssdk.

    ``core.sdk`` stands in for the ``greengrasssdk`` module (``client(name)``).
    Knobs: ``queue_full`` (the router's queue is full), ``ipc_reachable``
    (the core's IPC server answers), ``secret_errors[name] = (status, message)``.
    Records: ``published[topic]``, ``dropped``, ``secret_requests``.
    """

    def __init__(
        self,
        function_arn: str = DEFAULT_FUNCTION_ARN,
        secrets: Optional[Mapping[str, Union[str, bytes]]] = None,
    ) -> None:
        self.function_arn = function_arn
        self.published: Dict[str, List[V1Publication]] = defaultdict(list)
        self.dropped: List[V1Publication] = []
        self.queue_full = False
        self.ipc_reachable = True
        self.secrets: Dict[str, StoredSecret] = {}
        self.secret_errors: Dict[str, Tuple[int, str]] = {}
        self.secret_requests: List[Dict[str, Any]] = []
        self._results: Dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        for name, value in (secrets or {}).items():
            self.add_secret(name, value)
        self._core_modules = self._make_core_modules()
        self._sdk_modules = self._load_sdk()
        # The SDK's own exception classes, from this core's copy of the SDK.
        self.SecretsManagerError = self._sdk_modules[
            "greengrasssdk.SecretsManager"
        ].SecretsManagerError
        self.InvocationException = self._sdk_modules["greengrasssdk.Lambda"].InvocationException
        self.IPCException = self._core_modules["greengrass_ipc_python_sdk.ipc_client"].IPCException
        self.sdk = FakeGreengrassSdk(self)

    # -- test helpers ----------------------------------------------------

    def add_secret(self, name: str, value: Union[str, bytes], **kwargs: Any) -> StoredSecret:
        secret = StoredSecret(name, value, **kwargs)
        self.secrets[name] = secret
        return secret

    def messages(self, topic: str) -> List[Any]:
        """The decoded JSON payloads the router accepted on ``topic``."""
        return [p.json() for p in self.published.get(topic, [])]

    # -- loading the real SDK --------------------------------------------

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Within the block, ``import greengrasssdk.X`` resolves to this core's copies."""
        with _module_overlay({**self._core_modules, **getattr(self, "_sdk_modules", {})}):
            yield

    def _load_sdk(self) -> Dict[str, types.ModuleType]:
        with _module_overlay(self._core_modules):
            for name in (
                "greengrasssdk.Lambda",
                "greengrasssdk.IoTDataPlane",
                "greengrasssdk.SecretsManager",
            ):
                importlib.import_module(name)
            return {name: sys.modules[name] for name in _SDK_MODULES if name in sys.modules}

    def _make_core_modules(self) -> Dict[str, types.ModuleType]:
        core = self
        common = _package("greengrass_common")
        env = types.ModuleType("greengrass_common.env_vars")
        env.MY_FUNCTION_ARN = self.function_arn  # not None, so the SDK's @mock stays off
        env.ROUTER_FUNCTION_ARN = ROUTER_FUNCTION_ARN
        env.SHADOW_FUNCTION_ARN = SHADOW_FUNCTION_ARN
        env.SECRETS_MANAGER_FUNCTION_ARN = SECRETS_MANAGER_FUNCTION_ARN
        env.AUTH_TOKEN = "fake-auth-token"
        arn_fields = types.ModuleType("greengrass_common.function_arn_fields")

        class FunctionArnFields:
            """Only Lambda.invoke uses it; invoking other functions is not emulated."""

            def __init__(self, arn_string: str) -> None:
                raise NotImplementedError("FakeGreengrassV1Core does not emulate lambda invoke")

        arn_fields.FunctionArnFields = FunctionArnFields
        common.env_vars = env
        common.function_arn_fields = arn_fields

        ipc_pkg = _package("greengrass_ipc_python_sdk")
        ipc = types.ModuleType("greengrass_ipc_python_sdk.ipc_client")

        class IPCException(Exception):
            pass

        class IPCClient:
            """Signatures as in greengrass_ipc_python_sdk/ipc_client.py."""

            def __init__(self, endpoint: str = "localhost", port: int = 8000) -> None:
                self.endpoint = endpoint
                self.port = port
                self.auth_token = env.AUTH_TOKEN

            def post_work(
                self, function_arn, input_bytes, client_context, invocation_type="RequestResponse"
            ):
                return core._post_work(
                    self, function_arn, input_bytes, client_context, invocation_type
                )

            def get_work_result(self, function_arn, invocation_id):
                return core._get_work_result(function_arn, invocation_id)

        ipc.IPCException = IPCException
        ipc.IPCClient = IPCClient
        ipc.GetWorkResultOutput = _GetWorkResultOutput
        ipc_pkg.ipc_client = ipc
        return {
            "greengrass_common": common,
            "greengrass_common.env_vars": env,
            "greengrass_common.function_arn_fields": arn_fields,
            "greengrass_ipc_python_sdk": ipc_pkg,
            "greengrass_ipc_python_sdk.ipc_client": ipc,
        }

    # -- the core's side of the IPC --------------------------------------

    def _post_work(
        self,
        ipc_client: Any,
        function_arn: str,
        input_bytes: Any,
        client_context: Any,
        invocation_type: str,
    ) -> str:
        IPCException = self._core_modules["greengrass_ipc_python_sdk.ipc_client"].IPCException
        url = f"http://{ipc_client.endpoint}:{ipc_client.port}/2016-11-01/functions/{function_arn}"
        body = _http_body(urllib.request.Request(url, input_bytes or b""))
        if not self.ipc_reachable:
            # What the real client's wrap_urllib_exceptions turns a refused connection into.
            raise IPCException(
                str(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))
            )
        invocation_id = f"invocation-{next(self._ids)}"
        if function_arn == ROUTER_FUNCTION_ARN:
            self._route(IPCException, url, body, client_context, invocation_type)
        elif function_arn == SECRETS_MANAGER_FUNCTION_ARN:
            self._results[invocation_id] = _GetWorkResultOutput(
                payload=self._secret_payload(body), func_err=None
            )
        else:
            raise IPCException("HTTP Error 404: Not Found")
        return invocation_id

    def _route(
        self, IPCException: type, url: str, body: bytes, client_context: Any, invocation_type: str
    ) -> None:
        assert invocation_type == "Event", "the SDK publishes asynchronously"
        context = json.loads(base64.b64decode(client_context).decode("utf-8"))
        custom = context["custom"]
        publication = V1Publication(
            topic=custom["subject"],
            payload=body,
            source=custom.get("source"),
            queue_full_policy=custom.get("queueFullPolicy", ""),
        )
        with self._lock:
            if self.queue_full:
                if publication.queue_full_policy == "AllOrError":
                    # Assumed status: the public SDK does not say which one the router uses.
                    headers: Any = {}
                    refused = urllib.error.HTTPError(url, 429, "queue is full", headers, None)
                    raise IPCException(str(refused))
                self.dropped.append(publication)
                return
            self.published[publication.topic].append(publication)

    def _secret_payload(self, body: bytes) -> bytes:
        request = json.loads(body.decode("utf-8"))
        self.secret_requests.append(request)
        secret_id = request.get("SecretId")
        stage = request.get("VersionStage") or "AWSCURRENT"
        secret = _find_secret(self.secrets, secret_id)
        if secret is not None and secret.name in self.secret_errors:
            status, message = self.secret_errors[secret.name]
        elif secret_id in self.secret_errors:
            status, message = self.secret_errors[secret_id]
        elif secret is None or stage not in secret.stages:
            # The example in greengrasssdk/SecretsManager.py's own comment.
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

    def _get_work_result(self, function_arn: str, invocation_id: str) -> Any:
        try:
            return self._results.pop(invocation_id)
        except KeyError:
            IPCException = self._core_modules["greengrass_ipc_python_sdk.ipc_client"].IPCException
            raise IPCException("HTTP Error 404: Not Found") from None


class FakeGreengrassSdk:
    """Module-like ``greengrasssdk`` bound to one fake core: the real ``client()`` dispatch."""

    def __init__(self, core: FakeGreengrassV1Core) -> None:
        self._core = core
        self.calls: List[str] = []

    def client(self, client_type: str, *args: Any, **kwargs: Any) -> Any:
        import greengrasssdk

        self.calls.append(client_type)
        with self._core.installed():
            return greengrasssdk.client(client_type, *args, **kwargs)


class _GetWorkResultOutput(typing.NamedTuple):
    payload: bytes
    func_err: Optional[str]


def _package(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so its submodules import
    return module


def _http_body(request: urllib.request.Request) -> bytes:
    """The body urllib would send, after urllib's own checks (a ``str`` raises TypeError)."""
    handler = urllib.request.HTTPHandler()
    handler.add_parent(urllib.request.OpenerDirector())
    handler.do_request_(request)
    data = request.data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if hasattr(data, "read"):
        return data.read()
    return b"".join(data)


@contextlib.contextmanager
def _module_overlay(modules: Mapping[str, types.ModuleType]) -> Iterator[None]:
    """Swap ``modules`` into ``sys.modules`` (and the SDK's package attributes), then restore."""
    import greengrasssdk

    names = set(modules) | set(_SDK_MODULES) | set(_CORE_ONLY_MODULES)
    with _OVERLAY_LOCK:
        saved = {name: sys.modules.get(name, _MISSING) for name in names}
        saved_attrs = {a: greengrasssdk.__dict__.get(a, _MISSING) for a in _SDK_PACKAGE_ATTRS}
        try:
            for name in names:
                sys.modules.pop(name, None)
            sys.modules.update(modules)
            for attr in _SDK_PACKAGE_ATTRS:
                module = modules.get("greengrasssdk." + attr)
                if module is not None:
                    setattr(greengrasssdk, attr, module)
            yield
        finally:
            for name, module in saved.items():
                if module is _MISSING:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
            for attr, value in saved_attrs.items():
                if value is _MISSING:
                    greengrasssdk.__dict__.pop(attr, None)
                else:
                    setattr(greengrasssdk, attr, value)


# ---------------------------------------------------------------------------
# Greengrass V2
# ---------------------------------------------------------------------------

PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
PUBLISH_TO_TOPIC = "aws.greengrass#PublishToTopic"
SUBSCRIBE_TO_TOPIC = "aws.greengrass#SubscribeToTopic"
GET_SECRET_VALUE = "aws.greengrass#GetSecretValue"
_IPC_SERVICE = {
    PUBLISH_TO_IOT_CORE: "aws.greengrass.ipc.mqttproxy",
    PUBLISH_TO_TOPIC: "aws.greengrass.ipc.pubsub",
    SUBSCRIBE_TO_TOPIC: "aws.greengrass.ipc.pubsub",
    GET_SECRET_VALUE: "aws.greengrass.SecretManager",
}


@dataclass(frozen=True)
class IoTCorePublication:
    component: str
    topic: str
    qos: str
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload.decode("utf-8"))


@dataclass(frozen=True)
class LocalPublication:
    component: str
    topic: str
    json_message: Optional[Dict[str, Any]] = None
    binary_message: Optional[bytes] = None


@dataclass
class _Subscription:
    component: str
    topic_filter: str
    receive_mode: Optional[str]
    stream: FakeContinuation


class FakeNucleus:
    """A tiny Greengrass V2 nucleus serving real ``GreengrassCoreIPCClientV2`` objects.

    Knobs: ``secrets``, ``deny(operation, resource)``, ``fail_next(operation, error)``.
    Records: ``iot_core[topic]``, ``local[topic]``, ``secret_requests``, ``requests``.
    Local pub/sub delivers synchronously to every matching subscriber, with
    MQTT wildcards and ``receive_mode`` (default: all messages, own ones too).
    """

    def __init__(self, secrets: Optional[Mapping[str, Union[str, bytes]]] = None) -> None:
        self.iot_core: Dict[str, List[IoTCorePublication]] = defaultdict(list)
        self.local: Dict[str, List[LocalPublication]] = defaultdict(list)
        self.secrets: Dict[str, StoredSecret] = {}
        self.secret_requests: List[Dict[str, Any]] = []
        self.requests: List[Tuple[str, str, Dict[str, Any]]] = []
        self.connections: List[FakeIPCConnection] = []
        self._denied: List[Tuple[str, str]] = []
        self._failures: Dict[str, List[Exception]] = defaultdict(list)
        self._subscriptions: List[_Subscription] = []
        self._lock = threading.RLock()
        for name, value in (secrets or {}).items():
            self.add_secret(name, value)

    # -- test helpers ----------------------------------------------------

    def client(self, component: str = "com.example.EdgeAgent", executor: Any = None) -> Any:
        """A real ``GreengrassCoreIPCClientV2`` connected to this nucleus as ``component``.

        ``executor=None`` runs stream callbacks inline (deterministic tests);
        pass ``True`` for the SDK's default thread pool.
        """
        from awsiot.greengrasscoreipc.client import GreengrassCoreIPCClient
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        connection = FakeIPCConnection(self, component)
        self.connections.append(connection)
        return GreengrassCoreIPCClientV2(
            client=GreengrassCoreIPCClient(connection), executor=executor
        )

    def add_secret(self, name: str, value: Union[str, bytes], **kwargs: Any) -> StoredSecret:
        secret = StoredSecret(name, value, **kwargs)
        self.secrets[name] = secret
        return secret

    def rotate_in_cloud(self, name: str, value: Union[str, bytes]) -> None:
        """Change the secret in Secrets Manager: the nucleus keeps serving its cached copy
        until a component asks with ``refresh=True`` (nucleus 2.13+)."""
        self.secrets[name].cloud_value = value

    def deny(self, operation: str, resource: str = "*") -> None:
        """Leave ``operation`` on ``resource`` out of the component's accessControl."""
        self._denied.append((operation, resource))

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
                if topic is None or topic_matches(s.topic_filter, topic)
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

    # -- the nucleus' side of the IPC ------------------------------------

    def _handle(
        self, stream: FakeContinuation, operation: str, model_name: str, payload: bytes
    ) -> None:
        from awsiot.greengrasscoreipc import model

        request_type = model.SHAPE_INDEX.find_shape_type(model_name)
        if request_type is None:
            return stream.reply_error(model.ServiceError(message="unknown shape " + model_name))
        obj = json.loads(payload.decode("utf-8"))
        request = request_type._from_payload(obj)
        self.requests.append((stream.connection.component, operation, obj))
        problems = _type_problems(request)
        if problems:
            return stream.reply_error(model.InvalidArgumentsError(message="; ".join(problems)))
        handlers: Dict[str, Callable[[str, Any], Any]] = {
            PUBLISH_TO_IOT_CORE: self._publish_to_iot_core,
            PUBLISH_TO_TOPIC: self._publish_to_topic,
            SUBSCRIBE_TO_TOPIC: self._subscribe_to_topic,
            GET_SECRET_VALUE: self._get_secret_value,
        }
        handler = handlers.get(operation)
        if handler is None:
            raise NotImplementedError("FakeNucleus does not emulate " + operation)
        component = stream.connection.component
        try:
            with self._lock:
                failures = self._failures.get(operation)
                if failures:
                    raise failures.pop(0)
            self._authorize(component, operation, _resource_of(request))
            if operation == SUBSCRIBE_TO_TOPIC:
                response = handler(component, request)
                stream.reply(response, terminate=False)
                with self._lock:
                    self._subscriptions.append(
                        _Subscription(component, request.topic, request.receive_mode, stream)
                    )
                return
            response = handler(component, request)
        except model.GreengrassCoreIPCError as error:
            return stream.reply_error(error)
        stream.reply(response, terminate=True)

    def _authorize(self, component: str, operation: str, resource: str) -> None:
        from awsiot.greengrasscoreipc import model

        for denied_op, denied_resource in self._denied:
            if denied_op == operation and denied_resource in ("*", resource):
                raise model.UnauthorizedError(
                    message=(
                        "Principal {} is not authorized to perform {}:{} on resource {}".format(
                            component, _IPC_SERVICE.get(operation, "?"), operation, resource
                        )
                    )
                )

    def _publish_to_iot_core(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model

        _require(request, "topic_name", "qos")
        _check_enum(model.QOS, "qos", request.qos)
        _check_publish_topic(request.topic_name)
        publication = IoTCorePublication(
            component, request.topic_name, request.qos, request.payload or b""
        )
        with self._lock:
            self.iot_core[request.topic_name].append(publication)
        return model.PublishToIoTCoreResponse()

    def _publish_to_topic(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model

        _require(request, "topic", "publish_message")
        _check_publish_topic(request.topic)
        message = request.publish_message
        if (message.json_message is None) == (message.binary_message is None):
            raise model.InvalidArgumentsError(
                message="publish_message must set exactly one of json_message, binary_message"
            )
        if message.json_message is not None:
            _require(message.json_message, "message")
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

        _require(request, "topic")
        if request.receive_mode is not None:
            _check_enum(model.ReceiveMode, "receive_mode", request.receive_mode)
        try:
            validate_subject(request.topic)
        except ValueError as exc:
            raise model.InvalidArgumentsError(message=str(exc)) from None
        return model.SubscribeToTopicResponse()

    def _get_secret_value(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model

        _require(request, "secret_id")
        self.secret_requests.append(
            {
                "secret_id": request.secret_id,
                "version_id": request.version_id,
                "version_stage": request.version_stage,
                "refresh": request.refresh,
            }
        )
        if request.version_id is not None and request.version_stage is not None:
            raise model.InvalidArgumentsError(
                message="specify either version_id or version_stage, not both"
            )
        secret = _find_secret(self.secrets, request.secret_id)
        stage = request.version_stage or "AWSCURRENT"
        if (
            secret is None
            or stage not in secret.stages
            or request.version_id not in (None, secret.version_id)
        ):
            raise model.ResourceNotFoundError(
                message="Secret not found " + request.secret_id,
                resource_type="secret",
                resource_name=request.secret_id,
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

    def _drop_stream(self, stream: FakeContinuation) -> None:
        with self._lock:
            self._subscriptions = [s for s in self._subscriptions if s.stream is not stream]


_SUBSCRIPTION_EVENT = "aws.greengrass#SubscriptionResponseMessage"


class FakeIPCConnection:
    """Stands in for ``awsiot.eventstreamrpc.Connection``: what the real operations call."""

    def __init__(self, nucleus: FakeNucleus, component: str) -> None:
        self.nucleus = nucleus
        self.component = component
        self.closed = False
        self.streams: List[FakeContinuation] = []

    def _new_stream(self, handler: Any) -> FakeContinuation:
        from awsiot.eventstreamrpc import ConnectionClosedError

        if self.closed:
            raise ConnectionClosedError()
        stream = FakeContinuation(self, handler)
        self.streams.append(stream)
        return stream

    def close(self, reason: Optional[Exception] = None) -> Future:
        if not self.closed:
            self.closed = True
            for stream in list(self.streams):
                stream.terminate()
        future: Future = Future()
        future.set_result(None)
        return future


class FakeContinuation:
    """One event-stream continuation; every call is bound to awscrt's own signature."""

    def __init__(self, connection: FakeIPCConnection, handler: Any) -> None:
        self.connection = connection
        self.handler = handler
        self.operation: Optional[str] = None
        self.closed = False

    def activate(self, *args: Any, **kwargs: Any) -> Future:
        from awscrt.eventstream.rpc import ClientContinuation, MessageType

        call = _bind(ClientContinuation.activate, self, *args, **kwargs)
        if self.operation is not None:
            raise RuntimeError("continuation already activated")
        assert call["message_type"] == MessageType.APPLICATION_MESSAGE
        self.operation = call["operation"]
        model_name = _header(call["headers"], "service-model-type")
        self.connection.nucleus._handle(self, call["operation"], model_name, bytes(call["payload"]))
        return _done()

    def send_message(self, *args: Any, **kwargs: Any) -> Future:
        from awscrt.eventstream.rpc import ClientContinuation, MessageFlag

        call = _bind(ClientContinuation.send_message, self, *args, **kwargs)
        if (call["flags"] or 0) & MessageFlag.TERMINATE_STREAM:
            self.terminate()
            return _done()
        raise NotImplementedError("client stream events are not emulated")

    # -- the nucleus' side -------------------------------------------------

    def reply(self, shape: Any, terminate: bool) -> None:
        self.send_shape_payload(
            shape._model_name(), json.dumps(shape._to_payload()).encode(), terminate=terminate
        )

    def reply_error(self, error: Any) -> None:
        from awscrt.eventstream.rpc import MessageType

        self.send_shape_payload(
            error._model_name(),
            json.dumps(error._to_payload()).encode(),
            message_type=MessageType.APPLICATION_ERROR,
            terminate=True,
        )

    def send_shape_payload(
        self, model_name: str, payload: bytes, message_type: Any = None, terminate: bool = False
    ) -> None:
        from awscrt.eventstream import Header
        from awscrt.eventstream.rpc import MessageFlag, MessageType

        if self.closed:
            return
        headers = [
            Header.from_string(":content-type", "application/json"),
            Header.from_string("service-model-type", model_name),
        ]
        self.handler.on_continuation_message(
            headers=headers,
            payload=payload,
            message_type=message_type or MessageType.APPLICATION_MESSAGE,
            flags=MessageFlag.TERMINATE_STREAM if terminate else MessageFlag.NONE,
        )
        if terminate:
            self.terminate()

    def terminate(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.connection.nucleus._drop_stream(self)
        self.handler.on_continuation_closed()


def _bind(function: Callable[..., Any], self: Any, *args: Any, **kwargs: Any) -> Dict[str, Any]:
    bound = inspect.signature(function).bind(self, *args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _done() -> Future:
    future: Future = Future()
    future.set_result(None)
    return future


def _header(headers: Any, name: str) -> str:
    for header in headers or ():
        if header.name.lower() == name:
            return header.value
    raise AssertionError("request without header " + name)


def _resource_of(request: Any) -> str:
    for attr in ("topic_name", "topic", "secret_id"):
        value = getattr(request, attr, None)
        if value is not None:
            return value
    return "*"


def _require(shape: Any, *names: str) -> None:
    from awsiot.greengrasscoreipc import model

    missing = [n for n in names if getattr(shape, n, None) is None]
    if missing:
        raise model.InvalidArgumentsError(message="{} is required".format(", ".join(missing)))


def _check_enum(enum: type, name: str, value: Any) -> None:
    from awsiot.greengrasscoreipc import model

    allowed = [v for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, str)]
    if value not in allowed:
        raise model.InvalidArgumentsError(message=f"{name} must be one of {allowed}, got {value!r}")


def _check_publish_topic(topic: str) -> None:
    from awsiot.greengrasscoreipc import model

    if not topic or "+" in topic or "#" in topic:
        raise model.InvalidArgumentsError(message=f"invalid publish topic {topic!r}")


def _type_problems(shape: Any, path: str = "") -> List[str]:
    """Fields of a decoded request that do not match the model class' annotations."""
    from awsiot.eventstreamrpc import Shape

    hints = typing.get_type_hints(type(shape).__init__)
    problems = []
    for name, hint in hints.items():
        if name == "return":
            continue
        value = getattr(shape, name, None)
        if value is None:
            continue
        if not _conforms(value, hint):
            problems.append(f"{path}{name} must be {_hint_name(hint)}, got {type(value).__name__}")
        elif isinstance(value, Shape):
            problems.extend(_type_problems(value, path + name + "."))
    return problems


def _conforms(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return True
    if origin is Union:
        return any(_conforms(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this checker does not model (callables, datetimes)


def _hint_name(hint: Any) -> str:
    if typing.get_origin(hint) is Union:  # Optional[X] reads as X: None is always allowed
        return " or ".join(_hint_name(a) for a in typing.get_args(hint) if a is not type(None))
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")
