"""The Greengrass V1 core's ``/greengrass/config/config.json``, from what ``up`` created.

``certs-example/config.json.template`` is this document rendered with the
``{{...}}`` placeholders below (a test keeps the two identical), and
``python -m deploy v1 render-config --state out/state.json --out config.json``
renders the real one. ``allowFunctionsToRunAsRoot`` appears only when the
functions were deployed with ``--run-as-root``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping

from .errors import DeployError

ROOT_CA_FILE = "AmazonRootCA1.pem"
DEVICE_CERTS_DIR = "/greengrass/certs"

PLACEHOLDERS = {
    "thing_arn": "{{THING_ARN}}",
    "iot_endpoint": "{{IOT_ENDPOINT}}",
    "region": "{{REGION}}",
    "cert_file": "{{CERT_FILE}}",
    "key_file": "{{KEY_FILE}}",
}


def core_config(
    *,
    thing_arn: str,
    iot_endpoint: str,
    region: str,
    cert_file: str,
    key_file: str,
    ca_file: str = ROOT_CA_FILE,
    certs_dir: str = DEVICE_CERTS_DIR,
    run_as_root: bool = False,
) -> Dict[str, Any]:
    runtime: Dict[str, Any] = {"cgroup": {"useSystemd": "yes"}}
    if run_as_root:
        runtime["allowFunctionsToRunAsRoot"] = "yes"
    key_url = "file://{}/{}".format(certs_dir, key_file)
    return {
        "coreThing": {
            "caPath": ca_file,
            "certPath": cert_file,
            "keyPath": key_file,
            "thingArn": thing_arn,
            "iotHost": iot_endpoint,
            "ggHost": "greengrass-ats.iot.{}.amazonaws.com".format(region),
            "keepAlive": 600,
        },
        "runtime": runtime,
        "managedRespawn": False,
        "crypto": {
            "principals": {
                "SecretsManager": {"privateKeyPath": key_url},
                "IoTCertificate": {
                    "privateKeyPath": key_url,
                    "certificatePath": "file://{}/{}".format(certs_dir, cert_file),
                },
            },
            "caPath": "file://{}/{}".format(certs_dir, ca_file),
        },
    }


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def template_text() -> str:
    """What ``certs-example/config.json.template`` must contain."""
    return render(core_config(**PLACEHOLDERS))


def config_from_state(state: Mapping[str, Any], iot_endpoint: str = "") -> Dict[str, Any]:
    thing = state.get("thing") or {}
    cert = state.get("certificate") or {}
    endpoint = iot_endpoint or state.get("iot_endpoint", "")
    missing = [
        name
        for name, value in (
            ("thing ARN", thing.get("arn")),
            ("certificate", cert.get("cert_file")),
            ("IoT endpoint (or --endpoint)", endpoint),
            ("region", state.get("region")),
        )
        if not value
    ]
    if missing:
        raise DeployError(
            "the state file lacks: {}".format(", ".join(missing)),
            hint="run python -m deploy v1 up first (it records these)",
        )
    return core_config(
        thing_arn=thing["arn"],
        iot_endpoint=endpoint,
        region=state["region"],
        cert_file=cert["cert_file"],
        key_file=cert["key_file"],
        run_as_root=bool((state.get("run_as") or {}).get("root")),
    )
