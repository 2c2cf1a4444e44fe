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

    def close(self) -> None:
        """Release connections."""
