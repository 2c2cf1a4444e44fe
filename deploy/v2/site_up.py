"""``v2 up --site NAME --devices N``: the site's Pis in AWS, as client devices of the gateway.

What ``deploy/site.py`` plans, created: the Pis' IoT policy, one thing per Pi with
an active certificate (key written beside the core's, 0600) that the policy is
attached to, and the Pis' association with the gateway core (batches of 100).
The deployment's client-device components and rollout are added to the plan by
:func:`site_deployment`; the thing group is the core's (``identity``).

Idempotent like the rest of ``v2 up``: every resource is looked up first and
recorded under ``v2.site`` in the state file as soon as it exists, so a run that
stopped midway resumes where it stopped and a re-run with nothing changed
creates nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Set

from agent.topology import GroupTopology

from ..context import RunContext, section
from ..definitions import content_hash
from ..errors import DeployError
from ..naming import PLACEHOLDER_CERT_ID, certificate_arn, thing_arn
from ..site import (
    ASSOCIATE_BATCH,
    DEVICE_POLICY,
    RESOLVED_AT_DEPLOY,
    client_device_components,
    device_policy,
    rollout,
)
from ..things import write_private
from ..validation import validate_params

ASSOCIATE = "BatchAssociateClientDeviceWithCoreDevice"


def site_deployment(
    deployment: Dict[str, Any],
    site: str,
    topology: GroupTopology,
    *,
    per_minute: int,
    abort_percent: float,
    resolve: Callable[[str], str],
) -> Dict[str, Any]:
    """The deployment with the client-device components (versions resolved by ``resolve``)
    and the staged rollout; checked against botocore's model."""
    components = client_device_components(site, topology)
    for name, spec in components.items():
        if spec["componentVersion"] == RESOLVED_AT_DEPLOY:
            spec["componentVersion"] = resolve(name)
    result = dict(deployment)
    result["components"] = dict(deployment["components"], **components)
    result["iotJobConfiguration"] = rollout(per_minute, abort_percent)
    validate_params("greengrassv2", "CreateDeployment", result)
    return result


