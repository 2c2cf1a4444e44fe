"""The device path's stand-ins, each behind one small function so it can be swapped.

* :func:`v1_core`: a Greengrass V1 core seen from one Lambda function, so the
  installed ``greengrasssdk``'s own client code runs: ``tests/v1_core.V1CoreStandIn``,
  a stand-in of the core's local IPC HTTP endpoint (every publish and secret
  fetch is a real HTTP request on loopback, as on a core; the server is a thread
  of the benchmark process, so its work is inside the figures, for the project
  and the seed alike). Spawned children use :mod:`benchmarks.v1_child_core`.
* :func:`installed_chip`: the ``sense_hat`` stand-in
  (``benchmarks/stand_ins/sense_hat.py``) over a simulated chip, for the
  project's ``SenseHatSensor`` and the seed alike.

Plus the environment a V1 core gives a function (:func:`function_env`), and
loaders for both projects' functions on that path.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

from .common import REPO_ROOT

STAND_INS = os.path.join(REPO_ROOT, "benchmarks", "stand_ins")
ACCOUNT = "arn:aws:lambda:us-east-1:123456789012:function:"
# The project's functions as ``deploy plan`` names them (alias ``live``, in the account and
# region of the generated group the core stand-in loads); the seed's as its blog did.
FUNCTION_ARNS = {
    "sensor": ACCOUNT + "edge-agent-sensor:live",
    "anomaly": ACCOUNT + "edge-agent-anomaly:live",
    "seed-sensor": ACCOUNT + "1-IoT-GetSensorData:1",
    "seed-anomaly": ACCOUNT + "2-IoT-ServiceNow:1",
}
# The seed's subscription table (its blog's): readings to the cloud, breaches to the
# anomaly function; the secret resource attached to the anomaly function.
SEED_SUBJECTS = {"seed-sensor": ("IoTBlog/sensorData", "IoTBlog/anomaly"), "seed-anomaly": ()}
TESTS = os.path.join(REPO_ROOT, "tests")
NORMAL = (22.0, 40.0, 1013.0)  # chip values within every limit
HOT = (38.0, 40.0, 1013.0)  # beyond the 30 °C limit and its hysteresis
SEED_LIMITS = {"tempLimit": "30", "humidLimit": "50"}  # the blog's values (the project's defaults)
SEED_SENSOR_MODULE = "benchmarks.seed.sensor_lambda"
SEED_ANOMALY_MODULE = "benchmarks.seed.anomaly_lambda"
# Variables a V1 core or the benchmark child sets; cleared around an in-process build.
_CONTROLLED = (
    "MY_FUNCTION_ARN",
    "EDGE_AGENT_RUNTIME",
    "EDGE_AGENT_SENSOR",
    "EDGE_AGENT_SCENARIO",
    "EDGE_AGENT_SEED",
)

OnPublish = Callable[[str, bytes], None]


def _load_file_module(name: str, path: str, register: bool = False) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    if register:  # before running it: dataclasses look their module up in sys.modules
        sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if register:
            sys.modules.pop(name, None)
        raise
    return module


def _tests_module(name: str) -> types.ModuleType:
    # tests/ is not a package: its modules import each other by name, as under pytest
    # (which may have imported them already).
    if TESTS not in sys.path:
        sys.path.append(TESTS)
    return importlib.import_module(name)


def v1_core(
    function: str,
    secrets: Optional[Mapping[str, str]] = None,
    on_publish: Optional[OnPublish] = None,
) -> Any:
    """A V1 core for one function (``FUNCTION_ARNS`` key): ``.installed()``,
    ``.published`` (topic → publications), ``.secret_requests``; ``.close()`` it.

    The project's functions run in the group ``deploy plan`` generates, the seed's in
    its blog's. ``on_publish(topic, payload)`` is called for every message the
    router routes, in the core's request thread, as the core's router would hand it on.
    """
    group = None  # the generated group of the default topology
    if function in SEED_SUBJECTS:
        secret = _tests_module("generated_group").secret_arn("greengrass-snow-creds")
        group = _tests_module("v1_group").one_function_group(
            FUNCTION_ARNS[function],
            SEED_SUBJECTS[function],
            secrets={"snow-credentials": secret} if function == "seed-anomaly" else {},
        )
    forward = None
    if on_publish is not None:

        def forward(publication: Any) -> None:
            on_publish(publication.topic, publication.payload)

    return _tests_module("v1_core").V1CoreStandIn(
        FUNCTION_ARNS[function], secrets=secrets, group=group, on_publish=forward
    )


def handler_context(topic: str) -> Any:
    """The Lambda context a V1 core passes with a subscribed message."""
    return types.SimpleNamespace(
        function_name="bench", client_context=types.SimpleNamespace(custom={"subject": topic})
    )


# -- the chip ---------------------------------------------------------------------------
def chip_module() -> types.ModuleType:
    """A fresh copy of the ``sense_hat`` stand-in module."""
    return _load_file_module("sense_hat", os.path.join(STAND_INS, "sense_hat.py"))


@contextlib.contextmanager
def installed_chip(chip: Any = None) -> Iterator[Any]:
    """``import sense_hat`` gives the stand-in within the block; yields its ``CHIP``."""
    module = chip_module()
    if chip is not None:
        module.CHIP = chip
    saved = sys.modules.get("sense_hat")
    sys.modules["sense_hat"] = module
    try:
        yield module.CHIP
    finally:
        if saved is None:
            sys.modules.pop("sense_hat", None)
        else:
            sys.modules["sense_hat"] = saved


def new_chip(
    values: Tuple[float, float, float] = NORMAL,
    source: Optional[Callable[[], Any]] = None,
) -> Any:
    return chip_module().Chip(*values, source=source)


class ScenarioSource:
    """Chip values from a fake-sensor scenario: one sample per clock instant, so the
    project (three reads a tick) and the seed (two) see the same values."""

    def __init__(self, scenario: str, clock: Any, seed: int = 1) -> None:
        from agent.sensors.fake import FakeSensor

        self._sensor = FakeSensor(scenario, seed=seed, clock=clock)
        self._clock = clock
        self._at: Optional[float] = None
        self._values: Tuple[Any, Any, Any] = (None, None, None)

    def __call__(self) -> Tuple[Any, Any, Any]:
        now = self._clock.time()
        if now != self._at:
            reading = self._sensor.read()
            self._at = now
            self._values = (reading.temperature, reading.humidity, reading.pressure)
        return self._values


# -- the environment a core gives a function ----------------------------------------------
def function_env(function: str, **extra: str) -> Dict[str, str]:
    """The topology's variables for ``sensor``/``anomaly`` plus what a V1 core sets."""
    from .common import function_environment

    base = function.replace("seed-", "")
    env = function_environment(base) if base == function else {}
    if base == "sensor" and base == function:
        # The deployed sensor reads the chips over I2C; beside the seed, which reads them
        # through the sense_hat library, the project does too (over the same stand-in).
        env["EDGE_AGENT_SENSOR"] = "sensehat"
    env["MY_FUNCTION_ARN"] = FUNCTION_ARNS[function]
    env.update(extra)
    return env


