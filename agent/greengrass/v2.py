"""The Greengrass V2 backend: a component talking to the nucleus through IPC (awsiotsdk).

A V2 nucleus has no subscription table: a component publishes either to AWS
IoT Core or to local pub/sub, and every local subscriber of the topic gets
the message. To keep the behaviour of the V1 group, the publishing side
decides from the group topology (``agent.topology``) where each message may
go, just as a V1 core's router would.

The thing's shadow is ``aws.greengrass.ShadowManager``'s: ``GetThingShadow``
and ``UpdateThingShadow`` over IPC, and its answers and deltas on local
pub/sub (the subjects the topology routes from ``GGShadowService``). The
component's own configuration is read with ``GetConfiguration`` and followed
with ``SubscribeToConfigurationUpdate``.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .. import schema
from ..errors import (
    GreengrassError,
    MessageError,
    PublishError,
    RuntimeUnavailable,
    SecretError,
    ShadowError,
)
from ..topology import SHADOW_SERVICE, GroupTopology, deployed_topology
from .base import MessageHandler, Runtime
from .routing import route, targets_by_kind
from .v1 import describe_error

logger = logging.getLogger(__name__)

OFF_NUCLEUS_HINT = (
    "the Greengrass V2 IPC client only works inside a component started by the nucleus; "
    "use EDGE_AGENT_RUNTIME=local on a laptop"
)

NOT_INSTALLED_HINT = (
    "awsiotsdk is not installed (pip install 'edge-agent[greengrass-v2]'); " + OFF_NUCLEUS_HINT
)

__all__ = ["GreengrassV2Runtime", "PublishError", "GreengrassError"]


class _NoSecretPayloads(logging.Filter):
    """awsiotsdk's ``awsiot.eventstreamrpc`` logs every message payload at DEBUG, the
    GetSecretValue answer (the password) included: drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any("GetSecretValue" in type(arg).__name__ for arg in args)


_SDK_LOGGER = logging.getLogger("awsiot.eventstreamrpc")
_SECRET_FILTER = _NoSecretPayloads()


