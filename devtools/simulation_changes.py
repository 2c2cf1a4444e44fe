"""``simulate --at SECONDS:NAME=VALUE``: the shadow's ``desired`` changed during a run.

At SECONDS into the run (virtual time with ``--fast``) the local core's shadow
sync brings in ``{"state": {"desired": {"sensor": {NAME: VALUE}}}}``, as if an
operator had run ``edge-agent deploy set`` or edited the shadow in the AWS IoT
console; the sensor function decides it with its own validation and applies
it at its next reading (``agent.live_config``). VALUE is sent as the shadow
would carry it: ``55`` a number, ``null`` removes the override, anything else
a string, which the function then rejects with its reason.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Sequence, Tuple

from agent.config import VARIABLES, unknown_name_message
from agent.errors import ConfigError
from agent.live_settings import RUNTIME_VARIABLES, SHADOW_SECTION, Change, parse_value

Timed = Tuple[float, str, Any]  # (seconds into the run, variable, value)
VARIABLE_NAMES = {v.name for v in VARIABLES}


def parse_changes(values: Sequence[str]) -> List[Timed]:
    """``["60:humidLimit=55", ...]``; ValueError says what is wrong with which one."""
    changes: List[Timed] = []
    for item in values:
        when, sep, assignment = item.partition(":")
        name, eq, text = assignment.partition("=")
        if not sep or not eq:
            raise ValueError(
                f"--at takes SECONDS:NAME=VALUE, e.g. --at 60:humidLimit=55, got {item!r}"
            )
        try:
            seconds = float(when)
        except ValueError:
            raise ValueError(
                f"--at {item}: SECONDS must be a number of seconds, got {when!r}"
            ) from None
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"--at {item}: SECONDS must not be negative (seconds into the run)")
        if name not in VARIABLE_NAMES:
            raise ValueError(unknown_name_message(name, f"--at {item}"))
        if not text.strip():
            raise ValueError(f"--at {item} has no value; give one (null removes the override)")
        if name not in RUNTIME_VARIABLES:
            raise ValueError(
                f"--at {item}: {name} cannot change while the functions run; give it with "
                f"--set {name}=... (run-time variables: {', '.join(RUNTIME_VARIABLES)})"
            )
        changes.append((seconds, name, parse_value(text)))
    return sorted(changes, key=lambda change: change[0])


def check_changes(changes: Sequence[Timed], duration: float) -> None:
    for seconds, name, _value in changes:
        if seconds >= duration:
            raise ConfigError(
                f"--at {seconds:g}:{name}=... is at or after the end of the run ({duration:g} s): "
                "it would do nothing"
            )


def change_switch(
    core: Any, thing: str, changes: Sequence[Timed], start: float, line: Callable[[str, str], None]
) -> Callable[[float], None]:
    """A function of the clock that brings each change in once its time has come."""
    due = list(changes)

    def update(now: float) -> None:
        while due and due[0][0] <= now - start:
            _, name, value = due.pop(0)
            document = {"state": {"desired": {SHADOW_SECTION: {name: value}}}}
            line("SHADOW", "desired {}={}".format(name, _text(value)))
            try:
                core.update_shadow_from_cloud(thing, document)
            except Exception as exc:  # the shadow service refused it: say so, go on
                line("SHADOW", f"the shadow service refused desired {name}: {exc}")

    return update


def config_line(line: Callable[[str, str], None]) -> Callable[[str, Change], None]:
    """The console's observer of the sensor's configuration changes."""

    def show(kind: str, change: Change) -> None:
        if kind == "rejected":
            line(
                "CONFIG",
                "rejected {}; {} stays {}".format(
                    change.describe(), change.name, change.old or "unset"
                ),
            )
        elif kind == "applied":
            line("CONFIG", "applied {}".format(change.describe()))

    return show


def _text(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)
