"""Where the Greengrass group is described: functions, environment, resources, subscriptions.

This is the one description of the group's topology. The local core emulation
(``agent.greengrass.local``) routes by it, the V2 backend decides between
local pub/sub and IoT Core by it, and the deploy scripts (``deploy/``) build
the Greengrass definitions and V2 recipes from it. Function ids here are the
Greengrass function-definition ``Id`` values; subscriptions name functions by
id (or ``cloud``), and the deploy step turns ids into qualified Lambda ARNs.
"""

from __future__ import annotations

import json
from typing import Dict, Mapping, Optional, Tuple

from .names import (
    ANOMALY_FUNCTION_ID,
    CLOUD,
    DEFAULT_ANOMALY_TOPIC,
    DEFAULT_READINGS_TOPIC,
    DEFAULT_SECRET_NAME,
    DEVICE_STATE_DIR,
    HEALTH_TOPIC,
    ROUTES_VARIABLE,
    SENSOR_FUNCTION_ID,
    SHADOW_SERVICE,
    SNOW_SECRET_RESOURCE_ID,
    STATE_VOLUME_ID,
    STATUS_FUNCTION_ID,
    STATUS_SWITCH,
    THING_TOKEN,
)
from .record import Record

# The names above are defined in agent.names (a function loads them without this
# module's classes) and are importable from here as before.
__all__ = [
    "ANOMALY_FUNCTION_ID",
    "CLOUD",
    "DEFAULT_ANOMALY_TOPIC",
    "DEFAULT_READINGS_TOPIC",
    "DEFAULT_SECRET_NAME",
    "DEVICE_STATE_DIR",
    "HEALTH_TOPIC",
    "SENSOR_FUNCTION_ID",
    "SHADOW_SERVICE",
    "SNOW_SECRET_RESOURCE_ID",
    "STATE_VOLUME_ID",
    "STATUS_FUNCTION_ID",
    "STATUS_SWITCH",
    "THING_TOKEN",
    "DEFAULT_FRAMEBUFFER",
    "DEFAULT_JOYSTICK",
    "SHADOW_ANSWERS",
    "SHADOW_PREFIX",
    "SHADOW_REQUESTS",
    "TOPIC_VARIABLES",
    "DeviceResource",
    "FunctionSpec",
    "GroupTopology",
    "ResourceAccess",
    "SecretResource",
    "Subscription",
    "VolumeResource",
    "default_topology",
    "deployed_topology",
    "shadow_subscriptions",
    "status_enabled",
    "with_status_function",
]


class SecretResource(Record):
    """A Secrets Manager secret the core downloads and serves to functions."""

    id: str
    secret_name: str
    staging_labels: Tuple[str, ...] = ()


class DeviceResource(Record):
    """A local device file (``/dev/...``) a containerised function may open."""

    id: str
    source_path: str


class VolumeResource(Record):
    """A host directory mounted into the function's container (state that must survive)."""

    id: str
    source_path: str
    destination_path: str


class ResourceAccess(Record):
    """A function's access to one resource of the group."""

    resource_id: str
    permission: str = "ro"  # "ro" or "rw"


class FunctionSpec(Record):
    """One Greengrass function: its code, how the core runs it, what it may touch."""

    id: str
    lambda_name: str
    module: str  # importable module holding the handler, e.g. functions.sensor_function
    handler: str
    pinned: bool
    timeout_s: int
    memory_kb: int
    environment: Mapping[str, str]
    resource_access: Tuple[ResourceAccess, ...]
    access_sysfs: bool
    device_extras: Tuple[str, ...]  # pyproject extras this function needs on the device

    def __init__(
        self,
        id: str,
        lambda_name: str,
        module: str,
        handler: str = "function_handler",
        pinned: bool = False,
        timeout_s: int = 10,
        memory_kb: int = 32 * 1024,
        environment: Optional[Mapping[str, str]] = None,
        resource_access: Tuple[ResourceAccess, ...] = (),
        access_sysfs: bool = False,
        device_extras: Tuple[str, ...] = (),
    ) -> None:
        self._fill(
            id,
            lambda_name,
            module,
            handler,
            pinned,
            timeout_s,
            memory_kb,
            {}
            if environment is None
            else environment,  # a new dict each, as field(default_factory=dict)
            resource_access,
            access_sysfs,
            device_extras,
        )

    @property
    def executable(self) -> str:
        """The ``Executable`` Greengrass V1 and Lambda call: module.handler."""
        return f"{self.module}.{self.handler}"


