"""The tests' V2 nucleus, continued: the ``aws.greengrass.SecretManager`` component.

As aws-greengrass-secret-manager does it (``SecretManager.java``,
``SecretManagerIPCAgent.java``):

* it holds the secrets its ``cloudSecrets`` configuration names, keyed by ARN, and
  maps each one's *name* to its ARN from what it downloaded (``nameToArnMap``);
* a request's ``secretId`` is resolved first (``SecretManager.validateSecretId``):
  an ARN (``VALID_SECRET_ARN_PATTERN``) is taken as it is; a name becomes the ARN
  it maps to, else the configured ARN that is that name plus ``-`` and six
  characters (``doesSecretNameMatchWithConfiguredArn``), else the request fails
  with 404 "Secret not configured <id>" (``ResourceNotFoundError``) before any
  authorization;
* only then is the *ARN* authorized (``validateSecretIdAndDoAuthorization``): a
  policy naming the secret by name grants nothing;
* then the cache answers: a configured secret it could not download, a missing
  stage or version is 404 "Secret not found" / "Version stage ... not found";
  both a version id and a stage is a 400, which the IPC agent answers with
  ``ServiceError`` (only 404 becomes ``ResourceNotFoundError``).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, Optional

from v1_core import StoredSecret

# SecretManager.VALID_SECRET_ARN_PATTERN, matched whole (Pattern.matches).
VALID_SECRET_ARN = re.compile(
    r"arn:([^:]+):secretsmanager:[a-z0-9\-]+:[0-9]{12}:secret:([a-zA-Z0-9\\]+/)*"
    r"[a-zA-Z0-9/_+=,.@\-]+(-[a-zA-Z0-9]+)?"
)


def _name_matches_arn(name: str, arn: str) -> bool:
    """SecretManager.doesSecretNameMatchWithConfiguredArn."""
    pattern = ".*:secret:" + re.escape(name) + r"-[A-Za-z0-9]{6}(?::[A-Za-z0-9/_+=.@-]+)?$"
    return re.match(pattern, arn) is not None


class SecretManager:
    """The secrets in Secrets Manager (``cloud``, by name) and what this core was configured
    to download (``configured`` ARNs; None: every secret in the cloud, for tests that
    apply no deployment)."""

    def __init__(self) -> None:
        self.cloud: Dict[str, StoredSecret] = {}
        self.configured: Optional[list] = None

    def configure(self, cloud_secrets: Iterable[Any]) -> None:
        """The component's ``cloudSecrets`` (``[{"arn": ..., "labels": [...]}]``)."""
        self.configured = [entry.get("arn") for entry in cloud_secrets if isinstance(entry, dict)]

    def _downloaded(self) -> Dict[str, StoredSecret]:
        """ARN -> secret: the configured secrets the component could fetch."""
        held = {s.arn: s for s in self.cloud.values()}
        if self.configured is None:
            return held
        return {arn: held[arn] for arn in self.configured if arn in held}

    def arn_for(self, secret_id: str) -> str:
        """``validateSecretId``: the ARN a request's ``secretId`` stands for."""
        from awsiot.greengrasscoreipc import model

        if VALID_SECRET_ARN.fullmatch(secret_id):
            return secret_id
        for arn, secret in self._downloaded().items():
            if secret.name == secret_id:
                return arn
        configured = self.configured if self.configured is not None else list(self._downloaded())
        for arn in configured:
            if isinstance(arn, str) and _name_matches_arn(secret_id, arn):
                return arn
        raise model.ResourceNotFoundError(
            message="Secret not configured " + secret_id, resource_type="secret"
        )

    def get(
        self, secret_id: str, arn: str, version_id: Optional[str], stage: Optional[str]
    ) -> StoredSecret:
        """``getSecretFromCache``, after the request was authorized on ``arn``."""
        from awsiot.greengrasscoreipc import model

        if version_id and stage:
            raise model.ServiceError(message="Both versionId and Stage are set in the request")
        secret = self._downloaded().get(arn)
        if secret is None:
            problem = "Secret not found " + secret_id
        elif version_id and version_id != secret.version_id:
            problem = "Version Id {} not found for secret {}".format(version_id, secret_id)
        elif stage and stage not in secret.stages:
            problem = "Version stage {} not found for secret {}".format(stage, secret_id)
        elif not stage and not version_id and "AWSCURRENT" not in secret.stages:
            problem = "Secret not found " + secret_id
        else:
            return secret
        raise model.ResourceNotFoundError(message=problem, resource_type="secret")
