"""The Greengrass shim's interface: publish, receive, get a secret, the thing's shadow."""

from __future__ import annotations

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Mapping, Optional

    # A message handler gets the decoded JSON message and the topic it came on. What it
    # returns is ignored (the services' handlers return what they did with the message).
    MessageHandler = Callable[[Dict[str, Any], str], object]
else:  # for the modules that import the name; only annotations use it
    MessageHandler = "Callable[[Dict[str, Any], str], object]"


class Runtime:
    """What a function needs from the core it runs on.

    One instance is bound to one function of the group (``function_id``), so
    routing can be decided from the topology as the real core would.
    """

    name = "abstract"

    def __init__(self, function_id: str) -> None:
        self.function_id = function_id

    def publish(self, topic: str, message: Mapping[str, Any]) -> None:
        """Publish a JSON message. Raises ``OSError`` if the core refused it."""
        raise NotImplementedError

    def route_topics(self, topics: Mapping[str, str]) -> None:
        """Route this function's messages by the topics it really publishes on.

        ``topics`` maps topic variables (``readingsTopic``, ``anomalyTopic``) to
        the values the function read from its own configuration, so the table a
        backend routes by and the topics the function uses come from one source.
        The local core and the V2 backend rebuild their routes from them; on a V1
        core this is a no-op: the deployed subscription table, built from the
        same variables, routes there.
        """

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Receive messages on ``topic``.

        On a V1 core and in the local emulation the group's subscription table
        already routes messages to the function's handler, so this is a no-op
        there; Greengrass V2 components subscribe through IPC.
        """

    def get_secret(self, secret_id: str, *, refresh: bool = False) -> str:
        """The secret's ``SecretString``. Raises :class:`agent.errors.SecretError`.

        ``refresh=True`` asks for the current value, past any cache the core
        keeps (after a 401, when the password may have been rotated).
        """
        raise NotImplementedError

    # -- the device shadow and the component's configuration -------------------------
    # A backend that has a local shadow service says so; the others keep these defaults.
    shadow_supported = False

    def bind_thing(self, thing: str) -> None:
        """This function acts for ``thing``: route its shadow subjects (the local core; the
        deployed V1 subscriptions and V2 access control already name the thing)."""

    def get_thing_shadow(self, thing: str) -> Dict[str, Any]:
        """The thing's classic shadow document (``/get/accepted``).

        Raises :class:`agent.errors.ShadowError` (404 when it has none).
        """
        from ..errors import ShadowError

        raise ShadowError(0, f"no shadow service on the {self.name} runtime")

    def update_thing_shadow(self, thing: str, document: Mapping[str, Any]) -> Dict[str, Any]:
        """Send an update request; the ``/update/accepted`` document, or ShadowError."""
        from ..errors import ShadowError

        raise ShadowError(0, f"no shadow service on the {self.name} runtime")

    def subscribe_shadow(self, thing: str, handler: MessageHandler) -> None:
        """Receive the shadow service's answers and deltas for ``thing``.

        A V1 core and the local core route them to the function's handler by the
        group's subscriptions, so this is a no-op there; V2 subscribes to local
        pub/sub, where ShadowManager publishes them.
        """

    def component_configuration(self) -> Optional[Dict[str, Any]]:
        """The component's configuration (V2), or None where there is none."""
        return None

    def watch_component_configuration(self, handler: Callable[[], None]) -> bool:
        """Call ``handler()`` after each change of the component's configuration (V2);
        False where configuration does not change at run time."""
        return False

    def close(self) -> None:
        """Release connections."""


def subject_of(context: Any) -> str:
    """The topic a V1 (or local core) Lambda context says a message came on; ``""`` if none."""
    try:
        return str(context.client_context.custom["subject"])
    except (AttributeError, KeyError, TypeError):
        return ""
