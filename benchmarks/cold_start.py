"""Cold start of each function as a fresh process, and its peak RSS.

Each sample is a new ``python -c`` child, started the way a core starts a
pinned function: configuration in the environment, the local runtime
(``EDGE_AGENT_RUNTIME=local``) and, for the sensor, the fake sensor
(``EDGE_AGENT_SENSOR=fake``, scenario ``steady``). The child stamps
``time.monotonic_ns()`` (one system-wide clock, shared with the parent on
Linux) at its first line, after importing the function module, after
``create_app()`` and after the first useful work; the parent stamps the spawn. Peak RSS is the child's own
``VmHWM`` (from ``/proc/self/status``, read as its last act; ``ru_maxrss``
is not used because on Linux it carries over the forking parent's high-water
mark), CPU time its ``ru_utime + ru_stime`` from ``wait4`` (steadier than wall
time on a busy machine). One unrecorded run first fills ``__pycache__``,
as an installed package would have it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from .common import (
    DEVICE_ID,
    REPO_ROOT,
    SNOW_USER,
    anomaly_message,
    function_environment,
    new_password,
    percentile,
    secret_json,
    start_standin,
)

# Modules a function should not load unless it needs them.
HEAVY = (
    "requests",
    "urllib3",
    "http.client",
    "ssl",
    "email",
    "sqlite3",
    "boto3",
    "botocore",
    "awscrt",
    "greengrasssdk",
    "awsiot",
    "sense_hat",
    "numpy",
)

# The report imports nothing (json would add to the peak RSS it reports).
_REPORT = """
with open("/proc/self/status") as _status:
    _hwm = [l.split()[1] for l in _status if l.startswith("VmHWM:")][0]
print(repr({{"stamps": _stamps, "modules": [m for m in {heavy!r} if m in sys.modules],
            "at_ready": globals().get("_at_ready"), "module_count": len(sys.modules),
            "vm_hwm_kb": int(_hwm)}}))
"""

BASELINE_CHILD = (
    """
import time, sys
_stamps = {{"start": time.monotonic_ns()}}
"""
    + _REPORT
)

SENSOR_CHILD = (
    """
import time, sys
_stamps = {{"start": time.monotonic_ns()}}
import functions.sensor_function as _function
_stamps["imported"] = time.monotonic_ns()
_app = _function.create_app()
_stamps["ready"] = time.monotonic_ns()
_app.tick()
_stamps["first_work"] = time.monotonic_ns()
"""
    + _REPORT
)

ANOMALY_CHILD = (
    """
import time, sys
_stamps = {{"start": time.monotonic_ns()}}
import functions.anomaly_function as _function
_stamps["imported"] = time.monotonic_ns()
_app = _function.create_app()
_stamps["ready"] = time.monotonic_ns()
_at_ready = [m for m in {heavy!r} if m in sys.modules]
_app.client.session  # what the first delivery does first: import requests, make the Session
_stamps["delivery_ready"] = time.monotonic_ns()
_app.handle({message})
_delivered = _app.pump()
_stamps["first_work"] = time.monotonic_ns()
if _delivered != 1:
    raise SystemExit("first delivery failed")
