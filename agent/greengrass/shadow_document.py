"""AWS IoT Device Shadow semantics, as pure logic: one thing's classic shadow document.

What the Device Shadow service documents (AWS IoT Developer Guide: "Device
Shadow service documents", "Interacting with shadows", "Device Shadow MQTT
topics", "Device Shadow error messages"), with the local shadow service's
limits (``aws.greengrass.ShadowManager``: 8 KB of state, 6 levels):

* an update merges ``desired`` and ``reported`` field by field; ``null``
  deletes a field (``"desired": null`` the whole section, ``"state": null``
  both); arrays are values, replaced whole, and may not hold ``null``;
* every accepted update increments ``version``; an update naming a
  ``version`` other than the shadow's is refused with 409; a deleted shadow
  keeps its version for the next one;
* ``delta`` holds each ``desired`` field that ``reported`` lacks or holds
  differently, nested objects down to the differing leaves; numbers compare
  by value (``55`` equals ``55.0``);
* each leaf has ``metadata`` with the epoch ``timestamp`` of its last update;
* answers carry the request's ``clientToken`` (at most 64 bytes);
* refusals are ``{"code", "message", "timestamp", "clientToken"}`` with the
  documented codes and messages.

:class:`ThingShadow` is the document and its operations; the local core
(``agent.greengrass.local``) and the tests' V1 core and V2 nucleus stand-ins
serve it and publish what an operation returns on the documented topics.
"""

from __future__ import annotations

import collections.abc  # Mapping for isinstance: typing is not loaded at run time
import copy
import json

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

MAX_CLIENT_TOKEN_BYTES = 64
MAX_STATE_DEPTH = 6
MAX_STATE_BYTES = 8 * 1024  # desired + reported, as JSON: the local shadow service's default
MAX_REQUEST_BYTES = 128 * 1024  # an MQTT message to AWS IoT Core
SECTIONS = ("desired", "reported")
CLASSIC_PREFIX = "$aws/things/{}/shadow"
OPERATIONS = ("update", "get", "delete")

if TYPE_CHECKING:
    Payload = Union[bytes, str, Mapping[str, Any], None]
else:  # only annotations use it
    Payload = "Union[bytes, str, Mapping[str, Any], None]"


class ShadowRejected(Exception):
    """A refused request: the documented HTTP-style ``code`` and ``message``."""

    def __init__(self, code: int, message: str, client_token: Optional[str] = None) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.client_token = client_token

    def document(self, now: float) -> Dict[str, Any]:
        """The error response document (``/rejected`` topics, the SDKs' error payloads)."""
        doc: Dict[str, Any] = {"code": self.code, "message": self.message, "timestamp": int(now)}
        if self.client_token is not None:
            doc["clientToken"] = self.client_token
        return doc


def bad_request(message: str, token: Optional[str] = None) -> ShadowRejected:
    return ShadowRejected(400, message, token)


def not_found(thing: str, token: Optional[str] = None) -> ShadowRejected:
    return ShadowRejected(404, f"No shadow exists with name: '{thing}'", token)


def topic_prefix(thing: str) -> str:
    """``$aws/things/<thing>/shadow``: the classic shadow's topics start so."""
    return CLASSIC_PREFIX.format(thing)


def parse_topic(topic: str) -> Optional[Tuple[str, str, str]]:
    """(thing, operation, answer) of a classic shadow topic, else None.

    ``$aws/things/pi/shadow/update`` gives ``("pi", "update", "")``;
    ``.../update/delta`` gives ``("pi", "update", "delta")``. Named shadows
    (``.../shadow/name/...``) are not classic: None.
    """
    parts = topic.split("/")
    if len(parts) not in (5, 6) or parts[:2] != ["$aws", "things"] or parts[3] != "shadow":
        return None
    if not parts[2] or parts[4] not in OPERATIONS:
        return None
    answer = parts[5] if len(parts) == 6 else ""
    return parts[2], parts[4], answer


