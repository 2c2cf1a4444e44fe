"""What the sensor component may do over IPC: the access control its deployment grants.

Written out here once, so the V2 tests at the wire (``test_live_config_v2``, a
device test that must not import the deploy tooling) enforce exactly what
``deploy/v2/recipes.py`` builds, and ``test_deploy_v2`` checks that it does.
"""

from __future__ import annotations

from typing import Any, Dict


def sensor_access_control(component: str, thing: str) -> Dict[str, Any]:
    shadow = "$aws/things/{}/shadow".format(thing)
    return {
        "aws.greengrass.ipc.mqttproxy": {
            component + ":publish-cloud": {
                "policyDescription": "publish to AWS IoT Core",
                "operations": ["aws.greengrass#PublishToIoTCore"],
                "resources": ["IoTBlog/sensorData", "IoTBlog/anomaly"],
            }
        },
        "aws.greengrass.ipc.pubsub": {
            component + ":publish-local": {
                "policyDescription": "publish to local functions",
                "operations": ["aws.greengrass#PublishToTopic"],
                "resources": ["IoTBlog/anomaly"],
            },
            component + ":subscribe-local": {
                "policyDescription": "receive local messages",
                "operations": ["aws.greengrass#SubscribeToTopic"],
                "resources": [
                    shadow + "/update/delta",
                    shadow + "/update/documents",
                    shadow + "/update/rejected",
                    shadow + "/get/accepted",
                    shadow + "/get/rejected",
                ],
            },
        },
        "aws.greengrass.ShadowManager": {
            component + ":shadow-get": {
                "policyDescription": "get the thing's classic shadow",
                "operations": ["aws.greengrass#GetThingShadow"],
                "resources": [shadow],
            },
            component + ":shadow-update": {
                "policyDescription": "update the thing's classic shadow",
                "operations": ["aws.greengrass#UpdateThingShadow"],
                "resources": [shadow],
            },
        },
    }
