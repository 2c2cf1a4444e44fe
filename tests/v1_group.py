"""A Greengrass V1 group as a core holds it after a deployment: its definitions, read.

The tests' V1 core (``v1_core.V1CoreStandIn``) decides with it what a real core
decides from the deployed group version (AWS IoT Greengrass V1 Developer Guide):

* **Routing** ("Managed subscriptions in the MQTT messaging workflow"; API reference,
  ``Subscription``): a message goes only where a subscription whose ``Source`` is the
  publisher and whose ``Subject`` matches the topic sends it; ``+`` matches one level,
  ``#`` any number and only as the last level. A message no subscription matches is
  dropped, and the publisher is not told.
* **Secrets** ("Deploy secrets to the AWS IoT Greengrass core", "Working with secret
  resources"): a secret resource's value is "made available to affiliated connectors
  and Lambda functions": a function must list the resource in its
  ``Environment.ResourceAccessPolicies`` to get it.
* **Variables**: a function's ``Environment.Variables`` are its process' environment.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Set

from agent.greengrass.routing import topic_matches


class V1Group:
    """The function, resource and subscription definitions of one group version."""

    def __init__(
        self,
        functions: Iterable[Mapping[str, Any]],
        subscriptions: Iterable[Mapping[str, Any]] = (),
        resources: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.functions = {f["FunctionArn"]: dict(f) for f in functions}
        self.subscriptions = [dict(s) for s in subscriptions]
        self.resources = {r["Id"]: dict(r) for r in resources}

    @classmethod
    def from_definitions(cls, definitions: Mapping[str, Any]) -> V1Group:
        """From ``{"function": ..., "subscription": ..., "resource": ...}`` (the definitions'
        versions, as ``deploy v1 plan`` writes them)."""
        return cls(
            definitions["function"]["Functions"],
            (definitions.get("subscription") or {}).get("Subscriptions", []),
            (definitions.get("resource") or {}).get("Resources", []),
        )

    def function_arn(self, function: str) -> str:
        """The qualified ARN of a function given by its definition ``Id`` or its ARN."""
        if function in self.functions:
            return function
        for arn, entry in self.functions.items():
            if entry.get("Id") == function:
                return arn
        raise KeyError(
            "{!r} is not a function of this group (functions: {})".format(
                function, ", ".join(str(f.get("Id")) for f in self.functions.values())
            )
        )

    def route(self, source: str, topic: str) -> List[str]:
        """Where a message from ``source`` on ``topic`` goes: each target once, in table order."""
        targets: List[str] = []
        for sub in self.subscriptions:
            if (
                sub["Source"] == source
                and topic_matches(sub["Subject"], topic)
                and sub["Target"] not in targets
            ):
                targets.append(sub["Target"])
        return targets

    def secret_arns(self, function_arn: str) -> Set[str]:
        """The secrets the function may read: the secret resources its access policies name."""
        environment = self.functions.get(function_arn, {}).get("FunctionConfiguration", {})
        policies = (environment.get("Environment") or {}).get("ResourceAccessPolicies") or []
        arns: Set[str] = set()
        for policy in policies:
            resource = self.resources.get(policy.get("ResourceId"), {})
            data = resource.get("ResourceDataContainer", {}).get("SecretsManagerSecretResourceData")
            if data:
                arns.add(data["ARN"])
        return arns

    def variables(self, function_arn: str) -> Dict[str, str]:
        configuration = self.functions.get(function_arn, {}).get("FunctionConfiguration", {})
        return dict((configuration.get("Environment") or {}).get("Variables") or {})


def one_function_group(
    function_arn: str,
    subjects: Iterable[str],
    target: str = "cloud",
    secrets: Optional[Mapping[str, str]] = None,
) -> V1Group:
    """A group of one function whose messages on ``subjects`` go to ``target``, reading
    ``secrets`` (resource id -> ARN): for code that is not this project's topology."""
    resources = [
        {
            "Id": rid,
            "Name": rid,
            "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": arn}},
        }
        for rid, arn in (secrets or {}).items()
    ]
    function = {
        "Id": "function",
        "FunctionArn": function_arn,
        "FunctionConfiguration": {
            "Environment": {
                "ResourceAccessPolicies": [
                    {"ResourceId": r["Id"], "Permission": "ro"} for r in resources
                ]
            }
        },
    }
    subscriptions = [
        {"Id": "s{}".format(i), "Source": function_arn, "Subject": subject, "Target": target}
        for i, subject in enumerate(subjects)
    ]
    return V1Group([function], subscriptions, resources)
