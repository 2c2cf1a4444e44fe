"""A real anomaly-function process for the crash tests: queue events, deliver, exit.

Run as ``python tests/crash_worker.py SNOW_URL STATE_DIR EVENTS.json SECRET.json
[SETTINGS.json]`` (SETTINGS: function variables over the defaults below). It
hands every event to the function (as the core would redeliver them), then
delivers until the outbox is empty. The test kills it with SIGKILL at random
moments and runs it again.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.greengrass.local import LocalCore  # noqa: E402
from functions import anomaly_function  # noqa: E402


def main() -> int:
    snow_url, state_dir, events_path, secret_path = sys.argv[1:5]
    environ = {
        "snowUrl": snow_url,
        "stateDir": state_dir,
        "retryBaseSeconds": "0.05",
        "retryMaxSeconds": "0.2",
        "snowTimeout": "5",
        "snowMaxRequestsPerSecond": "0",
    }
    if len(sys.argv) > 5:
        with open(sys.argv[5]) as handle:
            environ.update(json.load(handle))
    core = LocalCore()
    core.load_secret_file("greengrass-snow-creds", secret_path)
    service = anomaly_function.create_app(environ=environ, runtime=core.runtime_for("anomaly"))
    with open(events_path) as handle:
        events = json.load(handle)
    for event in events:
        service.handle(event, "IoTBlog/anomaly")
    print("DELIVERING", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        service.pump()
        next_at = service.next_attempt_at()
        if next_at is None:
            print("DRAINED", flush=True)
            return 0
        time.sleep(max(0.0, min(0.2, next_at - time.time())))
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
