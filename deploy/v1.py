"""Greengrass V1: ``up``, ``status``, ``reset``, ``destroy`` with boto3.

``up`` creates or reuses, in order: the Lambda execution role, one Lambda
function per topology function (published version + alias), the ServiceNow
secret (only with ``--create-secret``), the core's IoT thing, its certificate
(key written to ``--certs-dir``, never printed), the Greengrass group and its
role, the scoped IoT policy (attached to the certificate; certificate attached
to the thing), the four definitions, a group version and a deployment.

Idempotency: the state file records every ARN/id and a content hash per
definition. A step whose content did not change makes no write call: no new
Lambda version (CodeSha256 and Handler/Runtime/Role are compared with the
version the alias points at), no new definition version, no new group version.
A deployment is created only when the group version changed, a Lambda alias
moved (Greengrass resolves aliases at deployment time), the last recorded
deployment failed or is unknown, or with ``--force-deploy``; otherwise the
last deployment's status is reported and nothing is deployed.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from botocore.exceptions import ClientError

from agent.topology import FunctionSpec, GroupTopology

from .awsapi import NOT_FOUND_CODES, Api, error_code
from .definitions import (
    build_documents,
    content_hash,
    group_version_params,
    validate_documents,
)
from .errors import DeployError, DeploymentFailed, DeploymentTimedOut
from .naming import (
    DEFAULT_ALIAS,
    DEFINITION_KINDS,
    LAMBDA_RUNTIME,
    PLACEHOLDER_ACCOUNT,
    PLACEHOLDER_CERT_ID,
    PLACEHOLDER_GROUP_ID,
    Names,
    Target,
    certificate_arn,
    lambda_arn,
    partition_for,
    role_arn,
    secret_arn,
    thing_arn,
)
from .package import PackageResult, build_packages
from .state import State

KIND_NAMES = {
    "core": "Core",
    "function": "Function",
    "resource": "Resource",
    "subscription": "Subscription",
}
# Order in which destroy removes definitions (subscriptions reference functions).
DESTROY_KINDS = ("subscription", "resource", "function", "core")

LAMBDA_BASIC_POLICY = "arn:{}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
GREENGRASS_RESOURCE_POLICY = (
    "arn:{}:iam::aws:policy/service-role/AWSGreengrassResourceAccessRolePolicy"
)

ROOT_CONFIG_NOTE = (
    "functions run as root (uid 0): the core's /greengrass/config/config.json needs "
    '"runtime": {"allowFunctionsToRunAsRoot": "yes"} '
    "(render-config adds it when the state says so); prefer a non-root --uid/--gid"
)

FAILURE_HINTS = (
    (
        "not configured to run lambdas with root permissions",
        'set "runtime": {"allowFunctionsToRunAsRoot": "yes"} in the core\'s config.json, '
        "or deploy without --run-as-root",
    ),
    (
        "TES service role is not associated",
        "re-run up with --create-service-role (or associate a Greengrass service role "
        "to the account in this region)",
    ),
    (
        "group config is invalid",
        "check the documents: python -m deploy plan --state <state> --out out/plan",
    ),
    (
        "secretsmanager",
        "the Greengrass service role must allow secretsmanager:GetSecretValue on the secret "
        "(AWSGreengrassResourceAccessRolePolicy covers secrets named greengrass-*)",
    ),
)
DEFAULT_FAILURE_HINT = "see /greengrass/ggc/var/log/system/runtime.log on the core"


def _trust_policy(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


@dataclass
class UpOptions:
    alias: str = DEFAULT_ALIAS
    thing_name: str = ""
    account: str = ""  # only used when AWS cannot be asked (dry-run)
    certs_dir: Path = Path("certs")
    package_dir: Path = Path("out") / "package"
    source_root: Optional[Path] = None
    site_packages: Optional[Path] = None
    strict_package: bool = False
    lambda_role_arn: str = ""
    group_role_arn: str = ""
    create_service_role: bool = False
    create_secret: bool = False
    secret_file: Optional[Path] = None
    run_as_root: bool = False
    deploy: bool = True
    force_deploy: bool = False
    wait: bool = True
    timeout: float = 300.0
    poll_interval: float = 5.0


def parse_secret_value(text: str, source: str) -> Dict[str, str]:
    """The ServiceNow secret: ``{"username", "password"}`` or OAuth ``client_id``/``client_secret``.

    Errors name the missing keys, never a value.
    """
    try:
        value = json.loads(text)
    except ValueError:
        raise DeployError(
            '{} is not JSON (expected {{"username": ..., "password": ...}})'.format(source)
        )
    if not isinstance(value, dict):
        raise DeployError("{} must hold a JSON object".format(source))
    basic = all(isinstance(value.get(k), str) and value.get(k) for k in ("username", "password"))
    oauth = all(
        isinstance(value.get(k), str) and value.get(k) for k in ("client_id", "client_secret")
    )
    if not (basic or oauth):
        raise DeployError(
            '{} needs non-empty "username" and "password" (or "client_id" and '
            '"client_secret" for OAuth); it has keys: {}'.format(
                source, ", ".join(sorted(value)) or "none"
            )
        )
    return {str(k): v for k, v in value.items()}


def read_secret_value(
    path: Optional[Path],
    prompt: Callable[[str], str] = getpass.getpass,
    interactive: Optional[bool] = None,
    out: Callable[[str], None] = print,
) -> Dict[str, str]:
    """From a file, else from a hidden prompt. Never from the command line."""
    if path is not None:
        path = Path(path)
        try:
            mode = path.stat().st_mode
            text = path.read_text()
        except OSError as exc:
            raise DeployError("cannot read --secret-file {}: {}".format(path, exc.strerror))
        if mode & 0o077:
            out("warning: {} is readable by other users; chmod 600 it".format(path))
        return parse_secret_value(text, str(path))
    interactive = sys.stdin.isatty() if interactive is None else interactive
    if not interactive:
        raise DeployError(
            "--create-secret needs --secret-file FILE or an interactive terminal to prompt",
            hint='FILE holds {"username": "...", "password": "..."}; keep it chmod 600',
        )
    username = prompt("ServiceNow username: ")
    password = prompt("ServiceNow password: ")
    return parse_secret_value(json.dumps({"username": username, "password": password}), "prompt")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


_DEF_ARN = re.compile(r"/definition/(\w+)/([^/]+)/versions/([^/]+)$")


class V1Deployer:
    def __init__(
        self,
        api: Api,
        topology: GroupTopology,
        state: State,
        options: Optional[UpOptions] = None,
        out: Callable[[str], None] = print,
        secret_reader: Optional[Callable[[Optional[Path]], Dict[str, str]]] = None,
    ) -> None:
        self.api = api
        self.topology = topology
        self.state = state
        self.opts = options or UpOptions()
        self.out = out
        self.secret_reader = secret_reader or (lambda p: read_secret_value(p, out=out))
        thing = self.opts.thing_name or state.get("thing", {}).get("name", "")
        self.names = Names.for_topology(topology, thing)
        self.region = api.region
        self.partition = partition_for(self.region)
        self.account = ""
        self.summary: List[str] = []

    # -- helpers ------------------------------------------------------------------

    def _note(self, text: str) -> None:
        """A change: printed, and remembered for the 'nothing changed' verdict."""
        self.summary.append(text)
        self.out(("(dry-run) would be: " if self.api.dry_run else "") + text)

    def _resolve_account(self) -> None:
        recorded = self.state.get("region"), self.state.get("account")
        if self.api.dry_run:
            self.account = self.opts.account or self.state.get("account") or PLACEHOLDER_ACCOUNT
            self.api.call("sts", "GetCallerIdentity", dry={"Account": self.account})
        else:
            self.account = self.api.call("sts", "GetCallerIdentity")["Account"]
        if recorded[0] and (recorded[0], recorded[1]) != (self.region, self.account):
            raise DeployError(
                "state file {} belongs to account {} in {}, not {} in {}".format(
                    self.state.path, recorded[1], recorded[0], self.account, self.region
                ),
                hint="use another --state file for another account or region",
            )
        self.state["region"] = self.region
        self.state["account"] = self.account
        self.state["alias"] = self.opts.alias

    def _ensure_role(
        self, kind: str, name: str, service: str, policies: List[str], given_arn: str
    ) -> str:
        roles = self.state.section("roles")
        if given_arn:
            roles[kind] = {"arn": given_arn, "created": False}
            self.state.save()
            return given_arn
        known = roles.get(kind) if isinstance(roles.get(kind), dict) else None
        found = self.api.find(
            "iam",
            "GetRole",
            {"RoleName": name},
            dry={"Role": {"Arn": known["arn"]}} if known else None,
        )
        attached: List[str] = []
        if found:
            arn = found["Role"]["Arn"]
            created = bool(known and known.get("created"))
            if created:  # ours: finish what an interrupted run started
                attached = list(known.get("policies", [])) if known else []
            else:
                attached = list(policies)  # not ours: leave its policies alone
            self.out("role {}: exists".format(name))
        else:
            response = self.api.call(
                "iam",
                "CreateRole",
                {
                    "RoleName": name,
                    "AssumeRolePolicyDocument": _trust_policy(service),
                    "Description": "edge-agent {} role (created by python -m deploy up)".format(
                        kind
                    ),
                },
                dry={"Role": {"Arn": role_arn(self.region, self.account, name)}},
            )
            arn = response["Role"]["Arn"]
            created = True
            self._note("role {}: created".format(name))
        roles[kind] = {"name": name, "arn": arn, "created": created, "policies": attached}
        self.state.save()
        for policy in policies:
            if policy not in attached:
                self.api.call("iam", "AttachRolePolicy", {"RoleName": name, "PolicyArn": policy})
                attached.append(policy)
                self.state.save()
        return arn

    # -- Lambda ---------------------------------------------------------------------

    def _ensure_function(self, spec: FunctionSpec, package: PackageResult, role: str) -> bool:
        """Create/update the function, publish if changed, point the alias. True if it moved."""
        functions = self.state.section("functions")
        known = functions.get(spec.id) if isinstance(functions.get(spec.id), dict) else {}
        name = spec.lambda_name
        alias = self.opts.alias
        desired = {
            "Runtime": LAMBDA_RUNTIME,
            "Handler": spec.executable,
            "Role": role,
            "Description": "edge-agent {} function (Greengrass V1; configured by the group's "
            "function definition)".format(spec.id),
        }
        compared = ("Runtime", "Handler", "Role")

        def dry_config(_params: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
            if not known:
                return None
            config = dict(desired, CodeSha256=known.get("code_sha256"), FunctionArn=known["arn"])
            return {"Configuration": config}

        current = self.api.find("lambda", "GetFunction", {"FunctionName": name}, dry=dry_config)
        code = package.path.read_bytes()
        if current is None:
            response = self.api.call(
                "lambda",
                "CreateFunction",
                dict(desired, FunctionName=name, Code={"ZipFile": code}, Publish=False),
                dry={"FunctionArn": lambda_arn(self.region, self.account, name)},
                # A role created seconds ago may not be assumable by Lambda yet.
                retry_on=[("InvalidParameterValueException", "cannot be assumed")],
            )
            function_arn = response["FunctionArn"]
            self.api.wait("lambda", "function_active_v2", {"FunctionName": name})
            self._note("lambda {}: created".format(name))
        else:
            config = current["Configuration"]
            function_arn = config["FunctionArn"]
            if config.get("CodeSha256") != package.code_sha256:
                self.api.call(
                    "lambda",
                    "UpdateFunctionCode",
                    {"FunctionName": name, "ZipFile": code, "Publish": False},
                )
                self.api.wait("lambda", "function_updated_v2", {"FunctionName": name})
                self._note("lambda {}: code updated".format(name))
            if any(config.get(k) != v for k, v in desired.items()):
                self.api.call(
                    "lambda", "UpdateFunctionConfiguration", dict(desired, FunctionName=name)
                )
                self.api.wait("lambda", "function_updated_v2", {"FunctionName": name})
                self._note("lambda {}: configuration updated".format(name))

        known_alias = known.get("alias") == alias and known.get("version")
        current_alias = self.api.find(
            "lambda",
            "GetAlias",
            {"FunctionName": name, "Name": alias},
            dry={"FunctionVersion": known["version"], "AliasArn": known.get("alias_arn")}
            if known_alias
            else None,
        )
        version = None
        if current_alias:
            pointed = current_alias["FunctionVersion"]
            version_config = self.api.find(
                "lambda",
                "GetFunction",
                {"FunctionName": name, "Qualifier": pointed},
                dry=dry_config,
            )
            config = (version_config or {}).get("Configuration", {})
            if config.get("CodeSha256") == package.code_sha256 and all(
                config.get(k) == desired[k] for k in compared
            ):
                version = pointed
        moved = version is None
        if version is None:
            previous = str(known.get("version", "0"))
            next_version = str(int(previous) + 1) if previous.isdigit() else "1"  # dry-run only
            response = self.api.call(
                "lambda",
                "PublishVersion",
                {"FunctionName": name, "CodeSha256": package.code_sha256},
                dry={"Version": next_version},
            )
            version = str(response["Version"])
            if current_alias:
                self.api.call(
                    "lambda",
                    "UpdateAlias",
                    {"FunctionName": name, "Name": alias, "FunctionVersion": version},
                )
            else:
                self.api.call(
                    "lambda",
                    "CreateAlias",
                    {
                        "FunctionName": name,
                        "Name": alias,
                        "FunctionVersion": version,
                        "Description": "what the Greengrass group deploys",
                    },
                )
            self._note(
                "lambda {}: published version {}, alias {} -> {}".format(
                    name, version, alias, version
                )
            )
        else:
            self.out("lambda {}: unchanged (alias {} -> version {})".format(name, alias, version))
        functions[spec.id] = {
            "name": name,
            "arn": function_arn,
            "version": version,
            "alias": alias,
            "alias_arn": lambda_arn(self.region, self.account, name, alias),
            "code_sha256": package.code_sha256,
        }
        self.state.save()
        return moved

    # -- secret ----------------------------------------------------------------------

    def _ensure_secrets(self) -> Dict[str, str]:
        secrets = self.state.section("secrets")
        arns: Dict[str, str] = {}
        value: Optional[Dict[str, str]] = None
        for secret in self.topology.secrets:
            known = secrets.get(secret.id) if isinstance(secrets.get(secret.id), dict) else None
            if not secret.secret_name.startswith("greengrass-"):
                self.out(
                    "warning: secret {!r} does not start with 'greengrass-': the default "
                    "Greengrass resource-access policy will not cover it".format(secret.secret_name)
                )
            if known:
                dry: Any = {"ARN": known["arn"]}
            elif self.opts.create_secret:
                dry = None
            else:
                dry = {"ARN": secret_arn(self.region, self.account, secret.secret_name)}
            found = self.api.find(
                "secretsmanager", "DescribeSecret", {"SecretId": secret.secret_name}, dry=dry
            )
            if found and found.get("DeletedDate"):
                raise DeployError(
                    "secret {} is scheduled for deletion; the core could not download it".format(
                        secret.secret_name
                    ),
                    hint="aws secretsmanager restore-secret --secret-id " + secret.secret_name,
                )
            if found:
                arn = found["ARN"]
                created = bool(known and known.get("created"))
                if self.opts.create_secret:
                    self.out(
                        "secret {}: exists, value left unchanged (update it in Secrets "
                        "Manager; the core gets it on the next deployment)".format(
                            secret.secret_name
                        )
                    )
            elif self.opts.create_secret:
                if value is None:
                    value = self.secret_reader(self.opts.secret_file)
                response = self.api.call(
                    "secretsmanager",
                    "CreateSecret",
                    {
                        "Name": secret.secret_name,
                        "Description": "ServiceNow credentials for the {} Greengrass group".format(
                            self.topology.name
                        ),
                        "SecretString": json.dumps(value),
                    },
                    dry={"ARN": secret_arn(self.region, self.account, secret.secret_name)},
                )
                arn = response["ARN"]
                created = True
                self._note("secret {}: created".format(secret.secret_name))
            else:
                raise DeployError(
                    "secret {!r} does not exist in {}".format(secret.secret_name, self.region),
                    hint="create it: up --create-secret --secret-file FILE "
                    '(FILE: {"username": ..., "password": ...}, chmod 600), or pass '
                    "--secret-name NAME",
                )
            secrets[secret.id] = {"name": secret.secret_name, "arn": arn, "created": created}
            arns[secret.id] = arn
            self.state.save()
        return arns

    # -- IoT -------------------------------------------------------------------------

    def _ensure_thing(self) -> str:
        known = self.state.get("thing") if isinstance(self.state.get("thing"), dict) else None
        name = self.names.thing
        found = self.api.find(
            "iot",
            "DescribeThing",
            {"thingName": name},
            dry={"thingArn": known["arn"]} if known and known.get("name") == name else None,
        )
        if found:
            arn = found["thingArn"]
            created = bool(known and known.get("name") == name and known.get("created"))
            self.out("thing {}: exists".format(name))
        else:
            arn = self.api.call(
                "iot",
                "CreateThing",
                {"thingName": name},
                dry={"thingArn": thing_arn(self.region, self.account, name)},
            )["thingArn"]
            created = True
            self._note("thing {}: created".format(name))
        previous = known if known and known.get("name") == name else {}
        self.state["thing"] = dict(previous, name=name, arn=arn, created=created)
        if not self.state.get("iot_endpoint"):
            response = self.api.call(
                "iot",
                "DescribeEndpoint",
                {"endpointType": "iot:Data-ATS"},
                dry={"endpointAddress": "PLACEHOLDER-ats.iot.{}.amazonaws.com".format(self.region)},
            )
            if not self.api.dry_run:
                self.state["iot_endpoint"] = response["endpointAddress"]
        self.state.save()
        return arn

    def _retire_certificate(self, cert_arn: str, cert_id: str) -> None:
        """Detach and delete a replaced certificate, so nothing still refers to it and
        ``destroy`` can delete the policy and the thing later."""
        attached = self.api.find(
            "iot", "ListAttachedPolicies", {"target": cert_arn}, dry={"policies": []}
        )
        for policy in (attached or {}).get("policies", []):
            self._gone(
                "iot", "DetachPolicy", {"policyName": policy["policyName"], "target": cert_arn}
            )
        things = self.api.find(
            "iot", "ListPrincipalThings", {"principal": cert_arn}, dry={"things": []}
        )
        for thing in (things or {}).get("things", []):
            self._gone("iot", "DetachThingPrincipal", {"thingName": thing, "principal": cert_arn})
        self._gone("iot", "UpdateCertificate", {"certificateId": cert_id, "newStatus": "INACTIVE"})
        self._gone("iot", "DeleteCertificate", {"certificateId": cert_id})
        self._note("certificate {}: detached and deleted (replaced)".format(cert_id[:10]))

    def _ensure_certificate(self) -> str:
        known = self.state.get("certificate")
        certs_dir = Path(self.opts.certs_dir)
        if isinstance(known, dict) and known.get("id"):
            found = self.api.find(
                "iot",
                "DescribeCertificate",
                {"certificateId": known["id"]},
                dry={"certificateDescription": {"status": "ACTIVE"}},
            )
            status = (found or {}).get("certificateDescription", {}).get("status")
            if status == "ACTIVE":
                key = Path(known.get("dir", certs_dir)) / known.get("key_file", "")
                if not self.api.dry_run and not key.is_file():
                    self.out(
                        "warning: the certificate's private key {} is not here; the core "
                        "needs it (it is never downloadable again)".format(key)
                    )
                self.out("certificate {}: active".format(known["id"][:10]))
                return str(known["arn"])
            self.out(
                "certificate {} is {}: creating a new one".format(
                    known["id"][:10], status or "gone"
                )
            )
            if found is not None:
                self._retire_certificate(str(known["arn"]), known["id"])
        response = self.api.call(
            "iot",
            "CreateKeysAndCertificate",
            {"setAsActive": True},
            dry={
                "certificateArn": certificate_arn(self.region, self.account, PLACEHOLDER_CERT_ID),
                "certificateId": PLACEHOLDER_CERT_ID,
            },
        )
        cert_id = response["certificateId"]
        prefix = cert_id[:10]
        cert_file, key_file = prefix + ".cert.pem", prefix + ".private.key"
        if self.api.dry_run:
            self.out(
                "  [dry-run] would write {}/{} and {} (mode 0600)".format(
                    certs_dir, cert_file, key_file
                )
            )
        else:
            certs_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(certs_dir, 0o700)
            _write_private(certs_dir / cert_file, response["certificatePem"])
            _write_private(certs_dir / key_file, response["keyPair"]["PrivateKey"])
            self._note(
                "certificate {}: created; certificate and private key written to {}/ (mode "
                "0600; copy both to /greengrass/certs/ on the Pi)".format(prefix, certs_dir)
            )
        self.state["certificate"] = {
            "arn": response["certificateArn"],
            "id": cert_id,
            "dir": str(certs_dir),
            "cert_file": cert_file,
            "key_file": key_file,
        }
        self.state.save()
        return str(response["certificateArn"])

    def _ensure_policy(self, document: Dict[str, Any], cert_arn: str) -> None:
        policy = self.state.section("policy")
        name = self.names.policy
        digest = content_hash(document)
        known = policy.get("name") == name
        found = self.api.find(
            "iot",
            "GetPolicy",
            {"policyName": name},
            dry=(
                {"policyDocument": json.dumps(document) if policy.get("hash") == digest else "{}"}
                if known
                else None
            ),
        )
        text = json.dumps(document, indent=2)
        if found is None:
            self.api.call("iot", "CreatePolicy", {"policyName": name, "policyDocument": text})
            self._note("policy {}: created".format(name))
        elif json.loads(found["policyDocument"]) != document:
            versions = self.api.call(
                "iot", "ListPolicyVersions", {"policyName": name}, dry={"policyVersions": []}
            ).get("policyVersions", [])
            if len(versions) >= 5:  # AWS keeps at most five versions
                old = sorted(
                    (v for v in versions if not v.get("isDefaultVersion")),
                    key=lambda v: int(v["versionId"]),
                )
                self.api.call(
                    "iot",
                    "DeletePolicyVersion",
                    {"policyName": name, "policyVersionId": old[0]["versionId"]},
                )
            self.api.call(
                "iot",
                "CreatePolicyVersion",
                {"policyName": name, "policyDocument": text, "setAsDefault": True},
            )
            self._note("policy {}: new default version".format(name))
        else:
            self.out("policy {}: unchanged".format(name))
        policy.update(name=name, hash=digest)
        if policy.get("attached_to") != cert_arn:
            self.api.call("iot", "AttachPolicy", {"policyName": name, "target": cert_arn})
            policy["attached_to"] = cert_arn
        thing = self.state["thing"]
        if thing.get("principal") != cert_arn:
            self.api.call(
                "iot", "AttachThingPrincipal", {"thingName": thing["name"], "principal": cert_arn}
            )
            thing["principal"] = cert_arn
        self.state.save()

    # -- Greengrass ------------------------------------------------------------------

    def _list_groups(self) -> List[Dict[str, Any]]:
        groups: List[Dict[str, Any]] = []
        token = None
        while True:
            params = {"NextToken": token} if token else {}
            response = self.api.call("greengrass", "ListGroups", params, dry={"Groups": []})
            groups.extend(response.get("Groups", []))
            token = response.get("NextToken")
            if not token:
                return groups

    def _ensure_group(self) -> Dict[str, Any]:
        known = self.state.get("group") if isinstance(self.state.get("group"), dict) else None
        name = self.names.group
        found = None
        if known and known.get("id"):
            found = self.api.find(
                "greengrass",
                "GetGroup",
                {"GroupId": known["id"]},
                dry={"Id": known["id"], "Arn": known.get("arn"), "Name": name},
            )
        adopted = False
        if found is None:
            matches = [g for g in self._list_groups() if g.get("Name") == name]
            if len(matches) > 1:
                raise DeployError(
                    "{} Greengrass groups are named {!r}; cannot tell which is ours".format(
                        len(matches), name
                    ),
                    hint="delete the extras or record the right one in the state file",
                )
            if matches:
                found, adopted = matches[0], True
                self.out("group {}: found by name ({})".format(name, found["Id"]))
        if found is None:
            found = self.api.call(
                "greengrass",
                "CreateGroup",
                {"Name": name},
                dry={
                    "Id": PLACEHOLDER_GROUP_ID,
                    "Arn": "arn:{}:greengrass:{}:{}:/greengrass/groups/{}".format(
                        self.partition, self.region, self.account, PLACEHOLDER_GROUP_ID
                    ),
                },
            )
            created = True
            self._note("group {}: created ({})".format(name, found["Id"]))
        else:
            created = bool(known and known.get("created")) if not adopted else False
            if not adopted:
                self.out("group {}: exists".format(name))
        group = dict(known or {}) if not adopted else {}
        group.update(name=name, id=found["Id"], arn=found.get("Arn"), created=created)
        self.state["group"] = group
        self.state.save()
        if adopted and not self.state.get("definitions") and found.get("LatestVersion"):
            self._adopt_latest_version(found)
        return group

    def _adopt_latest_version(self, group: Mapping[str, Any]) -> None:
        """State lost but group found: record the definitions its latest version uses."""
        version = self.api.call(
            "greengrass",
            "GetGroupVersion",
            {"GroupId": group["Id"], "GroupVersionId": group["LatestVersion"]},
        )
        definition = version.get("Definition", {})
        adopted: Dict[str, Dict[str, Any]] = {}
        for kind in DEFINITION_KINDS:
            arn = definition.get("{}DefinitionVersionArn".format(KIND_NAMES[kind]))
            match = _DEF_ARN.search(arn or "")
            if not match:
                continue
            def_id, version_id = match.group(2), match.group(3)
            found = self.api.find(
                "greengrass",
                "Get{}DefinitionVersion".format(KIND_NAMES[kind]),
                {
                    "{}DefinitionId".format(KIND_NAMES[kind]): def_id,
                    "{}DefinitionVersionId".format(KIND_NAMES[kind]): version_id,
                },
            )
            if found is not None:
                adopted[kind] = {
                    "id": def_id,
                    "version_id": version_id,
                    "version_arn": arn,
                    "hash": content_hash(found.get("Definition", {})),
                }
        if adopted:
            self.state["definitions"] = adopted
            if len(adopted) == len(DEFINITION_KINDS):
                params = group_version_params(
                    group["Id"], {k: v["version_arn"] for k, v in adopted.items()}
                )
                self.state["group_version"] = {
                    "id": group["LatestVersion"],
                    "arn": group.get("LatestVersionArn"),
                    "hash": content_hash(params),
                }
            self.state.save()

    def _ensure_group_role(self, group: Dict[str, Any]) -> None:
        arn = self._ensure_role(
            "group",
            self.names.group_role,
            "greengrass.amazonaws.com",
            [],
            self.opts.group_role_arn,
        )
        if group.get("role_arn") != arn:
            self.api.call(
                "greengrass", "AssociateRoleToGroup", {"GroupId": group["id"], "RoleArn": arn}
            )
            group["role_arn"] = arn
            self.state.save()
            self._note("group role {}: associated".format(arn.rsplit("/", 1)[-1]))

    def _ensure_service_role(self) -> None:
        arn = self._ensure_role(
            "service",
            self.names.service_role,
            "greengrass.amazonaws.com",
            [GREENGRASS_RESOURCE_POLICY.format(self.partition)],
            "",
        )
        role = self.state.section("roles")["service"]
        # One service role per account and region, shared by every group in it:
        # never replace somebody else's.
        current = self.api.find("greengrass", "GetServiceRoleForAccount", {}, dry={}) or {}
        if current.get("RoleArn") == arn:
            if not role.get("associated"):
                role["associated"] = True
                self.state.save()
            return
        if current.get("RoleArn"):
            raise DeployError(
                "the account already has Greengrass service role {}".format(current["RoleArn"]),
                hint="omit --create-service-role (that role serves every group in the account)",
            )
        self.api.call("greengrass", "AssociateServiceRoleToAccount", {"RoleArn": arn})
        role["associated"] = True
        self.state.save()
        self._note("Greengrass service role for the account: {}".format(arn))

    def _ensure_definition(self, kind: str, document: Dict[str, Any]) -> str:
        definitions = self.state.section("definitions")
        known = definitions.get(kind) if isinstance(definitions.get(kind), dict) else None
        digest = content_hash(document)
        label = KIND_NAMES[kind]
        if known and known.get("hash") == digest:
            self.out("{} definition: unchanged".format(kind))
            return str(known["version_arn"])
        fake_id = "dry-run-{}-definition".format(kind)
        if known:
            try:
                response = self.api.call(
                    "greengrass",
                    "Create{}DefinitionVersion".format(label),
                    dict(document, **{"{}DefinitionId".format(label): known["id"]}),
                    dry={
                        "Arn": "{}/versions/NEW".format(known.get("arn", fake_id)),
                        "Version": "NEW",
                    },
                )
                known.update(
                    version_id=response["Version"], version_arn=response["Arn"], hash=digest
                )
                self._note("{} definition: new version".format(kind))
                self.state.save()
                return str(response["Arn"])
            except ClientError as exc:
                if error_code(exc) not in (
                    "NotFoundException",
                    "ResourceNotFoundException",
                    "IdNotFoundException",
                    "BadRequestException",
                ):
                    raise
                self.out("{} definition {} is gone: creating a new one".format(kind, known["id"]))
        arn_base = "arn:{}:greengrass:{}:{}:/greengrass/definition/{}s/{}".format(
            self.partition, self.region, self.account, kind, fake_id
        )
        response = self.api.call(
            "greengrass",
            "Create{}Definition".format(label),
            {"Name": self.names.definition(kind), "InitialVersion": document},
            dry={
                "Id": fake_id,
                "Arn": arn_base,
                "LatestVersion": "NEW",
                "LatestVersionArn": arn_base + "/versions/NEW",
            },
        )
        definitions[kind] = {
            "id": response["Id"],
            "arn": response["Arn"],
            "version_id": response["LatestVersion"],
            "version_arn": response["LatestVersionArn"],
            "hash": digest,
        }
        self._note("{} definition: created".format(kind))
        self.state.save()
        return str(response["LatestVersionArn"])

    def _ensure_group_version(self, group_id: str, version_arns: Mapping[str, str]) -> str:
        params = group_version_params(group_id, version_arns)
        digest = content_hash(params)
        known = self.state.get("group_version")
        if isinstance(known, dict) and known.get("hash") == digest:
            self.out("group version: unchanged ({})".format(known["id"]))
            return str(known["id"])
        response = self.api.call(
            "greengrass", "CreateGroupVersion", params, dry={"Version": "NEW", "Arn": "NEW"}
        )
        self.state["group_version"] = {
            "id": response["Version"],
            "arn": response["Arn"],
            "hash": digest,
        }
        self.state.save()
        self._note("group version: created ({})".format(response["Version"]))
        return str(response["Version"])

    # -- deployment ------------------------------------------------------------------

    def _deployment_status(self, group_id: str, deployment_id: str, dry_status: str) -> Dict:
        return self.api.call(
            "greengrass",
            "GetDeploymentStatus",
            {"GroupId": group_id, "DeploymentId": deployment_id},
            dry={"DeploymentStatus": dry_status},
        )

    def wait_for_deployment(self, group_id: str, deployment_id: str) -> str:
        """Poll until Success (returned) or Failure/timeout (raised)."""
        deployment = self.state.section("deployment")
        if self.api.dry_run:
            self._deployment_status(group_id, deployment_id, "Success")
            self.out(
                "  [dry-run] would poll every {:g}s until Success or Failure, at most {:g}s".format(
                    self.opts.poll_interval, self.opts.timeout
                )
            )
            return "Success"
        deadline = self.api.now() + self.opts.timeout
        last = None
        while True:
            response = self._deployment_status(group_id, deployment_id, "Success")
            status = response.get("DeploymentStatus", "")
            if status != last:
                self.out("deployment {}: {}".format(deployment_id, status))
                last = status
            if deployment.get("id") == deployment_id:
                deployment["status"] = status
                self.state.save()
            if status == "Success":
                return status
            if status == "Failure":
                raise DeploymentFailed(
                    failure_text(deployment_id, response), hint=failure_hint(response)
                )
            remaining = deadline - self.api.now()
            if remaining <= 0:
                raise DeploymentTimedOut(
                    "deployment {} still {} after {:g}s".format(
                        deployment_id, status, self.opts.timeout
                    ),
                    hint="is the core running (sudo /greengrass/ggc/core/greengrassd start) and "
                    "online? check later with: python -m deploy status",
                )
            self.api.sleep(min(self.opts.poll_interval, remaining))

    def _deployed_versions(self) -> Dict[str, str]:
        """Function id → the Lambda version its alias points at now."""
        functions = self.state.get("functions", {})
        return {fid: str(f.get("version")) for fid, f in sorted(functions.items())}

    def _deploy(self, group_id: str, group_version_id: str, moved: List[str]) -> None:
        deployment = self.state.section("deployment")
        reason = ""
        if self.opts.force_deploy:
            reason = "--force-deploy"
        elif deployment.get("group_version_id") != group_version_id:
            reason = "new group version"
        elif moved:
            reason = "new Lambda version behind alias {} ({})".format(
                self.opts.alias, ", ".join(moved)
            )
        elif deployment.get("id") and deployment.get("lambda_versions") != (
            self._deployed_versions()
        ):
            # A version published by an earlier run that never deployed it
            # (--no-deploy, Ctrl-C, throttling before CreateDeployment).
            reason = "Lambda versions behind alias {} not deployed yet".format(self.opts.alias)
        elif not deployment.get("id"):
            reason = "never deployed"
        else:
            found = self.api.find(
                "greengrass",
                "GetDeploymentStatus",
                {"GroupId": group_id, "DeploymentId": deployment["id"]},
                dry={"DeploymentStatus": deployment.get("status") or "Success"},
            )
            status = (found or {}).get("DeploymentStatus")
            if status in ("Success", "InProgress", "Building"):
                deployment["status"] = status
                self.state.save()
                self.out(
                    "deployment: nothing changed; {} is {} (not redeploying; "
                    "--force-deploy to deploy anyway)".format(deployment["id"], status)
                )
                return
            reason = "last deployment {}".format(status or "not found")
        response = self.api.call(
            "greengrass",
            "CreateDeployment",
            {
                "GroupId": group_id,
                "GroupVersionId": group_version_id,
                "DeploymentType": "NewDeployment",
            },
            dry={"DeploymentId": "NEW", "DeploymentArn": "NEW"},
        )
        deployment.clear()
        deployment.update(
            id=response["DeploymentId"],
            arn=response.get("DeploymentArn"),
            group_version_id=group_version_id,
            lambda_versions=self._deployed_versions(),
            status="Building",
            reason=reason,
        )
        self.state.save()
        self._note("deployment {}: created ({})".format(response["DeploymentId"], reason))
        if self.opts.wait:
            self.wait_for_deployment(group_id, response["DeploymentId"])

    # -- commands ------------------------------------------------------------------

    def target(self) -> Target:
        functions = self.state.get("functions", {})
        secrets = self.state.get("secrets", {})
        return Target(
            region=self.region,
            account=self.account,
            thing_name=self.names.thing,
            certificate_arn=self.state["certificate"]["arn"],
            group_id=self.state["group"]["id"],
            alias=self.opts.alias,
            function_arns={fid: f["alias_arn"] for fid, f in functions.items()},
            secret_arns={rid: s["arn"] for rid, s in secrets.items()},
            run_as_root=self.opts.run_as_root,
        )

    def up(self) -> int:
        topology = self.topology
        if self.opts.run_as_root:
            topology = replace(topology, run_as_uid=0, run_as_gid=0)
            self.topology = topology
            self.out("note: " + ROOT_CONFIG_NOTE)
        self._resolve_account()
        self.out("packaging functions into {}".format(self.opts.package_dir))
        packages = build_packages(
            topology,
            Path(self.opts.package_dir),
            source_root=self.opts.source_root,
            site_packages=self.opts.site_packages,
            strict=self.opts.strict_package,
        )
        for package in packages.values():
            for warning in package.warnings:
                self.out("warning: {}: {}".format(package.path.name, warning))
        lambda_role = self._ensure_role(
            "lambda",
            self.names.lambda_role,
            "lambda.amazonaws.com",
            [LAMBDA_BASIC_POLICY.format(self.partition)],
            self.opts.lambda_role_arn,
        )
        moved = [
            spec.lambda_name
            for spec in topology.functions
            if self._ensure_function(spec, packages[spec.id], lambda_role)
        ]
        self._ensure_secrets()
        self._ensure_thing()
        cert_arn = self._ensure_certificate()
        group = self._ensure_group()
        self._ensure_group_role(group)
        if self.opts.create_service_role:
            self._ensure_service_role()
        documents = build_documents(topology, self.target())
        validate_documents(documents, self.names.policy)
        self._ensure_policy(documents.policy, cert_arn)
        version_arns = {
            kind: self._ensure_definition(kind, documents.definition(kind))
            for kind in DEFINITION_KINDS
        }
        group_version = self._ensure_group_version(group["id"], version_arns)
        self.state["run_as"] = {
            "uid": topology.run_as_uid,
            "gid": topology.run_as_gid,
            "root": self.opts.run_as_root,
        }
        self.state.save()
        if self.opts.deploy:
            self._deploy(group["id"], group_version, moved)
        else:
            self.out("deployment: skipped (--no-deploy)")
        if not self.summary:
            self.out("up: nothing changed")
        if not self.api.dry_run:
            self.out("state written to {}".format(self.state.path))
        return 0

    def _group_or_fail(self) -> Dict[str, Any]:
        group = self.state.get("group")
        if not isinstance(group, dict) or not group.get("id"):
            raise DeployError(
                "no Greengrass group in state file {}".format(self.state.path),
                hint="run python -m deploy up first, or pass the --state file it wrote",
            )
        return group

    def status(self) -> int:
        group = self._group_or_fail()
        info = self.api.find(
            "greengrass",
            "GetGroup",
            {"GroupId": group["id"]},
            dry={"LatestVersion": self.state.get("group_version", {}).get("id")},
        )
        if info is None:
            raise DeployError("group {} ({}) no longer exists".format(group["name"], group["id"]))
        latest = info.get("LatestVersion")
        recorded = self.state.get("group_version", {}).get("id")
        self.out("group: {} ({})".format(group.get("name"), group["id"]))
        self.out(
            "latest group version: {}{}".format(
                latest, "" if latest == recorded else " (state file records {})".format(recorded)
            )
        )
        for fid, function in sorted(self.state.get("functions", {}).items()):
            alias = self.api.find(
                "lambda",
                "GetAlias",
                {"FunctionName": function["name"], "Name": function["alias"]},
                dry={"FunctionVersion": function.get("version")},
            )
            self.out(
                "function {}: {}:{} -> version {}".format(
                    fid,
                    function["name"],
                    function["alias"],
                    (alias or {}).get("FunctionVersion", "missing"),
                )
            )
        deployments = self.api.call(
            "greengrass", "ListDeployments", {"GroupId": group["id"]}, dry={"Deployments": []}
        ).get("Deployments", [])
        if not deployments:
            self.out("deployment: none")
            return 0
        newest = max(deployments, key=lambda d: d.get("CreatedAt", ""))
        response = self._deployment_status(group["id"], newest["DeploymentId"], "Success")
        status = response.get("DeploymentStatus", "")
        self.out(
            "latest deployment: {} {} {} (created {})".format(
                newest["DeploymentId"],
                newest.get("DeploymentType", ""),
                status,
                newest.get("CreatedAt", ""),
            )
        )
        if status == "Failure":
            self.out(failure_text(newest["DeploymentId"], response))
            return DeploymentFailed.exit_code
        return 0

    def reset(self, force: bool = False) -> int:
        group = self._group_or_fail()
        try:
            response = self.api.call(
                "greengrass",
                "ResetDeployments",
                {"GroupId": group["id"], "Force": force},
                dry={"DeploymentId": "NEW"},
            )
        except ClientError as exc:
            if error_code(exc) in ("ResourceNotFoundException", "BadRequestException"):
                self.out(
                    "reset: nothing to reset ({})".format(exc.response["Error"].get("Message", ""))
                )
                return 0
            raise
        self.state["deployment"] = {
            "id": response["DeploymentId"],
            "type": "Reset",
            "status": "Building",
            "force": force,
        }
        self.state.save()
        self.out(
            "reset deployment {} ({})".format(
                response["DeploymentId"],
                "forced: cloud only" if force else "the core must acknowledge it",
            )
        )
        if not force and self.opts.wait:
            self.wait_for_deployment(group["id"], response["DeploymentId"])
        return 0

    # -- destroy ---------------------------------------------------------------------

    def _gone(self, service: str, operation: str, params: Dict[str, Any]) -> None:
        """A delete that tolerates 'already gone'."""
        try:
            self.api.call(service, operation, params)
        except ClientError as exc:
            if error_code(exc) not in NOT_FOUND_CODES:
                raise
            self.out("  {}.{}: already gone".format(service, operation))

    def destroy(
        self,
        force: bool = False,
        delete_secret: bool = False,
        recovery_days: int = 30,
        keep_certs: bool = False,
    ) -> int:
        state = self.state
        group = state.get("group")
        keep_definitions = False
        if isinstance(group, dict) and group.get("id"):
            if group.get("created"):
                self._destroy_group(group, force)
            else:
                # found by name, not created: its versions may use these definitions
                keep_definitions = True
                self.out(
                    "group {}: not created by up, left in place with its definitions".format(
                        group.get("name")
                    )
                )
            state.pop("group", None)
            state.pop("group_version", None)
            state.pop("deployment", None)
            state.save()
        for kind in DESTROY_KINDS:
            known = state.get("definitions", {}).get(kind)
            if known and not keep_definitions:
                label = KIND_NAMES[kind]
                self._gone(
                    "greengrass",
                    "Delete{}Definition".format(label),
                    {"{}DefinitionId".format(label): known["id"]},
                )
                del state["definitions"][kind]
                state.save()
        state.pop("definitions", None)
        self._destroy_iot(keep_certs)
        for fid, function in list(state.get("functions", {}).items()):
            self._gone(
                "lambda",
                "DeleteAlias",
                {"FunctionName": function["name"], "Name": function["alias"]},
            )
            self._gone("lambda", "DeleteFunction", {"FunctionName": function["name"]})
            del state["functions"][fid]
            state.save()
            self._note("lambda {}: deleted".format(function["name"]))
        state.pop("functions", None)
        for kind, role in list(state.get("roles", {}).items()):
            if role.get("created"):
                if kind == "service" and role.get("associated"):
                    current = (
                        self.api.find("greengrass", "GetServiceRoleForAccount", {}, dry={}) or {}
                    )
                    if current.get("RoleArn", "").endswith("/" + role["name"]):
                        self._gone("greengrass", "DisassociateServiceRoleFromAccount", {})
                for policy in role.get("policies", []):
                    self._gone(
                        "iam", "DetachRolePolicy", {"RoleName": role["name"], "PolicyArn": policy}
                    )
                self._gone("iam", "DeleteRole", {"RoleName": role["name"]})
                self._note("role {}: deleted".format(role["name"]))
            del state["roles"][kind]
            state.save()
        state.pop("roles", None)
        for rid, secret in list(state.get("secrets", {}).items()):
            if delete_secret:
                self._gone(
                    "secretsmanager",
                    "DeleteSecret",
                    {"SecretId": secret["arn"], "RecoveryWindowInDays": recovery_days},
                )
                self._note(
                    "secret {}: scheduled for deletion in {} days".format(
                        secret["name"], recovery_days
                    )
                )
                del state["secrets"][rid]
            else:
                self.out("secret {}: kept (--delete-secret to delete it)".format(secret["name"]))
        if not state.get("secrets"):
            state.pop("secrets", None)
        for key in ("iot_endpoint", "run_as", "alias"):
            state.pop(key, None)
        state.save()
        if self.api.dry_run:
            self.out("destroy (dry-run): nothing was changed")
        elif state.is_empty():
            state.remove()
            self.out("destroy: done; state file removed")
        else:
            self.out("destroy: done; {} keeps what is left".format(state.path))
        return 0

    def _destroy_group(self, group: Dict[str, Any], force: bool) -> None:
        group_id = group["id"]
        try:
            response = self.api.call(
                "greengrass",
                "ResetDeployments",
                {"GroupId": group_id, "Force": force},
                dry={"DeploymentId": "NEW"},
            )
            if not force:
                self.wait_for_deployment(group_id, response["DeploymentId"])
        except ClientError as exc:
            if error_code(exc) not in ("ResourceNotFoundException", "BadRequestException"):
                raise
            # never deployed, already reset, or gone
        except (DeploymentTimedOut, DeploymentFailed):
            raise DeployError(
                "the core did not complete the reset of group {}".format(group_id),
                hint="re-run destroy with --force (ForceResetDeployment, cloud side only)",
            )
        try:
            self.api.call("greengrass", "DeleteGroup", {"GroupId": group_id})
        except ClientError as exc:
            if error_code(exc) == "BadRequestException":
                raise DeployError(
                    "cannot delete group {}: {}".format(
                        group_id, exc.response["Error"].get("Message", "")
                    ),
                    hint="re-run destroy with --force to force-reset its deployments",
                )
            if error_code(exc) not in ("ResourceNotFoundException", "NotFoundException"):
                raise
        self._note("group {}: deleted".format(group.get("name")))

    def _destroy_iot(self, keep_certs: bool) -> None:
        state = self.state
        cert = state.get("certificate")
        policy = state.get("policy")
        thing = state.get("thing")
        cert_arn = cert.get("arn") if isinstance(cert, dict) else None
        if cert_arn and isinstance(policy, dict) and policy.get("attached_to") == cert_arn:
            self._gone("iot", "DetachPolicy", {"policyName": policy["name"], "target": cert_arn})
            policy.pop("attached_to", None)
        if cert_arn and isinstance(thing, dict) and thing.get("principal") == cert_arn:
            self._gone(
                "iot", "DetachThingPrincipal", {"thingName": thing["name"], "principal": cert_arn}
            )
            thing.pop("principal", None)
        state.save()
        if isinstance(cert, dict) and cert.get("id"):
            self._gone(
                "iot", "UpdateCertificate", {"certificateId": cert["id"], "newStatus": "INACTIVE"}
            )
            self._gone("iot", "DeleteCertificate", {"certificateId": cert["id"]})
            self._note("certificate {}: deactivated and deleted".format(cert["id"][:10]))
            if not keep_certs and not self.api.dry_run:
                for key in ("cert_file", "key_file"):
                    path = Path(cert.get("dir", self.opts.certs_dir)) / cert.get(key, "")
                    if cert.get(key) and path.is_file():
                        path.unlink()
                self._note("local certificate and key files removed")
            state.pop("certificate", None)
            state.save()
        if isinstance(policy, dict) and policy.get("name"):
            versions = (
                self.api.find(
                    "iot",
                    "ListPolicyVersions",
                    {"policyName": policy["name"]},
                    dry={"policyVersions": []},
                )
                or {}
            )
            for version in versions.get("policyVersions", []):
                if not version.get("isDefaultVersion"):
                    self._gone(
                        "iot",
                        "DeletePolicyVersion",
                        {"policyName": policy["name"], "policyVersionId": version["versionId"]},
                    )
            self._gone("iot", "DeletePolicy", {"policyName": policy["name"]})
            self._note("policy {}: deleted".format(policy["name"]))
            state.pop("policy", None)
            state.save()
        if isinstance(thing, dict) and thing.get("name"):
            if thing.get("created"):
                self._gone("iot", "DeleteThing", {"thingName": thing["name"]})
                self._note("thing {}: deleted".format(thing["name"]))
            else:
                self.out("thing {}: not created by up, left in place".format(thing["name"]))
            state.pop("thing", None)
            state.save()


def failure_text(deployment_id: str, response: Mapping[str, Any]) -> str:
    lines = [
        "deployment {} failed: {}".format(
            deployment_id, response.get("ErrorMessage") or "(no ErrorMessage)"
        )
    ]
    for detail in response.get("ErrorDetails") or []:
        lines.append(
            "  {}: {}".format(
                detail.get("DetailedErrorCode", "?"), detail.get("DetailedErrorMessage", "")
            )
        )
    return "\n".join(lines)


def failure_hint(response: Mapping[str, Any]) -> str:
    text = " ".join(
        [str(response.get("ErrorMessage", ""))]
        + [str(d.get("DetailedErrorMessage", "")) for d in response.get("ErrorDetails") or []]
    )
    for fragment, hint in FAILURE_HINTS:
        if fragment.lower() in text.lower():
            return hint
    return DEFAULT_FAILURE_HINT
