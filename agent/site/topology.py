"""A site's group: the gateway's anomaly function and the sensor function every Pi runs.

One source of truth for a site, read by ``simulate --fleet`` and ``deploy``:
the default group (:func:`agent.topology.default_topology`) with

* the site's variables in the anomaly function's environment (``site``,
  ``siteDevices``, the grouping variables, and ``period``, the devices' reading
  period, from which the gateway's silence watch starts);
* the sensors' readings routed to the gateway's anomaly function (its watch for
  silent devices), not to IoT Core: at a reading every 5 s, a site of 1,000
  Pis would send 200 messages a second to the cloud for nothing.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

from ..names import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID
from ..topology import GroupTopology, Subscription, default_topology

# Variables the site sets on the gateway; they also come from ``environment``.
SITE_VARIABLES = ("groupBy", "groupWaitSeconds", "groupIntervalSeconds", "silentAfterSeconds")


def site_topology(
    site: str,
    devices: Sequence[str],
    variables: Optional[Mapping[str, str]] = None,
    environment: Optional[Dict[str, Dict[str, str]]] = None,
) -> GroupTopology:
    """The site's group; ``variables`` go to both functions (as ``--set`` does)."""
    variables = dict(variables or {})
    environment = {k: dict(v) for k, v in (environment or {}).items()}
    sensor_env = environment.setdefault(SENSOR_FUNCTION_ID, {})
    anomaly_env = environment.setdefault(ANOMALY_FUNCTION_ID, {})
    sensor_env.update(variables)
    anomaly_env.update(variables)
    anomaly_env["site"] = site
    anomaly_env["siteDevices"] = ",".join(devices)
    topology = default_topology(environment=environment)
    sensor = topology.function(SENSOR_FUNCTION_ID).environment
    readings = sensor["readingsTopic"]
    topology = topology.with_environment(
        ANOMALY_FUNCTION_ID, period=sensor["period"], readingsTopic=readings
    )
    subscriptions = tuple(s for s in topology.subscriptions if s.id != "readings-to-cloud") + (
        Subscription(
            "readings-to-gateway",
            SENSOR_FUNCTION_ID,
            readings,
            ANOMALY_FUNCTION_ID,
            "readingsTopic",
        ),
    )
    return topology.with_changes(name="edge-agent-site-" + site, subscriptions=subscriptions)
