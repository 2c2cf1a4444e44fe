"""The tests' V2 nucleus, continued: ShadowManager, component configuration, access control.

A mixin of :class:`v2_nucleus.FakeNucleus`:

* ``aws.greengrass#GetThingShadow`` / ``UpdateThingShadow``, served with the
  agent's shadow semantics module (``agent.greengrass.local_shadow``), and the
  answers, deltas and documents published on local pub/sub as binary JSON by
  ``aws.greengrass.ShadowManager``, as the real component does; errors are
  the IPC model's (``ResourceNotFoundError``, ``ConflictError``,
  ``InvalidArgumentsError``, ``ServiceError``);
* ``aws.greengrass#GetConfiguration`` / ``SubscribeToConfigurationUpdate`` on
  each component's configuration; :meth:`set_configuration` is a deployment's
  merge, and sends ``ConfigurationUpdateEvents`` to the subscribers;
* :meth:`deploy`: a deployment (``deploy v2 plan``'s ``deployment.json`` and
  recipes) sets each component's configuration as the nucleus resolves it, with
  the ``accessControl`` the IPC operations are authorized by
  (``nucleus_authorization``) and SecretManager's ``cloudSecrets``;
  :meth:`access_control` gives one component a policy of a test's own.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from agent.greengrass.local_shadow import LocalShadowService
from agent.greengrass.shadow_document import topic_prefix

GET_THING_SHADOW = "aws.greengrass#GetThingShadow"
UPDATE_THING_SHADOW = "aws.greengrass#UpdateThingShadow"
GET_CONFIGURATION = "aws.greengrass#GetConfiguration"
SUBSCRIBE_TO_CONFIGURATION_UPDATE = "aws.greengrass#SubscribeToConfigurationUpdate"
SHADOW_MANAGER = "aws.greengrass.ShadowManager"
_SUBSCRIPTION_EVENT = "aws.greengrass#SubscriptionResponseMessage"
SECRET_MANAGER = "aws.greengrass.SecretManager"
ACCESS_CONTROL = "accessControl"
# What the nucleus puts for {iot:thingName} in a configuration (config.yaml sets
# interpolateComponentConfiguration, so a thing group's deployment names each core's thing).
THING_NAME_VARIABLE = "{iot:thingName}"
# The IPC service each authorized operation belongs to; the configuration operations
# (GetConfiguration, SubscribeToConfigurationUpdate) are not authorized by the nucleus.
SERVICE_OF = {
    "aws.greengrass#PublishToIoTCore": "aws.greengrass.ipc.mqttproxy",
    "aws.greengrass#PublishToTopic": "aws.greengrass.ipc.pubsub",
    "aws.greengrass#SubscribeToTopic": "aws.greengrass.ipc.pubsub",
    "aws.greengrass#GetSecretValue": SECRET_MANAGER,
    GET_THING_SHADOW: SHADOW_MANAGER,
    UPDATE_THING_SHADOW: SHADOW_MANAGER,
}


@dataclass(frozen=True)
class LocalPublication:
    """A message published on local pub/sub, as the tests' nucleus records it."""

    component: str
    topic: str
    json_message: Optional[Dict[str, Any]] = None
    binary_message: Optional[bytes] = None


