"""The Greengrass V1 backend: a Lambda function on a V1 core, through ``greengrasssdk``.

The SDK is imported in the constructor, not here, so this module (and its
errors) load on any machine; only constructing the runtime needs a core.
"""

from __future__ import annotations

import base64
import binascii
import collections
import collections.abc  # Mapping for isinstance: typing is not loaded at run time
import json
import logging
import os
import re
import threading

from .. import schema
from ..errors import MessageError, PublishError, RuntimeUnavailable, SecretError, ShadowError
from ..names import ROUTES_VARIABLE
from .base import MessageHandler, Runtime
from .routing import decode_routes, routed

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional

logger = logging.getLogger(__name__)

# AllOrException: the core raises when its queue is full instead of dropping
# the message silently (BestEffort), so the caller learns a reading was lost.
QUEUE_FULL_POLICY = "AllOrException"

# What SecretsManagerError says: "Request for secret value returned error
# code X with message Y" (greengrasssdk/SecretsManager.py).
_SDK_SECRET_ERROR = re.compile(r"error code (?P<code>\S+) with message (?P<message>.*)", re.S)
# ... and what its ShadowError says (greengrasssdk/IoTDataPlane.py, _shadow_op).
_SDK_SHADOW_ERROR = re.compile(r'error code (?P<code>\d+) with message "(?P<message>.*)"', re.S)
_MAX_ERROR_TEXT = 200
_ROUTED_TOPICS_KEPT = 64  # a function publishes on a handful of topics

OFF_CORE_HINT = (
    "greengrasssdk clients only work inside a Greengrass V1 core; "
    "use EDGE_AGENT_RUNTIME=local on a laptop"
)


