"""A Raspberry Pi's view of the Sense HAT, for running the installed ``sense_hat`` library.

:class:`HatWorld` describes the machine (sysfs names, device files and their
groups, the run-as user's passwd entry and home, ``/etc/RTIMULib.ini``, what
the chips answer) and :meth:`HatWorld.run` builds it in a private mount
namespace and runs the agent's Sense HAT backend there, as that user, over the
real ``sense_hat`` package. Only the ``RTIMU`` C extension is a stand-in
(``tests/stand_ins/RTIMU.py``: RTIMULib's chip drivers over the register-level
model of the HTS221 and LPS25H, ``tests/stand_ins/sense_hat_chips.py``); the
``i2c`` backend's ``smbus2`` is the model's stand-in too
(``tests/stand_ins/i2c_bus``), so both backends read the same chips, in real
time. The defaults are a healthy Pi: change one thing per test and see what the
agent says.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CHILD = os.path.join(HERE, "sense_hat_world_child.py")
STAND_INS = os.path.join(HERE, "stand_ins")
FAKE_SMBUS2 = os.path.join(STAND_INS, "i2c_bus")

UID = GID = 1234
GROUPS = {"hat-video": 2044, "hat-input": 2045, "hat-i2c": 2046}
SYSTEM_INI = "# /etc/RTIMULib.ini as python3-sense-hat installs it\nIMUType=6\n"
A_PI = "Raspberry Pi 4 Model B Rev 1.4"


def can_build_worlds() -> Optional[str]:
    """Why a world cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root to build a private mount namespace"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "needs unshare and mount (util-linux)"
    return None


def chips(**spec: Any) -> Dict[str, Any]:
    """A chip-model spec (``EDGE_AGENT_TEST_I2C``; see ``stand_ins/sense_hat_chips.py``)."""
    return dict(spec)


class HatWorld:
    def __init__(self, tmp_path: Any) -> None:
        reason = can_build_worlds()
        if reason:
            pytest.skip(reason)
        self.tmp_path = tmp_path
        self.framebuffers = [
            {"sys": "fb0", "name": "vc4drmfb"},  # HDMI first, as on a Pi 4: the HAT is fb1
            {"sys": "fb1", "name": "RPi-Sense FB"},
        ]
        self.inputs = [
            {"sys": "event0", "name": "Raspberry Pi Sense HAT Joystick"},
            {"sys": "event1", "name": "vc4-hdmi"},
        ]
        self.nodes = {
            "/dev/fb1": {"mode": 0o660, "group": "hat-video"},
            "/dev/input/event0": {"mode": 0o660, "group": "hat-input"},
            "/dev/input/event1": {"mode": 0o660, "group": "hat-input"},
            "/dev/i2c-1": {"mode": 0o660, "group": "hat-i2c"},
        }
        self.user: Dict[str, Any] = {
            "name": "ggc_user",
            "uid": UID,
            "gid": GID,
            "home": "/home/ggc_user",
            "in_passwd": True,
            "groups": sorted(GROUPS.values()),
        }
        self.home: Dict[str, Any] = {"exists": True, "owner": "user", "mode": 0o755, "settings": ""}
        self.system_ini: Optional[str] = SYSTEM_INI
        self.cpu_millidegrees: Optional[int] = None
        # What the chips measure, and their faults (sense_hat_chips' spec); None: the defaults.
        self.chip: Optional[Dict[str, Any]] = None
        self.model: Optional[str] = A_PI  # /proc/device-tree/model, for the backend seam
        # "model": smbus2 is the chip model's stand-in; "absent": not installed.
        self.smbus2 = "model"

    def without_node(self, path: str) -> HatWorld:
        del self.nodes[path]
        return self

    def run(self, *actions: Dict[str, Any]) -> Dict[str, Any]:
        """Build the world, run ``actions`` as the user, return the child's report."""
        spec, env = self._spec(actions)
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", sys.executable, CHILD],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start(self, function: Dict[str, Any], environ: Dict[str, str]) -> subprocess.Popen:
        """Build the world and run a deployed function there as the user, as its runtime
        runs it (``function_child``: ``{"module", "runtime", "events", "subject"}``), with
        ``environ`` added; it runs until killed. Its stderr is a pipe."""
        spec, env = self._spec([{"do": "function", "function": function, "environ": environ}])
        child = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", sys.executable, CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        assert child.stdin is not None
        child.stdin.write(json.dumps(spec).encode())
        child.stdin.close()
        child.stdin = None  # written and closed: communicate() has nothing to send
        return child

    def _spec(self, actions: Any) -> Any:
        scratch = tempfile.mkdtemp(prefix="world-", dir=str(self.tmp_path))
        spec = {
            "scratch": scratch,
            "readable": [ROOT, sys.prefix, sys.base_prefix, os.path.realpath(sys.executable)],
            "framebuffers": self.framebuffers,
            "inputs": self.inputs,
            "cpu_millidegrees": self.cpu_millidegrees,
            "nodes": [
                {"path": path, "mode": node["mode"], "gid": GROUPS[node["group"]]}
                for path, node in self.nodes.items()
            ],
            "user": self.user,
            "groups": GROUPS,
            "system_ini": self.system_ini,
            "home": self.home,
            "chip": None if self.chip is None else json.dumps(self.chip),
            "smbus2": self.smbus2,
            "environ_home": "/home/environ-home",
            "model": self.model,
            "emulator": any(a["do"] == "emulator" for a in actions),
            "actions": list(actions),
        }
        env = dict(os.environ)
        paths = [ROOT, STAND_INS] + ([FAKE_SMBUS2] if self.smbus2 == "model" else [])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.pop("EDGE_AGENT_SENSOR", None)
        return spec, env

    def open(self, backend: str = "sensehat", **options: Any) -> Dict[str, Any]:
        """Open a Sense HAT backend and read ``reads`` times, ``interval`` s apart; the result."""
        action = {"do": "sensor", "backend": backend}
        for key in ("reads", "interval", "script"):
            if key in options:
                action[key] = options.pop(key)
        action["options"] = options
        return self.run(action)["results"][0]
