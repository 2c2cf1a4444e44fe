"""The agent on a device without Greengrass: the whole group in one process.

- :mod:`.group`: :class:`~.group.LocalGroup`, the one runtime of the group on the
  in-process core (core, bridge, functions, status function, and the order they
  stop in), used by ``edge-agent run``, ``edge-agent simulate`` and the tests;
- :mod:`.run`: ``edge-agent run``, that runtime bridged to AWS IoT Core;
- :mod:`.mqtt_bridge`: the core's ``cloud`` target over MQTT (paho-mqtt, TLS, spool);
- :mod:`.status`: the status function on the in-process core;
- :mod:`.arguments`, :mod:`.exit_codes`: what the command line is checked for, and
  what a run's exit status means.
"""
