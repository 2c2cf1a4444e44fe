"""The local core's shadow service: routed by the group's table, answering as a V1 core does."""

from __future__ import annotations

import os
import subprocess

import pytest

from agent.clock import VirtualClock
from agent.errors import ShadowError
from agent.greengrass.local import LocalCore
from agent.greengrass.local_shadow import LocalShadowService
from agent.topology import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID, default_topology

THING = "pi"
PREFIX = "$aws/things/pi/shadow"


@pytest.fixture
def core():
    core = LocalCore(default_topology(), clock=VirtualClock())
    core.bind_thing(THING)
    return core


def inbox(core, function_id=SENSOR_FUNCTION_ID):
    received = []
    core.register(
        function_id,
        lambda event, ctx: received.append((ctx.client_context.custom["subject"], event)),
    )
    return received


def test_a_function_updates_and_hears_the_answers_its_subscriptions_route(core):
    received = inbox(core)
    runtime = core.runtime_for(SENSOR_FUNCTION_ID)
    accepted = runtime.update_thing_shadow(THING, {"state": {"reported": {"x": 1}}})
    assert accepted["version"] == 1
    core.update_shadow_from_cloud(THING, {"state": {"desired": {"x": 2}}})
    topics = [t for t, _ in received]
    # The table routes update/documents, update/delta... to the sensor, not update/accepted.
    assert topics == [
        PREFIX + "/update/documents",
        PREFIX + "/update/delta",
        PREFIX + "/update/documents",
    ]
    assert received[1][1]["state"] == {"x": 2}
    assert runtime.get_thing_shadow(THING)["state"]["delta"] == {"x": 2}


def test_a_request_published_on_the_update_topic_is_served_too(core):
    received = inbox(core)
    core.runtime_for(SENSOR_FUNCTION_ID).publish(
        PREFIX + "/update", {"state": {"desired": {"y": 1}}, "clientToken": "c-1"}
    )
    assert [t for t, _ in received] == [PREFIX + "/update/delta", PREFIX + "/update/documents"]
    assert received[0][1]["clientToken"] == "c-1"
    core.runtime_for(SENSOR_FUNCTION_ID).publish(PREFIX + "/update", {"state": 3})
    assert received[-1] == (
        PREFIX + "/update/rejected",
        {"code": 400, "message": "State node must be an object", "timestamp": 1_790_000_000},
    )


def test_a_function_without_a_subscription_to_the_shadow_service_is_forbidden(core, caplog):
    received = inbox(core)
    with pytest.raises(ShadowError) as info:
        core.runtime_for(ANOMALY_FUNCTION_ID).update_thing_shadow(THING, {"state": {}})
    assert (info.value.code, info.value.message) == (403, "Forbidden")
    assert "has no subscription to GGShadowService" in caplog.text
    assert core.shadows.document(THING) is None
    assert received == []  # refused by the core: nothing reaches the service's subscribers


def test_a_source_outside_the_group_is_unauthorized(core):
    with pytest.raises(ShadowError) as info:
        core.shadow_call("intruder", THING, "get", b"")
    assert (info.value.code, info.value.message) == (401, "Unauthorized")


def test_a_thing_the_core_does_not_serve_is_not_found():
    service = LocalShadowService(lambda: 0.0, things={"pi"})
    answer, publications = service.handle("other", "get", b"")
    assert answer["code"] == 404 and answer["message"] == "Thing not found"
    assert publications == [("$aws/things/other/shadow/get/rejected", answer)]


def test_too_many_requests_per_second_are_refused_with_429():
    clock = VirtualClock()
    service = LocalShadowService(clock.time, max_requests_per_second=2)
    codes = [service.handle("pi", "update", {"state": {}})[0].get("code") for _ in range(3)]
    assert codes == [None, None, 429]
    clock.advance(1.0)
    assert "code" not in service.handle("pi", "update", {"state": {}})[0]


def test_a_handler_that_updates_the_shadow_is_answered_after_it_returns(core):
    """A core queues a message for a function behind the invocation under way."""
    seen = []

    def handler(event, context):
        topic = context.client_context.custom["subject"]
        seen.append(topic)
        if topic.endswith("/update/delta"):  # report from inside the handler
            core.runtime_for(SENSOR_FUNCTION_ID).update_thing_shadow(
                THING, {"state": {"reported": event["state"]}}
            )
            seen.append("reported")

    core.register(SENSOR_FUNCTION_ID, handler)
    core.update_shadow_from_cloud(THING, {"state": {"desired": {"z": 1}}})
    assert seen == [
        PREFIX + "/update/delta",
        "reported",  # the handler returned before the answers to its own update came
        PREFIX + "/update/documents",
        PREFIX + "/update/documents",
    ]
    assert "delta" not in core.shadows.document(THING)["state"]


def test_shadows_survive_a_restart_of_the_core(tmp_path):
    path = str(tmp_path / "shadows.json")
    first = LocalCore(default_topology(), clock=VirtualClock(), shadow_path=path)
    first.update_shadow_from_cloud(THING, {"state": {"desired": {"a": 1}}})
    again = LocalCore(default_topology(), clock=VirtualClock(), shadow_path=path)
    document = again.shadows.document(THING)
    assert document["state"]["desired"] == {"a": 1} and document["version"] == 1


@pytest.fixture
def full_disk(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: {}".format(mounted.stderr.decode()))
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_shadows_that_cannot_be_saved_are_a_500_and_change_nothing(full_disk):
    service = LocalShadowService(lambda: 0.0, path=str(full_disk / "shadows.json"))
    assert "code" not in service.handle("pi", "update", {"state": {"desired": {"a": 1}}})[0]
    filler = full_disk / "filler"
    try:  # fill the file system: ENOSPC ends it
        with open(filler, "wb") as handle:
            while True:
                handle.write(b"x" * 4096)
                handle.flush()
    except OSError:
        pass
    answer, publications = service.handle("pi", "update", {"state": {"desired": {"a": 2}}})
    assert (answer["code"], answer["message"]) == (500, "Internal service failure")
    assert publications[0][0] == "$aws/things/pi/shadow/update/rejected"
    assert service.document("pi")["state"]["desired"] == {"a": 1}  # as if it never happened
    assert service.document("pi")["version"] == 1
    os.unlink(filler)
    assert "code" not in service.handle("pi", "update", {"state": {"desired": {"a": 2}}})[0]
    assert service.document("pi")["version"] == 2
