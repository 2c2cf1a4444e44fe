"""Profile one benchmark's measured region: ``python -m benchmarks.profiling SECTION``.

Sections: ``sensor`` (the device path; ``--seed`` for the seed, ``--held`` for
breach-held readings), ``routing``, ``breach``, ``drain`` (against ``--server
standin|plain``, ``--quick-ack`` for the client-fix what-if), with cProfile or
pyinstrument (``--tool pyinstrument``, if installed); and ``imports-KIND``
(``python -X importtime`` of the very child the cold-start benchmark spawns,
KIND one of ``project_sensor``, ``seed_sensor``, ``seed_sensor_bare``,
``project_anomaly``, ``seed_anomaly``), the core runtime stand-in's own imports
listed apart. Only the region a benchmark times is profiled, not its set-up.
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

from .common import REPO_ROOT

IMPORT_KINDS = (
    "project_sensor",
    "seed_sensor",
    "seed_sensor_bare",
    "project_anomaly",
    "seed_anomaly",
)
SECTIONS = ("sensor", "routing", "breach", "drain") + tuple("imports-" + k for k in IMPORT_KINDS)


def _run_section(
    section: str, region: Callable[[], ContextManager[Any]], args: argparse.Namespace
) -> Dict[str, Any]:
    from . import incidents, routing, sensor_path
    from .servers import start_server

    if section == "sensor":
        measure = sensor_path.measure_seed if args.seed else sensor_path.measure_device
        return measure(args.count or 20_000, held=args.held, region=region)
    if section == "routing":
        return routing.measure(args.count or 100_000, region=region)
    with start_server(args.server) as server:
        if section == "breach":
            return incidents.measure_project_breach(
                server, args.count or 200, quick_ack=args.quick_ack, region=region
            )
        if section == "drain":
            return incidents.measure_drain(
                server,
                args.count or 1000,
                quick_ack=args.quick_ack,
                synchronous=args.synchronous,
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
RUNTIME_MODULE = "benchmarks.v1_child_core"


def parse_importtime(stderr: str) -> List[Tuple[str, int, int]]:
    """(module, self µs, cumulative µs) rows of ``-X importtime`` output, in import order."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (p.strip() for p in line[len("import time:") :].split("|"))
        rows.append((name, int(self_us), int(cumulative_us)))
    return rows


def importtime(kind: str, top: int = 25) -> str:
    """``-X importtime`` of a cold-start child: what the function imports, per package."""
    from . import children, cold_start
    from .servers import start_server

    server = start_server("standin") if kind.endswith("anomaly") else None
    try:
        with tempfile.TemporaryDirectory() as scratch:
            secret_file = os.path.join(scratch, "secret.json")
            if server is not None:
                with open(secret_file, "w", encoding="utf-8") as handle:
                    handle.write(server.secret)
            code, env = cold_start.child_kinds(server, secret_file)[kind](scratch, 0)
            code = children.PREAMBLE + code + children.REPORT.format(heavy=children.HEAVY)
            env = children.child_env(env)
            subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                cwd=REPO_ROOT,
                check=True,
                capture_output=True,
            )  # fills __pycache__
            proc = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", code],
                env=env,
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
    finally:
        if server is not None:
            server.stop()
    rows = parse_importtime(proc.stderr)
    names = [name.strip() for name, _, _ in rows]
    cut = names.index(RUNTIME_MODULE) + 1 if RUNTIME_MODULE in names else 0
    runtime, function = rows[:cut], rows[cut:]
    by_package: Dict[str, int] = defaultdict(int)
    for name, self_us, _ in function:
        by_package[name.strip().split(".")[0]] += self_us
    total = sum(by_package.values())
    out = [
        f"{kind}: runtime stand-in and interpreter start {len(runtime)} modules, "
        f"{sum(r[1] for r in runtime) / 1000:.1f} ms",
        f"{kind}: the function {len(function)} modules, {total / 1000:.1f} ms of import time",
        "",
        "by top-level package (self time, ms):",
    ]
    for package, micros in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {micros / 1000:8.2f}  {package}")
    out += ["", "heaviest modules (cumulative ms, self ms):"]
    for name, self_us, cumulative_us in sorted(function, key=lambda r: -r[2])[:top]:
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
    parser.add_argument("--server", choices=("standin", "plain"), default="standin")
    parser.add_argument("--quick-ack", action="store_true", help="the client-fix what-if")
    parser.add_argument("--seed", action="store_true", help="sensor: the seed's loop")
    parser.add_argument("--held", action="store_true", help="sensor: breach-held readings")
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