class GreengrassV2Runtime(Runtime):
    """Publish, subscribe and read secrets through ``GreengrassCoreIPCClientV2``."""

    name = "v2"

    def __init__(
        self,
        function_id: str,
        topology: Optional[GroupTopology] = None,
        ipc_client: Optional[Any] = None,
    ) -> None:
        """``ipc_client`` is a ``GreengrassCoreIPCClientV2`` (or look-alike); by default one is
        connected from the nucleus' environment."""
        super().__init__(function_id)
        self.topology = topology if topology is not None else deployed_topology(os.environ)
        try:
            from awsiot.greengrasscoreipc import model
        except ImportError as exc:
            raise RuntimeUnavailable(NOT_INSTALLED_HINT) from exc
        self._model = model
        _SDK_LOGGER.addFilter(_SECRET_FILTER)  # idempotent: a filter is added once
        if ipc_client is None:
            ipc_client = _connect()
        self._ipc = ipc_client
        self._operations: List[Any] = []
        self._routes: Dict[str, Tuple[bool, List[str]]] = {}
        # Messages no subscription matched, by topic: warned once per topic, all counted.
        self.unrouted = collections.Counter()  # type: collections.Counter[str]
        self._lock = threading.Lock()
        self._closed = False
        if not any(f.id == function_id for f in self.topology.functions):
            # Routing is by source id: an unknown id publishes nowhere, so say why.
            logger.warning(
                "v2: %r is not a function of group %r; its messages match no subscription",
                function_id,
                self.topology.name,
            )

    # -- publish ---------------------------------------------------------

    def route_topics(self, topics: Mapping[str, str]) -> None:
        """Route by the topics this component runs with (its ``readingsTopic``...).

        The nucleus has no subscription table; this component decides where its
        messages go, so the table must follow its own configuration.
        """
        with self._lock:
            topology = self.topology.with_topics(self.function_id, topics)
            if topology is not self.topology:
                self.topology = topology
                self._routes = {}

    def destinations(self, topic: str) -> Tuple[bool, List[str]]:
        """(goes to IoT Core, local function ids) for this function's messages on ``topic``."""
        with self._lock:
            cached = self._routes.get(topic)
            if cached is None:
                targets = route(self.topology.subscriptions, self.function_id, topic)
                cached = self._routes[topic] = targets_by_kind(targets)
        return cached[0], list(cached[1])

    def publish(self, topic: str, message: Mapping[str, Any]) -> None:
        """Send to IoT Core and/or local pub/sub as the topology routes it.

        Both legs are tried even if one fails (a V1 core delivers each
        subscription independently); then :class:`PublishError` names the
        topic and the failed legs.
        """
        to_cloud, local_targets = self.destinations(topic)
        if not to_cloud and not local_targets:
            # Same as a V1 core: no subscription matches, nothing is delivered.
            with self._lock:
                self.unrouted[topic] += 1
                first = self.unrouted[topic] == 1
            if first:
                logger.warning(
                    "v2: no subscription of group %r routes %r from %r: not published "
                    "(warned once per topic; counted in unrouted). Publish on a topic the "
                    "group routes, or route this one.",
                    self.topology.name,
                    topic,
                    self.function_id,
                )
            return
        # Encode first, strictly: JsonMessage would let NaN through as invalid JSON.
        try:
            payload = schema.encode(message)
        except (TypeError, ValueError) as exc:
            raise MessageError(
                f"message for {topic!r} is not JSON-serialisable: {type(exc).__name__}"
            ) from None
        model = self._model
        failures: List[str] = []
        delivered: List[str] = []
        first_error: Optional[BaseException] = None
        if to_cloud:
            try:
                self._ipc.publish_to_iot_core(
                    topic_name=topic, qos=model.QOS.AT_LEAST_ONCE, payload=payload
                )
                delivered.append("IoT Core")
            except Exception as exc:
                failures.append(f"IoT Core ({describe_error(exc)})")
                first_error = first_error or exc
        if local_targets:
            try:
                self._ipc.publish_to_topic(
                    topic=topic,
                    publish_message=model.PublishMessage(
                        json_message=model.JsonMessage(message=dict(message))
                    ),
                )
                delivered.append("local pub/sub")
            except Exception as exc:
                failures.append(f"local pub/sub ({describe_error(exc)})")
                first_error = first_error or exc
        if failures:
            text = "publish to {!r} failed for {}".format(topic, "; ".join(failures))
            if "local pub/sub" in delivered:
                # The functions on this device got it; raising would make the
                # publisher resend it locally and hold back every later event.
                logger.warning("%s; delivered to %s", text, ", ".join(delivered))
                return
            if delivered:
                text += "; delivered to {}".format(", ".join(delivered))
            raise PublishError(text) from first_error

    # -- subscribe -------------------------------------------------------

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Call ``handler(message, topic)`` for every local pub/sub message on ``topic``.

        The handler runs on the IPC client's thread; its exceptions are logged,
        never raised there (an exception in the stream callback would close
        the subscription).
        """

        def on_stream_event(event: Any) -> None:
            _deliver(topic, handler, event)

        def on_stream_error(error: Exception) -> bool:
            logger.warning("v2: error on subscription to %r: %s", topic, describe_error(error))
            return False  # keep the subscription open; one bad event is not fatal

        def on_stream_closed() -> None:
            if not self._closed:
                logger.warning("v2: the nucleus closed the subscription to %r", topic)

        try:
            _response, operation = self._ipc.subscribe_to_topic(
                topic=topic,
                on_stream_event=on_stream_event,
                on_stream_error=on_stream_error,
                on_stream_closed=on_stream_closed,
            )
        except Exception as exc:
            raise GreengrassError(f"subscribe to {topic!r} failed: {describe_error(exc)}") from exc
        with self._lock:
            self._operations.append(operation)

    # -- secrets ---------------------------------------------------------

    def get_secret(self, secret_id: str, *, refresh: bool = False) -> str:
        """The secret's string value from the SecretManager component.

        ``refresh=True`` asks the nucleus to fetch it from the cloud first
        (nucleus 2.13+); it is only sent when asked for, so older nuclei are
        not handed a field they do not know.
        """
        model = self._model
        kwargs: Dict[str, Any] = {"secret_id": secret_id}
        if refresh:
            kwargs["refresh"] = True
        try:
            response = self._ipc.get_secret_value(**kwargs)
        except model.UnauthorizedError as exc:
            raise SecretError(
                f"secret {secret_id!r}: not authorised ({describe_error(exc)}); allow "
                "aws.greengrass#GetSecretValue on its ARN in the component's "
                "aws.greengrass.SecretManager accessControl"
            ) from None
        except model.ResourceNotFoundError as exc:
            raise SecretError(
                f"secret {secret_id!r}: not found on this core ({describe_error(exc)}); "
                "list its ARN in the aws.greengrass.SecretManager cloudSecrets"
            ) from None
        except Exception as exc:
            if refresh:
                # A nucleus older than 2.13 may not take refresh: its cached value
                # (refreshed by the SecretManager's periodicRefreshIntervalMin) is
                # better than none.
                logger.warning(
                    "v2: refreshing secret %r failed (%s; refresh needs nucleus 2.13+);"
                    " reading the nucleus' copy",
                    secret_id,
                    describe_error(exc),
                )
                return self.get_secret(secret_id)
            # No chaining: the SDK's exception never travels with a secret around it.
            raise SecretError(f"secret {secret_id!r}: {describe_error(exc)}") from None
        value = getattr(response, "secret_value", None)
        if value is not None:
            if isinstance(value.secret_string, str):
                return value.secret_string
            if isinstance(value.secret_binary, (bytes, bytearray)):
                try:
                    return bytes(value.secret_binary).decode("utf-8")
                except UnicodeDecodeError:
                    raise SecretError(
                        f"secret {secret_id!r}: secret_binary is not UTF-8 text"
                    ) from None
        raise SecretError(f"secret {secret_id!r} has neither secret_string nor secret_binary")

    # -- the shadow (aws.greengrass.ShadowManager) and the configuration ------

    shadow_supported = True

    def get_thing_shadow(self, thing: str) -> Dict[str, Any]:
        """The thing's classic shadow from ShadowManager (``GetThingShadow``)."""
        return self._shadow_call(
            "GetThingShadow",
            thing,
            lambda: self._ipc.get_thing_shadow(thing_name=thing, shadow_name=""),
        )

    def update_thing_shadow(self, thing: str, document: Mapping[str, Any]) -> Dict[str, Any]:
        payload = schema.encode(document)
        return self._shadow_call(
            "UpdateThingShadow",
            thing,
            lambda: self._ipc.update_thing_shadow(
                thing_name=thing, shadow_name="", payload=payload
            ),
        )

    def _shadow_call(self, operation: str, thing: str, call: Callable[[], Any]) -> Dict[str, Any]:
        model = self._model
        try:
            response = call()
        except model.UnauthorizedError as exc:
            raise ShadowError(
                401,
                "{} on {!r} not authorised ({}); allow aws.greengrass#{} on $aws/things/{}/shadow "
                "in the component's aws.greengrass.ShadowManager accessControl".format(
                    operation, thing, describe_error(exc), operation, thing
                ),
            ) from None
        except model.ResourceNotFoundError as exc:
            raise ShadowError(404, describe_error(exc)) from None
        except model.InvalidArgumentsError as exc:
            raise ShadowError(400, describe_error(exc)) from None
        except model.ConflictError as exc:
            raise ShadowError(409, describe_error(exc)) from None
        except model.ServiceError as exc:
            text = describe_error(exc)
            raise ShadowError(429 if "Too Many Requests" in text else 500, text) from None
        except Exception as exc:  # the nucleus or ShadowManager is not there (restarting)
            raise ShadowError(
                0, f"{operation} on {thing!r} failed: {describe_error(exc)}"
            ) from None
        try:
            document = json.loads(bytes(response.payload or b"{}").decode("utf-8"))
        except (TypeError, ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):  # ShadowManager answers with a JSON object
            raise ShadowError(500, f"{operation} on {thing!r}: unreadable answer")
        return document

    def subscribe_shadow(self, thing: str, handler: MessageHandler) -> None:
        """ShadowManager's answers and deltas for ``thing`` on local pub/sub: the subjects the
        topology routes from the shadow service to this function."""
        for sub in self.topology.for_thing(thing).subscriptions:
            if sub.source == SHADOW_SERVICE and sub.target == self.function_id:
                self.subscribe(sub.subject, handler)

    def component_configuration(self) -> Optional[Dict[str, Any]]:
        """This component's whole configuration (``GetConfiguration``)."""
        try:
            response = self._ipc.get_configuration(key_path=[])
        except Exception as exc:
            raise GreengrassError(
                f"reading the component configuration failed: {describe_error(exc)}"
            ) from None
        value = getattr(response, "value", None)
        return dict(value) if isinstance(value, dict) else {}

    def watch_component_configuration(self, handler: Callable[[], None]) -> bool:
        """``handler()`` after each change (``SubscribeToConfigurationUpdate``); the handler
        reads the configuration again (on its own thread: not from the IPC callback)."""

        def on_stream_event(event: Any) -> None:
            try:
                handler()
            except Exception:
                logger.exception("v2: the configuration handler failed")

        def on_stream_error(error: Exception) -> bool:
            logger.warning("v2: error on the configuration subscription: %s", describe_error(error))
            return False

        def on_stream_closed() -> None:
            if not self._closed:
                logger.warning("v2: the nucleus closed the configuration subscription")

        try:
            _response, operation = self._ipc.subscribe_to_configuration_update(
                key_path=[],
                on_stream_event=on_stream_event,
                on_stream_error=on_stream_error,
                on_stream_closed=on_stream_closed,
            )
        except Exception as exc:
            logger.error(
                "v2: cannot follow the component configuration (%s); changes apply at the "
                "next restart",
                describe_error(exc),
            )
            return False
        with self._lock:
            self._operations.append(operation)
        return True

    # -- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Close the subscriptions, then the IPC client. Safe to call twice.

        Do not call it from a message handler: closing waits for the client's
        executor, which runs the handlers.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            operations, self._operations = self._operations, []
        for operation in operations:
            try:
                operation.close()
            except Exception as exc:
                logger.debug("v2: closing a subscription failed: %s", describe_error(exc))
        try:
            self._ipc.close()
        except Exception as exc:
            logger.warning("v2: closing the IPC client failed: %s", describe_error(exc))


