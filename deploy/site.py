"""``deploy v2 plan --site NAME --devices N`` (and ``v1 plan``): a site's gateway and its Pis.

The group is :func:`agent.site.topology.site_topology` (the one description a
site has: the gateway's anomaly function with ``site`` and ``siteDevices``, the
sensors' readings routed to it). On top of the single-core plan this adds,
every document checked against botocore's models:

* **V2**: the sensor Pis are client devices of the gateway core. The deployment
  adds ``aws.greengrass.clientdevices.Auth`` (a device group selecting the
  site's things and its MQTT policy: connect, publish on the two topics), a
  local broker (``aws.greengrass.clientdevices.mqtt.Moquette``), the MQTT bridge
  mapping both topics ``LocalMqtt`` → ``Pubsub`` (where the gateway's anomaly
  function subscribes) and the IP detector; it targets the thing group of the
  site's gateways with a rollout rate and an abort threshold
  (``iotJobConfiguration``). Also written: the thing group, the Pis' IoT policy
  (connect with their own thing name, Greengrass discovery) and the association
  of the Pis with the core.
* **V1**: the Pis in the group's device definition, and subscriptions from each
  Pi to the anomaly function for readings and episode events.

Component versions are ``RESOLVED-AT-DEPLOY``, as the plan's other AWS-provided
components: ``aws greengrassv2 list-component-versions`` names the newest.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from agent.names import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID
from agent.topology import GroupTopology

from .errors import DeployError
from .naming import partition_for, thing_arn
from .plans import Plan
from .validation import validate_params

CLIENT_AUTH = "aws.greengrass.clientdevices.Auth"
BROKER = "aws.greengrass.clientdevices.mqtt.Moquette"
BRIDGE = "aws.greengrass.clientdevices.mqtt.Bridge"
IP_DETECTOR = "aws.greengrass.clientdevices.IPDetector"
RESOLVED_AT_DEPLOY = "RESOLVED-AT-DEPLOY"
DEVICE_GROUP = "SiteSensors"
DEVICE_POLICY = "SiteSensorPolicy"
MAX_DEVICES = 10_000
ASSOCIATE_BATCH = 100  # BatchAssociateClientDeviceWithCoreDevice takes at most 100 entries


def device_names(site: str, count: int) -> List[str]:
    """The site's Pis: ``<site>-pi-0001`` …; their IoT things and device ids."""
    if not 1 <= count <= MAX_DEVICES:
        raise DeployError("--devices must be 1 to {}, got {}".format(MAX_DEVICES, count))
    width = max(4, len(str(count)))
    return ["{}-pi-{:0{}d}".format(site, i + 1, width) for i in range(count)]


def _topics(topology: GroupTopology) -> List[str]:
    sensor = topology.function(SENSOR_FUNCTION_ID).environment
    return [sensor["readingsTopic"], sensor["anomalyTopic"]]


def client_device_components(site: str, topology: GroupTopology) -> Dict[str, Any]:
    """The deployment's client-device components, configured for the site's Pis."""
    topics = _topics(topology)
    auth = {
        "deviceGroups": {
            "formatVersion": "2021-03-05",
            "definitions": {
                DEVICE_GROUP: {
                    "selectionRule": "thingName: {}-pi-*".format(site),
                    "policyName": DEVICE_POLICY,
                }
            },
            "policies": {
                DEVICE_POLICY: {
                    "AllowConnect": {
                        "statementDescription": "a Pi connects with its own thing name",
                        "operations": ["mqtt:connect"],
                        "resources": ["mqtt:clientId:{}-pi-*".format(site)],
                    },
                    "AllowPublish": {
                        "statementDescription": "readings and episode events, nothing else",
                        "operations": ["mqtt:publish"],
                        "resources": ["mqtt:topic:" + t for t in topics],
                    },
                }
            },
        }
    }
    bridge = {
        "mqttTopicMapping": {
            name: {"topic": topic, "source": "LocalMqtt", "target": "Pubsub"}
            for name, topic in zip(("SiteReadings", "SiteEpisodes"), topics)
        }
    }
    return {
        CLIENT_AUTH: {
            "componentVersion": RESOLVED_AT_DEPLOY,
            "configurationUpdate": {"merge": json.dumps(auth, sort_keys=True)},
        },
        BROKER: {"componentVersion": RESOLVED_AT_DEPLOY},
        BRIDGE: {
            "componentVersion": RESOLVED_AT_DEPLOY,
            "configurationUpdate": {"merge": json.dumps(bridge, sort_keys=True)},
        },
        IP_DETECTOR: {"componentVersion": RESOLVED_AT_DEPLOY},
    }


def rollout(per_minute: int, abort_percent: float) -> Dict[str, Any]:
    """``iotJobConfiguration``: at most ``per_minute`` gateways a minute; cancel when more
    than ``abort_percent`` % of those that ran failed (after at least 1)."""
    if per_minute < 1:
        raise DeployError("--rollout-per-minute must be at least 1")
    if not 0 < abort_percent <= 100:
        raise DeployError("--abort-threshold must be a percentage above 0, at most 100")
    return {
        "jobExecutionsRolloutConfig": {"maximumPerMinute": per_minute},
        "abortConfig": {
            "criteriaList": [
                {
                    "failureType": "FAILED",
                    "action": "CANCEL",
                    "thresholdPercentage": abort_percent,
                    "minNumberOfExecutedThings": 1,
                }
            ]
        },
    }


