"""Cold start of each function, project and seed, as a fresh process on the V1 device path.

Each sample is a spawned child (see :mod:`benchmarks.children`): the
interpreter starts, the light core IPC stand-in loads (what a core's Python
runtime has loaded before any function code: ``json``, ``logging``,
``urllib.request``), then the function:

* **sensor, to first publish**: the project's ``functions.sensor_function``
  starts its loop at module load (``MY_FUNCTION_ARN`` set) and the first tick
  publishes a reading; the seed's module loads (SDK clients, ``SenseHat()``,
  ``clear()``, its unused ``import boto3``) and its loop, started right after
  by the harness, publishes the first sample, its 5 s sleep skipped (on a
  device the seed's first publish comes 5 s later). *seed, bare*: the same with
  the unused ``boto3`` import satisfied by an empty module.
* **anomaly, to first 201**: the project's ``functions.anomaly_function``
  loads (outbox, delivery worker), its handler gets one breach message, the
  worker fetches the secret, imports ``requests``, looks the incident up (GET)
  and creates it (POST): stamped when the 201 has been read. The seed's module
  loads (imports ``requests``) and its handler fetches the secret and POSTs.

* **without .pyc** (``*_nopyc``): both sensor kinds again, from a copy of the
  code with no ``__pycache__`` and ``PYTHONDONTWRITEBYTECODE=1``, as a V1 device
  runs them (its zip ships no ``.pyc`` and the function's user cannot write the
  code folder): every start compiles the function's modules, the project's and
  the seed's alike. The headline cold-start row.
* **real backends, peak RSS**: the project with its deployed ``i2c`` backend
  (``smbus2``, here the chip model of ``tests/stand_ins/i2c_bus``), the seed
  with what the real ``sense_hat`` library imports (numpy, ``PIL.Image``) loaded
  before its stand-in (the library itself cannot be constructed without a
  Pi's framebuffer).

Every kind runs ``repeats`` times, interleaved (project, seed, project, ...)
so load on the machine falls on both alike, after one unrecorded round that
fills ``__pycache__``. Medians are reported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import children, device
from .common import REPO_ROOT, anomaly_message, percentile, unique_device_id
from .device import SEED_LIMITS
from .servers import Server

PROJECT_SENSOR = """
import functions.sensor_function as _function
_stamps["imported"] = time.monotonic_ns()
if not _core.first_publish.wait(60):
    raise SystemExit("the sensor function published nothing within 60 s")
_stamps["first_work"] = _core.first_publish_ns
"""

SEED_SENSOR = """
import threading
__BARE__
import benchmarks.seed.sensor_lambda as _function
_stamps["imported"] = time.monotonic_ns()
def _sleep_once(seconds, _calls=[]):  # the first sample goes out at once, then the loop rests
    if _calls:
        threading.Event().wait()
    _calls.append(seconds)
_function.sleep = _sleep_once
threading.Thread(target=_function.get_sensor_data, daemon=True).start()
if not _core.first_publish.wait(60):
    raise SystemExit("the seed's sensor function published nothing within 60 s")
_stamps["first_work"] = _core.first_publish_ns
"""
BARE = 'sys.modules["boto3"] = type(sys)("boto3")  # the unused import, satisfied by nothing'
# What the real sense_hat library imports before a SenseHat can be made (numpy for the LED
# matrix, Pillow for its images); its RTIMU C extension is left out (a few hundred KB).
SENSE_HAT_LIBRARY = "import numpy, PIL.Image  # what the real sense_hat imports"
TESTS_STAND_INS = os.path.join(REPO_ROOT, "tests", "stand_ins")
# Copied for the runs without .pyc: what a V1 zip holds, and the harness.
CODE_FOLDERS = ("agent", "functions", "benchmarks")

PROJECT_ANOMALY = """
import threading
import functions.anomaly_function as _function
_stamps["imported"] = time.monotonic_ns()
if _function.app is None:
    raise SystemExit("the anomaly function did not start; see its log above")
_created = threading.Event()
_create = _function.app.client.create
def _timed_create(fields):
    record = _create(fields)
    _stamps["first_work"] = time.monotonic_ns()
    _created.set()
    return record
