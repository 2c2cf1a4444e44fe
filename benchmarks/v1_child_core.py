"""A Greengrass V1 core's IPC as a spawned benchmark child needs it, light on imports.

Cold-start and real-time children load a function as a V1 core's Python runtime
would, so the installed ``greengrasssdk`` must find ``greengrass_common`` and
``greengrass_ipc_python_sdk``, which exist only on a core. The test suite's
wire-level core stand-in (``tests/v1_core.py``) would do, but it imports ``dataclasses``,
``inspect``, ``typing`` and part of the agent, which would then look free to
the function being timed. This module imports only what the core's own
runtime and IPC client load before any function code (``json``, ``logging``,
``collections``, ``functools``, ``urllib.request``, plus ``base64`` and
``threading``), so a child's cold start counts what the function itself loads.

It answers in-process, without the loopback HTTP round trip a core's IPC
makes per call (it builds the request the real client would send): a publish is counted per topic (the first one stamped
with ``time.monotonic_ns()``), the local shadow service answers a get (no shadow
yet, then the last update) and accepts each update, a secret is read from the file named by
``EDGE_BENCH_SECRET_FILE`` (the value as Secrets Manager holds it) under the
name ``EDGE_BENCH_SECRET_NAME``. Like a current core's IPC client, it accepts
a ``str`` payload. Swap it for the wire-level IPC stand-in when that exists.

Usage, as a child's first lines: ``from benchmarks.v1_child_core import
install; core = install()``.
"""

import base64
import collections
import functools  # noqa: F401 - loaded by the core's IPC client before any function
import itertools
import json
import logging  # noqa: F401 - loaded by the core's Python runtime before any function
import os
import sys
import threading
import time
import types
import urllib.request

ROUTER_FUNCTION_ARN = "arn:aws:lambda:::function:GGRouter"
SHADOW_FUNCTION_ARN = "arn:aws:lambda:::function:GGShadowService"
SECRETS_MANAGER_FUNCTION_ARN = "arn:aws:lambda:::function:GGSecretManager"


class ChildCore:
    """What the function's SDK calls reach; counts and stamps for the benchmark."""

    def __init__(self, secret_name, secret_value):
        self.secret_name = secret_name
        self.secret_value = secret_value
        self.published = collections.Counter()
        self.first_publish_ns = None
        self.first_publish = threading.Event()
        self.secret_requests = 0
        self.shadow_requests = 0
        self.shadow_version = 0
        self.shadow_state = {}
        self._results = {}
        self._ids = itertools.count(1)

    def post_work(self, function_arn, input_bytes, client_context, invocation_type):
        if isinstance(input_bytes, str):
            input_bytes = input_bytes.encode("utf-8")
        # The request the core's IPC client builds (and would send to localhost:8000).
        urllib.request.Request(
            "http://localhost:8000/2016-11-01/functions/%s" % function_arn,
            input_bytes or b"",
            headers={
                "Authorization": "bench-auth-token",
                "X-Amz-Client-Context": client_context,
                "X-Amz-Invocation-Type": invocation_type,
            },
        )
        invocation_id = "invocation-%d" % next(self._ids)
        if function_arn == ROUTER_FUNCTION_ARN:
            custom = json.loads(base64.b64decode(client_context).decode("utf-8"))["custom"]
            self.published[custom["subject"]] += 1
            if self.first_publish_ns is None:
                self.first_publish_ns = time.monotonic_ns()
                self.first_publish.set()
        elif function_arn == SECRETS_MANAGER_FUNCTION_ARN:
            self._results[invocation_id] = self._secret(json.loads(input_bytes.decode("utf-8")))
        elif function_arn == SHADOW_FUNCTION_ARN:
            custom = json.loads(base64.b64decode(client_context).decode("utf-8"))["custom"]
            self._results[invocation_id] = self._shadow(custom["subject"], input_bytes)
        else:
            raise IPCException("HTTP Error 404: Not Found")
        return invocation_id

    def get_work_result(self, function_arn, invocation_id):
        try:
            # A core answers with an empty X-Amz-Function-Error (tests/v1_core.py too).
            return GetWorkResultOutput(self._results.pop(invocation_id), "")
        except KeyError:
            raise IPCException("HTTP Error 404: Not Found") from None

    def _shadow(self, subject, payload):
        """What a core's local shadow service answers a function that follows its shadow:
        no shadow yet at the first get, then each update accepted (a core answers both at
        once, so the function's live configuration settles as on a device)."""
        self.shadow_requests += 1
        thing = subject.split("/")[2]
        if subject.endswith("/get"):
            if self.shadow_version == 0:
                answer = {"code": 404, "message": "No shadow exists with name: '%s'" % thing}
            else:
                answer = {"state": self.shadow_state, "version": self.shadow_version}
        elif subject.endswith("/update"):
            self.shadow_version += 1
            self.shadow_state = json.loads(payload.decode("utf-8")).get("state", {})
            answer = {"state": self.shadow_state, "version": self.shadow_version}
        else:
            answer = {"code": 400, "message": "unknown shadow operation"}
        answer["timestamp"] = int(time.time())
        return json.dumps(answer).encode("utf-8")

    def _secret(self, request):
        self.secret_requests += 1
        if self.secret_value is None or request.get("SecretId") != self.secret_name:
            answer = {"Status": 404, "Message": "Resource not found"}
        else:
            answer = {
                "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + self.secret_name,
                "Name": self.secret_name,
                "VersionId": "00000000-0000-0000-0000-000000000001",
                "VersionStages": ["AWSCURRENT"],
                "SecretString": self.secret_value,
                "CreatedDate": int(time.time() * 1000),
            }
        return json.dumps(answer).encode("utf-8")


