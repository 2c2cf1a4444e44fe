"""What-if: the agent's ``requests`` session with ``TCP_QUICKACK`` set before each response.

Against a server that writes headers and body separately with Nagle on, the
body of every answer on a kept-alive connection waits for the client's ACK of
the headers, and Linux delays that ACK by up to 40 ms. ``TCP_NODELAY`` on the
client (urllib3 sets it already) does not help: the segment held back is the
server's. ``TCP_QUICKACK`` makes the client acknowledge at once, but Linux
clears it again as the connection goes on, so it is set on the socket just
before each response is read.

The benchmarks mount this adapter on the anomaly function's own session
(``client.session.mount``) to measure the effect; ``agent/`` is unchanged.
"""

from __future__ import annotations

import socket
from typing import Any

TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def _quick_ack(sock: Any) -> None:
    if TCP_QUICKACK is not None and sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        except OSError:
            pass  # not a TCP socket (or already closed): nothing to gain


def quick_ack_adapter() -> Any:
    """A ``requests`` adapter whose connections ask for an immediate ACK before each response."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class QuickAckHTTPConnection(HTTPConnection):
        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            _quick_ack(self.sock)
            return super().getresponse(*args, **kwargs)

    class QuickAckHTTPSConnection(HTTPSConnection):
        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            _quick_ack(self.sock)
            return super().getresponse(*args, **kwargs)

    class QuickAckHTTPPool(HTTPConnectionPool):
        ConnectionCls = QuickAckHTTPConnection

    class QuickAckHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = QuickAckHTTPSConnection

    class QuickAckAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": QuickAckHTTPPool,
                "https": QuickAckHTTPSPool,
            }

    return QuickAckAdapter()


def apply(session: Any) -> Any:
    """Mount the adapter on ``session`` for http and https; returns ``session``."""
    adapter = quick_ack_adapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
