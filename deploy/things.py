"""The core's AWS IoT identity: thing, certificate and key, IoT policy; and their removal.

Used by the V1 deployer (records at the top of the state file) and the V2
deployer (records under ``v2``): ``record`` is where ``thing``,
``certificate`` and ``policy`` are kept. The private key is written to the
certs directory (0700, files 0600) and never printed, logged or recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, MutableMapping, Optional

from .context import RunContext, section, state_entry
from .definitions import content_hash
from .naming import PLACEHOLDER_CERT_ID, certificate_arn, thing_arn

MAX_POLICY_VERSIONS = 5  # AWS IoT keeps at most five versions of a policy


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read, whatever the umask."""
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


class CoreThing:
    def __init__(self, ctx: RunContext, record: MutableMapping[str, Any], certs_dir: Path) -> None:
        self.ctx = ctx
        self.record = record
        self.certs_dir = Path(certs_dir)

    # -- thing ---------------------------------------------------------------------

    def ensure_thing(self, name: str) -> str:
        api = self.ctx.api
        recorded = state_entry(self.record, "thing")
        ours = recorded.get("name") == name
        found = api.find(
            "iot",
            "DescribeThing",
            {"thingName": name},
            dry={"thingArn": recorded["arn"]} if ours and recorded.get("arn") else None,
        )
        if found:
            arn = found["thingArn"]
            created = bool(ours and recorded.get("created"))
            self.ctx.out("thing {}: exists".format(name))
        else:
            arn = api.call(
                "iot",
                "CreateThing",
                {"thingName": name},
                dry={"thingArn": thing_arn(self.ctx.region, self.ctx.account, name)},
            )["thingArn"]
            created = True
            self.ctx.note("thing {}: created".format(name))
        previous = recorded if ours else {}
        self.record["thing"] = dict(previous, name=name, arn=arn, created=created)
        self.ctx.state.save()
        return arn

    def endpoint(self, endpoint_type: str, key: str) -> str:
        """An account endpoint (``iot:Data-ATS``, ``iot:CredentialProvider``), recorded once."""
        if self.record.get(key):
            return str(self.record[key])
        response = self.ctx.api.call(
            "iot",
            "DescribeEndpoint",
            {"endpointType": endpoint_type},
            dry={
                "endpointAddress": "PLACEHOLDER-{}.iot.{}.amazonaws.com".format(
                    "credentials" if "Credential" in endpoint_type else "ats", self.ctx.region
                )
            },
        )
        if not self.ctx.api.dry_run:
            self.record[key] = response["endpointAddress"]
            self.ctx.state.save()
        return str(response["endpointAddress"])

    # -- certificate ---------------------------------------------------------------------

    def ensure_certificate(self) -> str:
        """The ARN of an active certificate whose key is in the certs directory."""
        api = self.ctx.api
        recorded = state_entry(self.record, "certificate")
        if recorded.get("id"):
            found = api.find(
                "iot",
                "DescribeCertificate",
                {"certificateId": recorded["id"]},
                dry={"certificateDescription": {"status": "ACTIVE"}},
            )
            status = (found or {}).get("certificateDescription", {}).get("status")
            if status == "ACTIVE":
                key = Path(recorded.get("dir", self.certs_dir)) / recorded.get("key_file", "")
                if not api.dry_run and not key.is_file():
                    self.ctx.out(
                        "warning: the certificate's private key {} is not here; the core "
                        "needs it (it is never downloadable again)".format(key)
                    )
                self.ctx.out("certificate {}: active".format(recorded["id"][:10]))
                return str(recorded["arn"])
            self.ctx.out(
                "certificate {} is {}: creating a new one".format(
                    recorded["id"][:10], status or "gone"
                )
            )
            if found is not None:
                self._retire_certificate(str(recorded["arn"]), recorded["id"])
        response = api.call(
            "iot",
            "CreateKeysAndCertificate",
            {"setAsActive": True},
            dry={
                "certificateArn": certificate_arn(
                    self.ctx.region, self.ctx.account, PLACEHOLDER_CERT_ID
                ),
                "certificateId": PLACEHOLDER_CERT_ID,
            },
        )
        cert_id = response["certificateId"]
        prefix = cert_id[:10]
        cert_file, key_file = prefix + ".cert.pem", prefix + ".private.key"
        certs_dir = self.certs_dir
        if api.dry_run:
            self.ctx.out(
                "  [dry-run] would write {}/{} and {} (mode 0600)".format(
                    certs_dir, cert_file, key_file
                )
            )
        else:
            certs_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(certs_dir, 0o700)
            write_private(certs_dir / cert_file, response["certificatePem"])
            write_private(certs_dir / key_file, response["keyPair"]["PrivateKey"])
            self.ctx.note(
                "certificate {}: created; certificate and private key written to {}/ (mode "
                "0600; copy both to the core)".format(prefix, certs_dir)
            )
        self.record["certificate"] = {
            "arn": response["certificateArn"],
            "id": cert_id,
            "dir": str(certs_dir),
            "cert_file": cert_file,
            "key_file": key_file,
        }
        self.ctx.state.save()
        return str(response["certificateArn"])

    def _retire_certificate(self, cert_arn: str, cert_id: str) -> None:
        """Detach and delete a replaced certificate, so nothing still refers to it and
        the policy and the thing can be deleted later."""
        api, ctx = self.ctx.api, self.ctx
        attached = api.find(
            "iot", "ListAttachedPolicies", {"target": cert_arn}, dry={"policies": []}
        )
        for policy in (attached or {}).get("policies", []):
            ctx.delete_if_present(
                "iot", "DetachPolicy", {"policyName": policy["policyName"], "target": cert_arn}
            )
        things = api.find("iot", "ListPrincipalThings", {"principal": cert_arn}, dry={"things": []})
        for thing in (things or {}).get("things", []):
            ctx.delete_if_present(
                "iot", "DetachThingPrincipal", {"thingName": thing, "principal": cert_arn}
            )
        ctx.delete_if_present(
            "iot", "UpdateCertificate", {"certificateId": cert_id, "newStatus": "INACTIVE"}
        )
        ctx.delete_if_present("iot", "DeleteCertificate", {"certificateId": cert_id})
        ctx.note("certificate {}: detached and deleted (replaced)".format(cert_id[:10]))

    # -- policy ------------------------------------------------------------------------

    def ensure_policy(self, name: str, document: Dict[str, Any], cert_arn: str) -> None:
        """Create or update the policy, attach it to the certificate, the certificate to the thing."""
        api = self.ctx.api
        policy = section(self.record, "policy")
        digest = content_hash(document)
        ours = policy.get("name") == name
        found = api.find(
            "iot",
            "GetPolicy",
            {"policyName": name},
            dry=(
                {"policyDocument": json.dumps(document) if policy.get("hash") == digest else "{}"}
                if ours
                else None
            ),
        )
        text = json.dumps(document, indent=2)
        if found is None:
            api.call("iot", "CreatePolicy", {"policyName": name, "policyDocument": text})
            self.ctx.note("policy {}: created".format(name))
        elif json.loads(found["policyDocument"]) != document:
            versions = api.call(
                "iot", "ListPolicyVersions", {"policyName": name}, dry={"policyVersions": []}
            ).get("policyVersions", [])
            if len(versions) >= MAX_POLICY_VERSIONS:
                old = sorted(
                    (v for v in versions if not v.get("isDefaultVersion")),
                    key=lambda v: int(v["versionId"]),
                )
                api.call(
                    "iot",
                    "DeletePolicyVersion",
                    {"policyName": name, "policyVersionId": old[0]["versionId"]},
                )
            api.call(
                "iot",
                "CreatePolicyVersion",
                {"policyName": name, "policyDocument": text, "setAsDefault": True},
            )
            self.ctx.note("policy {}: new default version".format(name))
        else:
            self.ctx.out("policy {}: unchanged".format(name))
        policy.update(name=name, hash=digest)
        if policy.get("attached_to") != cert_arn:
            api.call("iot", "AttachPolicy", {"policyName": name, "target": cert_arn})
            policy["attached_to"] = cert_arn
        thing = self.record["thing"]
        if thing.get("principal") != cert_arn:
            api.call(
                "iot", "AttachThingPrincipal", {"thingName": thing["name"], "principal": cert_arn}
            )
            thing["principal"] = cert_arn
        self.ctx.state.save()

    # -- teardown ----------------------------------------------------------------------

    def destroy(self, keep_certs: bool) -> None:
        """Detach, deactivate and delete what ensure_* made (a thing not created here stays)."""
        ctx, record = self.ctx, self.record
        cert, policy = state_entry(record, "certificate"), state_entry(record, "policy")
        thing = state_entry(record, "thing")
        cert_arn: Optional[str] = cert.get("arn")
        if cert_arn and policy.get("attached_to") == cert_arn:
            ctx.delete_if_present(
                "iot", "DetachPolicy", {"policyName": policy["name"], "target": cert_arn}
            )
            policy.pop("attached_to", None)
        if cert_arn and thing.get("principal") == cert_arn:
            ctx.delete_if_present(
                "iot", "DetachThingPrincipal", {"thingName": thing["name"], "principal": cert_arn}
            )
            thing.pop("principal", None)
        ctx.state.save()
        if cert.get("id"):
            ctx.delete_if_present(
                "iot", "UpdateCertificate", {"certificateId": cert["id"], "newStatus": "INACTIVE"}
            )
            ctx.delete_if_present("iot", "DeleteCertificate", {"certificateId": cert["id"]})
            ctx.note("certificate {}: deactivated and deleted".format(cert["id"][:10]))
            if not keep_certs and not ctx.api.dry_run:
                for key in ("cert_file", "key_file"):
                    path = Path(cert.get("dir", self.certs_dir)) / cert.get(key, "")
                    if cert.get(key) and path.is_file():
                        path.unlink()
                ctx.note("local certificate and key files removed")
            record.pop("certificate", None)
            ctx.state.save()
        if policy.get("name"):
            self._delete_policy(policy["name"])
            record.pop("policy", None)
            ctx.state.save()
        if thing.get("name"):
            if thing.get("created"):
                ctx.delete_if_present("iot", "DeleteThing", {"thingName": thing["name"]})
                ctx.note("thing {}: deleted".format(thing["name"]))
            else:
                ctx.out("thing {}: not created by up, left in place".format(thing["name"]))
            record.pop("thing", None)
            ctx.state.save()

    def _delete_policy(self, name: str) -> None:
        versions = (
            self.ctx.api.find(
                "iot", "ListPolicyVersions", {"policyName": name}, dry={"policyVersions": []}
            )
            or {}
        )
        for version in versions.get("policyVersions", []):
            if not version.get("isDefaultVersion"):
                self.ctx.delete_if_present(
                    "iot",
                    "DeletePolicyVersion",
                    {"policyName": name, "policyVersionId": version["versionId"]},
                )
        self.ctx.delete_if_present("iot", "DeletePolicy", {"policyName": name})
        self.ctx.note("policy {}: deleted".format(name))