@contextlib.contextmanager
def process_env(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` as a core would set it for the block, restored afterwards."""
    names = set(env) | set(_CONTROLLED)
    saved = {name: os.environ.get(name) for name in names}
    try:
        for name in _CONTROLLED:
            os.environ.pop(name, None)
        os.environ.update(env)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- the functions on that path --------------------------------------------------------------
def project_sensor(core: Any, chip: Any, env: Mapping[str, str], clock: Any) -> Any:
    """``functions.sensor_function.create_app()`` as on a core: V1 runtime, Sense HAT backend."""
    from functions import sensor_function

    with core.installed(), installed_chip(chip), process_env(
        dict(env, EDGE_AGENT_SENSOR="sensehat")
    ):
        return sensor_function.create_app(environ=dict(env), clock=clock)


def project_anomaly(core: Any, env: Mapping[str, str], clock: Any) -> Any:
    """``functions.anomaly_function.create_app()`` as on a core: V1 runtime and secret."""
    from functions import anomaly_function

    with core.installed(), process_env(env):
        return anomaly_function.create_app(environ=dict(env), clock=clock)


def _fresh_import(name: str) -> types.ModuleType:
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def seed_sensor(core: Any, chip: Any, env: Mapping[str, str]) -> types.ModuleType:
    """A fresh copy of the seed's sensor function, loaded on ``core`` with ``chip``."""
    with core.installed(), installed_chip(chip), process_env(env):
        return _fresh_import(SEED_SENSOR_MODULE)


def seed_anomaly(core: Any, env: Mapping[str, str]) -> types.ModuleType:
    """A fresh copy of the seed's anomaly function, loaded on ``core``."""
    with core.installed(), process_env(env):
        return _fresh_import(SEED_ANOMALY_MODULE)
