"""The local core's shadow service: a V1 core's ``GGShadowService``, in this process.

It serves the classic shadow of any thing (or only of ``things``, when
given) with AWS IoT's semantics (:mod:`agent.greengrass.shadow_document`)
and answers as a core does:

* 401 ``Unauthorized`` to a source that is no function of the group, 403
  ``Forbidden`` to a function with no subscription to the shadow service on
  the request's topic (the group's table decides, as for any message): those
  answer the caller only, the request never reaches the service;
* 404 ``Thing not found`` for a thing the core does not serve;
* 429 ``Too Many Requests`` above ``max_requests_per_second`` per thing;
* 500 ``Internal service failure`` when the shadows cannot be saved (with
  ``path``: the core keeps its shadows across restarts); nothing changes then.

:meth:`LocalShadowService.handle` returns the direct answer and the
messages to publish (``/accepted``, ``/rejected``, ``/delta``,
``/documents``); the core routes those by its subscription table.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

from ..errors import ShadowError
from ..state_file import read_json, write_json_atomic
from .shadow_document import Payload, ShadowRejected, ThingShadow, topic_prefix

log = logging.getLogger(__name__)

Publication = Tuple[str, Dict[str, Any]]  # (topic, document)


class LocalShadowService:
    """Every thing's shadow on this core. Thread-safe."""

    def __init__(
        self,
        now: Callable[[], float],
        path: Optional[str] = None,
        things: Optional[Iterable[str]] = None,
        max_requests_per_second: Optional[float] = None,
    ) -> None:
        self._now = now
        self.path = path
        self.things = None if things is None else set(things)
        self.max_requests_per_second = max_requests_per_second
        self._shadows: Dict[str, ThingShadow] = {}
        self._recent: Dict[str, Deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self.counts = collections.Counter()  # type: collections.Counter[str]
        if path:
            self._load()

    def handle(
        self, thing: str, operation: str, payload: Payload
    ) -> Tuple[Dict[str, Any], List[Publication]]:
        """Serve one request: (answer, messages to publish). The answer is the accepted
        document, or the error document when refused (see :func:`answer_error`)."""
        prefix = "{}/{}".format(topic_prefix(thing), operation)
        now = self._now()
        with self._lock:
            try:
                answer, extra = self._serve(thing, operation, payload, now)
            except ShadowRejected as refused:
                self.counts["rejected"] += 1
                error = refused.document(now)
                return error, [(prefix + "/rejected", error)]
        self.counts["accepted"] += 1
        publications = [(prefix + "/accepted", answer)]
        for suffix, doc in extra:
            publications.append(("{}/{}".format(prefix, suffix), doc))
        return answer, publications

    def refuse(self, code: int, message: str) -> Tuple[Dict[str, Any], List[Publication]]:
        """The core's answer to a request it does not let through (401, 403, a stand-in's 500):
        to the caller only, as the service never saw it."""
        self.counts["rejected"] += 1
        return ShadowRejected(code, message).document(self._now()), []

    def document(self, thing: str) -> Optional[Dict[str, Any]]:
        """The thing's shadow as a GET would return it, or None (for tests and tools)."""
        with self._lock:
            shadow = self._shadows.get(thing)
            return shadow.get(None, self._now()) if shadow is not None and shadow.exists else None

    # -- inside the lock -------------------------------------------------------------
    def _serve(
        self, thing: str, operation: str, payload: Payload, now: float
    ) -> Tuple[Dict[str, Any], List[Tuple[str, Dict[str, Any]]]]:
        if self.things is not None and thing not in self.things:
            raise ShadowRejected(404, "Thing not found")
        self._throttle(thing, now)
        shadow = self._shadows.get(thing)
        if shadow is None:
            shadow = ThingShadow(thing)
        if operation == "get":
            return shadow.get(payload, now), []
        before = shadow.to_json()
        if operation == "delete":
            answer = shadow.delete(payload, now)
            extra: List[Tuple[str, Dict[str, Any]]] = []
        else:
            result = shadow.update(payload, now)
            answer = result.accepted
            extra = [("documents", result.documents)]
            if result.delta is not None:
                extra.insert(0, ("delta", result.delta))
        self._shadows[thing] = shadow
        if self.path and not self._save():
            self._shadows[thing] = ThingShadow.from_json(before)  # as if it never happened
            raise ShadowRejected(500, "Internal service failure")
        return answer, extra

    def _throttle(self, thing: str, now: float) -> None:
        if not self.max_requests_per_second:
            return
        recent = self._recent[thing]
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= self.max_requests_per_second:
            raise ShadowRejected(429, "Too Many Requests")
        recent.append(now)

    def _save(self) -> bool:
        shadows = [s.to_json() for s in self._shadows.values()]
        return write_json_atomic(self.path or "", {"version": 1, "shadows": shadows})

    def _load(self) -> None:
        data = read_json(self.path or "")
        if not data:
            return
        for saved in data.get("shadows") or []:
            try:
                shadow = ThingShadow.from_json(saved)
            except (KeyError, TypeError, ValueError):
                log.error("ignoring a malformed saved shadow in %s", self.path)
                continue
            self._shadows[shadow.thing] = shadow


def answer_error(answer: Dict[str, Any]) -> Optional[ShadowError]:
    """The ShadowError an error document stands for; None for an accepted answer."""
    if "code" in answer and "message" in answer and "state" not in answer:
        return ShadowError(int(answer["code"]), str(answer["message"]))
    return None
