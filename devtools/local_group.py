"""Both functions of the group on the local core, built through their own entry modules.

Shared by ``edge-agent simulate`` and ``edge-agent run`` so the laptop and a
Greengrass-less device wire the group the same way the topology describes it.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple

from agent.anomaly_service import AnomalyService
from agent.clock import Clock
from agent.config import check_assignments
from agent.credentials import Credentials
from agent.errors import ConfigError, SecretError
from agent.greengrass.local import LocalCore
from agent.sensor_service import SensorService
from agent.sensors.base import Sensor
from agent.topology import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID, GroupTopology


def function_environments(
    topology: GroupTopology, *updates: Mapping[str, str]
) -> Tuple[Dict[str, str], Dict[str, str]]:
    """The sensor's and the anomaly function's variables from the topology, plus ``updates``."""
    sensor = dict(topology.function(SENSOR_FUNCTION_ID).environment)
    anomaly = dict(topology.function(ANOMALY_FUNCTION_ID).environment)
    for update in updates:
        sensor.update(update)
        anomaly.update(update)
    return sensor, anomaly


def build_group(
    core: LocalCore,
    environ_sensor: Mapping[str, str],
    environ_anomaly: Mapping[str, str],
    clock: Clock,
    sensor: Optional[Sensor] = None,
) -> Tuple[SensorService, AnomalyService]:
    """Create both functions as a core loads them and register their handlers with ``core``."""
    from functions import anomaly_function, sensor_function

    sensor_app = sensor_function.create_app(
        environ=environ_sensor,
        runtime=core.runtime_for(SENSOR_FUNCTION_ID),
        sensor=sensor,
        clock=clock,
    )
    anomaly_app = anomaly_function.create_app(
        environ=environ_anomaly, runtime=core.runtime_for(ANOMALY_FUNCTION_ID), clock=clock
    )
    core.register(SENSOR_FUNCTION_ID, sensor_function.handler_for(sensor_app))
    core.register(ANOMALY_FUNCTION_ID, anomaly_app.function_handler)
    # Once its handler is registered: the shadow service answers the first read to it.
    sensor_function.start_live(sensor_app)
    return sensor_app, anomaly_app


def parse_assignments(items: Iterable[str], option: str = "--set") -> Dict[str, str]:
    """``["NAME=VALUE", ...]`` from the command line as a dict; ValueError names a bad item.

    Every name must be a function variable (a misspelt one gets a "did you
    mean"), and every value non-empty: a typo must not silently leave the
    default in place.
    """
    variables: Dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError("{} takes NAME=VALUE, got {!r}".format(option, item))
        variables[name] = value
    try:
        check_assignments(variables, option)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return variables


def check_secret_file(path: str) -> Credentials:
    """Read and parse a ServiceNow secret file before anything runs.

    The shape is checked by the anomaly function's own parser, so a file it
    would refuse at the first delivery (no password, a list, half an OAuth
    client) is refused here at once. :class:`ConfigError` names the file
    and the field; the values never appear in it.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None
    try:
        return Credentials.from_secret_string(text, f"secret file {path}")
    except SecretError as exc:
        raise ConfigError(
            '{} (expected {{"username": ..., "password": ...}}, or {{"client_id": ..., '
            '"client_secret": ...}} for OAuth)'.format(exc)
        ) from None
