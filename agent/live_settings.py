"""Sensor variables that change while the function runs: layers, precedence, the one check.

Limits, low limits, hysteresis, debounce, renotify and period can change
without a redeploy. Where a value comes from, highest first:

1. the device shadow's ``desired.sensor`` (one device: ``deploy set``, the
   AWS IoT console, ``simulate --at``);
2. the deployment: V2 component configuration (a thing-group deployment for
   many devices), or the V1 function's environment;
3. the variable's documented default (``agent.variables.VARIABLES``).

Every change is decided here, by the validation the functions run at start
(:meth:`agent.config.SensorSettings.from_mapping`) on the whole mapping the
change would produce: a value it refuses is rejected with its message, the
old one stays, and the rest of the same update still applies. Pure logic:
:class:`LiveSettings` holds the layers; the function's I/O around it is
``agent.live_config``.
"""

from __future__ import annotations

import json
import math

from .config import VARIABLES, SensorSettings, unknown_name_message
from .errors import ConfigError

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple

# What may change at run time: how readings are judged and how often they are taken.
RUNTIME_VARIABLES = (
    "tempLimit",
    "tempLowLimit",
    "tempHysteresis",
    "humidLimit",
    "humidLowLimit",
    "humidHysteresis",
    "pressureLimit",
    "pressureLowLimit",
    "pressureHysteresis",
    "debounceSamples",
    "debounceSeconds",
    "renotifyMinutes",
    "period",
)
SHADOW_SECTION = "sensor"  # desired.sensor / reported.sensor: the values
REJECTED_SECTION = "sensorRejected"  # reported.sensorRejected: what was refused, and why
SHADOW = "shadow"
CONFIGURATION = "configuration"
_KINDS = {v.name: v.kind for v in VARIABLES}
_DEFAULTS = {v.name: v.default for v in VARIABLES}


class Change:
    """One variable's change: applied (``reason`` empty) or rejected (``reason`` says why).

    ``value`` is as asked (a JSON value; None removes the override), ``source`` SHADOW or
    CONFIGURATION, ``old``/``new`` the value in force before and after (None: unset).
    (Plain classes here, not dataclasses: they cost the function's cold start a millisecond.)
    """

    __slots__ = ("name", "value", "source", "old", "new", "reason")

    def __init__(
        self,
        name: str,
        value: Any,
        source: str,
        old: Optional[str] = None,
        new: Optional[str] = None,
        reason: str = "",
    ) -> None:
        self.name = name
        self.value = value
        self.source = source
        self.old = old
        self.new = new
        self.reason = reason

    def __repr__(self) -> str:
        return "Change({})".format(self.describe())

    def describe(self) -> str:
        """``humidLimit=55 (was 50)``, ``humidLimit=-5: <reason>``, ``humidLimit removed (now 50)``."""
        if self.reason:
            return "{}={}: {}".format(self.name, _shown(self.value), self.reason)
        if self.value is None:
            return "{} override removed (now {})".format(self.name, _shown(self.new))
        return "{}={} (was {})".format(self.name, _shown(self.value), _shown(self.old))


class Decision:
    """What an update did: the changes applied and rejected, and the settings now in force
    (``settings`` None: nothing applied)."""

    def __init__(self) -> None:
        self.applied: List[Change] = []
        self.rejected: List[Change] = []
        self.cleared: List[str] = []  # earlier rejections no longer asked for
        self.settings: Optional[SensorSettings] = None

    @property
    def changes_report(self) -> bool:
        """Whether ``reported`` must be sent again."""
        return bool(self.applied or self.rejected or self.cleared)