def device_policy(region: str, account: str) -> Dict[str, Any]:
    """The Pis' IoT policy: connect as their own thing, Greengrass discovery (no site in it)."""
    partition = partition_for(region)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": "arn:{}:iot:{}:{}:client/${{iot:Connection.Thing.ThingName}}".format(
                    partition, region, account
                ),
            },
            {
                "Effect": "Allow",
                "Action": "greengrass:Discover",
                "Resource": "arn:{}:iot:{}:{}:thing/${{iot:Connection.Thing.ThingName}}".format(
                    partition, region, account
                ),
            },
        ],
    }


def add_v2_site(
    plan: Plan,
    topology: GroupTopology,
    site: str,
    devices: List[str],
    *,
    region: str,
    account: str,
    thing_group: str,
    core_thing: str,
    per_minute: int,
    abort_percent: float,
) -> None:
    """Client devices, the thing-group deployment and the Pis' documents, into ``plan``."""
    deployment = dict(plan.files["deployment.json"])
    deployment["components"] = dict(
        deployment["components"], **client_device_components(site, topology)
    )
    deployment["iotJobConfiguration"] = rollout(per_minute, abort_percent)
    validate_params("greengrassv2", "CreateDeployment", deployment)
    plan.files["deployment.json"] = deployment
    group = {
        "thingGroupName": thing_group,
        # No description: its model pattern (\p{Graph}) is Java's, which the offline check
        # cannot read; the attribute names the site.
        "thingGroupProperties": {"attributePayload": {"attributes": {"site": site}}},
    }
    validate_params("iot", "CreateThingGroup", group)
    plan.files["thing-group.json"] = group
    policy = device_policy(region, account)
    validate_params(
        "iot",
        "CreatePolicy",
        {"policyName": DEVICE_POLICY, "policyDocument": json.dumps(policy)},
    )
    plan.files["site-device-iot-policy.json"] = policy
    batches = []
    for start in range(0, len(devices), ASSOCIATE_BATCH):
        params = {
            "coreDeviceThingName": core_thing,
            "entries": [{"thingName": d} for d in devices[start : start + ASSOCIATE_BATCH]],
        }
        validate_params("greengrassv2", "BatchAssociateClientDeviceWithCoreDevice", params)
        batches.append(params)
    plan.files["site-client-devices.json"] = {"batches": batches}
    plan.files["site-devices.txt"] = "\n".join(devices) + "\n"
    plan.commands += [
        "aws iot create-thing-group --cli-input-json file://thing-group.json",
        "aws iot add-thing-to-thing-group --thing-group-name {} --thing-name {}".format(
            thing_group, core_thing
        ),
        "aws iot create-policy --policy-name {} --policy-document "
        "file://site-device-iot-policy.json".format(DEVICE_POLICY),
        "for each Pi in site-devices.txt: aws iot create-thing --thing-name PI; "
        "aws iot create-keys-and-certificate --set-as-active; aws iot attach-policy "
        "--policy-name {} --target CERT_ARN; aws iot attach-thing-principal".format(DEVICE_POLICY),
        "for each batch of site-client-devices.json: aws greengrassv2 "
        "batch-associate-client-device-with-core-device --cli-input-json BATCH",
    ]
    plan.notes.append(
        "site {}: {} Pis as client devices of {} (device group {}: thingName {}-pi-*); the "
        "deployment targets thing group {} at {} gateways a minute, cancelled above {:g} % "
        "failed; each Pi runs `edge-agent run --mqtt mqtts://GATEWAY:8883` with its thing's "
        "certificate".format(
            site,
            len(devices),
            core_thing,
            DEVICE_GROUP,
            site,
            thing_group,
            per_minute,
            abort_percent,
        )
    )


def add_v1_site(
    plan: Plan, topology: GroupTopology, devices: List[str], *, region: str, account: str
) -> None:
    """The Pis in the V1 group's device definition, and their subscriptions to the
    anomaly function (readings and episode events)."""

    definition = {
        "Devices": [
            {
                "Id": device,
                "ThingArn": thing_arn(region, account, device),
                "CertificateArn": "arn:{}:iot:{}:{}:cert/{}".format(
                    partition_for(region), region, account, "0" * 64
                ),
                "SyncShadow": False,
            }
            for device in devices
        ]
    }
    validate_params("greengrass", "CreateDeviceDefinition", {"InitialVersion": definition})
    plan.files["device-definition.json"] = definition
    entries = list(plan.files["subscription-definition.json"]["Subscriptions"])
    target = _anomaly_target(entries, topology.function(ANOMALY_FUNCTION_ID).lambda_name)
    for device in devices:
        for n, topic in enumerate(_topics(topology)):
            entries.append(
                {
                    "Id": "{}-{}".format(device, ("readings", "anomaly")[n])[:128],
                    "Source": thing_arn(region, account, device),
                    "Subject": topic,
                    "Target": target,
                }
            )
    updated = {"Subscriptions": entries}
    validate_params("greengrass", "CreateSubscriptionDefinition", {"InitialVersion": updated})
    plan.files["subscription-definition.json"] = updated
    plan.notes.append(
        "site: {} Pis in the device definition, each subscribed to the anomaly function "
        "(readings and episode events)".format(len(devices))
    )


def _anomaly_target(subscriptions: List[Dict[str, Any]], lambda_name: str) -> str:
    """The anomaly function's ARN (its alias), as the plan's own subscriptions name it."""
    for entry in subscriptions:
        if ":function:{}:".format(lambda_name) in entry["Target"]:
            return str(entry["Target"])
    raise DeployError("the plan has no subscription to the anomaly function")