def _short(text: str, limit: int = _MAX_ERROR_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_error(exc: BaseException) -> str:
    """``Type: message`` for an SDK exception, trimmed for a log line."""
    # Greengrass V2 model errors keep their text in ``.message``; str() is empty.
    text = getattr(exc, "message", None) or str(exc)
    name = type(exc).__name__
    return f"{name}: {_short(str(text))}" if text else name


class GreengrassV1Runtime(Runtime):
    """Publish and read secrets through a V1 core's ``iot-data`` and ``secretsmanager`` clients."""

    name = "v1"

    def __init__(
        self,
        function_id: str,
        sdk: Optional[Any] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        """``sdk`` is anything with ``client(name)``; by default the installed ``greengrasssdk``.
        ``environ`` is the function's environment (by default this process')."""
        super().__init__(function_id)
        self._environ = os.environ if environ is None else environ
        self._subjects: Optional[List[str]] = None  # what the group routes from here
        self._routed: Dict[str, bool] = {}  # by topic: a publish costs a look-up, not a match
        self._topics: Dict[str, str] = {}
        # Messages the deployed subscriptions do not route, by topic: the core drops them
        # without a word, so they are counted here and warned once per topic.
        self.unrouted = collections.Counter()  # type: collections.Counter[str]
        self._lock = threading.Lock()
        if sdk is None:
            try:
                import greengrasssdk as installed_sdk
            except ImportError as exc:
                raise RuntimeUnavailable(
                    "greengrasssdk is not installed (pip install 'edge-agent[greengrass-v1]'); "
                    + OFF_CORE_HINT
                ) from exc
            sdk = installed_sdk
        # Clients are created once: each one opens the core's IPC endpoint,
        # and a pinned function publishes every few seconds.
        try:
            self._iot_data = sdk.client("iot-data")
            self._secrets = sdk.client("secretsmanager")
        except ImportError as exc:
            # Off a core the SDK's client modules fail on greengrass_common,
            # which only the core's Lambda runtime provides.
            raise RuntimeUnavailable(f"{OFF_CORE_HINT} ({describe_error(exc)})") from exc
        except Exception as exc:
            raise RuntimeUnavailable(
                f"cannot create greengrasssdk clients ({describe_error(exc)}); {OFF_CORE_HINT}"
            ) from exc

    def publish(self, topic: str, message: Mapping[str, Any]) -> None:
        """Hand a JSON message to the core's router; the group's subscriptions route it.

        A topic none of them routes is still handed over (the core's table is the
        authority), counted in :attr:`unrouted` and warned once: the core will drop it.
        """
        payload = _encode(topic, message)
        if not self._is_routed(topic):
            with self._lock:
                self.unrouted[topic] += 1
                first = self.unrouted[topic] == 1
            if first:
                logger.warning(
                    "v1: no subscription of the deployed group routes %r from %r: the core "
                    "drops it without an error (warned once per topic; counted in unrouted). "
                    "Publish on a topic the group routes, or route this one and redeploy.",
                    topic,
                    self.function_id,
                )
        try:
            self._iot_data.publish(topic=topic, queueFullPolicy=QUEUE_FULL_POLICY, payload=payload)
        except Exception as exc:
            raise PublishError(f"publish to {topic!r} failed: {describe_error(exc)}") from exc

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """No-op: a V1 core delivers to the function's handler by the subscription table."""
        logger.debug("v1: %r is routed by the group's subscriptions, not subscribed", topic)

    def route_topics(self, topics: Mapping[str, str]) -> None:
        """Only for a function deployed without its route table: the topology's guess then
        follows the topics it publishes on (the deployed table already does)."""
        with self._lock:
            self._topics = dict(topics)
            if ROUTES_VARIABLE not in self._environ:
                self._subjects = None
                self._routed = {}

    def _is_routed(self, topic: str) -> bool:
        known = self._routed.get(topic)
        if known is None:
            known = routed(self._routed_subjects(), topic)
            if len(self._routed) >= _ROUTED_TOPICS_KEPT:
                self._routed = {}
            self._routed[topic] = known
        return known

    def _routed_subjects(self) -> List[str]:
        """The subjects the group routes from this function: from the environment the
        deployment gives it, else (deployed by other means) the topology's."""
        subjects = self._subjects
        if subjects is not None:
            return subjects
        text = self._environ.get(ROUTES_VARIABLE)
        found = decode_routes(text) if text is not None else None
        if found is None:
            if text is not None:
                logger.error(
                    "v1: %s is not a JSON list of topics (%.80r); judging routes by the "
                    "default topology",
                    ROUTES_VARIABLE,
                    text,
                )
            found = self._topology_subjects()
        with self._lock:
            self._subjects = found
        return found

    def _topology_subjects(self) -> List[str]:
        # Loaded only here: the topology is not on the start path (the cold-start rule).
        from ..topology import deployed_topology

        topology = deployed_topology(self._environ).with_topics(self.function_id, self._topics)
        return [s.subject for s in topology.subscriptions_from(self.function_id)]

    # -- the local shadow service (GGShadowService) --------------------------------
    shadow_supported = True

    def get_thing_shadow(self, thing: str) -> Dict[str, Any]:
        """The thing's shadow from the core's local shadow service (synced with the cloud
        when the core's ``SyncShadow`` is on)."""
        return self._shadow_call(
            "get", thing, lambda: self._iot_data.get_thing_shadow(thingName=thing)
        )

    def update_thing_shadow(self, thing: str, document: Mapping[str, Any]) -> Dict[str, Any]:
        payload = schema.encode(document)
        return self._shadow_call(
            "update",
            thing,
            lambda: self._iot_data.update_thing_shadow(thingName=thing, payload=payload),
        )

    def _shadow_call(self, operation: str, thing: str, call: Callable[[], Any]) -> Dict[str, Any]:
        try:
            response = call()
        except Exception as exc:
            text = str(getattr(exc, "message", None) or exc)
            match = _SDK_SHADOW_ERROR.search(text)
            if match:  # the service answered with an error document
                raise ShadowError(
                    int(match.group("code")), _short(match.group("message"))
                ) from None
            raise ShadowError(
                0, f"shadow {operation} for {thing!r} failed: {describe_error(exc)}"
            ) from None
        try:
            document = json.loads(bytes(response["payload"]).decode("utf-8"))
        except (KeyError, TypeError, ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):  # the service answers with a JSON object
            raise ShadowError(500, f"shadow {operation} for {thing!r}: unreadable answer")
        return document

    def get_secret(self, secret_id: str, *, refresh: bool = False) -> str:
        """The secret's ``SecretString`` (or UTF-8 ``SecretBinary``) as the core downloaded it.

        ``secret_id`` is the Secrets Manager name or ARN, not the resource Id.
        V1 values change only when the group is redeployed, and the SDK has no
        refresh: ``refresh`` asks the core again all the same.
        """
        try:
            response = self._secrets.get_secret_value(SecretId=secret_id)
        except Exception as exc:
            # No chaining: the message below says all a person needs, and the
            # original exception is never allowed near a log with the value.
            raise SecretError(_secret_error_text(secret_id, exc)) from None
        return _secret_text(secret_id, response)


def _encode(topic: str, message: Mapping[str, Any]) -> bytes:
    try:
        return schema.encode(message)
    except (TypeError, ValueError) as exc:
        raise MessageError(
            f"message for {topic!r} is not JSON-serialisable: {type(exc).__name__}"
        ) from None


def _secret_error_text(secret_id: str, exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    match = _SDK_SECRET_ERROR.search(str(text))
    if match:
        return "secret {!r}: the core answered error code {} ({})".format(
            secret_id, match.group("code"), _short(match.group("message"))
        )
    return f"secret {secret_id!r}: {describe_error(exc)}"


def _secret_text(secret_id: str, response: Any) -> str:
    """``SecretString``, else ``SecretBinary`` decoded as UTF-8; never echoes the value."""
    if not isinstance(response, collections.abc.Mapping):
        raise SecretError(
            f"secret {secret_id!r}: unexpected response type {type(response).__name__}"
        )
    value = response.get("SecretString")
    if isinstance(value, str):
        return value
    binary = response.get("SecretBinary")
    if isinstance(binary, str):
        # The core carries the response as JSON, so binary arrives base64-encoded.
        try:
            binary = base64.b64decode(binary, validate=True)
        except (binascii.Error, ValueError):
            raise SecretError(f"secret {secret_id!r}: SecretBinary is not base64") from None
    if isinstance(binary, (bytes, bytearray)):
        try:
            return bytes(binary).decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError(f"secret {secret_id!r}: SecretBinary is not UTF-8 text") from None
    raise SecretError(f"secret {secret_id!r} has neither SecretString nor SecretBinary")
