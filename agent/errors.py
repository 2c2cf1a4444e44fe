"""The agent's exceptions.

Each one also subclasses the builtin a caller would naturally catch, in the
manner of gpiozero (``BadPinFactory(GPIOZeroError, ImportError)``), so code
that knows nothing of the agent still handles them sensibly.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error the agent raises on purpose."""


class ConfigError(AgentError, ValueError):
    """A configuration value is missing or malformed; the message names it."""


class SensorError(AgentError, OSError):
    """The sensor could not be opened or read."""


class BadSensorBackend(AgentError, ImportError):
    """The requested sensor backend does not exist or cannot load here."""


class RuntimeUnavailable(AgentError, ImportError):
    """The requested Greengrass backend cannot be used in this process."""


class SecretError(AgentError, LookupError):
    """A secret could not be fetched or parsed. Never carries the value."""


class MessageError(AgentError, ValueError):
    """An incoming message does not follow the schema."""


class GreengrassError(AgentError, OSError):
    """The core refused or failed an operation (publish, subscribe)."""


class PublishError(GreengrassError):
    """The core did not accept a message. The text names the topic, never the payload."""


class ShadowError(GreengrassError):
    """The shadow service refused or failed a request: the documented ``code`` and ``message``
    (400 bad request, 404 no shadow, 409 version conflict, 429 throttled, 500 failure...);
    code 0 when the service could not be reached at all."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(
            "shadow service answered {}: {}".format(code, message) if code else message
        )
        self.code = code
        self.message = message