class LiveSettings:
    """The layers of the sensor's variables and the settings they make. Not thread-safe."""

    def __init__(
        self, base: Mapping[str, str], configuration: Optional[Mapping[str, Any]] = None
    ) -> None:
        """``base``: the environment the function started with; ``configuration``: the V2
        component configuration's values (checked together with ``base`` as at start)."""
        self.base = dict(base)
        self.configuration: Dict[str, str] = {}
        self.shadow: Dict[str, Any] = {}
        self.rejected: Dict[str, Change] = {}
        for name, value in (configuration or {}).items():
            if name in RUNTIME_VARIABLES and value is not None:
                self.configuration[name] = _text(name, value)
        # Raises ConfigError like a function's start would: nothing to keep running yet.
        self.settings = SensorSettings.from_mapping(self.mapping())

    def mapping(self) -> Dict[str, str]:
        """The variables as the functions read them, every layer applied."""
        merged = dict(self.base)
        merged.update(self.configuration)
        merged.update({k: _text(k, v) for k, v in self.shadow.items()})
        return merged

    def in_force(self, name: str) -> Optional[str]:
        """The value in force as the validator reads it (unset or blank: the default)."""
        return _shown_text(self.mapping(), name)

    # -- deciding --------------------------------------------------------------------
    def propose(self, source: str, values: Mapping[str, Any], replace: bool = False) -> Decision:
        """Decide an update of one layer and keep what passes the check.

        ``values`` maps names to JSON values (None removes an override). With
        ``replace`` they are the whole layer (a shadow's full ``desired.sensor``,
        a component's whole configuration): names the layer has and they lack
        are removed. The configuration layer only knows the runtime variables
        and ignores anything else; the shadow's other names are rejected, and
        a value rejected before is not decided (nor reported) again.
        """
        layer = self.shadow if source == SHADOW else self.configuration
        asked: Dict[str, Any] = dict(values)
        if replace:
            for name in list(layer) + [n for n, c in self.rejected.items() if c.source == source]:
                asked.setdefault(name, None)
        decision = Decision()
        candidates: Dict[str, Any] = {}
        for name in sorted(asked):
            value = asked[name]
            if source == CONFIGURATION:
                if name not in RUNTIME_VARIABLES:
                    continue
                if value is not None and _is_scalar(value):
                    value = _text(name, value)
            earlier = self.rejected.get(name)
            if earlier is not None and earlier.source != source:
                earlier = None
            if (value is None and name not in layer) or (
                name in layer and _same(layer[name], value)
            ):
                if earlier is not None:  # the refused value is no longer asked for
                    del self.rejected[name]
                    decision.cleared.append(name)
                continue
            if earlier is not None and _same(earlier.value, value):
                continue  # refused already: an echo in the next delta, not a new request
            problem = _value_problem(name, value, blank_ok=source == CONFIGURATION)
            if problem:
                decision.rejected.append(self._rejection(name, value, source, problem))
                continue
            candidates[name] = value
        accepted, reasons = self._check(layer, candidates)
        before = self.mapping()
        for name, value in accepted.items():
            if value is None:
                layer.pop(name, None)
            else:
                layer[name] = value
            if name in self.rejected and self.rejected[name].source == source:
                del self.rejected[name]
        if accepted:
            self.settings = SensorSettings.from_mapping(self.mapping())
            decision.settings = self.settings
        after = self.mapping()
        for name in sorted(accepted):
            old, new = _shown_text(before, name), _shown_text(after, name)
            decision.applied.append(Change(name, accepted[name], source, old, new))
        for name in sorted(reasons):
            decision.rejected.append(self._rejection(name, candidates[name], source, reasons[name]))
        return decision

    def _check(
        self, layer: Dict[str, Any], candidates: Dict[str, Any]
    ) -> Tuple[Dict[str, Any], Dict[str, str]]:
        """(accepted, reason per refused name): all together if they pass, else each one
        that passes on top of those accepted so far, until none more does."""
        if not candidates:
            return {}, {}
        if self._valid(layer, candidates) is None:
            return dict(candidates), {}
        accepted: Dict[str, Any] = {}
        reasons: Dict[str, str] = {}
        progress = True
        while progress:
            progress = False
            for name in sorted(candidates):
                if name in accepted:
                    continue
                trial = dict(accepted, **{name: candidates[name]})
                problem = self._valid(layer, trial)
                if problem is None:
                    accepted = trial
                    reasons.pop(name, None)
                    progress = True
                else:
                    reasons[name] = problem
        return accepted, reasons

    def _valid(self, layer: Dict[str, Any], changes: Mapping[str, Any]) -> Optional[str]:
        saved = dict(layer)
        try:
            for name, value in changes.items():
                if value is None:
                    layer.pop(name, None)
                else:
                    layer[name] = value
            SensorSettings.from_mapping(self.mapping())
        except ConfigError as exc:
            return str(exc)
        finally:
            layer.clear()
            layer.update(saved)
        return None

    def _rejection(self, name: str, value: Any, source: str, reason: str) -> Change:
        in_force = self.in_force(name)
        change = Change(name, value, source, in_force, in_force, reason)
        self.rejected[name] = change
        return change

    # -- reporting -------------------------------------------------------------------
    def reported(self) -> Dict[str, Any]:
        """``reported.sensor``: every runtime variable's value in force (null when unset).

        A value that came from the shadow is reported exactly as it was asked,
        so ``desired`` and ``reported`` compare equal and the delta empties.
        """
        section: Dict[str, Any] = {}
        for name in RUNTIME_VARIABLES:
            if name in self.shadow:
                section[name] = self.shadow[name]
            else:
                section[name] = _json(name, self.in_force(name))
        return section

    def rejections(self) -> Dict[str, Any]:
        """``reported.sensorRejected``: each refused value with its reason."""
        return {
            name: {"value": c.value, "reason": c.reason, "source": c.source}
            for name, c in sorted(self.rejected.items())
        }

    def snapshot(self) -> Dict[str, Any]:
        """What the state file keeps: the shadow layer (the deployment's values come back
        with the deployment)."""
        return {SHADOW: dict(self.shadow)}


