"""A real shifted wall clock for a process: the LD_PRELOAD shim ``clock_shim.c``, built once.

:class:`ShiftedClock` compiles the shim with the system's C compiler (cached by its
source's hash under the temporary folder) and gives the environment that loads it
into a child process, plus :meth:`ShiftedClock.step` to move that process's wall
clock (``CLOCK_REALTIME``: ``time.time()``, ``datetime.now()``) while it runs; the
monotonic clock, sleeps and timed waits are untouched, as on a Pi when NTP steps
the clock. :meth:`ShiftedClock.unsynchronised` makes ``adjtimex`` report
``STA_UNSYNC``, as the kernel does before NTP has set the clock.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from typing import Dict, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "clock_shim.c")


def shim_library() -> str:
    """The compiled shim's path; skips the test when there is no C compiler."""
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    target = os.path.join(tempfile.gettempdir(), "edge-agent-clock-shim-{}.so".format(digest))
    if os.path.exists(target):
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the clock shim")
    partial = "{}.{}.tmp".format(target, os.getpid())
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", partial, SOURCE, "-ldl"],
        check=True,
        capture_output=True,
    )
    os.replace(partial, target)  # several test processes may build it at once
    return target


class ShiftedClock:
    """The wall clock of the processes started with :meth:`env`, ``offset`` seconds off."""

    def __init__(self, folder: str, offset: float = 0.0) -> None:
        self.library = shim_library()
        self.path = os.path.join(folder, "clock-shift")
        self.offset = 0.0
        self.unsync = False
        self._write(offset, False)

    def env(self, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["LD_PRELOAD"] = self.library
        env["EDGE_AGENT_CLOCK_SHIFT_FILE"] = self.path
        return env

    def step(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (negative: back), as NTP does."""
        self._write(self.offset + seconds, self.unsync)

    def set_to(self, epoch: float) -> None:
        """Set the wall clock to ``epoch`` now (e.g. near 1970, a Pi booting without RTC)."""
        self._write(epoch - time.time(), self.unsync)

    def unsynchronised(self, value: bool = True) -> None:
        self._write(self.offset, value)

    def now(self) -> float:
        """What ``time.time()`` reads in the shifted processes."""
        return time.time() + self.offset

    def _write(self, offset: float, unsync: bool) -> None:
        self.offset, self.unsync = offset, unsync
        partial = self.path + ".tmp"
        with open(partial, "w") as f:
            f.write("{:.6f}{}\n".format(offset, " unsync" if unsync else ""))
        os.replace(partial, self.path)
