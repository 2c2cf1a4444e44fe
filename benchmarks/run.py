"""Run the benchmark suite: ``python -m benchmarks.run [--quick] [--json-out PATH]``.

Prints one table of measured figures, the project beside the seed blog's
functions (``benchmarks/seed/``) with ``project ÷ seed`` ratios from the same
run, and writes every figure as JSON (default ``out/benchmarks.json``).
``--repeat 2`` runs it all twice and adds each row's spread between the runs
(``spread`` in the JSON, a column in the table; over ±15 %: ``VARIES``).
``--markdown JSON`` prints the table from a JSON written earlier and
``--write-docs JSON`` puts it into docs/benchmarks.md and the README.

A missed target is reported, never an error: the exit status is non-zero only
if a benchmark itself failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional

from .common import REPO_ROOT, STANDIN_MODES, machine_info

SECTIONS = (
    "sensor",
    "realtime",
    "cold-start",
    "breach",
    "drain",
    "scenarios",
    "routing",
    "disk",
    "status",
    "fleet",
)


@dataclass(frozen=True)
class Counts:
    ticks: int  # hot-loop readings per sensor-path figure
    messages: int  # routing messages
    repeats: int  # spawned processes per cold-start figure
    episodes: int  # breach-to-incident episodes (project) and samples (seed)
    actions: int  # queued actions for the drain
    plain_episodes: int  # the same against the plain http.server (40 ms a call)
    plain_actions: int
    window: float  # seconds of each real-time CPU run
    seed_sleep_samples: int  # seed samples with the real 5 s sleep (0: skip)


FULL = Counts(20_000, 100_000, 10, 200, 1000, 50, 300, 60.0, 2)
QUICK = Counts(5_000, 20_000, 5, 50, 1000, 15, 60, 10.0, 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent bench",
        description="Measure what the edge agent costs, beside the seed blog's functions.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (CI, under a minute)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run everything N times; the first run's figures are reported, with each row's"
        " spread over the N runs (a row varying more than ±15%% says so)",
    )
    parser.add_argument(
        "--json-out",
        default=os.path.join("out", "benchmarks.json"),
        metavar="PATH",
        help="where to write the figures (default %(default)s; '-' for none)",
    )
    parser.add_argument("--only", action="append", choices=SECTIONS, help="repeatable")
    parser.add_argument(
        "--standin",
        choices=STANDIN_MODES,
        default="process",
        help="the ServiceNow stand-in as its own process (default) or in a thread of this one",
    )
    parser.add_argument("--snow-url", metavar="URL", help="run against this ServiceNow instead")
    parser.add_argument(
        "--secret-file",
        metavar="PATH",
        help='with --snow-url: the credentials as Secrets Manager holds them, {"username": ...}',
    )
    parser.add_argument(
        "--no-plain-server",
        action="store_true",
        help="skip the runs against the plain http.server (Nagle on)",
    )
    parser.add_argument(
        "--no-what-if",
        action="store_true",
        help="skip the client-fix what-if (TCP_QUICKACK) against the plain http.server",
    )
    for name in ("ticks", "messages", "repeats", "episodes", "actions"):
        parser.add_argument(f"--{name}", type=int, help=f"override the {name} count")
    parser.add_argument("--plain-actions", type=int, help="drain actions against the plain server")
    parser.add_argument("--window", type=float, help="seconds of each real-time CPU run")
    parser.add_argument(
        "--seed-sleep-samples",
        type=int,
        help="seed samples timed with the blog's real 5 s sleep (full run: 2; quick: 0)",
    )
    parser.add_argument(
        "--agent-log-level",
        metavar="LEVEL",
        help="log the agent at LEVEL to a discarding handler, to see what logging costs",
    )
    parser.add_argument(
        "--markdown", metavar="JSON", help="print the table from a JSON written earlier; no run"
    )
    parser.add_argument(
        "--write-docs",
        metavar="JSON",
        help="rewrite the generated blocks of docs/benchmarks.md and README.md from JSON; no run",
    )
    return parser


def _counts(args: argparse.Namespace) -> Counts:
    base = QUICK if args.quick else FULL
    chosen = {
        name: getattr(args, name, None)
        if getattr(args, name, None) is not None
        else getattr(base, name)
        for name in Counts.__dataclass_fields__
    }
    return Counts(**chosen)


class Servers:
    """The primary server (stand-in or ``--snow-url``) and the plain http.server, started lazily."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._started: Dict[str, Any] = {}

    def primary(self) -> Any:
        if "primary" not in self._started:
            from .servers import outside_server, start_server

            if self.args.snow_url:
                server = outside_server(self.args.snow_url, self.args.secret_file)
            else:
                server = start_server("standin", self.args.standin)
            self._started["primary"] = server
        return self._started["primary"]

    def plain(self) -> Optional[Any]:
        if self.args.no_plain_server:
            return None
        if "plain" not in self._started:
            from .servers import start_server

            self._started["plain"] = start_server("plain")
        return self._started["plain"]

    @property
    def primary_name(self) -> Optional[str]:
        """The primary server's name, if a section started it."""
        server = self._started.get("primary")
        return server.name if server is not None else None

    def descriptions(self) -> Dict[str, Any]:
        return {s.name: s.description for s in self._started.values()}

    def stop(self) -> None:
        for server in self._started.values():
            server.stop()