# -- values --------------------------------------------------------------------------------


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _value_problem(name: str, value: Any, blank_ok: bool) -> str:
    """Why ``value`` cannot even be offered to the validator for ``name``, or ''.

    A blank string is "unset" in a component configuration (the recipe's default for a
    limit that is off); in the shadow it is refused: ``null`` removes an override.
    """
    if name not in _KINDS:
        return unknown_name_message(name)
    if name not in RUNTIME_VARIABLES:
        return (
            "{} cannot change while the function runs; set it in the deployment "
            "(V1: the function's environment, V2: the component configuration)".format(name)
        )
    if value is None:
        return ""
    if not _is_scalar(value) or (isinstance(value, str) and not value.strip() and not blank_ok):
        return "{} must be a number, got {}".format(name, _shown(value))
    if isinstance(value, float) and not math.isfinite(value):
        return "{} must be a finite number, got {}".format(name, value)
    return ""


def _text(name: str, value: Any) -> str:
    """A JSON value as the text the validator parses (``55`` -> ``"55"``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and _KINDS.get(name) == "int":
        return str(int(value))
    return json.dumps(value)  # a float as repr() writes it: 55.5, 1e-05


def _json(name: str, text: Optional[str]) -> Any:
    """A value in force as JSON: a number (whole numbers without ``.0``), None when unset."""
    if text is None or not text.strip():
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else number  # an int variable is whole


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, str):
        return value if value.strip() else repr(value)
    return json.dumps(value)


def _shown_text(mapping: Mapping[str, str], name: str) -> Optional[str]:
    value = mapping.get(name)
    if value is None or not value.strip():
        return _DEFAULTS.get(name)
    return value


def parse_value(text: str) -> Any:
    """A command-line value as the shadow carries it: ``55`` a number, ``null`` a removal,
    anything else the string (which the check then refuses with its reason)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or _is_scalar(value) or isinstance(value, bool) else text
