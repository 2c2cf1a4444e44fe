"""A password rotated on ServiceNow before the secret caught up, on every secret backend.

ServiceNow (the stand-in) refuses the old password from minute 0; the secret is
fixed at minute 10 in the backend's own way. Counted by the stand-in, in
virtual time: never more than one failed login in any minute, and everything
that waited is delivered within two minutes of the fix, without a restart.
"""

from __future__ import annotations

import contextlib
import json
import os

import pytest
from conftest import SNOW_USER, new_secret, secret_json
from generated_group import component_name, v2_plan
from helpers import anomaly
from v1_core import V1CoreStandIn
from v2_nucleus import GET_SECRET_VALUE, FakeNucleus

from agent.clock import VirtualClock
from agent.greengrass.local import LocalCore
from agent.greengrass.v1 import GreengrassV1Runtime
from agent.greengrass.v2 import GreengrassV2Runtime
from agent.topology import ANOMALY_FUNCTION_ID, DEFAULT_SECRET_NAME
from devtools.servicenow_standin import ServiceNowStandIn
from functions import anomaly_function

FIX_AFTER = 600.0


class FileBackend:
    """edge-agent run / simulate --secret-file: LocalCore serving a file."""

    def __init__(self, tmp_path, value):
        self.path = tmp_path / "secret.json"
        self.path.write_text(value)
        self.core = LocalCore()
        self.core.load_secret_file(DEFAULT_SECRET_NAME, str(self.path))
        self.runtime = self.core.runtime_for(ANOMALY_FUNCTION_ID)

    def fix(self, value):
        # As an editor saves it: in place, same inode (mtime and size tell).
        with open(self.path, "w") as handle:
            handle.write(value)

    def reads(self):
        return self.core.stats["secret_fetches"]


class ReplacedFileBackend(FileBackend):
    def fix(self, value):
        # As a config-management tool writes it: a new file renamed over the old one.
        staged = str(self.path) + ".new"
        with open(staged, "w") as handle:
            handle.write(value)
        os.replace(staged, self.path)


class V2Backend:
    """A Greengrass V2 component: the SecretManager caches until asked to refresh."""

    def __init__(self, tmp_path, value):
        self.nucleus = FakeNucleus(secrets={DEFAULT_SECRET_NAME: value})
        plan = v2_plan()  # the anomaly component asks by name; its policy names the ARN
        self.nucleus.deploy(plan)
        self.runtime = GreengrassV2Runtime(
            ANOMALY_FUNCTION_ID,
            ipc_client=self.nucleus.client(component_name(plan, ANOMALY_FUNCTION_ID)),
        )

    def fix(self, value):
        self.nucleus.rotate_in_cloud(DEFAULT_SECRET_NAME, value)

    def reads(self):
        return len(self.nucleus.secret_requests)

    def close(self):
        self.runtime.close()
        self.nucleus.close()


class V1Backend:
    """A Greengrass V1 Lambda: the value changes when the group is redeployed."""

    def __init__(self, tmp_path, value):
        # This process as a function on a V1 core: the installed greengrasssdk over HTTP.
        self._stack = contextlib.ExitStack()
        self.core = self._stack.enter_context(
            V1CoreStandIn(ANOMALY_FUNCTION_ID, secrets={DEFAULT_SECRET_NAME: value})
        )
        self._stack.enter_context(self.core.installed())
        self.runtime = GreengrassV1Runtime(ANOMALY_FUNCTION_ID)

    def fix(self, value):
        self.core.secrets[DEFAULT_SECRET_NAME].value = value

    def reads(self):
        return len(self.core.secret_requests)

    def close(self):
        self._stack.close()


@pytest.mark.parametrize("backend_type", [FileBackend, ReplacedFileBackend, V2Backend, V1Backend])
def test_a_rotated_password_is_picked_up_without_a_restart_or_a_login_storm(tmp_path, backend_type):
    clock = VirtualClock(start=1_790_000_000.0)
    old, new = new_secret("old"), new_secret("rotated")
    standin = ServiceNowStandIn(users={SNOW_USER: old}, clock=clock.time).start()
    backend = backend_type(tmp_path, secret_json(old))
    service = anomaly_function.create_app(
        environ={"snowUrl": standin.url, "stateDir": str(tmp_path / "state")},
        runtime=backend.runtime,
        clock=clock,
    )
    try:
        service.handle(anomaly())
        assert service.pump() == 1  # the old password works
        start = clock.time()
        standin.set_users({SNOW_USER: new})  # rotated on ServiceNow only
        for i in range(1, 6):  # episodes keep coming while it is refused
            episode = "pi-test:humidity:upper:{}".format(1_790_000_000 + 1000 * i)
            service.handle(anomaly("breach", 0, episode))
            service.handle(anomaly("recovered", 1, episode, value=40.0, ts=1_790_000_400.0))
        service.handle(anomaly("recovered", 1, value=40.0, ts=1_790_000_400.0))
        reads_before = backend.reads()
        fixed = False
        while clock.time() < start + FIX_AFTER + 600:
            if not fixed and clock.time() >= start + FIX_AFTER:
                backend.fix(secret_json(new))
                fixed = True
            service.pump()
            next_at = service.next_attempt_at()
            if next_at is None and fixed:
                break
            step = next_at if next_at is not None else clock.time() + 60
            if not fixed:
                step = min(step, start + FIX_AFTER)
            clock.advance_to(max(step, clock.time() + 0.001))
        done_at = clock.time()
        refused = [t for t, _, _, status in standin.timed_request_log if status == 401]
        incidents = standin.incidents()
        assert service.next_attempt_at() is None
    finally:
        standin.stop()
        service.close()
        getattr(backend, "close", lambda: None)()
    assert len(incidents) == 6 and all(i["state"] == "6" for i in incidents)
    assert done_at - (start + FIX_AFTER) <= 120  # delivered within two minutes of the fix
    assert refused and all(b - a >= 60 for a, b in zip(refused, refused[1:]))  # no storm
    # The secret was asked for again while refused (a refetch is always attempted),
    # at most once a minute, through the backend's own call.
    assert 2 <= backend.reads() - reads_before <= 1 + (done_at - start) / 60


def test_a_file_secret_that_turns_invalid_is_a_clear_error_and_is_read_again(tmp_path):
    backend = FileBackend(tmp_path, secret_json("pw-irrelevant"))
    backend.fix("{half written")
    from agent.errors import SecretError

    with pytest.raises(SecretError, match="is not JSON"):
        backend.core.get_secret(DEFAULT_SECRET_NAME)
    backend.fix(json.dumps({"username": "u", "password": "p2"}))
    assert json.loads(backend.core.get_secret(DEFAULT_SECRET_NAME))["password"] == "p2"


def test_v2_falls_back_to_the_nucleus_copy_when_a_refresh_is_refused(caplog, tmp_path):
    from awsiot.greengrasscoreipc import model

    backend = V2Backend(tmp_path, secret_json("pw-cached"))
    # A nucleus before 2.13 may refuse a request with refresh set.
    backend.nucleus.fail_next(GET_SECRET_VALUE, model.ServiceError(message="unknown field"))
    value = backend.runtime.get_secret(DEFAULT_SECRET_NAME, refresh=True)
    assert json.loads(value)["password"] == "pw-cached"
    asked = [
        body for _, operation, body in backend.nucleus.requests if operation == GET_SECRET_VALUE
    ]
    assert [body.get("refresh") for body in asked] == [True, None]  # refused, then plain
    assert "refresh needs nucleus 2.13+" in caplog.text
    backend.close()
