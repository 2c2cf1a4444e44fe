"""The Greengrass shim's interface: publish, receive, get a secret."""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping

# A message handler gets the decoded JSON message and the topic it came on.
MessageHandler = Callable[[Dict[str, Any], str], None]


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

    def get_secret(self, secret_id: str) -> str:
        """The secret's ``SecretString``. Raises :class:`agent.errors.SecretError`."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""
