"""The status service: a live page, ``/api/state``, ``/metrics`` and ``/healthz`` on the device.

Off by default. When the status function's ``statusPort`` is set, the topology
(``agent.topology.with_status_function``) adds a third, pinned function that
receives copies of the readings, the episode events and each function's health
counters over local subscriptions, and reads the anomaly function's outbox and
the sensor's state file read-only. It never writes anything and never sits on
the sensor path or the delivery path.

Modules, one responsibility each:

* ``health``   -- device side: the ``edge-agent/health/1`` messages the sensor and
  anomaly functions publish (cumulative counters, every ~15 s and at stop), and
  the ServiceNow call counter hooked into the Table API client;
* ``settings`` -- the status function's variables;
* ``model``    -- pure: what the messages say (readings ring, episodes, counters);
* ``store``    -- read-only views of the state directory (outbox, sensor state, locks);
* ``document`` -- pure: the ``/api/state`` document and the ``/healthz`` verdict;
* ``metrics``  -- pure: the Prometheus text exposition of that document;
* ``server``   -- the HTTP server (stdlib ``socketserver``; see its docstring for why
  not ``http.server``) and Server-Sent Events;
* ``service``  -- the function: handler, refresh, lifecycle;
* ``static/``  -- the page, its script and style, and the vendored uPlot (MIT).
"""

HEALTH_SCHEMA = "edge-agent/health/1"
STATE_SCHEMA = "edge-agent/status/1"
