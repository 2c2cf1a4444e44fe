"""The core's AWS IoT policy, scoped to its own thing, client id and topics. Pure.

Follows the "minimal AWS IoT policy for the Greengrass core device" of the
Greengrass V1 developer guide, narrowed further:

* ``iot:Connect`` only as the core's own client id (the thing name, and the
  thing name with a ``-`` suffix for the core's auxiliary connections);
* ``iot:Publish`` only on the topics the group's subscriptions send to
  ``cloud``; ``iot:Subscribe``/``iot:Receive`` only on topics subscriptions take
  from ``cloud``; shadow topics and shadow calls only for the core's own thing
  (``SyncShadow``: the sensor's limits live in its classic shadow) and the
  deployment agent's ``<thing>-gda`` shadow, not for any thing whose name
  merely starts the same;
* Greengrass data-plane actions: ``AssumeRoleForGroup`` and
  ``CreateCertificate`` (no resource-level permissions exist for them, so
  ``*``), ``GetDeployment``/``GetDeploymentArtifacts`` on this group's
  deployments, ``UpdateCoreDeploymentStatus`` for this core only,
  ``Get/UpdateConnectivityInfo`` on this thing. No ``iot:*`` or ``greengrass:*``.

MQTT wildcards in a subscription subject become policy wildcards for topic
resources (``+`` and ``#`` -> ``*``), which is a little broader than the
subject; topic-filter resources keep the filter literally, as AWS IoT expects.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, List

from agent.topology import CLOUD, GroupTopology

from .errors import DeployError
from .naming import core_deployment_status_arn, group_deployments_arn, partition_for

if TYPE_CHECKING:  # pragma: no cover
    from .naming import Target

LOG = logging.getLogger(__name__)
POLICY_VERSION = "2012-10-17"


def _iot_arn(target: Target, resource: str) -> str:
    return "arn:{}:iot:{}:{}:{}".format(
        partition_for(target.region), target.region, target.account, resource
    )


def topic_resource(subject: str) -> str:
    """A policy topic pattern for an MQTT subject (``+``/``#`` become ``*``)."""
    return "/".join("*" if level in ("+", "#") else level for level in subject.split("/"))


def _unique(items: List[str]) -> List[str]:
    seen: List[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def shadow_topics(thing: str) -> List[str]:
    """Policy patterns for the core's shadow topics: its own thing's (``SyncShadow`` of the
    classic shadow, where the sensor's limits live), and the deployment agent's, which
    listens on the shadow of ``<thing>-gda`` (AWS's minimal V1 core policy). Exactly these
    two things: not ``$aws/things/<thing>*``, which is also every thing whose name starts
    so. Named shadows of its own thing are not excluded (the core uses none): a Deny for
    them costs 260 of the 2048 characters a policy may have."""
    return ["$aws/things/{}/shadow/*".format(thing), "$aws/things/{}-gda/*".format(thing)]


def iot_policy(topology: GroupTopology, target: Target) -> Dict[str, Any]:
    thing = target.thing_name
    region, account = target.region, target.account
    to_cloud = _unique([s.subject for s in topology.subscriptions if s.target == CLOUD])
    from_cloud = _unique([s.subject for s in topology.subscriptions if s.source == CLOUD])
    shadows = shadow_topics(thing)

    publish = [_iot_arn(target, "topic/" + topic_resource(s)) for s in to_cloud]
    receive = [_iot_arn(target, "topic/" + topic_resource(s)) for s in from_cloud]
    subscribe = [_iot_arn(target, "topicfilter/" + s) for s in from_cloud]

    statements: List[Dict[str, Any]] = [
        {
            # connect as this core
            "Effect": "Allow",
            "Action": ["iot:Connect"],
            "Resource": [
                _iot_arn(target, "client/" + thing),
                _iot_arn(target, "client/{}-*".format(thing)),
            ],
        }
    ]
    statements.append(
        {
            # its shadows: one statement, as each action only matches its resource type
            # (Publish and Receive topic/..., Subscribe topicfilter/...)
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:Subscribe", "iot:Receive"],
            "Resource": [_iot_arn(target, "topic/" + t) for t in shadows]
            + [_iot_arn(target, "topicfilter/" + t) for t in shadows],
        }
    )
    if publish:
        statements.append(
            {
                # publish group topics
                "Effect": "Allow",
                "Action": ["iot:Publish"],
                "Resource": _unique(publish),
            }
        )
    if subscribe:
        statements.append(
            {
                # subscribe group topics
                "Effect": "Allow",
                "Action": ["iot:Subscribe"],
                "Resource": _unique(subscribe),
            }
        )
    if receive:
        statements.append(
            {
                # receive group topics
                "Effect": "Allow",
                "Action": ["iot:Receive"],
                "Resource": _unique(receive),
            }
        )
    statements += [
        {
            # its own shadow (SyncShadow), and its connectivity info
            "Effect": "Allow",
            "Action": [
                "iot:GetThingShadow",
                "iot:UpdateThingShadow",
                "iot:DeleteThingShadow",
                "greengrass:GetConnectivityInfo",
                "greengrass:UpdateConnectivityInfo",
            ],
            "Resource": [_iot_arn(target, "thing/" + thing)],
        },
        {
            # greengrass core identity
            "Effect": "Allow",
            "Action": ["greengrass:AssumeRoleForGroup", "greengrass:CreateCertificate"],
            "Resource": ["*"],
        },
        {
            # greengrass group deployments
            "Effect": "Allow",
            "Action": ["greengrass:GetDeployment", "greengrass:GetDeploymentArtifacts"],
            "Resource": [group_deployments_arn(region, account, target.group_id)],
        },
        {
            # greengrass core deployment status
            "Effect": "Allow",
            "Action": ["greengrass:UpdateCoreDeploymentStatus"],
            "Resource": [core_deployment_status_arn(region, account, target.group_id, thing)],
        },
    ]
    LOG.debug(
        "IoT policy for thing %s, group %s: %d statements", thing, target.group_id, len(statements)
    )
    document = {"Version": POLICY_VERSION, "Statement": statements}
    check_policy_size(document)
    return document


# AWS IoT refuses policy documents over 2048 characters, whitespace not counted;
# that is also why the statements carry no "Sid".
MAX_POLICY_CHARACTERS = 2048


def check_policy_size(document: Dict[str, Any]) -> None:
    """Fail at plan time, not halfway through ``up``, if AWS would refuse the policy."""
    import json

    size = len("".join(json.dumps(document).split()))
    if size > MAX_POLICY_CHARACTERS:
        raise DeployError(
            "the IoT policy is {} characters; AWS IoT allows {} (whitespace not counted). "
            "Use a shorter --thing-name or fewer cloud topics".format(size, MAX_POLICY_CHARACTERS)
        )
