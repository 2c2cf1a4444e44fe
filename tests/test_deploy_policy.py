"""The core's IoT policy: what it allows and what it denies.

A tiny evaluator for AWS IoT policy statements: an explicit Deny wins, else
an Allow whose Action and Resource patterns match (``*`` any run of
characters, ``?`` one character, as IAM/IoT policies match), else denied.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from agent.topology import CLOUD, Subscription, default_topology
from deploy.naming import target_from
from deploy.policy import iot_policy

REGION, ACCOUNT = "eu-west-1", "123456789012"
GROUP = "6a5d2c9e-0000-4000-8000-123456789abc"
THING = "edge-agent-core"


def _matches(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _listify(value):
    return [value] if isinstance(value, str) else list(value)


def allowed(policy: dict, action: str, resource: str) -> bool:
    decision = False
    for statement in policy["Statement"]:
        actions_match = any(_matches(a, action) for a in _listify(statement["Action"]))
        resources_match = any(_matches(r, resource) for r in _listify(statement["Resource"]))
        if actions_match and resources_match:
            if statement["Effect"] == "Deny":
                return False
            decision = True
    return decision


def arn(resource: str) -> str:
    return "arn:aws:iot:{}:{}:{}".format(REGION, ACCOUNT, resource)


def make_policy(topology=None, thing=THING):
    topology = topology or default_topology()
    target = target_from(
        topology, {}, region=REGION, account=ACCOUNT, group_id=GROUP, thing_name=thing
    )
    return iot_policy(topology, target)


@pytest.fixture(scope="module")
def policy():
    return make_policy()


def test_the_evaluator_itself():
    doc = {
        "Statement": [
            {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
            {"Effect": "Deny", "Action": ["iot:Publish"], "Resource": ["arn:x:topic/a/*"]},
        ]
    }
    assert allowed(doc, "iot:Connect", "arn:x:client/anything")
    assert not allowed(doc, "iot:Publish", "arn:x:topic/a/b")
    assert allowed(doc, "iot:Publish", "arn:x:topic/b")
    assert not allowed({"Statement": []}, "iot:Connect", "arn:x:client/a")


def test_connect_only_as_this_core(policy):
    assert allowed(policy, "iot:Connect", arn("client/" + THING))
    assert allowed(policy, "iot:Connect", arn("client/{}-spooler".format(THING)))
    assert not allowed(policy, "iot:Connect", arn("client/other-device"))
    assert not allowed(policy, "iot:Connect", arn("client/{}x".format(THING)))
    assert not allowed(
        policy, "iot:Connect", "arn:aws:iot:{}:999999999999:client/{}".format(REGION, THING)
    )


def test_publish_only_on_the_topics_subscriptions_send_to_cloud(policy):
    assert allowed(policy, "iot:Publish", arn("topic/IoTBlog/sensorData"))
    assert allowed(policy, "iot:Publish", arn("topic/IoTBlog/anomaly"))
    assert not allowed(policy, "iot:Publish", arn("topic/other/topic"))
    assert not allowed(policy, "iot:Publish", arn("topic/IoTBlog/sensorDataX"))
    assert not allowed(policy, "iot:Subscribe", arn("topicfilter/IoTBlog/sensorData"))
    assert not allowed(policy, "iot:Receive", arn("topic/other/topic"))
    assert not allowed(policy, "iot:Subscribe", arn("topicfilter/#"))


def test_shadow_only_for_its_own_thing(policy):
    own = "$aws/things/{}/shadow/update".format(THING)
    other = "$aws/things/other/shadow/update"
    assert allowed(policy, "iot:Publish", arn("topic/" + own))
    assert allowed(
        policy, "iot:Subscribe", arn("topicfilter/$aws/things/{}/shadow/*".format(THING))
    )
    assert not allowed(policy, "iot:Publish", arn("topic/" + other))
    assert allowed(policy, "iot:GetThingShadow", arn("thing/" + THING))
    assert not allowed(policy, "iot:GetThingShadow", arn("thing/other"))


def test_greengrass_actions_scoped_to_this_group_and_core(policy):
    deployments = "arn:aws:greengrass:{}:{}:/greengrass/groups/{}/deployments/d-1".format(
        REGION, ACCOUNT, GROUP
    )
    other_group = deployments.replace(GROUP, "11111111-2222-3333-4444-555555555555")
    assert allowed(policy, "greengrass:GetDeployment", deployments)
    assert allowed(policy, "greengrass:GetDeploymentArtifacts", deployments)
    assert not allowed(policy, "greengrass:GetDeployment", other_group)
    own_core = "{}/cores/{}".format(deployments, quote(arn("thing/" + THING), safe=""))
    other_core = "{}/cores/{}".format(deployments, quote(arn("thing/other"), safe=""))
    assert allowed(policy, "greengrass:UpdateCoreDeploymentStatus", own_core)
    assert not allowed(policy, "greengrass:UpdateCoreDeploymentStatus", other_core)
    assert allowed(policy, "greengrass:GetConnectivityInfo", arn("thing/" + THING))
    assert not allowed(policy, "greengrass:GetConnectivityInfo", arn("thing/other"))
    assert allowed(policy, "greengrass:AssumeRoleForGroup", "*")
    assert not allowed(policy, "greengrass:CreateGroup", "*")
    assert not allowed(policy, "greengrass:CreateDeployment", deployments)


def test_no_wildcard_actions_and_no_star_resource_for_iot(policy):
    for statement in policy["Statement"]:
        actions = _listify(statement["Action"])
        assert not any(a in ("*", "iot:*", "greengrass:*") for a in actions), statement
        if "*" in _listify(statement["Resource"]):
            assert not any(a.startswith("iot:") for a in actions), statement
            # only the two data-plane actions without resource-level permissions
            assert set(actions) == {"greengrass:AssumeRoleForGroup", "greengrass:CreateCertificate"}
        assert statement["Effect"] == "Allow"


def test_topics_follow_the_topology():
    topology = default_topology(environment={"sensor": {"readingsTopic": "plant/+/readings"}})
    cloud_in = Subscription("commands-from-cloud", CLOUD, "plant/commands/#", "anomaly")
    topology = topology.with_changes(subscriptions=topology.subscriptions + (cloud_in,))
    policy = make_policy(topology)
    assert allowed(policy, "iot:Publish", arn("topic/plant/line1/readings"))
    assert not allowed(policy, "iot:Publish", arn("topic/IoTBlog/sensorData"))
    # subscriptions from the cloud need Subscribe (literal filter) and Receive
    assert allowed(policy, "iot:Subscribe", arn("topicfilter/plant/commands/#"))
    assert allowed(policy, "iot:Receive", arn("topic/plant/commands/restart"))
    assert not allowed(policy, "iot:Receive", arn("topic/plant/other"))
    assert not allowed(policy, "iot:Publish", arn("topic/plant/commands/restart"))


def test_policy_document_is_plain_json(policy):
    text = json.dumps(policy)
    assert json.loads(text)["Version"] == "2012-10-17"
    assert "${" not in text  # no policy variables: resources are explicit


def test_the_core_deployment_agent_can_use_its_shadow(policy):
    # A V1 core's deployment agent listens on the shadow of "<thing>-gda".
    gda = "$aws/things/{}-gda/shadow/update/delta".format(THING)
    assert allowed(policy, "iot:Subscribe", arn("topicfilter/" + gda))
    assert allowed(policy, "iot:Receive", arn("topic/" + gda))
    assert allowed(policy, "iot:Publish", arn("topic/$aws/things/{}-gda/shadow/get".format(THING)))
    assert not allowed(policy, "iot:Subscribe", arn("topicfilter/$aws/things/other-core/shadow/#"))


def test_a_policy_aws_would_refuse_for_its_size_fails_at_plan_time():
    from deploy.errors import DeployError

    topology = default_topology()
    many = tuple(
        Subscription(
            "extra-{}".format(i), "sensor", "site/{}/some/long/topic/name".format(i), CLOUD
        )
        for i in range(40)
    )
    with pytest.raises(DeployError, match="AWS IoT allows 2048"):
        make_policy(topology.with_changes(subscriptions=topology.subscriptions + many))
    size = len("".join(json.dumps(make_policy()).split()))
    assert size <= 2048  # the default group fits, with room for a longer thing name


def test_no_shadow_of_a_thing_whose_name_merely_starts_the_same(policy):
    for longer in (THING + "2", THING + "-kitchen"):
        topic = "$aws/things/{}/shadow/update".format(longer)
        assert not allowed(policy, "iot:Publish", arn("topic/" + topic))
        assert not allowed(policy, "iot:Subscribe", arn("topicfilter/" + topic + "/delta"))
        assert not allowed(policy, "iot:GetThingShadow", arn("thing/" + longer))


def test_the_core_syncs_its_classic_shadow_the_sensors_limits(policy):
    own = "$aws/things/{}/shadow/".format(THING)
    for answer in ("update/delta", "update/accepted", "update/documents", "get/accepted"):
        assert allowed(policy, "iot:Subscribe", arn("topicfilter/" + own + answer))
        assert allowed(policy, "iot:Receive", arn("topic/" + own + answer))
    for request in ("update", "get"):
        assert allowed(policy, "iot:Publish", arn("topic/" + own + request))
    assert allowed(policy, "iot:UpdateThingShadow", arn("thing/" + THING))