_function.app.client.create = _timed_create
class _ClientContext:
    custom = {"subject": "IoTBlog/anomaly"}
class _Context:
    client_context = _ClientContext()
_function.function_handler(__MESSAGE__, _Context())
if not _created.wait(60):
    raise SystemExit("no incident was created within 60 s: " + repr(_function.app.summary()))
"""

SEED_ANOMALY = """
import benchmarks.seed.anomaly_lambda as _function
_stamps["imported"] = time.monotonic_ns()
class _Out:
    text = ""
    def write(self, text):
        self.text += text
        return len(text)
    def flush(self):
        pass
_out, _stdout = _Out(), sys.stdout
sys.stdout = _out
try:
    _function.lambda_handler(__MESSAGE__, None)
finally:
    sys.stdout = _stdout
_stamps["first_work"] = time.monotonic_ns()
if "[201]" not in _out.text:
    raise SystemExit("the seed's POST was not answered 201: " + _out.text)
"""

SEED_MESSAGE = {"title": "Temperature breach", "dt": "2026-12-01 09:00:00", "ts": 0, "t": 38.0}


Kind = Callable[[str, int], Tuple[str, Dict[str, str]]]


def child_kinds(server: Optional[Server], secret_file: str) -> Dict[str, Kind]:
    """Each kind: (state dir, run number) → (code, environment)."""
    device_id = unique_device_id()

    def project_sensor(state_dir: str, i: int) -> Any:
        env = device.function_env("sensor", stateDir=state_dir, deviceId=device_id)
        return PROJECT_SENSOR, env

    def project_sensor_i2c(state_dir: str, i: int) -> Any:
        """The deployed backend: I2C, over the chip model's smbus2."""
        dev = os.path.join(state_dir, "dev")
        os.makedirs(dev, exist_ok=True)
        open(os.path.join(dev, "i2c-1"), "wb").close()
        env = device.function_env(
            "sensor",
            stateDir=state_dir,
            deviceId=device_id,
            EDGE_AGENT_SENSOR="i2c",
            EDGE_AGENT_TEST_I2C=json.dumps({"dev": dev}),
        )
        env["EDGE_BENCH_PATH_FIRST"] = os.path.join(TESTS_STAND_INS, "i2c_bus")
        return PROJECT_SENSOR, env

    def seed_sensor(bare: bool, library: bool = False) -> Kind:
        def build(state_dir: str, i: int) -> Any:
            first = (BARE if bare else "") + ("\n" + SENSE_HAT_LIBRARY if library else "")
            code = SEED_SENSOR.replace("__BARE__", first)
            return code, device.function_env("seed-sensor", **SEED_LIMITS)

        return build

    def project_anomaly(state_dir: str, i: int) -> Any:
        assert server is not None
        env = device.function_env(
            "anomaly",
            snowUrl=server.url,
            stateDir=state_dir,
            deviceId=device_id,
            EDGE_BENCH_SECRET_FILE=secret_file,
        )
        # A distinct episode per run, so every run really creates its incident.
        message = anomaly_message(1000 + i, device=device_id)
        return PROJECT_ANOMALY.replace("__MESSAGE__", repr(message)), env

    def seed_anomaly(state_dir: str, i: int) -> Any:
        assert server is not None
        env = device.function_env(
            "seed-anomaly", snowUrl=server.table_url, EDGE_BENCH_SECRET_FILE=secret_file
        )
        return SEED_ANOMALY.replace("__MESSAGE__", repr(SEED_MESSAGE)), env

    def no_pyc(build: Kind) -> Kind:
        def built(state_dir: str, i: int) -> Any:
            code, env = build(state_dir, i)
            return code, dict(env, EDGE_BENCH_NO_PYC="1")

        return built

    kinds: Dict[str, Kind] = {
        "runtime": lambda state_dir, i: ("", {"MY_FUNCTION_ARN": device.FUNCTION_ARNS["sensor"]}),
        "project_sensor": project_sensor,
        "seed_sensor": seed_sensor(bare=False),
        "seed_sensor_bare": seed_sensor(bare=True),
        "project_sensor_nopyc": no_pyc(project_sensor),
        "seed_sensor_bare_nopyc": no_pyc(seed_sensor(bare=True)),
        "project_sensor_i2c": project_sensor_i2c,
        "seed_sensor_library": seed_sensor(bare=True, library=True),
    }
    if server is not None:
        kinds.update(project_anomaly=project_anomaly, seed_anomaly=seed_anomaly)
    return kinds


