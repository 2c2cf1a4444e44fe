"""A ServiceNow that hangs (SIGSTOP) in the middle of a work-note PATCH, then carries on
(SIGCONT): the note is applied once, not once per retry."""

from __future__ import annotations

import time

import pytest
from conftest import SNOW_USER, new_secret, secret_json
from helpers import anomaly, wait_until

from agent.greengrass.local import LocalCore
from agent.topology import ANOMALY_FUNCTION_ID
from devtools.servicenow_standin import StandInProcess
from functions import anomaly_function

HANG_SECONDS = 4.0
TIMEOUT = "0.5"


def pump_until(service, condition, limit):
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        service.pump()
        next_at = service.next_attempt_at()
        wait = 0.05 if next_at is None else next_at - time.time()
        time.sleep(min(0.1, max(0.01, wait)))


@pytest.mark.slow
def test_a_note_whose_patch_hung_is_applied_once(tmp_path):
    password = new_secret()
    core = LocalCore()
    core.add_secret("greengrass-snow-creds", secret_json(password))
    with StandInProcess(users={SNOW_USER: password}) as snow:
        service = anomaly_function.create_app(
            environ={
                "snowUrl": snow.url,
                "stateDir": str(tmp_path),
                "snowTimeout": TIMEOUT,
                "retryBaseSeconds": "0.2",
                "retryMaxSeconds": "1",
                "snowMaxRequestsPerSecond": "0",
            },
            runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        )
        service.handle(anomaly())
        pump_until(service, lambda: service.next_attempt_at() is None, 10)
        assert len(snow.incidents()) == 1

        # Freeze ServiceNow just as the PATCH leaves: it is accepted by the kernel
        # and sits there unanswered, to be applied when the process continues.
        real_update = service.client.update

        def update_into_a_hang(sys_id, fields):
            if not hung:
                hung.append(time.monotonic())
                snow.pause()
            return real_update(sys_id, fields)

        hung = []
        service.client.update = update_into_a_hang
        service.handle(anomaly("update", seq=1, ts=1_790_003_700.0))
        pump_until(service, lambda: hung and time.monotonic() - hung[0] > HANG_SECONDS, 30)
        retries_while_hung = service.deliverer.stats.retries
        snow.resume()
        pump_until(service, lambda: service.next_attempt_at() is None, 30)
        assert service.next_attempt_at() is None, service.summary()
        # Every PATCH the agent sent has been applied (the stand-in logs a request after
        # applying it, answered or not): a second note would be there now.
        assert wait_until(lambda: len(_patches(snow)) >= service.client.calls["PATCH"])
        (incident,) = snow.incidents()
        patches = _patches(snow)
        service.outbox.close()
    notes = [e for e in incident["_journal"] if e["value"].startswith("Still breaching")]
    assert retries_while_hung >= 3  # it kept trying while ServiceNow hung...
    assert len(notes) == 1, notes  # ...and the note is there once
    assert len(patches) == 1


def _patches(snow):
    return [entry for entry in snow.request_log if entry[0] == "PATCH"]
