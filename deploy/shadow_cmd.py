"""``deploy set`` and ``deploy get``: one device's run-time variables through its cloud shadow.

``set --thing NAME humidLimit=55 ...`` writes ``desired.sensor`` of the thing's
classic shadow (iot-data ``UpdateThingShadow``); the core's shadow sync (V1
``SyncShadow``, V2 ``aws.greengrass.ShadowManager``) brings it to the device,
whose sensor function applies it at its next reading and reports the values
in force in ``reported.sensor`` (see ``agent.live_config``). The values are
checked first by the functions' own validation (``agent.live_settings``),
with the topology's variables (``--env`` as for ``up``) and the shadow's
current ``desired`` values: a value the device would refuse is refused here
(exit 2) and nothing is sent. ``null`` removes an override.

``get --thing NAME`` shows each run-time variable's desired and reported
value, what is still pending (the delta) and what the device rejected, and why.
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional

from agent.config import unknown_name_message
from agent.errors import ConfigError
from agent.live_settings import (
    REJECTED_SECTION,
    RUNTIME_VARIABLES,
    SHADOW,
    SHADOW_SECTION,
    LiveSettings,
    parse_value,
)
from agent.topology import SENSOR_FUNCTION_ID, GroupTopology

from .errors import DeployError

_NOT_FOUND = ("ResourceNotFoundException",)


def parse_values(items: List[str]) -> Dict[str, Any]:
    """``["humidLimit=55", ...]`` as shadow values; ConfigError names a bad item."""
    values: Dict[str, Any] = {}
    for item in items:
        name, eq, text = item.partition("=")
        if not eq or not name:
            raise ConfigError(f"deploy set takes NAME=VALUE, e.g. humidLimit=55, got {item!r}")
        if not text.strip():
            raise ConfigError(f"{item}: no value; give one (null removes the override)")
        if name not in RUNTIME_VARIABLES:
            from agent.config import VARIABLES

            if name in {v.name for v in VARIABLES}:
                raise ConfigError(
                    f"{name} cannot change while the functions run; deploy it with "
                    f"--env sensor:{name}=... (run-time: {', '.join(RUNTIME_VARIABLES)})"
                )
            raise ConfigError(unknown_name_message(name, f"deploy set {item}"))
        values[name] = parse_value(text)
    if not values:
        raise ConfigError("deploy set needs at least one NAME=VALUE, e.g. humidLimit=55")
    return values


def check_values(
    topology: GroupTopology, current: Optional[Mapping[str, Any]], values: Mapping[str, Any]
) -> None:
    """Refuse what the device would refuse: the same check, on the same layers."""
    live = LiveSettings(topology.function(SENSOR_FUNCTION_ID).environment)
    desired = _section(current, "desired") if current else {}
    live.propose(SHADOW, desired, replace=True)  # what the shadow already asks for
    live.rejected.clear()
    decision = live.propose(SHADOW, values)
    if decision.rejected:
        raise ConfigError(
            "; ".join(c.describe() for c in decision.rejected) + " (nothing was sent)"
        )


def cmd_set(args: argparse.Namespace, topology: GroupTopology, api: Any, out: Callable) -> int:
    values = parse_values(args.values)
    thing = args.thing
    current = _get(api, thing, missing_ok=True)
    check_values(topology, current, values)
    document = {
        "state": {"desired": {SHADOW_SECTION: values}},
        "clientToken": "edge-agent-" + uuid.uuid4().hex[:12],
    }
    response = _call(api, "UpdateThingShadow", thing, payload=json.dumps(document).encode())
    version = (response or {}).get("version", "?")
    shown = " ".join("{}={}".format(k, json.dumps(v)) for k, v in sorted(values.items()))
    out("thing {}: desired.{} {} (shadow version {})".format(thing, SHADOW_SECTION, shown, version))
    out(
        "the device applies it at its next reading and reports it; check with: "
        "edge-agent deploy get --thing {}".format(thing)
    )
    return 0


def cmd_get(args: argparse.Namespace, topology: GroupTopology, api: Any, out: Callable) -> int:
    document = _get(api, args.thing, missing_ok=False)
    if args.json:
        out(json.dumps(document, indent=2, sort_keys=True))
        return 0
    for line in describe(args.thing, document or {}):
        out(line)
    return 0


def describe(thing: str, document: Mapping[str, Any]) -> List[str]:
    """The shadow's run-time variables as a table: desired, reported, what is pending or refused."""
    desired = _section(document, "desired")
    reported = _section(document, "reported")
    delta = _section(document, "delta")
    state = document.get("state") or {}
    rejected = (state.get("reported") or {}).get(REJECTED_SECTION) or {}
    lines = [
        "thing {}: shadow version {}".format(thing, document.get("version", "?")),
        "{:<20} {:>10} {:>10}  {}".format("variable", "desired", "reported", "status"),
    ]
    for name in RUNTIME_VARIABLES:
        if name not in desired and name not in reported and name not in rejected:
            continue
        if name in rejected:
            status = "rejected: {}".format(rejected[name].get("reason", "?"))
        elif name in delta:
            status = "pending: the device has not reported it yet"
        elif name in desired:
            status = "in force (from the shadow)"
        else:
            status = "in force (from the deployment)"
        lines.append(
            "{:<20} {:>10} {:>10}  {}".format(
                name, _shown(desired, name), _shown(reported, name), status
            )
        )
    if not reported:
        lines.append("the device has not reported yet: is its core running and syncing the shadow?")
    return lines


def _section(document: Optional[Mapping[str, Any]], part: str) -> Dict[str, Any]:
    state = (document or {}).get("state") or {}
    section = (state.get(part) or {}).get(SHADOW_SECTION)
    return dict(section) if isinstance(section, Mapping) else {}


def _shown(section: Mapping[str, Any], name: str) -> str:
    return json.dumps(section[name]) if name in section else "-"


def _get(api: Any, thing: str, missing_ok: bool) -> Optional[Dict[str, Any]]:
    from botocore.exceptions import ClientError

    try:
        return _call(api, "GetThingShadow", thing)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in _NOT_FOUND:
            raise
        if missing_ok:
            return None
        raise DeployError(
            "thing {!r} has no shadow in {} (or no such thing)".format(thing, api.region),
            hint="check --thing and --region; the device creates its shadow when it first reports",
        )


def _call(api: Any, operation: str, thing: str, **params: Any) -> Optional[Dict[str, Any]]:
    response = api.call("iot-data", operation, dict(params, thingName=thing), dry={})
    body = response.get("payload")
    if body is None:
        return None
    raw = body.read() if hasattr(body, "read") else body
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