def spawn_kind(code: str, env: Dict[str, str], code_copy: str) -> Dict[str, Any]:
    """One child of a kind: from ``code_copy`` without .pyc where the kind asks for it."""
    env = dict(env)
    first = env.pop("EDGE_BENCH_PATH_FIRST", None)
    child = children.child_env(env)
    cwd = REPO_ROOT
    if env.pop("EDGE_BENCH_NO_PYC", None):
        child.pop("EDGE_BENCH_NO_PYC", None)
        cwd = code_copy
        child["PYTHONPATH"] = os.pathsep.join(
            (os.path.join(code_copy, "benchmarks", "stand_ins"), code_copy)
        )
        child["PYTHONDONTWRITEBYTECODE"] = "1"
    if first:
        child["PYTHONPATH"] = os.pathsep.join((first, child["PYTHONPATH"]))
    return children.spawn(children.PREAMBLE + code, child, cwd=cwd)


def copy_without_pyc(target: str) -> str:
    """The code folders copied to ``target`` without any ``__pycache__``."""
    for folder in CODE_FOLDERS:
        shutil.copytree(
            os.path.join(REPO_ROOT, folder),
            os.path.join(target, folder),
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    return target


def _median(values: List[float]) -> float:
    return round(percentile(values, 50), 2)


def _summarize(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    ms = [r["ms"] for r in runs]
    summary: Dict[str, Any] = {
        "runs": len(runs),
        # spawn → the core's runtime loaded: the same for every function
        "runtime_ready_ms": _median([m["core_ready"] for m in ms]),
        "process_cpu_ms": _median([r["cpu_ms"] for r in runs]),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "heavy_modules_loaded": runs[-1]["modules"],
        "module_count": runs[-1]["module_count"],
    }
    if "first_work" in ms[0]:
        summary.update(
            # spawn → first publish (sensor) or first 201 read (anomaly)
            to_first_work_ms=_median([m["first_work"] for m in ms]),
            to_first_work_ms_p90=round(percentile([m["first_work"] for m in ms], 90), 2),
            # the function's own share: runtime loaded → first publish / 201
            function_ms=_median([m["first_work"] - m["core_ready"] for m in ms]),
            import_ms=_median([m["imported"] - m["core_ready"] for m in ms]),
        )
    return summary


def measure(repeats: int, server: Optional[Server]) -> Dict[str, Any]:
    """Every kind ``repeats`` times (interleaved); anomaly kinds only with a ``server``."""
    results: Dict[str, Any] = {}
    base_env = children.child_env({})
    bare: List[float] = []
    for i in range(repeats + 1):
        started = time.monotonic_ns()
        subprocess.run([sys.executable, "-c", "pass"], env=base_env, cwd=REPO_ROOT, check=True)
        if i:
            bare.append((time.monotonic_ns() - started) / 1e6)
    results["interpreter"] = {"runs": repeats, "process_ms": _median(bare)}

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
        secret_file = os.path.join(scratch, "secret.json")
        if server is not None:
            with open(os.open(secret_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
                handle.write(server.secret)
        code_copy = copy_without_pyc(os.path.join(scratch, "code"))
        kinds = child_kinds(server, secret_file)
        runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in kinds}
        for i in range(repeats + 1):
            for name, build in kinds.items():
                with tempfile.TemporaryDirectory(prefix=f"bench-cold-{name}-") as state_dir:
                    code, env = build(state_dir, i)
                    run = spawn_kind(code, env, code_copy)
                if i:
                    runs[name].append(run)
    for name, kind_runs in runs.items():
        results[name] = _summarize(kind_runs)
    if server is not None:
        results["server"] = server.name
    return results