def _breach(counts: Counts, servers: Servers, what_if: bool) -> Dict[str, Any]:
    from . import incidents

    results: Dict[str, Any] = {}
    primary = servers.primary()
    results[primary.name] = {
        "project": incidents.measure_project_breach(primary, counts.episodes),
        "seed": incidents.measure_seed_breach(primary, counts.episodes),
    }
    if counts.seed_sleep_samples:
        results[primary.name]["seed_with_sleep"] = incidents.measure_seed_breach_with_sleep(
            primary, counts.seed_sleep_samples
        )
    plain = servers.plain()
    if plain is not None:
        results[plain.name] = {
            "project": incidents.measure_project_breach(plain, counts.plain_episodes),
            "seed": incidents.measure_seed_breach(plain, counts.plain_episodes),
        }
        if what_if:
            results[plain.name]["project_quickack"] = incidents.measure_project_breach(
                plain, counts.plain_episodes, quick_ack=True
            )
    return results


def _drain(counts: Counts, servers: Servers, what_if: bool) -> Dict[str, Any]:
    from . import incidents

    primary = servers.primary()
    results = {primary.name: {"project": incidents.measure_drain(primary, counts.actions)}}
    plain = servers.plain()
    if plain is not None:
        results[plain.name] = {"project": incidents.measure_drain(plain, counts.plain_actions)}
        if what_if:
            results[plain.name]["project_quickack"] = incidents.measure_drain(
                plain, counts.plain_actions, quick_ack=True
            )
    return results


def _sections(
    counts: Counts, servers: Servers, what_if: bool
) -> Dict[str, Callable[[], Dict[str, Any]]]:
    from . import cold_start, disk, fleet, realtime, routing, scenarios, sensor_path, status

    return {
        "sensor": lambda: {"sensor_path": sensor_path.measure(counts.ticks)},
        "realtime": lambda: {"realtime": realtime.measure(window=counts.window)},
        "cold-start": lambda: {"cold_start": cold_start.measure(counts.repeats, servers.primary())},
        "breach": lambda: {"breach": _breach(counts, servers, what_if)},
        "drain": lambda: {"drain": _drain(counts, servers, what_if)},
        "scenarios": lambda: {"scenarios": scenarios.measure(servers.primary())},
        "routing": lambda: {"routing": routing.measure(counts.messages)},
        "disk": lambda: {"disk": disk.measure()},
        # The status service: what it costs the sensor path and in memory.
        "status": lambda: {"status": status.measure(counts.ticks, max(1, counts.repeats // 5))},
        # A site of many Pis: ServiceNow calls per site event, the gateway's cost.
        "fleet": lambda: {"fleet": fleet.measure(servers.primary(), counts == QUICK)},
    }


def _load() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _read_report(path: str) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def run(args: argparse.Namespace, argv: Optional[List[str]]) -> Dict[str, Any]:
    """Run the chosen sections; the report (``meta``, ``results``, ``errors``)."""
    counts = _counts(args)
    meta: Dict[str, Any] = machine_info(tempfile.gettempdir())
    meta.update(
        quick=args.quick,
        counts=asdict(counts),
        standin=args.standin,
        snow_url=args.snow_url,
        agent_log_level=args.agent_log_level,
        load_before=_load(),
        command=" ".join(["edge-agent bench", *(sys.argv[1:] if argv is None else argv)]),
    )
    results: Dict[str, Any] = {}
    errors: Dict[str, str] = {}
    seconds: Dict[str, float] = {}
    chosen = args.only or list(SECTIONS)
    servers = Servers(args)
    try:
        for name, section in _sections(counts, servers, not args.no_what_if).items():
            if name not in chosen:
                continue
            print(f"running {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                results.update(section())
            except Exception:
                errors[name] = traceback.format_exc()
                print(errors[name], file=sys.stderr)
            seconds[name] = round(time.monotonic() - started, 2)
        meta["primary_server"] = servers.primary_name
        meta["servers"] = servers.descriptions()
    finally:
        servers.stop()
    meta["load_after"] = _load()
    meta["section_seconds"] = seconds
    return {"meta": meta, "results": results, "errors": errors}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    from . import report as reporting

    if args.markdown or args.write_docs:
        path = args.markdown or args.write_docs
        try:
            report = _read_report(path)
        except (OSError, ValueError) as exc:
            print(f"cannot read benchmark figures from {path}: {exc}", file=sys.stderr)
            return 2
        if args.markdown:
            print(reporting.docs_block(report))
        else:
            for written in reporting.write_docs(report):
                print(f"updated {written}")
        return 0
    if bool(args.snow_url) != bool(args.secret_file):
        print("--snow-url and --secret-file go together", file=sys.stderr)
        return 2
    if args.actions is not None and args.actions % 2 or (args.plain_actions or 0) % 2:
        print("--actions must be even (an open and a resolve per episode)", file=sys.stderr)
        return 2
    if args.agent_log_level:
        agent_log = logging.getLogger("agent")
        agent_log.addHandler(logging.FileHandler(os.devnull))
        agent_log.setLevel(args.agent_log_level.upper())

    if args.repeat < 1:
        print("--repeat must be 1 or more", file=sys.stderr)
        return 2
    reports = []
    for number in range(args.repeat):
        if args.repeat > 1:
            print(f"run {number + 1} of {args.repeat}", file=sys.stderr, flush=True)
        reports.append(run(args, argv))
    report = reports[0]
    if args.repeat > 1:
        # Every run's results are kept; the table shows the first run's and each row's spread.
        report["repeat_results"] = [r["results"] for r in reports[1:]]
        report["repeat_errors"] = [r["errors"] for r in reports[1:]]
        report["spread"] = reporting.spread(reports)
        report["meta"]["run_seconds"] = [
            sum(r["meta"]["section_seconds"].values()) for r in reports
        ]
    print(reporting.render_console(report))
    if args.json_out and args.json_out != "-":
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True, ensure_ascii=False)
            handle.write("\n")
        print(f"\nwrote {args.json_out}")
    return 1 if report["errors"] or any(report.get("repeat_errors", [])) else 0


if __name__ == "__main__":
    raise SystemExit(main())
