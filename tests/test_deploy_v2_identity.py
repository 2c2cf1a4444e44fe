"""The V2 core's IoT policy and token exchange permissions: what they allow and what they deny.

Evaluated with the small AWS IoT/IAM policy evaluator of test_deploy_policy.
"""

from __future__ import annotations

import json

import pytest
from test_deploy_policy import allowed

from agent.topology import CLOUD, Subscription, default_topology
from deploy.errors import DeployError
from deploy.v2.core_documents import core_iot_policy, token_exchange_access_policy

REGION, ACCOUNT, THING, ALIAS = "eu-west-1", "123456789012", "pi-core", "edge-tes-alias"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:greengrass-snow-creds-AbCdEf"


def arn(resource: str) -> str:
    return "arn:aws:iot:{}:{}:{}".format(REGION, ACCOUNT, resource)


@pytest.fixture(scope="module")
def policy():
    return core_iot_policy(default_topology(), REGION, ACCOUNT, THING, ALIAS)


def test_connects_only_as_the_nucleus_client_ids(policy):
    assert allowed(policy, "iot:Connect", arn("client/" + THING))
    assert allowed(policy, "iot:Connect", arn("client/{}#2".format(THING)))
    assert not allowed(policy, "iot:Connect", arn("client/{}-other".format(THING)))
    assert not allowed(policy, "iot:Connect", arn("client/other"))


def test_deployment_topics_of_its_own_thing_only(policy):
    shadow = "$aws/things/{}/shadow/name/AWSManagedGreengrassV2Deployment".format(THING)
    for action, prefix in (("iot:Subscribe", "topicfilter/"), ("iot:Receive", "topic/")):
        assert allowed(policy, action, arn(prefix + shadow + "/update/delta"))
        assert allowed(policy, action, arn(prefix + "$aws/things/{}/jobs/notify".format(THING)))
        assert not allowed(
            policy, action, arn(prefix + shadow.replace(THING, "other") + "/update/delta")
        )
        # ...nor of a thing whose name merely starts the same
        assert not allowed(
            policy, action, arn(prefix + shadow.replace(THING, THING + "2") + "/update/delta")
        )
    assert allowed(policy, "iot:Publish", arn("topic/" + shadow + "/update"))
    assert allowed(
        policy, "iot:Publish", arn("topic/$aws/things/{}/greengrassv2/health/json".format(THING))
    )


def test_shadow_manager_can_sync_its_classic_shadow_only(policy):
    """aws.greengrass.ShadowManager: iot:UpdateThingShadow calls, cloud changes on update/accepted."""
    classic = "$aws/things/{}/shadow".format(THING)
    assert allowed(policy, "iot:Subscribe", arn("topicfilter/" + classic + "/update/accepted"))
    assert allowed(policy, "iot:Receive", arn("topic/" + classic + "/update/accepted"))
    assert allowed(policy, "iot:Subscribe", arn("topicfilter/" + classic + "/delete/accepted"))
    for action in ("iot:GetThingShadow", "iot:UpdateThingShadow", "iot:DeleteThingShadow"):
        assert allowed(policy, action, arn("thing/" + THING))
        assert not allowed(policy, action, arn("thing/other"))
    other = "$aws/things/other/shadow/update/accepted"
    assert not allowed(policy, "iot:Subscribe", arn("topicfilter/" + other))


def test_publishes_the_readings_and_anomalies_and_nothing_else(policy):
    assert allowed(policy, "iot:Publish", arn("topic/IoTBlog/sensorData"))
    assert allowed(policy, "iot:Publish", arn("topic/IoTBlog/anomaly"))
    assert not allowed(policy, "iot:Publish", arn("topic/other/topic"))
    assert not allowed(policy, "iot:Subscribe", arn("topicfilter/IoTBlog/sensorData"))


def test_topics_from_the_cloud_follow_the_subscriptions():
    topology = default_topology()
    topology = topology.with_changes(
        subscriptions=topology.subscriptions
        + (Subscription("cmd", CLOUD, "plant/commands/#", "anomaly"),),
    )
    policy = core_iot_policy(topology, REGION, ACCOUNT, THING, ALIAS)
    assert allowed(policy, "iot:Subscribe", arn("topicfilter/plant/commands/#"))
    assert allowed(policy, "iot:Receive", arn("topic/plant/commands/restart"))
    assert not allowed(policy, "iot:Publish", arn("topic/plant/commands/restart"))


def test_assumes_the_token_exchange_role_only_through_its_alias(policy):
    assert allowed(policy, "iot:AssumeRoleWithCertificate", arn("rolealias/" + ALIAS))
    assert not allowed(policy, "iot:AssumeRoleWithCertificate", arn("rolealias/other"))


def test_greengrass_data_plane_actions_and_no_wildcard_actions(policy):
    for action in (
        "greengrass:GetComponentVersionArtifact",
        "greengrass:ResolveComponentCandidates",
        "greengrass:GetDeploymentConfiguration",
        "greengrass:ListThingGroupsForCoreDevice",
    ):
        assert allowed(policy, action, "arn:aws:greengrass:eu-west-1:aws:components:x")
    assert not allowed(policy, "greengrass:CreateDeployment", "*")
    for statement in policy["Statement"]:
        assert not any(a.endswith(":*") or a == "*" for a in statement["Action"]), statement
        if statement["Resource"] == ["*"]:
            assert all(a.startswith("greengrass:") for a in statement["Action"])


def test_a_thing_name_that_makes_the_policy_too_long_is_refused_at_plan_time():
    with pytest.raises(DeployError, match="2048"):
        core_iot_policy(default_topology(), REGION, ACCOUNT, "x" * 128, ALIAS)


def test_the_token_exchange_role_reads_only_the_artifacts_and_the_secret():
    policy = token_exchange_access_policy("aws", "artifacts", "edge-agent/artifacts", [SECRET])
    assert allowed(policy, "s3:GetObject", "arn:aws:s3:::artifacts/edge-agent/artifacts/c/1/z.zip")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::artifacts/other/key")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::other-bucket/edge-agent/artifacts/x")
    assert allowed(policy, "s3:GetBucketLocation", "arn:aws:s3:::artifacts")
    assert allowed(policy, "secretsmanager:GetSecretValue", SECRET)
    assert not allowed(policy, "secretsmanager:GetSecretValue", SECRET.replace("snow", "other"))
    assert not allowed(policy, "logs:PutLogEvents", "*")
    assert "*" not in json.dumps([s["Resource"] for s in policy["Statement"]]).replace("/*", "")