class Subscription(Record):
    """Route messages on ``subject`` from ``source`` to ``target`` (function id or ``cloud``).

    ``subject_variable`` names the source function's variable that holds the
    subject (``readingsTopic``, ``anomalyTopic``): the subscription follows it
    when the function is configured with another topic, so the table the core
    routes by and the topic the function publishes on come from one value.
    """

    id: str
    source: str
    subject: str
    target: str
    subject_variable: Optional[str] = None


class GroupTopology(Record):
    """The whole group: its functions, subscriptions, resources and the functions' uid/gid."""

    name: str
    functions: Tuple[FunctionSpec, ...]
    subscriptions: Tuple[Subscription, ...]
    secrets: Tuple[SecretResource, ...] = ()
    devices: Tuple[DeviceResource, ...] = ()
    volumes: Tuple[VolumeResource, ...] = ()
    run_as_uid: int = 1000
    run_as_gid: int = 1000

    def function(self, function_id: str) -> FunctionSpec:
        for spec in self.functions:
            if spec.id == function_id:
                return spec
        raise KeyError(f"no function with id {function_id!r} in group {self.name!r}")

    def with_environment(self, function_id: str, **variables: str) -> GroupTopology:
        """A copy with extra environment variables for one function.

        Subscriptions whose subject is one of that function's variables follow
        the new value, so a custom ``readingsTopic`` is routed, not dropped.
        """
        self.function(function_id)  # an unknown id is a wiring bug: fail loudly
        functions = tuple(
            f.with_changes(environment={**f.environment, **variables}) if f.id == function_id else f
            for f in self.functions
        )
        subscriptions = tuple(
            s.with_changes(subject=variables[s.subject_variable])
            if s.source == function_id and s.subject_variable in variables
            else s
            for s in self.subscriptions
        )
        return self.with_changes(functions=functions, subscriptions=subscriptions)

    def with_topics(self, function_id: str, topics: Mapping[str, str]) -> GroupTopology:
        """This topology as routed for ``function_id`` publishing on ``topics``.

        ``topics`` maps topic variables (:data:`TOPIC_VARIABLES`) to the values
        the function actually uses; a topology whose subscriptions already
        match, or that has no such function, is returned as is.
        """
        if not any(f.id == function_id for f in self.functions):
            return self  # not a function of this group: it is the source of no subscription
        variables = {k: v for k, v in topics.items() if k in TOPIC_VARIABLES}
        routed = self.with_environment(function_id, **variables)
        return self if routed.subscriptions == self.subscriptions else routed

    def subscriptions_from(self, source: str) -> Tuple[Subscription, ...]:
        return tuple(s for s in self.subscriptions if s.source == source)

    def deployed_environment(self, function_id: str) -> Dict[str, str]:
        """The environment a V1 deployment gives the function: its variables, and in
        :data:`ROUTES_VARIABLE` the subjects the group routes from it (a V1 core drops
        any other message without a word; the function tells it from this list)."""
        environment = dict(self.function(function_id).environment)
        subjects = list(dict.fromkeys(s.subject for s in self.subscriptions_from(function_id)))
        environment[ROUTES_VARIABLE] = json.dumps(subjects, separators=(",", ":"))
        return environment

    def for_thing(self, thing: str) -> GroupTopology:
        """This topology with ``thing`` in the shadow subjects (see :data:`THING_TOKEN`).

        A deployment names the core's thing; the local core the device's. A
        topology without the token, or already bound, is returned as is.
        """
        if not any(THING_TOKEN in s.subject for s in self.subscriptions):
            return self
        subscriptions = tuple(
            s.with_changes(subject=s.subject.replace(THING_TOKEN, thing))
            for s in self.subscriptions
        )
        return self.with_changes(subscriptions=subscriptions)


