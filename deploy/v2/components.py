"""Greengrass V2 component versions: upload the artifact, create the version, wait until deployable.

Component versions are immutable: a version that exists with another recipe
or other code is an error asking for a new ``--component-version``; one that
exists unchanged is left alone.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Mapping, Sequence

from botocore.exceptions import ClientError

from ..awsapi import error_code
from ..context import RunContext, section
from ..definitions import content_hash
from ..errors import DeployError, DeploymentTimedOut
from .recipes import PLACEHOLDER_SECRET_MANAGER_VERSION, SECRET_MANAGER, SHADOW_MANAGER


def semver_key(text: str) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", text.split("-")[0])[:3])


class Components:
    def __init__(
        self, ctx: RunContext, record: Dict[str, Any], timeout: float, poll_interval: float
    ) -> None:
        self.ctx = ctx
        self.record = record  # the state's "v2" section
        self.timeout = timeout
        self.poll_interval = poll_interval

    def component_arn(self, name: str, version: str) -> str:
        return "arn:{}:greengrass:{}:{}:components:{}:versions:{}".format(
            self.ctx.partition, self.ctx.region, self.ctx.account, name, version
        )

    def public_component_version(self, name: str, given: str = "") -> str:
        """``given``, else the newest version of an AWS-provided component in this region."""
        if given:
            return given
        arn = "arn:{}:greengrass:{}:aws:components:{}".format(
            self.ctx.partition, self.ctx.region, name
        )
        response = self.ctx.api.call(
            "greengrassv2",
            "ListComponentVersions",
            {"arn": arn},
            dry={"componentVersions": [{"componentVersion": PLACEHOLDER_SECRET_MANAGER_VERSION}]},
        )
        versions = [v["componentVersion"] for v in response.get("componentVersions", [])]
        if not versions:
            raise DeployError(
                "cannot find {} versions in {}".format(name, self.ctx.region),
                hint="pass --secret-manager-version"
                if name == SECRET_MANAGER
                else "pass --shadow-manager-version"
                if name == SHADOW_MANAGER
                else "pass the version explicitly",
            )
        if self.ctx.api.dry_run:
            return versions[0]
        return max(versions, key=semver_key)

    def _wait_deployable(self, arn: str) -> None:
        api = self.ctx.api
        if api.dry_run:
            api.call("greengrassv2", "DescribeComponent", {"arn": arn})
            return
        deadline = api.now() + self.timeout
        while True:
            status = api.call("greengrassv2", "DescribeComponent", {"arn": arn}).get("status", {})
            state = status.get("componentState")
            if state == "DEPLOYABLE":
                return
            if state == "FAILED":
                raise DeployError(
                    "component {} failed: {} {}".format(
                        arn, status.get("message", ""), status.get("errors", {})
                    )
                )
            if api.now() >= deadline:
                raise DeploymentTimedOut("component {} still {}".format(arn, state))
            api.sleep(min(2.0, self.poll_interval))

    def ensure(
        self,
        name: str,
        recipe: Mapping[str, Any],
        artifacts: Sequence[Any],  # deploy.v2.plan.Artifact: path, key, sha256
        bucket: str,
    ) -> None:
        """Upload the recipe's artifacts to ``bucket`` and create the component version, once."""
        api, ctx = self.ctx.api, self.ctx
        components = section(self.record, "components")
        version = recipe["ComponentVersion"]
        arn = self.component_arn(name, version)
        # The code and the wheels are part of the component: a changed zip under the same
        # version must not pass as "unchanged".
        digest = content_hash({"recipe": recipe, "artifact_sha256": [a.sha256 for a in artifacts]})
        recorded = components.get(name, {})
        exists = api.find(
            "greengrassv2",
            "DescribeComponent",
            {"arn": arn},
            dry={"arn": arn} if recorded.get("version") == version else None,
        )
        if exists is not None:
            if recorded.get("version") == version and recorded.get("recipe_hash") == digest:
                ctx.out("component {} {}: unchanged".format(name, version))
                return
            raise DeployError(
                "component {} version {} already exists with a different recipe or code".format(
                    name, version
                ),
                hint="component versions are immutable: pass a new --component-version",
            )
        for artifact in artifacts:
            api.call(
                "s3",
                "PutObject",
                {"Bucket": bucket, "Key": artifact.key, "Body": artifact.path.read_bytes()},
            )
        try:
            response = api.call(
                "greengrassv2",
                "CreateComponentVersion",
                {"inlineRecipe": json.dumps(recipe, indent=2).encode("utf-8")},
                dry={"arn": arn},
            )
        except ClientError as exc:
            if error_code(exc) == "ConflictException":
                raise DeployError(
                    "component {} {} already exists".format(name, version),
                    hint="pass a new --component-version",
                )
            raise
        self._wait_deployable(response["arn"])
        components[name] = {
            "version": version,
            "recipe_hash": digest,
            "arn": response["arn"],
            "artifact": "s3://{}/{}".format(bucket, artifacts[0].key),
            "artifacts": ["s3://{}/{}".format(bucket, a.key) for a in artifacts],
        }
        ctx.state.save()
        ctx.note("component {} {}: created".format(name, version))
