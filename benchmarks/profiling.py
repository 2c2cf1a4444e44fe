"""Profile one benchmark's measured region: ``python -m benchmarks.profiling SECTION``.

Sections: ``sensor``, ``routing``, ``breach``, ``drain`` (cProfile, or
pyinstrument with ``--tool pyinstrument`` if it is installed), and
``imports-sensor`` / ``imports-anomaly`` (``python -X importtime`` of a fresh
process doing what the cold-start benchmark's child does, summed per top-level
package). Only the region the benchmark times is profiled, not its set-up.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
from collections import defaultdict
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Tuple

from .common import REPO_ROOT, function_environment

SECTIONS = ("sensor", "routing", "breach", "drain", "imports-sensor", "imports-anomaly")


def _run_section(
    section: str, region: Callable[[], ContextManager[Any]], args: argparse.Namespace
) -> Dict[str, Any]:
    from . import incidents, routing, sensor_path

    if section == "sensor":
        return sensor_path.measure(args.count or 20_000, region=region)
    if section == "routing":
        return routing.measure(args.count or 100_000, region=region)
    if section == "breach":
        return incidents.measure_breach(
            args.count or 200, worker=not args.direct, standin_mode=args.standin, region=region
        )
    if section == "drain":
        return incidents.measure_drain(
            args.count or 1000,
            synchronous=args.synchronous,
            standin_mode=args.standin,
            region=region,
        )
    raise ValueError(section)


def profile_cprofile(section: str, args: argparse.Namespace) -> str:
    profiler = cProfile.Profile()

    @contextlib.contextmanager
    def region() -> Iterator[None]:
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()

    result = _run_section(section, region, args)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    if args.strip:
        stats.strip_dirs()
    stats.sort_stats(args.sort).print_stats(args.limit)
    return f"{result}\n{out.getvalue()}"


def profile_pyinstrument(section: str, args: argparse.Namespace) -> str:
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("pyinstrument is not installed: pip install pyinstrument")
    profiler = Profiler(interval=0.0002)

    @contextlib.contextmanager
    def region() -> Iterator[None]:
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()

    result = _run_section(section, region, args)
    return f"{result}\n{profiler.output_text(unicode=True, color=False, show_all=False)}"


# -- imports ---------------------------------------------------------------------------------
SENSOR_IMPORTS = "import functions.sensor_function"
ANOMALY_IMPORTS = (
    "import functions.anomaly_function as f, requests; requests.Session()"  # first delivery
)


def importtime(which: str, top: int = 25) -> str:
    """``-X importtime`` of the function's imports, self and cumulative µs per module."""
    code = SENSOR_IMPORTS if which == "sensor" else ANOMALY_IMPORTS
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, EDGE_AGENT_RUNTIME="local")
    env.update(function_environment(which))
    with tempfile.TemporaryDirectory() as state_dir:
        env["stateDir"] = state_dir
        subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, check=True)  # pyc
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    rows: List[Tuple[str, int, int]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (p.strip() for p in line[len("import time:") :].split("|"))
        rows.append((name, int(self_us), int(cumulative_us)))
    by_package: Dict[str, int] = defaultdict(int)
    for name, self_us, _ in rows:
        by_package[name.split(".")[0]] += self_us
    total = sum(by_package.values())
    out = [f"{which}: {len(rows)} modules imported, {total / 1000:.1f} ms of import time", ""]
    out.append("by top-level package (self time, ms):")
    for package, micros in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {micros / 1000:8.2f}  {package}")
    out += ["", "heaviest modules (cumulative ms, self ms):"]
    for name, self_us, cumulative_us in sorted(rows, key=lambda r: -r[2])[:top]:
        out.append(f"  {cumulative_us / 1000:8.2f} {self_us / 1000:8.2f}  {name}")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__)
    parser.add_argument("section", choices=SECTIONS)
    parser.add_argument("--tool", choices=("cprofile", "pyinstrument"), default="cprofile")
    parser.add_argument("--count", type=int, help="ticks, messages, episodes or actions")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (default tottime)")
    parser.add_argument("--limit", type=int, default=30, help="rows to print (default 30)")
    parser.add_argument("--strip", action="store_true", help="strip directories from names")
    parser.add_argument("--standin", choices=("thread", "process"), default="thread")
    parser.add_argument("--direct", action="store_true", help="breach: pump in-thread")
    parser.add_argument(
        "--synchronous",
        choices=("OFF", "NORMAL", "FULL"),
        help="drain: what-if, override the outbox's PRAGMA synchronous",
    )
    args = parser.parse_args(argv)
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    if args.section.startswith("imports-"):
        print(importtime(args.section.split("-", 1)[1], args.limit))
    elif args.tool == "pyinstrument":
        print(profile_pyinstrument(args.section, args))
    else:
        print(profile_cprofile(args.section, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
