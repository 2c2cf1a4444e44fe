"""The tests' V2 nucleus, continued: IPC authorization as the real nucleus decides it.

Each rule below is the runtime's, read in its source (aws-greengrass-nucleus,
``src/main/java/com/aws/greengrass/authorization/``, and the services that call it):

* **Deny by default.** ``AuthorizationHandler.isAuthorized`` looks the request up
  as (service, component, operation, resource), then with the operation ``*``,
  and throws ``AuthorizationException`` ("Principal X is not authorized to perform
  service:operation on resource R") when no permission is present; the services
  answer ``UnauthorizedError``. A component with no ``accessControl`` has no
  permission at all.
* **Where policies come from.** ``AuthorizationPolicyParser.parseAllAuthorizationPolicies``
  reads ``services.<component>.configuration.accessControl``: the component's
  running configuration (recipe defaults, then the deployment's reset and merge),
  ``{service: {policy id: {operations, resources}}}``; a policy's principal is the
  component itself; a policy with no operations is skipped.
* **Resource patterns** (``AuthorizationModule.validateResource``, ``WildcardTrie``):
  ``*`` matches any run of characters (``/`` included) anywhere in a pattern;
  ``${*}``, ``${$}`` and ``${?}`` stand for the character itself; a bare ``?`` or
  another ``${c}`` makes the permission invalid (logged and not added); an empty
  resource likewise.
* **MQTT wildcards only for IoT Core.** ``MqttProxyIPCAgent.doAuthorization`` asks
  with ``ResourceLookupPolicy.MQTT_STYLE``: there ``#`` as the whole last level
  matches any remaining levels and the parent itself (``a/#`` matches ``a``), and
  ``+`` as a whole level matches one level; used any other way they are plain
  characters (``WildcardTrie.add``). Local pub/sub
  (``PubSubIPCEventStreamAgent.doAuthorization``), SecretManager
  (``SecretManagerIPCAgent.doAuthorization``) and ShadowManager
  (aws-greengrass-shadow-manager ``AuthorizationHandlerWrapper.doAuthorization``)
  use ``STANDARD``: ``+`` and ``#`` in a policy are literal characters, so a
  subscription to ``a/#`` needs a policy naming ``a/#`` (or a ``*``).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Pattern, Tuple

MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
PUBSUB = "aws.greengrass.ipc.pubsub"
SECRET_MANAGER = "aws.greengrass.SecretManager"
SHADOW_MANAGER = "aws.greengrass.ShadowManager"
ANY = "*"

# Which lookup each IPC service asks for (see the module doc).
MQTT_STYLE_SERVICES = frozenset({MQTT_PROXY})

_ESCAPABLE = "*$?"


def compile_resource(pattern: Any, mqtt_style: bool) -> Optional[Pattern[str]]:
    """The regular expression the nucleus' ``WildcardTrie`` amounts to for ``pattern``,
    or None where ``AuthorizationModule.validateResource`` refuses the resource."""
    if not isinstance(pattern, str) or not pattern:
        return None
    parts: List[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if pattern.startswith("${", i):
            if i + 3 < n and pattern[i + 3] == "}" and pattern[i + 2] in _ESCAPABLE:
                parts.append(re.escape(pattern[i + 2]))
                i += 4
                continue
            return None  # "Resource contains an invalid escape sequence"
        if char == "?":
            return None  # "The '?' character isn't supported as a wildcard"
        level_start = i == 0 or pattern[i - 1] == "/"
        level_end = i == n - 1 or pattern[i + 1] == "/"
        if char == "*":
            parts.append(".*")
        elif mqtt_style and char == "#" and i == n - 1 and level_start:
            if parts:  # "a/#" matches "a", "a/" and everything below
                parts[-1] = "(?:/.*)?"
            else:
                parts.append(".*")
        elif mqtt_style and char == "+" and level_start and level_end:
            parts.append("[^/]*")
        else:
            parts.append(re.escape(char))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


class Permission:
    """One (operation, resource pattern) a policy grants a component on a service."""

    __slots__ = ("operation", "pattern", "resource")

    def __init__(self, operation: str, resource: str, pattern: Pattern[str]) -> None:
        self.operation = operation
        self.resource = resource
        self.pattern = pattern

    def allows(self, operation: str, resource: str) -> bool:
        return self.operation in (operation, ANY) and self.pattern.fullmatch(resource) is not None


class AccessControl:
    """Every component's permissions, loaded from their ``accessControl`` configuration."""

    def __init__(self) -> None:
        # (service, component) -> permissions
        self._permissions: Dict[Tuple[str, str], List[Permission]] = {}
        self.rejected: List[str] = []  # what the nucleus would log as an invalid policy

    def load(self, component: str, acl: Optional[Mapping[str, Any]]) -> None:
        """Replace ``component``'s permissions with those ``acl`` grants."""
        for key in [k for k in self._permissions if k[1] == component]:
            del self._permissions[key]
        for service, policies in (acl or {}).items():
            granted = self._permissions.setdefault((service, component), [])
            for policy_id, policy in (policies or {}).items():
                operations = policy.get("operations") or []
                if not operations:
                    self.rejected.append("{} {}: no operations".format(component, policy_id))
                    continue
                for resource in policy.get("resources") or []:
                    pattern = compile_resource(resource, service in MQTT_STYLE_SERVICES)
                    if pattern is None:
                        self.rejected.append(
                            "{} {}: invalid resource {!r}".format(component, policy_id, resource)
                        )
                        continue
                    granted.extend(Permission(op, resource, pattern) for op in operations)

    def is_authorized(self, service: str, component: str, operation: str, resource: str) -> bool:
        return any(
            p.allows(operation, resource) for p in self._permissions.get((service, component), [])
        )

    def check(self, service: str, component: str, operation: str, resource: str) -> None:
        """Raise the model's ``UnauthorizedError`` with the nucleus' own wording."""
        if self.is_authorized(service, component, operation, resource):
            return
        from awsiot.greengrasscoreipc import model

        raise model.UnauthorizedError(
            message="Principal {} is not authorized to perform {}:{} on resource {}".format(
                component, service, operation, resource
            )
        )