"""
    + _REPORT
)


def _child_env(extra: Dict[str, str]) -> Dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EDGE_AGENT_", "AWS_", "PYTHON", "SVCUID")) and k != "MY_FUNCTION_ARN"
    }
    env.update(PYTHONPATH=REPO_ROOT, EDGE_AGENT_RUNTIME="local")
    env.update(extra)
    return env


def _spawn(code: str, env: Dict[str, str]) -> Dict[str, Any]:
    """Run one child; its stamps (ms after the spawn), CPU time, peak RSS and modules.

    The child is reaped with ``wait4`` (not ``Popen.wait``) to get its own
    resource usage; its stderr goes to a file so neither pipe can fill and block it.
    """
    with tempfile.TemporaryFile() as stderr:
        spawn = time.monotonic_ns()
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        out = proc.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        exited = time.monotonic_ns()
        proc.returncode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        proc.stdout.close()  # type: ignore[union-attr]
        if proc.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(
                "benchmark child failed ({}): {}".format(
                    proc.returncode, stderr.read().decode("utf-8", "replace")[-2000:]
                )
            )
    report: Dict[str, Any] = ast.literal_eval(out.decode().strip().splitlines()[-1])
    stamps = {k: (v - spawn) / 1e6 for k, v in report["stamps"].items()}
    return {
        "ms": stamps,
        "process_ms": (exited - spawn) / 1e6,
        "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1e3,
        "peak_rss_mb": report["vm_hwm_kb"] / 1024.0,
        "modules": report["modules"],
        "modules_at_ready": report["at_ready"],
        "module_count": report["module_count"],
    }


def _median(runs: List[Dict[str, Any]], key: str) -> Optional[float]:
    values = [r["ms"][key] for r in runs if key in r["ms"]]
    return round(percentile(values, 50), 2) if values else None


def _summarize(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    summary: Dict[str, Any] = {
        "runs": len(runs),
        # spawn → create_app() returned: what a core waits for before the function is up
        "cold_start_ms": _median(runs, "ready"),
        "interpreter_ms": _median(runs, "start"),
        "import_ms": round(
            percentile([r["ms"]["imported"] - r["ms"]["start"] for r in runs], 50), 2
        ),
        "create_app_ms": round(
            percentile([r["ms"]["ready"] - r["ms"]["imported"] for r in runs], 50), 2
        ),
        "first_work_ms": _median(runs, "first_work"),
        "cold_start_ms_p90": round(percentile([r["ms"]["ready"] for r in runs], 90), 2),
        "process_cpu_ms": round(percentile([r["cpu_ms"] for r in runs], 50), 2),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "heavy_modules_loaded": runs[-1]["modules"],
        "module_count": runs[-1]["module_count"],
    }
    if any("delivery_ready" in r["ms"] for r in runs):
        summary["delivery_ready_ms"] = _median(runs, "delivery_ready")
        # requests must not be imported until the first delivery needs it
        summary["heavy_modules_at_create_app"] = runs[-1]["modules_at_ready"]
    return summary


def measure(repeats: int = 10, standin_mode: str = "thread") -> Dict[str, Any]:
    results: Dict[str, Any] = {}

    base_env = _child_env({})
    bare, baseline = [], []
    for i in range(repeats + 1):
        bare_ns = time.monotonic_ns()
        subprocess.run([sys.executable, "-c", "pass"], env=base_env, cwd=REPO_ROOT, check=True)
        bare_ms = (time.monotonic_ns() - bare_ns) / 1e6
        run = _spawn(BASELINE_CHILD.format(heavy=HEAVY), base_env)
        if i:
            bare.append(bare_ms)
            baseline.append(run)
    results["interpreter"] = {
        "runs": repeats,
        # `python -c pass`, spawn to exit
        "process_ms": round(percentile(bare, 50), 2),
        # spawn to the first line of -c code: what every function pays before its imports
        "startup_ms": _median(baseline, "start"),
        "cpu_ms": round(percentile([r["cpu_ms"] for r in baseline], 50), 2),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in baseline), 1),
        "module_count": baseline[-1]["module_count"],
    }

    runs = []
    for i in range(repeats + 1):
        with tempfile.TemporaryDirectory(prefix="bench-cold-sensor-") as state_dir:
            env = _child_env(
                dict(
                    function_environment("sensor"),
                    stateDir=state_dir,
                    deviceId=DEVICE_ID,
                    EDGE_AGENT_SENSOR="fake",
                    EDGE_AGENT_SCENARIO="steady",
                    EDGE_AGENT_SEED="1",
                )
            )
            run = _spawn(SENSOR_CHILD.format(heavy=HEAVY), env)
        if i:
            runs.append(run)
    results["sensor"] = _summarize(runs)

    password = new_password()
    standin = start_standin(password, standin_mode)
    try:
        runs = []
        for i in range(repeats + 1):
            with tempfile.TemporaryDirectory(prefix="bench-cold-anomaly-") as state_dir:
                secret_file = os.path.join(state_dir, "secret.json")
                with open(secret_file, "w", encoding="utf-8") as handle:
                    handle.write(secret_json(password))
                env = _child_env(
                    dict(
                        function_environment("anomaly"),
                        snowUrl=standin.url,
                        stateDir=state_dir,
                        deviceId=DEVICE_ID,
                        EDGE_AGENT_SECRET_FILE=secret_file,
                    )
                )
                # A distinct episode per run, so every run really creates its incident.
                code = ANOMALY_CHILD.format(heavy=HEAVY, message=anomaly_message(1000 + i))
                run = _spawn(code, env)
            if i:
                runs.append(run)
        results["anomaly"] = _summarize(runs)
        results["anomaly"]["user"] = SNOW_USER
    finally:
        standin.stop()
    return results