class IPCException(Exception):
    pass


GetWorkResultOutput = collections.namedtuple("GetWorkResultOutput", "payload func_err")


def _module(name, package=False, **attrs):
    module = types.ModuleType(name)
    if package:
        module.__path__ = []
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def install(environ=os.environ):
    """Put the core-only modules in ``sys.modules``, bound to a new :class:`ChildCore`."""
    secret_value = None
    path = environ.get("EDGE_BENCH_SECRET_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            secret_value = handle.read()
    core = ChildCore(environ.get("EDGE_BENCH_SECRET_NAME", "greengrass-snow-creds"), secret_value)

    class IPCClient:
        """Signatures as in greengrass_ipc_python_sdk/ipc_client.py."""

        def __init__(self, endpoint="localhost", port=8000):
            self.endpoint = endpoint
            self.port = port

        def post_work(
            self, function_arn, input_bytes, client_context, invocation_type="RequestResponse"
        ):
            return core.post_work(function_arn, input_bytes, client_context, invocation_type)

        def get_work_result(self, function_arn, invocation_id):
            return core.get_work_result(function_arn, invocation_id)

    class FunctionArnFields:
        def __init__(self, arn_string):
            raise NotImplementedError("invoking other functions is not emulated")

    env_vars = _module(
        "greengrass_common.env_vars",
        MY_FUNCTION_ARN=environ.get("MY_FUNCTION_ARN"),
        ROUTER_FUNCTION_ARN=ROUTER_FUNCTION_ARN,
        SHADOW_FUNCTION_ARN=SHADOW_FUNCTION_ARN,
        SECRETS_MANAGER_FUNCTION_ARN=SECRETS_MANAGER_FUNCTION_ARN,
        AUTH_TOKEN="bench-auth-token",
    )
    arn_fields = _module(
        "greengrass_common.function_arn_fields", FunctionArnFields=FunctionArnFields
    )
    _module("greengrass_common", package=True, env_vars=env_vars, function_arn_fields=arn_fields)
    ipc = _module(
        "greengrass_ipc_python_sdk.ipc_client",
        IPCClient=IPCClient,
        IPCException=IPCException,
        GetWorkResultOutput=GetWorkResultOutput,
    )
    _module("greengrass_ipc_python_sdk", package=True, ipc_client=ipc)
    return core