# The sensor's shadow traffic: requests it sends to the local shadow service,
# and the answers and changes the service sends it (V1 subscriptions; on V2 the same
# subjects become the ShadowManager IPC operations and local pub/sub subscriptions).
SHADOW_PREFIX = "$aws/things/" + THING_TOKEN + "/shadow"
SHADOW_REQUESTS = ("update", "get")
SHADOW_ANSWERS = (
    "update/delta",
    "update/documents",
    "update/rejected",
    "get/accepted",
    "get/rejected",
)
# The variables that name the topics a function publishes on; subscriptions follow them.
TOPIC_VARIABLES = ("readingsTopic", "anomalyTopic")
# The usual Sense HAT device nodes on Raspberry Pi OS. The library finds both by
# name under /sys/class (``RPi-Sense FB``, ``Raspberry Pi Sense HAT Joystick``),
# so a Pi with another framebuffer first may number them differently: the sensor
# names the node it found at start (``agent.sensors.sensehat_devices``), and
# ``deploy --framebuffer/--joystick`` maps the right ones.
# Memory limits (V1 MemorySize, V2 systemResourceLimits.memory; a core enforces them with a
# memory cgroup, which kills a function over it) come from measurement: the peak RSS
# (VmHWM) of each function doing its full cycle as its runtime runs it, with the real
# backends (tests/test_function_memory.py prints them; measured 2026-12-07, x86_64):
#   sensor,  V1 (greengrasssdk), i2c:           19.8 MB on Python 3.8, 22.9 MB on 3.11
#   sensor,  V1, sense_hat (numpy, Pillow):      40.6 MB on 3.8,        41.8 MB on 3.11
#   sensor,  V2 (awsiotsdk, awscrt), i2c:        21.8 MB on 3.8,        26.2 MB on 3.11
#   sensor,  V2, sense_hat (numpy, Pillow):      46.5 MB on 3.8,        44.3 MB on 3.11
#   anomaly, V1, one incident opened:            29.4 MB on 3.8,        31.0 MB on 3.11
#   anomaly, V2, one incident opened:            38.2 MB on 3.8,        40.1 MB on 3.11
# In a Pi's userland (Debian 12 arm64, Python 3.11) under qemu-user the V2 sensor with i2c
# peaks at 62.1-64.5 MB, of which a bare interpreter under the emulator is 30.8-31.3 MB
# (10.6-10.9 MB natively): the emulator's own memory and translated code, not the Pi's
# figure; what the component adds there plus a native interpreter is 41.9-44.1 MB.
# Limit: the highest peak plus MEMORY_HEADROOM (35 %: another libc, allocator or page size
# on the Pi, a longer run's fragmentation), rounded up to 4 MB.
MEMORY_HEADROOM = 0.35
SENSOR_PEAK_MB = 46.5
ANOMALY_PEAK_MB = 40.1