class NucleusServices:
    """ShadowManager and configuration operations for FakeNucleus (see the module doc)."""

    def _init_services(self) -> None:
        self.shadows = LocalShadowService(time.time)
        self.shadow_requests: List[Tuple[str, str, Any]] = []  # (component, operation, thing)
        self.configurations: Dict[str, Dict[str, Any]] = {}
        self._configuration_streams: List[Tuple[str, Any]] = []  # (component, stream)

    # -- test helpers --------------------------------------------------------------------
    def access_control(self, component: str, acl: Mapping[str, Any]) -> None:
        """Authorize ``component`` by ``acl`` (``{service: {policy id: {operations,
        resources}}}``) alone: a test's own component, or a policy under test. Like a
        deployment's, it is part of the component's configuration."""
        configuration = copy.deepcopy(self.configurations.get(component, {}))
        configuration[ACCESS_CONTROL] = copy.deepcopy(dict(acl))
        self._replace_configuration(component, configuration)

    def grant(self, component: str, service: str, operation: str, *resources: str) -> None:
        """Add one policy to ``component``'s ``accessControl``, as a deployment listing it
        beside the others would."""
        acl = copy.deepcopy(self.configurations.get(component, {}).get(ACCESS_CONTROL) or {})
        policies = acl.setdefault(service, {})
        policies["{}:test-{}".format(component, len(policies))] = {
            "operations": [operation],
            "resources": list(resources),
        }
        self.access_control(component, acl)

    def deploy(self, plan: Mapping[str, Any], thing: str = "") -> None:
        """Apply a deployment as the nucleus does.

        ``plan`` is ``{"deployment": <CreateDeployment document>, "recipes": {name:
        recipe}}``, as ``deploy v2 plan`` writes them. Each component's configuration
        becomes its recipe's ``DefaultConfiguration`` where the deployment resets it,
        with the deployment's ``merge`` on top (``{iot:thingName}`` read as ``thing``);
        its ``accessControl`` is then all it may do over IPC, and SecretManager serves
        the secrets its ``cloudSecrets`` names.
        """
        recipes = plan.get("recipes") or {}
        for name, spec in plan["deployment"]["components"].items():
            update = spec.get("configurationUpdate") or {}
            defaults = (recipes.get(name) or {}).get("ComponentConfiguration", {})
            configuration = resolve_configuration(
                self.configurations.get(name, {}),
                defaults.get("DefaultConfiguration", {}),
                update.get("reset") or [],
                json.loads(update.get("merge") or "{}"),
            )
            if thing:
                configuration = json.loads(
                    json.dumps(configuration).replace(THING_NAME_VARIABLE, thing)
                )
            if name == SECRET_MANAGER:
                self.secret_manager.configure(configuration.get("cloudSecrets") or [])
            self._replace_configuration(name, configuration)

    def set_configuration(self, component: str, merge: Mapping[str, Any]) -> None:
        """A deployment's configuration merge: the component's subscribers hear of it."""
        configuration = copy.deepcopy(self.configurations.get(component, {}))
        configuration.update(copy.deepcopy(dict(merge)))
        self._replace_configuration(component, configuration)

    def _replace_configuration(self, component: str, configuration: Dict[str, Any]) -> None:
        """The component's new configuration: its policies reload, its subscribers hear of
        each changed key."""
        from awsiot.greengrasscoreipc import model

        before = self.configurations.get(component, {})
        self.configurations[component] = configuration
        self.access.load(component, configuration.get(ACCESS_CONTROL))
        changed = [
            k for k in set(before) | set(configuration) if before.get(k) != configuration.get(k)
        ]
        for name in sorted(changed):
            event = model.ConfigurationUpdateEvents(
                configuration_update_event=model.ConfigurationUpdateEvent(
                    component_name=component, key_path=[name]
                )
            )
            raw = json.dumps(event._to_payload()).encode("utf-8")
            for owner, stream in list(self._configuration_streams):
                if owner == component and not stream.closed:
                    stream.send_shape_payload(event._model_name(), raw)

    def cloud_update(self, thing: str, document: Mapping[str, Any]) -> Dict[str, Any]:
        """An update synced from AWS IoT: ShadowManager applies it and publishes locally."""
        answer, publications = self.shadows.handle(thing, "update", dict(document))
        self._shadow_publish(publications)
        return answer

    def configuration_subscribers(self, component: str) -> int:
        return sum(1 for c, s in self._configuration_streams if c == component and not s.closed)

    # -- the operations (FakeNucleus._handle calls them) ---------------------------------
    def _service_handlers(self) -> Dict[str, Callable[[str, Any], Any]]:
        return {
            GET_THING_SHADOW: self._get_thing_shadow,
            UPDATE_THING_SHADOW: self._update_thing_shadow,
            GET_CONFIGURATION: self._get_configuration,
            SUBSCRIBE_TO_CONFIGURATION_UPDATE: self._subscribe_to_configuration_update,
        }

    def _get_thing_shadow(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model

        answer = self._shadow_operation(component, "get", request, b"")
        return model.GetThingShadowResponse(payload=answer)

    def _update_thing_shadow(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model
        from ipc_model_checks import require

        require(request, "payload")
        answer = self._shadow_operation(component, "update", request, request.payload)
        return model.UpdateThingShadowResponse(payload=answer)

    def _shadow_operation(
        self, component: str, operation: str, request: Any, payload: Any
    ) -> bytes:
        from awsiot.greengrasscoreipc import model
        from ipc_model_checks import require

        require(request, "thing_name")
        if request.shadow_name:  # named shadows: not what the agent uses
            raise model.InvalidArgumentsError(message="only the classic shadow is emulated")
        self.shadow_requests.append((component, operation, request.thing_name))
        answer, publications = self.shadows.handle(request.thing_name, operation, payload)
        self._shadow_publish(publications)
        if "code" in answer and "state" not in answer:
            code, message = answer["code"], answer["message"]
            if code == 404:
                raise model.ResourceNotFoundError(
                    message=message, resource_type="shadow", resource_name=request.thing_name
                )
            if code == 409:
                raise model.ConflictError(message=message)
            if code in (400, 413):
                raise model.InvalidArgumentsError(message=message)
            if code == 429:
                raise model.ServiceError(message="Too Many Requests")
            raise model.ServiceError(message=message)
        return json.dumps(answer).encode("utf-8")

    def _shadow_publish(self, publications: List[Tuple[str, Dict[str, Any]]]) -> None:
        """As ShadowManager: binary JSON on local pub/sub, publisher aws.greengrass.ShadowManager."""
        for topic, document in publications:
            body = json.dumps(document).encode("utf-8")
            with self._lock:
                self.local[topic].append(
                    LocalPublication(SHADOW_MANAGER, topic, binary_message=body)
                )
                targets = self._matching(topic, publisher=SHADOW_MANAGER)
            event = {
                "binaryMessage": {
                    "message": base64.b64encode(body).decode("ascii"),
                    "context": {"topic": topic},
                }
            }
            raw = json.dumps(event).encode("utf-8")
            for sub in targets:
                sub.stream.send_shape_payload(_SUBSCRIPTION_EVENT, raw)

    def _get_configuration(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model

        owner = request.component_name or component
        value: Any = self.configurations.get(owner, {})
        for key in request.key_path or []:
            if not isinstance(value, dict) or key not in value:
                raise model.ResourceNotFoundError(
                    message="Key not found", resource_type="configuration", resource_name=key
                )
            value = value[key]
        if not isinstance(value, dict):
            value = {(request.key_path or [""])[-1]: value}
        return model.GetConfigurationResponse(component_name=owner, value=copy.deepcopy(value))

    def _subscribe_to_configuration_update(self, component: str, request: Any) -> Any:
        from awsiot.greengrasscoreipc import model

        return model.SubscribeToConfigurationUpdateResponse()

    def _keep_configuration_stream(self, component: str, request: Any, stream: Any) -> None:
        with self._lock:
            self._configuration_streams.append((request.component_name or component, stream))


def resolve_configuration(
    running: Mapping[str, Any],
    defaults: Mapping[str, Any],
    reset: List[str],
    merge: Mapping[str, Any],
) -> Dict[str, Any]:
    """A component's configuration after a deployment's ``configurationUpdate``: the paths
    in ``reset`` (JSON pointers; ``""`` is all of it) back to the recipe's defaults, then
    ``merge`` merged in, objects key by key, anything else replaced."""
    configuration = copy.deepcopy(dict(running)) if running else copy.deepcopy(dict(defaults))
    for pointer in reset:
        if pointer == "":
            configuration = copy.deepcopy(dict(defaults))
            continue
        key = pointer.lstrip("/").split("/")[0]
        if key in defaults:
            configuration[key] = copy.deepcopy(defaults[key])
        else:
            configuration.pop(key, None)
    return _merged(configuration, merge)


def _merged(base: Dict[str, Any], merge: Mapping[str, Any]) -> Dict[str, Any]:
    for key, value in merge.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _merged(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def resource_of_request(operation: str, request: Any) -> Optional[str]:
    """What the nucleus authorizes a shadow request on: the thing's shadow topic prefix."""
    if operation in (GET_THING_SHADOW, UPDATE_THING_SHADOW) and request.thing_name:
        return topic_prefix(request.thing_name)
    return None
