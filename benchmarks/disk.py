"""How long a durable write takes on the state directory's filesystem.

The outbox (``PRAGMA synchronous=FULL``) and the judge's episode state both
wait for ``fsync``; this figure is the floor under every enqueue, every
delivery's bookkeeping and every breach tick. An SD card on a Pi is typically
one to two orders of magnitude slower than a server's disk.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Dict

from .common import ns_to_ms, summarize


def measure(writes: int = 100, size: int = 4096) -> Dict[str, Any]:
    block = os.urandom(size)
    samples = []
    with tempfile.TemporaryDirectory(prefix="bench-disk-") as directory:
        path = os.path.join(directory, "fsync.bin")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for i in range(writes + 5):
                os.pwrite(fd, block, (i % 16) * size)
                t0 = time.perf_counter_ns()
                os.fsync(fd)
                if i >= 5:  # the first few extend the file
                    samples.append(time.perf_counter_ns() - t0)
        finally:
            os.close(fd)
    return {"write_bytes": size, "fsync_ms": summarize(ns_to_ms(samples), 3)}
