"""The function's side of a V1 core's local IPC, as ``greengrasssdk`` 1.6 calls it.

Work is posted over HTTP to ``localhost:$GG_DAEMON_PORT`` at
``/2016-11-01/functions/<function ARN>`` with the client context, the
function's authorization token and the invocation type in headers; the core
answers with an invocation id, and a request/response result is fetched with
a GET carrying that id. As in the current core client: the port comes from
``GG_DAEMON_PORT``, a ``str`` payload is sent UTF-8 encoded, and urllib's
``HTTPError``/``URLError`` become ``IPCException``.
"""

import collections
import functools
import logging
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from greengrass_common.env_vars import AUTH_TOKEN, GG_DAEMON_PORT

log = logging.getLogger(__name__)

API_VERSION = "2016-11-01"
ROUTER_ARN = "arn:aws:lambda:::function:GGRouter"

GetWorkResultOutput = collections.namedtuple("GetWorkResultOutput", ["payload", "func_err"])


class IPCException(Exception):
    pass


def _as_ipc_errors(method):
    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except HTTPError as exc:
            log.error("HTTP Error %s: %s", exc.code, exc.reason)
            raise IPCException(str(exc))
        except URLError as exc:
            raise IPCException(str(exc))

    return call


def _body(payload):
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return payload


class IPCClient:
    def __init__(self, endpoint="localhost", port=None):
        self.endpoint = endpoint
        self.port = int(GG_DAEMON_PORT)  # the argument is deprecated and ignored
        self.auth_token = AUTH_TOKEN

    def _url(self, function_arn):
        return "http://{}:{}/{}/functions/{}".format(
            self.endpoint, self.port, API_VERSION, function_arn
        )

    @_as_ipc_errors
    def post_work(self, function_arn, payload, client_context, invocation_type="RequestResponse"):
        request = Request(self._url(function_arn), _body(payload))
        request.add_header("X-Amz-Client-Context", client_context)
        request.add_header("Authorization", self.auth_token)
        request.add_header("X-Amz-Invocation-Type", invocation_type)
        with urlopen(request) as response:
            return response.info().get("X-Amz-InvocationId")

    @_as_ipc_errors
    def get_work_result(self, function_arn, invocation_id):
        if function_arn == ROUTER_ARN:
            return GetWorkResultOutput(payload="", func_err="")
        request = Request(self._url(function_arn))
        request.add_header("X-Amz-InvocationId", invocation_id)
        request.add_header("Authorization", self.auth_token)
        with urlopen(request) as response:
            return GetWorkResultOutput(
                payload=response.read(), func_err=response.info().get("X-Amz-Function-Error")
            )
