"""Spawned benchmark children: a function loaded as a Greengrass V1 core loads it.

Each child is a fresh ``python -c`` process with the function's configuration
in its environment, ``MY_FUNCTION_ARN`` set (so the project's functions pick
the V1 runtime and start at module load), the ``sense_hat`` stand-in first on
``PYTHONPATH`` and, as its first statements, the light core IPC stand-in
(:mod:`benchmarks.v1_child_core`). The child stamps ``time.monotonic_ns()``
(one system-wide clock on Linux, shared with the parent) as it goes and ends
by printing one ``repr`` dict: its stamps, peak RSS (its own ``VmHWM``; the
``ru_maxrss`` of ``wait4`` carries over the forking parent's mark on Linux)
and which heavy modules it loaded. The parent adds the child's CPU time from
``wait4``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict

from .common import REPO_ROOT
from .device import STAND_INS

# Modules a function should not load unless it needs them.
HEAVY = (
    "requests",
    "urllib3",
    "http.client",
    "ssl",
    "email",
    "sqlite3",
    "dataclasses",
    "boto3",
    "botocore",
    "awscrt",
    "greengrasssdk",
    "awsiot",
    "sense_hat",
    "numpy",
)

# First lines of every function child: the stamp, then the core's runtime.
PREAMBLE = """
import time, sys
_stamps = {"start": time.monotonic_ns()}
from benchmarks.v1_child_core import install as _install_core
_core = _install_core()
_stamps["core_ready"] = time.monotonic_ns()
"""

# Last lines: the report imports nothing (json would add to the peak RSS it reports).
REPORT = """
with open("/proc/self/status") as _status:
    _hwm = [l.split()[1] for l in _status if l.startswith("VmHWM:")][0]
print(repr({{"stamps": _stamps, "modules": [m for m in {heavy!r} if m in sys.modules],
            "module_count": len(sys.modules), "vm_hwm_kb": int(_hwm),
            "extra": globals().get("_extra")}}))
"""


def child_env(extra: Dict[str, str]) -> Dict[str, str]:
    """This process's environment without Greengrass, agent or Python variables, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EDGE_AGENT_", "EDGE_BENCH_", "AWS_", "PYTHON", "SVCUID"))
        and k != "MY_FUNCTION_ARN"
    }
    env["PYTHONPATH"] = os.pathsep.join((STAND_INS, REPO_ROOT))
    env.update(extra)
    return env


def spawn(
    code: str, env: Dict[str, str], timeout: float = 120.0, cwd: str = REPO_ROOT
) -> Dict[str, Any]:
    """Run one child; its stamps (ms after the spawn), CPU time, peak RSS, modules, extra.

    Reaped with ``wait4`` (not ``Popen.wait``) for its own resource usage; its
    stderr goes to a file so neither pipe can fill and block it.
    """
    with tempfile.TemporaryFile() as stderr:
        started = time.monotonic_ns()
        proc = subprocess.Popen(
            [sys.executable, "-c", code + REPORT.format(heavy=HEAVY)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            out = proc.stdout.read()  # type: ignore[union-attr]
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            watchdog.cancel()
            proc.stdout.close()  # type: ignore[union-attr]
        exited = time.monotonic_ns()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(
                "benchmark child failed ({}): {}".format(
                    proc.returncode, stderr.read().decode("utf-8", "replace")[-2000:]
                )
            )
    report: Dict[str, Any] = ast.literal_eval(out.decode().strip().splitlines()[-1])
    return {
        "ms": {k: (v - started) / 1e6 for k, v in report["stamps"].items()},
        "process_ms": (exited - started) / 1e6,
        "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1e3,
        "peak_rss_mb": report["vm_hwm_kb"] / 1024.0,
        "modules": report["modules"],
        "module_count": report["module_count"],
        "extra": report["extra"],
    }