class UpdateResult:
    """What an accepted update publishes: ``/update/accepted``, ``/update/delta`` (when there is
    a delta) and ``/update/documents``."""

    __slots__ = ("accepted", "delta", "documents")

    def __init__(
        self, accepted: Dict[str, Any], delta: Optional[Dict[str, Any]], documents: Dict[str, Any]
    ) -> None:
        self.accepted = accepted
        self.delta = delta
        self.documents = documents


class ThingShadow:
    """One thing's classic shadow: state, metadata, version."""

    def __init__(self, thing: str) -> None:
        self.thing = thing
        self.desired: Optional[Dict[str, Any]] = None
        self.reported: Optional[Dict[str, Any]] = None
        self.meta: Dict[str, Dict[str, Any]] = {}  # section -> metadata tree
        self.version = 0
        self.exists = False

    # -- operations ------------------------------------------------------------------
    def update(self, payload: Payload, now: float) -> UpdateResult:
        """Apply an update request; raise :class:`ShadowRejected` and change nothing if refused."""
        request = _decode(payload)
        token = _client_token(request)
        state = _checked_state(request, token)
        _check_version(request, self.version, token)
        before = self._document(with_delta=False) if self.exists else None
        desired, reported = copy.deepcopy(self.desired), copy.deepcopy(self.reported)
        # A section's metadata is None here when it ends up empty (dropped below).
        meta: Dict[str, Optional[Dict[str, Any]]] = dict(copy.deepcopy(self.meta))
        if state is None:  # "state": null clears both sections
            desired = reported = None
            meta = {}
        else:
            for section in SECTIONS:
                if section not in state:
                    continue
                patch = state[section]
                current = desired if section == "desired" else reported
                merged = None if patch is None else _merge(current, patch)
                meta[section] = _merge_meta(meta.get(section), patch, merged, int(now))
                if section == "desired":
                    desired = merged
                else:
                    reported = merged
        size = sum(len(_dumps(s)) for s in (desired, reported) if s is not None)
        if size > MAX_STATE_BYTES:
            raise ShadowRejected(413, "The payload exceeds the maximum size allowed", token)
        self.desired, self.reported = desired, reported
        self.meta = {k: v for k, v in meta.items() if v}
        self.version += 1
        self.exists = True
        accepted: Dict[str, Any] = {"state": state}
        request_meta = _request_meta(state, int(now))
        if request_meta:
            accepted["metadata"] = request_meta
        accepted.update(version=self.version, timestamp=int(now))
        documents: Dict[str, Any] = {}
        if before is not None:
            documents["previous"] = before
        documents.update(current=self._document(with_delta=False), timestamp=int(now))
        delta = None
        delta_state = self.delta()
        if delta_state:
            delta = {
                "state": delta_state,
                "metadata": _restrict(self.meta.get("desired", {}), delta_state),
                "version": self.version,
                "timestamp": int(now),
            }
        for doc in (accepted, documents, delta):
            if doc is not None and token is not None:
                doc["clientToken"] = token
        return UpdateResult(accepted, delta, documents)

    def get(self, payload: Payload, now: float) -> Dict[str, Any]:
        """The whole document with its delta (``/get/accepted``); 404 if there is none."""
        token = _client_token(_decode(payload, allow_empty=True))
        if not self.exists:
            raise not_found(self.thing, token)
        doc = self._document(with_delta=True)
        doc["timestamp"] = int(now)
        if token is not None:
            doc["clientToken"] = token
        return doc

    def delete(self, payload: Payload, now: float) -> Dict[str, Any]:
        """Delete the document; its version carries over to the next one. 404 if there is none."""
        token = _client_token(_decode(payload, allow_empty=True))
        if not self.exists:
            raise not_found(self.thing, token)
        self.desired = self.reported = None
        self.meta = {}
        self.exists = False
        doc: Dict[str, Any] = {"version": self.version, "timestamp": int(now)}
        if token is not None:
            doc["clientToken"] = token
        return doc

    def delta(self) -> Optional[Dict[str, Any]]:
        """``desired`` fields that ``reported`` lacks or holds differently; None when in sync."""
        if self.desired is None:
            return None
        if self.reported is None:
            return copy.deepcopy(self.desired)
        return _delta(self.desired, self.reported)

    # -- persistence -----------------------------------------------------------------
    def to_json(self) -> Dict[str, Any]:
        return {
            "thing": self.thing,
            "desired": self.desired,
            "reported": self.reported,
            "metadata": self.meta,
            "version": self.version,
            "exists": self.exists,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ThingShadow:
        shadow = cls(str(data["thing"]))
        shadow.desired = data.get("desired") or None
        shadow.reported = data.get("reported") or None
        shadow.meta = dict(data.get("metadata") or {})
        shadow.version = int(data["version"])
        shadow.exists = bool(data.get("exists"))
        return shadow

    def _document(self, with_delta: bool) -> Dict[str, Any]:
        state: Dict[str, Any] = {}
        if self.desired is not None:
            state["desired"] = copy.deepcopy(self.desired)
        if self.reported is not None:
            state["reported"] = copy.deepcopy(self.reported)
        if with_delta:
            delta = self.delta()
            if delta:
                state["delta"] = delta
        doc: Dict[str, Any] = {"state": state, "metadata": copy.deepcopy(self.meta)}
        doc["version"] = self.version
        return doc


# -- requests ----------------------------------------------------------------------------


def _decode(payload: Payload, allow_empty: bool = False) -> Dict[str, Any]:
    if payload is None or payload == b"" or payload == "":
        if allow_empty:
            return {}
        raise bad_request("Invalid JSON")
    if isinstance(payload, collections.abc.Mapping):
        return dict(payload)
    raw = payload if isinstance(payload, bytes) else payload.encode("utf-8")
    if len(raw) > MAX_REQUEST_BYTES:
        raise ShadowRejected(413, "The payload exceeds the maximum size allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ShadowRejected(
            415, "Unsupported documented encoding; supported encoding is UTF-8"
        ) from None
    try:
        request = json.loads(text, parse_constant=_no_constant)
    except ValueError:
        raise bad_request("Invalid JSON") from None
    if not isinstance(request, dict):
        raise bad_request("Invalid JSON")
    return request


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _client_token(request: Mapping[str, Any]) -> Optional[str]:
    if "clientToken" not in request:
        return None
    token = request["clientToken"]
    if not isinstance(token, str) or len(token.encode("utf-8")) > MAX_CLIENT_TOKEN_BYTES:
        raise bad_request("Invalid clientToken")
    return token


def _checked_state(request: Mapping[str, Any], token: Optional[str]) -> Optional[Dict[str, Any]]:
    if "state" not in request:
        raise bad_request("Missing required node: state", token)
    state = request["state"]
    if state is None:
        return None
    if not isinstance(state, dict):
        raise bad_request("State node must be an object", token)
    state = {k: v for k, v in state.items() if k != "delta"}  # the service computes delta itself
    for key in state:
        if key not in SECTIONS:
            raise bad_request("State contains an invalid node", token)
    for section in SECTIONS:
        if section in state and state[section] is not None:
            if not isinstance(state[section], dict):
                raise bad_request(f"{section.capitalize()} node must be an object", token)
            if _depth(state[section]) > MAX_STATE_DEPTH:
                raise bad_request(
                    f"JSON contains too many levels of nesting; maximum is {MAX_STATE_DEPTH}",
                    token,
                )
            if _null_in_array(state[section]):
                raise bad_request("Invalid JSON: arrays can't have null values", token)
    return state


def _check_version(request: Mapping[str, Any], current: int, token: Optional[str]) -> None:
    if "version" not in request:
        return
    version = request["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise bad_request("Invalid version", token)
    if version != current:
        raise ShadowRejected(409, "Version conflict", token)


def _depth(node: Any) -> int:
    """Levels of objects and arrays, the section itself being the first."""
    children: List[Any] = []
    if isinstance(node, dict):
        children = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        return 0
    if not children:
        return 0
    return 1 + max(_depth(child) for child in children)


def _null_in_array(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_null_in_array(v) for v in node.values())
    if isinstance(node, list):
        return any(v is None or _null_in_array(v) for v in node)
    return False


# -- merge, delta, metadata ----------------------------------------------------------------


def _empty(value: Any) -> bool:
    """What the service treats as "no value": null, and an object with no fields."""
    return value is None or (isinstance(value, dict) and not value)


def _without_nulls(node: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A copy without null fields and the objects left empty by them; None if nothing is left."""
    result: Dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            value = _without_nulls(value)
        if not _empty(value):
            result[key] = copy.deepcopy(value)
    return result or None


def _merge(current: Optional[Dict[str, Any]], patch: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """``patch`` merged into a copy of ``current``; None when the section ends up empty."""
    merged = copy.deepcopy(current) if current else {}
    for key, value in patch.items():
        if _empty(value):
            merged.pop(key, None)
        elif isinstance(value, dict):
            if isinstance(merged.get(key), dict):
                child = _merge(merged[key], value)
            else:
                child = _without_nulls(value)
            if child is None:
                merged.pop(key, None)
            else:
                merged[key] = child
        else:
            merged[key] = copy.deepcopy(value)
    return merged or None


def _same(a: Any, b: Any) -> bool:
    """JSON equality with numbers compared by value (and booleans never equal to numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)  # numbers by value (55 == 55.0); a string never equals a number


def _delta(desired: Dict[str, Any], reported: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    result: Dict[str, Any] = {}
    for key, want in desired.items():
        have = reported.get(key)
        if _empty(have):
            result[key] = copy.deepcopy(want)
        elif isinstance(want, dict) and isinstance(have, dict):
            child = _delta(want, have)
            if child:
                result[key] = child
        elif not _same(want, have):
            result[key] = copy.deepcopy(want)
    return result or None


def _stamp(node: Any, ts: int) -> Any:
    if isinstance(node, dict):
        return {k: _stamp(v, ts) for k, v in node.items()}
    return {"timestamp": ts}


def _merge_meta(
    meta: Optional[Dict[str, Any]], patch: Any, merged: Any, ts: int
) -> Optional[Dict[str, Any]]:
    """The section's metadata after ``patch``: new leaves stamped, deleted ones gone."""
    if merged is None:
        return None
    result: Dict[str, Any] = {}
    for key, value in merged.items():
        old = (meta or {}).get(key)
        if not isinstance(patch, dict) or key not in patch:
            result[key] = old if old is not None else _stamp(value, ts)
        elif isinstance(value, dict):  # merged from an object in the patch
            keep = old if isinstance(old, dict) and "timestamp" not in old else None
            result[key] = _merge_meta(keep, patch[key], value, ts)
        else:
            result[key] = _stamp(value, ts)
    return result


def _request_meta(state: Optional[Dict[str, Any]], ts: int) -> Dict[str, Any]:
    if not state:
        return {}
    return {s: _stamp(state[s], ts) for s in SECTIONS if isinstance(state.get(s), dict)}


def _restrict(meta: Dict[str, Any], shape: Dict[str, Any]) -> Dict[str, Any]:
    """The parts of a metadata tree that ``shape`` (a delta) has."""
    result: Dict[str, Any] = {}
    for key, value in shape.items():
        node = meta.get(key)
        if isinstance(value, dict) and isinstance(node, dict) and "timestamp" not in node:
            result[key] = _restrict(node, value)
        elif node is not None:
            result[key] = node
    return result


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
