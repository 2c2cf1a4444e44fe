"""The Greengrass shim: one interface, three backends.

* ``v1``: a Greengrass V1 core (greengrasssdk ``iot-data`` and ``secretsmanager``);
* ``v2``: a Greengrass V2 nucleus (awsiotsdk ``GreengrassCoreIPCClientV2``);
* ``local``: an in-process emulation of a V1 core for laptops and tests.

The backend is chosen from where the process finds itself, or by the
``EDGE_AGENT_RUNTIME`` variable, or by the ``backend`` argument (which wins).
"""

from __future__ import annotations

import os

from ..errors import RuntimeUnavailable
from .base import MessageHandler, Runtime

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Mapping, Optional

BACKENDS = ("v1", "v2", "local")
ENV_VAR = "EDGE_AGENT_RUNTIME"

__all__ = ["BACKENDS", "MessageHandler", "Runtime", "detect_backend", "open_runtime"]


def detect_backend(environ: Optional[Mapping[str, str]] = None) -> str:
    """Name the backend for this process: the override, else what the environment shows."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(ENV_VAR, "").strip().lower()
    if chosen:
        if chosen not in BACKENDS:
            raise RuntimeUnavailable(
                "{} must be one of {}, got {!r}".format(ENV_VAR, ", ".join(BACKENDS), chosen)
            )
        return chosen
    # A V2 nucleus gives every component its IPC socket and service uid.
    if environ.get("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT") and environ.get("SVCUID"):
        return "v2"
    # A V1 core runs every Lambda with its own qualified ARN in MY_FUNCTION_ARN.
    if environ.get("MY_FUNCTION_ARN"):
        return "v1"
    return "local"


def open_runtime(
    function_id: str,
    backend: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Runtime:
    """A runtime for ``function_id`` on the chosen or detected backend."""
    backend = backend or detect_backend(environ)
    if backend == "v1":
        from .v1 import GreengrassV1Runtime

        return GreengrassV1Runtime(function_id)
    if backend == "v2":
        from .v2 import GreengrassV2Runtime

        return GreengrassV2Runtime(function_id)
    if backend == "local":
        from .local import default_core

        return default_core().runtime_for(function_id)
    raise RuntimeUnavailable(
        "unknown Greengrass backend {!r}; use one of {}".format(backend, ", ".join(BACKENDS))
    )
