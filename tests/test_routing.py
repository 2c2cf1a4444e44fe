"""The local core emulation routes as a Greengrass V1 core does."""

from __future__ import annotations

import pytest

from agent.errors import SecretError
from agent.greengrass.local import LocalCore
from agent.greengrass.routing import route, topic_matches, validate_subject
from agent.topology import CLOUD, FunctionSpec, GroupTopology, Subscription, default_topology


@pytest.mark.parametrize(
    "subject, topic, expected",
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+/c", "a/x/c", True),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "anything/at/all", True),
        ("a/b", "a/b/c", False),
        ("+", "a/b", False),
    ],
)
def test_topic_matching(subject, topic, expected):
    assert topic_matches(subject, topic) is expected


@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "a/b+"])
def test_invalid_subjects_are_rejected(bad):
    with pytest.raises(ValueError):
        validate_subject(bad)


def _topology():
    functions = tuple(
        FunctionSpec(id=name, lambda_name=name, module="x") for name in ("pub", "sub", "other")
    )
    return GroupTopology(
        name="t",
        functions=functions,
        subscriptions=(
            Subscription("1", "pub", "sensors/+/temp", "sub"),
            Subscription("2", "pub", "sensors/#", CLOUD),
            Subscription("3", CLOUD, "commands/#", "sub"),
            Subscription("4", "other", "private", "sub"),
        ),
    )


def test_route_follows_source_and_subject():
    subs = _topology().subscriptions
    assert route(subs, "pub", "sensors/kitchen/temp") == ["sub", CLOUD]
    assert route(subs, "pub", "sensors/kitchen/humidity") == [CLOUD]
    # Same topic, different source: no subscription, no delivery.
    assert route(subs, "sub", "sensors/kitchen/temp") == []
    assert route(subs, "pub", "private") == []


def test_local_core_invokes_handlers_with_subject_in_context():
    core = LocalCore(_topology())
    received = []
    core.register("sub", lambda event, ctx: received.append((event, ctx.client_context.custom)))
    message = {"v": 1}
    reached = core.publish("pub", "sensors/hall/temp", message)
    assert reached == ["sub", CLOUD]
    event, custom = received[0]
    assert event == {"v": 1} and event is not message  # a decoded copy, as with EncodingType json
    assert custom["subject"] == "sensors/hall/temp"
    assert list(core.cloud_messages) == [("sensors/hall/temp", {"v": 1})]


def test_no_subscription_means_no_delivery():
    core = LocalCore(_topology())
    received = []
    core.register("sub", lambda event, ctx: received.append(event))
    assert core.publish("pub", "unrelated/topic", {"v": 1}) == []
    assert core.publish("other", "sensors/a/temp", {"v": 1}) == []
    assert received == [] and not core.cloud_messages
    assert core.stats["unrouted"] == 2


def test_messages_from_cloud_reach_subscribed_functions_only():
    core = LocalCore(_topology())
    received = []
    core.register("sub", lambda event, ctx: received.append(ctx.client_context.custom))
    assert core.deliver_from_cloud("commands/reboot", b'{"now": true}') == ["sub"]
    assert core.deliver_from_cloud("other/thing", b"{}") == []
    assert received == [{"subject": "commands/reboot", "source": CLOUD}]


def test_cloud_links_receive_cloud_messages_and_failures_do_not_stop_routing():
    core = LocalCore(_topology())
    seen = []

    def broken(topic, payload):
        raise OSError("link down")

    core.add_cloud_link(broken)
    core.add_cloud_link(lambda topic, payload: seen.append((topic, payload)))
    core.publish("pub", "sensors/x", {"a": 1})
    assert seen == [("sensors/x", b'{"a":1}')]


def test_a_failing_handler_is_logged_and_the_core_goes_on(caplog):
    core = LocalCore(_topology())

    def boom(event, ctx):
        raise RuntimeError("bug")

    core.register("sub", boom)
    core.publish("pub", "sensors/a/temp", {})
    assert core.stats["handler_errors"] == 1
    assert "function sub failed" in caplog.text


def test_registering_an_unknown_function_fails_loudly():
    with pytest.raises(KeyError):
        LocalCore(_topology()).register("ghost", lambda e, c: None)


def test_secrets_come_from_a_file_and_missing_ones_are_clear(tmp_path):
    core = LocalCore(default_topology())
    path = tmp_path / "secret.json"
    path.write_text('{"username": "u", "password": "p"}')
    core.load_secret_file("greengrass-snow-creds", str(path))
    assert "username" in core.get_secret("greengrass-snow-creds")
    with pytest.raises(SecretError, match="not available"):
        core.get_secret("greengrass-other")
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    with pytest.raises(SecretError, match="not JSON"):
        core.load_secret_file("x", str(bad))


def test_default_topology_routes_like_the_blog():
    topo = default_topology()
    subs = topo.subscriptions
    assert route(subs, "sensor", "IoTBlog/sensorData") == [CLOUD]
    assert route(subs, "sensor", "IoTBlog/anomaly") == ["anomaly", CLOUD]


def test_topic_variables_reroute_the_subscriptions():
    topo = default_topology(environment={"sensor": {"anomalyTopic": "site/7/anomaly"}})
    assert route(topo.subscriptions, "sensor", "site/7/anomaly") == ["anomaly", CLOUD]
    assert route(topo.subscriptions, "sensor", "IoTBlog/anomaly") == []