def _connect() -> Any:
    """A ``GreengrassCoreIPCClientV2`` on the nucleus' socket, or RuntimeUnavailable."""
    try:
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    except ImportError as exc:
        raise RuntimeUnavailable(NOT_INSTALLED_HINT) from exc
    try:
        # One callback thread: messages reach the handler in the order they were
        # published (the SDK's default pool would run them concurrently).
        import concurrent.futures

        return GreengrassCoreIPCClientV2(
            executor=concurrent.futures.ThreadPoolExecutor(max_workers=1)
        )
    except KeyError as exc:
        # connect() reads the socket path and SVCUID from os.environ[...].
        raise RuntimeUnavailable(
            f"{exc.args[0] if exc.args else exc} is not set; {OFF_NUCLEUS_HINT}"
        ) from exc
    except Exception as exc:
        raise RuntimeUnavailable(
            f"cannot connect to the nucleus IPC socket ({describe_error(exc)}); {OFF_NUCLEUS_HINT}"
        ) from exc


def _unpack(event: Any, subscribed: str) -> Tuple[Dict[str, Any], str]:
    """(message, topic) from a ``SubscriptionResponseMessage``; MessageError with a reason."""
    json_message = getattr(event, "json_message", None)
    binary_message = getattr(event, "binary_message", None)
    if json_message is not None:
        carrier, body = json_message, json_message.message
    elif binary_message is not None:
        carrier, body = binary_message, binary_message.message
    else:
        raise MessageError(
            f"event {type(event).__name__} carries neither json_message nor binary_message"
        )
    if body is None:
        raise MessageError("event has an empty message")
    message = schema.decode(body)
    # context.topic needs nucleus 2.6+; before that only the filter is known.
    context = getattr(carrier, "context", None)
    topic = getattr(context, "topic", None) or subscribed
    return message, topic


def _deliver(subscribed: str, handler: MessageHandler, event: Any) -> None:
    """Decode and hand over one event; runs on the IPC thread, so it never raises."""
    try:
        message, topic = _unpack(event, subscribed)
    except MessageError as exc:
        logger.warning("v2: dropped a message on %r: %s", subscribed, exc)
        return
    except Exception as exc:
        logger.warning(
            "v2: dropped an undecodable event on %r: %s", subscribed, describe_error(exc)
        )
        return
    try:
        handler(message, topic)
    except Exception:
        logger.exception("v2: handler for %r failed on a message from %r", subscribed, topic)