class SitePis:
    """The site's Pis: policy, things, certificates, association with the core."""

    def __init__(
        self, ctx: RunContext, v2: Dict[str, Any], site: str, devices: List[str], certs_dir: Path
    ) -> None:
        self.ctx = ctx
        self.site = site
        self.devices = devices
        self.record = section(v2, "site")
        self.record["name"] = site
        self.certs_dir = Path(certs_dir) / "pis"

    def ensure(self) -> None:
        """The policy, then each Pi's thing and certificate, in device order."""
        self._ensure_policy()
        for device in self.devices:
            self._ensure_device(device)

    def _ensure_policy(self) -> None:
        ctx, api = self.ctx, self.ctx.api
        document = device_policy(ctx.region, ctx.account)
        text = json.dumps(document, indent=2)
        validate_params(
            "iot", "CreatePolicy", {"policyName": DEVICE_POLICY, "policyDocument": text}
        )
        recorded = section(self.record, "policy")
        digest = content_hash(document)
        found = api.find(
            "iot",
            "GetPolicy",
            {"policyName": DEVICE_POLICY},
            dry={"policyDocument": json.dumps(document)}
            if recorded.get("hash") == digest
            else None,
        )
        if found is None:
            api.call("iot", "CreatePolicy", {"policyName": DEVICE_POLICY, "policyDocument": text})
            recorded["created"] = True
            ctx.note("policy {}: created".format(DEVICE_POLICY))
        elif json.loads(found["policyDocument"]) != document:
            # Same name in every site of the account; its document names no site.
            raise DeployError(
                "IoT policy {} exists with another document".format(DEVICE_POLICY),
                hint="it was not written by v2 up --site: delete it, or make it match "
                "site-device-iot-policy.json from v2 plan --site",
            )
        else:
            ctx.out("policy {}: unchanged".format(DEVICE_POLICY))
        recorded.update(name=DEVICE_POLICY, hash=digest)
        ctx.state.save()

    def _ensure_device(self, name: str) -> None:
        ctx, api = self.ctx, self.ctx.api
        devices = section(self.record, "devices")
        recorded = devices.get(name) if isinstance(devices.get(name), dict) else {}
        found = api.find(
            "iot",
            "DescribeThing",
            {"thingName": name},
            dry={"thingArn": recorded["arn"]} if recorded.get("arn") else None,
        )
        if found is None:
            arn = api.call(
                "iot",
                "CreateThing",
                {"thingName": name},
                dry={"thingArn": thing_arn(ctx.region, ctx.account, name)},
            )["thingArn"]
            recorded = dict(recorded, created=True, principal="")  # a new thing has no principal
            ctx.note("thing {}: created".format(name))
        else:
            arn = found["thingArn"]
        recorded["arn"] = arn
        devices[name] = recorded
        ctx.state.save()
        if not recorded.get("cert_arn"):
            self._create_certificate(name, recorded)
        if recorded.get("policy_on") != recorded["cert_arn"]:
            api.call(
                "iot", "AttachPolicy", {"policyName": DEVICE_POLICY, "target": recorded["cert_arn"]}
            )
            recorded["policy_on"] = recorded["cert_arn"]
            ctx.state.save()
        if recorded.get("principal") != recorded["cert_arn"]:
            api.call(
                "iot",
                "AttachThingPrincipal",
                {"thingName": name, "principal": recorded["cert_arn"]},
            )
            recorded["principal"] = recorded["cert_arn"]
            ctx.state.save()

    def _create_certificate(self, name: str, recorded: Dict[str, Any]) -> None:
        ctx, api = self.ctx, self.ctx.api
        response = api.call(
            "iot",
            "CreateKeysAndCertificate",
            {"setAsActive": True},
            dry={
                "certificateArn": certificate_arn(ctx.region, ctx.account, PLACEHOLDER_CERT_ID),
                "certificateId": PLACEHOLDER_CERT_ID,
            },
        )
        directory = self.certs_dir / name
        if api.dry_run:
            ctx.out("  [dry-run] would write {}/cert.pem and private.key (0600)".format(directory))
        else:
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
            write_private(directory / "cert.pem", response["certificatePem"])
            write_private(directory / "private.key", response["keyPair"]["PrivateKey"])
            ctx.note("thing {}: certificate and key written to {}/".format(name, directory))
        recorded.update(
            cert_arn=response["certificateArn"],
            cert_id=response["certificateId"],
            dir=str(directory),
        )
        ctx.state.save()

    # -- association with the core -------------------------------------------------------

    def _associated(self, core: str) -> Set[str]:
        """The client devices associated with ``core`` now (all pages)."""
        api, names = self.ctx.api, set()
        recorded = self.record.get("associated_with") == core
        params: Dict[str, Any] = {"coreDeviceThingName": core}
        while True:
            page = api.call(
                "greengrassv2",
                "ListClientDevicesAssociatedWithCoreDevice",
                params,
                dry={
                    "associatedClientDevices": [{"thingName": d} for d in self.devices if recorded]
                },
            )
            names.update(d["thingName"] for d in page.get("associatedClientDevices", []))
            if not page.get("nextToken"):
                return names
            params = dict(params, nextToken=page["nextToken"])

    def associate(self, core: str) -> None:
        """Associate every Pi not yet associated with ``core``; refuse a partial answer."""
        ctx, api = self.ctx, self.ctx.api
        associated = self._associated(core)
        missing = [d for d in self.devices if d not in associated]
        for start in range(0, len(missing), ASSOCIATE_BATCH):
            batch = missing[start : start + ASSOCIATE_BATCH]
            response = api.call(
                "greengrassv2",
                ASSOCIATE,
                {"coreDeviceThingName": core, "entries": [{"thingName": d} for d in batch]},
                dry={"errorEntries": []},
            )
            errors = response.get("errorEntries") or []
            if errors:
                first = errors[0]
                raise DeployError(
                    "greengrassv2.{} refused {} of {} Pis, first {}: {} {}".format(
                        ASSOCIATE,
                        len(errors),
                        len(batch),
                        first.get("thingName"),
                        first.get("code"),
                        first.get("message", ""),
                    ),
                    hint="re-run v2 up --site; the Pis already associated stay so",
                )
            ctx.note("{} Pis: associated with core device {}".format(len(batch), core))
        if not missing:
            ctx.out(
                "site {}: all {} Pis associated with {}".format(self.site, len(self.devices), core)
            )
        self.record["associated_with"] = core
        ctx.state.save()
