"""What the HTTP server and the admin API need of the stand-in, so neither imports it.

:class:`~.standin.ServiceNowStandIn` builds both (:mod:`.handler`, :mod:`.admin`)
and is what they are given; these protocols say which of its parts they use.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, Union

from .cmdb import CmdbTable
from .faults import Faults
from .rate_rule import RateRule
from .responses import Response


class AdminTarget(Protocol):
    """The parts of the stand-in ``/__standin/`` requests read and change."""

    faults: Faults
    cmdb: CmdbTable
    rate_rule: RateRule

    def alerts(self) -> List[Dict[str, Any]]: ...

    def set_roles(self, user: str, roles: Any) -> None: ...

    @property
    def counters(self) -> Dict[str, int]: ...

    @property
    def timed_request_log(self) -> List[Tuple[float, str, str, Optional[int]]]: ...

    def incidents(self, query: Union[Dict[str, Any], str, None] = None) -> List[Dict[str, Any]]: ...

    def set_users(self, users: Dict[str, str]) -> None: ...

    def expire_tokens(self) -> None: ...

    def reset_stats(self) -> None: ...


class AdminHandler(Protocol):
    """The admin API as the HTTP handler calls it."""

    def handles(self, path: str) -> bool: ...

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> Response: ...


class ServedStandIn(Protocol):
    """The parts of the stand-in its HTTP server calls for every request."""

    faults: Faults
    clock: Callable[[], float]

    @property
    def admin(self) -> Optional[AdminHandler]: ...

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> Response: ...

    def is_table_path(self, path: str) -> bool: ...

    def is_table_query(self, path: str) -> bool: ...

    def count(self, name: str, n: int = 1) -> None: ...

    def record_request(
        self, method: Optional[str], path: str, status: Optional[int], started: float
    ) -> None: ...

    def connection_opened(self, conn: socket.socket) -> None: ...

    def connection_closed(self, conn: socket.socket) -> None: ...