def memory_limit_kb(peak_mb: float, headroom: float = MEMORY_HEADROOM) -> int:
    """A memory limit in KB (Greengrass's unit): ``peak_mb`` plus ``headroom``, rounded up
    to a multiple of 4 MB."""
    megabytes = peak_mb * (1.0 + headroom)
    return int(-(-megabytes // 4) * 4) * 1024


DEFAULT_FRAMEBUFFER = "/dev/fb1"
DEFAULT_JOYSTICK = "/dev/input/event0"


def default_topology(
    secret_name: str = DEFAULT_SECRET_NAME,
    framebuffer: str = DEFAULT_FRAMEBUFFER,
    joystick: str = DEFAULT_JOYSTICK,
    environment: Optional[Dict[str, Dict[str, str]]] = None,
) -> GroupTopology:
    """The group this project deploys: a pinned sensor function and a pinned anomaly function.

    The anomaly function is pinned (unlike the source blog's on-demand one)
    because it owns a delivery worker that retries queued ServiceNow actions;
    an on-demand container may not live between messages to do that.
    """
    environment = environment or {}
    sensor_env = {
        "tempLimit": "30",
        "humidLimit": "50",
        "period": "5",
        "readingsTopic": DEFAULT_READINGS_TOPIC,
        "anomalyTopic": DEFAULT_ANOMALY_TOPIC,
        "stateDir": DEVICE_STATE_DIR,
        # On the device the Sense HAT, explicitly: never a fake because the
        # container could not see /proc/device-tree. Over I2C (smbus2, shipped
        # with the function): a V1 Lambda's Python 3.8 cannot load the OS's
        # sense_hat/RTIMU, which are built for the OS's Python.
        "EDGE_AGENT_SENSOR": "i2c",
    }
    sensor_env.update(environment.get(SENSOR_FUNCTION_ID, {}))
    anomaly_env = {
        "snowUrl": "https://devXXXXX.service-now.com/api/now/table/incident",
        "snowSecretId": secret_name,
        "stateDir": DEVICE_STATE_DIR,
    }
    anomaly_env.update(environment.get(ANOMALY_FUNCTION_ID, {}))
    readings_topic = sensor_env["readingsTopic"]
    anomaly_topic = sensor_env["anomalyTopic"]
    devices = (
        DeviceResource("i2c-bus", "/dev/i2c-1"),
        DeviceResource("sense-hat-framebuffer", framebuffer),
        DeviceResource("sense-hat-joystick", joystick),
    )
    topology = GroupTopology(
        name="edge-agent",
        functions=(
            FunctionSpec(
                id=SENSOR_FUNCTION_ID,
                lambda_name="edge-agent-sensor",
                module="functions.sensor_function",
                pinned=True,
                timeout_s=10,
                memory_kb=memory_limit_kb(SENSOR_PEAK_MB),
                environment=sensor_env,
                resource_access=tuple(ResourceAccess(d.id, "rw") for d in devices)
                + (ResourceAccess(STATE_VOLUME_ID, "rw"),),
                access_sysfs=True,
                device_extras=("i2c", "pi", "greengrass-v1"),
            ),
            FunctionSpec(
                id=ANOMALY_FUNCTION_ID,
                lambda_name="edge-agent-anomaly",
                module="functions.anomaly_function",
                pinned=True,
                timeout_s=30,
                memory_kb=memory_limit_kb(ANOMALY_PEAK_MB),
                environment=anomaly_env,
                resource_access=(
                    ResourceAccess(SNOW_SECRET_RESOURCE_ID, "ro"),
                    ResourceAccess(STATE_VOLUME_ID, "rw"),
                ),
                device_extras=("servicenow", "greengrass-v1"),
            ),
        ),
        subscriptions=(
            # Subjects follow the sensor's topic variables, so renaming a topic
            # in one place re-routes it everywhere.
            Subscription(
                "readings-to-cloud", SENSOR_FUNCTION_ID, readings_topic, CLOUD, "readingsTopic"
            ),
            Subscription(
                "anomaly-to-function",
                SENSOR_FUNCTION_ID,
                anomaly_topic,
                ANOMALY_FUNCTION_ID,
                "anomalyTopic",
            ),
            Subscription(
                "anomaly-to-cloud", SENSOR_FUNCTION_ID, anomaly_topic, CLOUD, "anomalyTopic"
            ),
        )
        + shadow_subscriptions(SENSOR_FUNCTION_ID),
        secrets=(SecretResource(SNOW_SECRET_RESOURCE_ID, secret_name),),
        devices=devices,
        volumes=(VolumeResource(STATE_VOLUME_ID, DEVICE_STATE_DIR, DEVICE_STATE_DIR),),
    )
    if status_enabled(environment):
        topology = with_status_function(topology, environment.get(STATUS_FUNCTION_ID, {}))
    return topology


def shadow_subscriptions(function_id: str) -> Tuple[Subscription, ...]:
    """The local shadow's subscriptions for ``function_id``: its requests to the shadow
    service, and the service's answers and deltas to it (AWS IoT Greengrass V1 Developer
    Guide, "Configure devices and subscriptions": exact topics, no wildcards)."""
    requests = tuple(
        Subscription(
            "{}-shadow-{}".format(function_id, op),
            function_id,
            SHADOW_PREFIX + "/" + op,
            SHADOW_SERVICE,
        )
        for op in SHADOW_REQUESTS
    )
    answers = tuple(
        Subscription(
            "shadow-{}-to-{}".format(answer.replace("/", "-"), function_id),
            SHADOW_SERVICE,
            SHADOW_PREFIX + "/" + answer,
            function_id,
        )
        for answer in SHADOW_ANSWERS
    )
    return requests + answers


def status_enabled(environment: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether the group has the status function: its ``statusPort`` is set, or a function's
    environment carries the switch the topology put there (how a V2 component sees it)."""
    if (environment.get(STATUS_FUNCTION_ID) or {}).get("statusPort", "").strip():
        return True
    return any((env or {}).get(STATUS_SWITCH) == "on" for env in environment.values())


def with_status_function(
    topology: GroupTopology, environment: Optional[Mapping[str, str]] = None
) -> GroupTopology:
    """The group plus the status function (off by default: see ``agent.status``).

    It is pinned, reads the state volume read-only, and receives copies of the
    readings, the episode events and each function's health counters over
    local subscriptions only, so it can neither slow the sensor path (a core
    fans messages out by itself) nor reach the cloud.
    """
    if any(f.id == STATUS_FUNCTION_ID for f in topology.functions):
        return topology
    sensor = topology.function(SENSOR_FUNCTION_ID)
    readings_topic = sensor.environment.get("readingsTopic", DEFAULT_READINGS_TOPIC)
    anomaly_topic = sensor.environment.get("anomalyTopic", DEFAULT_ANOMALY_TOPIC)
    status_env = {
        "statusBind": "127.0.0.1",
        "stateDir": sensor.environment.get("stateDir", DEVICE_STATE_DIR),
        "readingsTopic": readings_topic,
        "anomalyTopic": anomaly_topic,
    }
    status_env.update(environment or {})
    functions = tuple(
        f.with_changes(environment={**f.environment, STATUS_SWITCH: "on"})
        for f in topology.functions
    )
    status = FunctionSpec(
        id=STATUS_FUNCTION_ID,
        lambda_name="edge-agent-status",
        module="functions.status_function",
        pinned=True,  # its HTTP server lives outside the handler, as the loops of the others do
        timeout_s=10,
        memory_kb=32 * 1024,
        environment=status_env,
        resource_access=(ResourceAccess(STATE_VOLUME_ID, "ro"),),
        device_extras=("greengrass-v1",),
    )
    subscriptions = topology.subscriptions + (
        Subscription("readings-to-status", SENSOR_FUNCTION_ID, readings_topic, STATUS_FUNCTION_ID),
        Subscription("anomaly-to-status", SENSOR_FUNCTION_ID, anomaly_topic, STATUS_FUNCTION_ID),
        Subscription(
            "sensor-health-to-status",
            SENSOR_FUNCTION_ID,
            HEALTH_TOPIC.format(function=SENSOR_FUNCTION_ID),
            STATUS_FUNCTION_ID,
        ),
        Subscription(
            "anomaly-health-to-status",
            ANOMALY_FUNCTION_ID,
            HEALTH_TOPIC.format(function=ANOMALY_FUNCTION_ID),
            STATUS_FUNCTION_ID,
        ),
    )
    return topology.with_changes(functions=functions + (status,), subscriptions=subscriptions)


def deployed_topology(environ: Mapping[str, str]) -> GroupTopology:
    """The group as deployed, as far as a function can tell from its own environment.

    A V2 component routes its own messages (the nucleus has no subscription
    table), so it must know whether the group has the status function to send
    it copies: the topology puts ``EDGE_AGENT_STATUS=on`` into every function's
    environment when it does.
    """
    if environ.get(STATUS_SWITCH) == "on":
        return default_topology(environment={SENSOR_FUNCTION_ID: {STATUS_SWITCH: "on"}})
    return default_topology()
