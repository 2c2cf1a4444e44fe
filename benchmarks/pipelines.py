"""Both functions of each design wired on the V1 device path, against one ServiceNow server.

Each function gets its own V1 core stand-in (:func:`benchmarks.device.v1_core`);
a message the sensor function publishes on the anomaly topic is handed to the
anomaly function's handler as the decoded JSON (``EncodingType: json``), in the
publishing thread, as the group's subscription routes it. The secret is the
server's credentials under the name both designs read, ``greengrass-snow-creds``.

* :class:`ProjectPipeline`: the project's functions through their entry
  modules; the outbox and episode state in a temporary state directory; the
  anomaly function's delivery worker thread delivers (or ``pump()`` does).
* :class:`SeedPipeline`: the seed's functions; the anomaly function posts
  inside the handler, one POST per breaching sample; what it prints
  (``Response: <Response [201]>``) is collected with the time it was printed.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from typing import Any, List, Optional, Tuple

from agent.topology import DEFAULT_ANOMALY_TOPIC, DEFAULT_SECRET_NAME

from . import device, quickack
from .common import unique_device_id
from .device import HOT, NORMAL, SEED_LIMITS
from .servers import Server


class ProjectPipeline:
    """The project's sensor and anomaly functions on the device path (sensor optional)."""

    def __init__(
        self,
        state_dir: str,
        server: Server,
        clock: Any,
        with_sensor: bool = True,
        quick_ack: bool = False,
    ) -> None:
        self.clock = clock
        self.device_id = unique_device_id()
        self.chip = device.new_chip(NORMAL)
        self.anomaly_core = device.v1_core("anomaly", secrets={DEFAULT_SECRET_NAME: server.secret})
        common = {"stateDir": state_dir, "deviceId": self.device_id}
        # The request-rate cap (snowMaxRequestsPerSecond, 5/s by default) is off:
        # these figures measure what the agent costs, not the pace it keeps.
        env = device.function_env(
            "anomaly", snowUrl=server.url, snowMaxRequestsPerSecond="0", **common
        )
        self.anomaly = device.project_anomaly(self.anomaly_core, env, clock)
        if quick_ack:  # the what-if: the client fix, on the function's own session
            quickack.apply(self.anomaly.client.session)
        self.sensor: Any = None
        if with_sensor:
            self.sensor_core = device.v1_core("sensor", on_publish=self._route)
            self.sensor = device.project_sensor(
                self.sensor_core, self.chip, device.function_env("sensor", **common), clock
            )

    def _route(self, topic: str, payload: bytes) -> None:
        if topic == self.anomaly.settings.anomaly_topic:
            self.anomaly.function_handler(json.loads(payload), device.handler_context(topic))

    def set_hot(self, hot: bool) -> None:
        self.chip.values = HOT if hot else NORMAL

    @property
    def secret_fetches(self) -> int:
        return len(self.anomaly_core.secret_requests)

    def close(self) -> None:
        self.anomaly.stop()
        self.anomaly.outbox.close()


class ResponseLog:
    """A stdout for the seed's ``print("Response:", response)``: status and time per line."""

    _STATUS = re.compile(r"Response: <Response \[(\d+)\]>")

    def __init__(self) -> None:
        self.responses: List[Tuple[int, int]] = []  # (status, perf_counter_ns when printed)
        self.other: List[str] = []
        self._line = ""
        self.printed = threading.Event()

    def write(self, text: str) -> int:
        self._line += text
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            match = self._STATUS.search(line)
            if match:
                self.responses.append((int(match.group(1)), time.perf_counter_ns()))
                self.printed.set()
            elif line:
                self.other.append(line)
        return len(text)

    def flush(self) -> None:
        pass

    def statuses(self) -> List[int]:
        return [status for status, _ in self.responses]


class SeedPipeline:
    """The seed's two functions on the device path; its 5 s sleep goes to ``sleep``."""

    def __init__(
        self, server: Server, sleep: Optional[Any] = None, chip_source: Any = None
    ) -> None:
        self.chip = device.new_chip(NORMAL, source=chip_source)
        self.anomaly_core = device.v1_core(
            "seed-anomaly", secrets={DEFAULT_SECRET_NAME: server.secret}
        )
        self.anomaly = device.seed_anomaly(
            self.anomaly_core, device.function_env("seed-anomaly", snowUrl=server.table_url)
        )
        self.log = ResponseLog()
        self.sensor_core = device.v1_core("seed-sensor", on_publish=self._route)
        self.sensor = device.seed_sensor(
            self.sensor_core, self.chip, device.function_env("seed-sensor", **SEED_LIMITS)
        )
        self.sensor.sleep = sleep or (lambda seconds: None)

    def _route(self, topic: str, payload: bytes) -> None:
        if topic == DEFAULT_ANOMALY_TOPIC:
            with contextlib.redirect_stdout(self.log):  # type: ignore[type-var]
                self.anomaly.lambda_handler(json.loads(payload), device.handler_context(topic))

    def set_hot(self, hot: bool) -> None:
        self.chip.values = HOT if hot else NORMAL

    def sample(self) -> None:
        """One pass of the seed's sensor loop (and whatever POST it causes)."""
        self.sensor.read_and_publish()

    @property
    def secret_fetches(self) -> int:
        return len(self.anomaly_core.secret_requests)

    @property
    def posts(self) -> int:
        return len(self.log.responses)
