"""Run the benchmark suite: ``python -m benchmarks.run [--quick] [--json-out PATH]``.

Prints a table of figures with their targets and writes every figure as JSON
(default ``out/benchmarks.json``). A missed target is reported, never an
error: the exit status is non-zero only if a benchmark itself failed.
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
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from .common import REPO_ROOT, STANDIN_MODES, machine_info

SECTIONS = ("disk", "sensor", "routing", "cold-start", "breach", "drain", "scenarios", "status")


@dataclass(frozen=True)
class Counts:
    ticks: int
    messages: int
    repeats: int
    episodes: int
    actions: int


FULL = Counts(ticks=20_000, messages=100_000, repeats=10, episodes=200, actions=1000)
QUICK = Counts(ticks=5_000, messages=20_000, repeats=5, episodes=50, actions=1000)


def _get(results: Dict[str, Any], *path: str) -> Any:
    """The figure at ``path`` in the nested results, or ``None`` if that section did not run."""
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


@dataclass(frozen=True)
class Target:
    name: str
    path: Sequence[str]  # where the figure is in the results
    unit: str
    op: str  # "<=" or ">="
    limit: float

    def value(self, results: Dict[str, Any]) -> Optional[float]:
        return _get(results, *self.path)

    def verdict(self, value: Optional[float]) -> str:
        if value is None:
            return "n/a"
        ok = value <= self.limit if self.op == "<=" else value >= self.limit
        if not ok:
            return "MISS"
        # Within a quarter of the limit: passes, but is worth a look.
        close = value > 0.75 * self.limit if self.op == "<=" else value < 1.25 * self.limit
        return "pass (close)" if close else "pass"


TARGETS = (
    Target(
        "sensor path, per reading, median",
        ("sensor_path", "latency_us", "median"),
        "µs",
        "<=",
        50,
    ),
    Target("sensor function cold start", ("cold_start", "sensor", "cold_start_ms"), "ms", "<=", 80),
    Target("sensor function peak RSS", ("cold_start", "sensor", "peak_rss_mb"), "MB", "<=", 30),
    Target(
        "anomaly function cold start (to delivery-ready)",
        ("cold_start", "anomaly", "delivery_ready_ms"),
        "ms",
        "<=",
        250,
    ),
    Target(
        "breach-to-incident, p50, local stand-in",
        ("breach", "to_201_ms", "median"),
        "ms",
        "<=",
        20,
    ),
    Target("outbox drain", ("drain", "actions_per_second"), "actions/s", ">=", 200),
    # The status service (benchmarks/status.py): the sensor path may not notice it.
    Target(
        "sensor path slower with the status service on (median)",
        ("status", "sensor_path", "median_us", "overhead_percent"),
        "%",
        "<=",
        5,
    ),
    Target(
        "status function: RSS it adds (own process, above a bare Python 3.8)",
        ("status", "memory", "3.8", "above_interpreter_mb"),
        "MB",
        "<=",
        15,
    ),
    Target(
        "status function: RSS it adds to edge-agent run",
        ("status", "run_mode", "added_mb"),
        "MB",
        "<=",
        15,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent bench",
        description="Measure what the edge agent costs: sensor path, cold start, "
        "breach-to-incident latency, ServiceNow calls per episode, outbox drain, routing.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts for a CI smoke run (under a minute)"
    )
    parser.add_argument(
        "--json-out",
        default=os.path.join("out", "benchmarks.json"),
        metavar="PATH",
        help="where to write the figures as JSON (default %(default)s; '-' for none)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only this section; repeatable (default: all)",
    )
    parser.add_argument(
        "--standin",
        choices=STANDIN_MODES,
        default="thread",
        help="run the ServiceNow stand-in in a thread of this process (default) or as its "
        "own process",
    )
    parser.add_argument("--ticks", type=int, help="sensor ticks to time")
    parser.add_argument("--messages", type=int, help="messages per routing measurement")
    parser.add_argument("--repeats", type=int, help="fresh processes per cold-start figure")
    parser.add_argument("--episodes", type=int, help="episodes for breach-to-incident")
    parser.add_argument("--actions", type=int, help="queued actions for the outbox drain (even)")
    parser.add_argument(
        "--agent-log-level",
        metavar="LEVEL",
        help="log the agent at LEVEL to a discarding handler, to see what logging costs "
        "(default: logging as a function has it on load, WARNING)",
    )
    return parser


def _counts(args: argparse.Namespace) -> Counts:
    base = QUICK if args.quick else FULL
    return Counts(
        ticks=args.ticks or base.ticks,
        messages=args.messages or base.messages,
        repeats=args.repeats or base.repeats,
        episodes=args.episodes or base.episodes,
        actions=args.actions or base.actions,
    )


def _sections(counts: Counts, standin: str) -> Dict[str, Callable[[], Dict[str, Any]]]:
    from . import cold_start, disk, incidents, routing, scenarios, sensor_path, status

    return {
        "disk": lambda: {"disk": disk.measure()},
        "sensor": lambda: {"sensor_path": sensor_path.measure(counts.ticks)},
        "routing": lambda: {"routing": routing.measure(counts.messages)},
        "cold-start": lambda: {"cold_start": cold_start.measure(counts.repeats, standin)},
        "breach": lambda: {
            "breach": incidents.measure_breach(counts.episodes, worker=True, standin_mode=standin),
            "breach_direct": incidents.measure_breach(
                counts.episodes, worker=False, standin_mode=standin
            ),
        },
        "drain": lambda: {"drain": incidents.measure_drain(counts.actions, standin_mode=standin)},
        "scenarios": lambda: {"scenarios": scenarios.measure()},
        "status": lambda: {"status": status.measure(counts.ticks, max(1, counts.repeats // 5))},
    }


# -- the table ----------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def figure_rows(results: Dict[str, Any]) -> List[List[str]]:
    """(figure, value, target, result) rows: the targets first, then the context."""
    rows = []
    for target in TARGETS:
        value = target.value(results)
        rows.append(
            [
                target.name,
                f"{_fmt(value)} {target.unit}" if value is not None else "-",
                f"{'≤' if target.op == '<=' else '≥'} {target.limit:g} {target.unit}",
                target.verdict(value),
            ]
        )

    def add(name: str, value: Any, unit: str, digits: int = 1) -> None:
        if value is not None:
            rows.append([name, f"{_fmt(value, digits)} {unit}".rstrip(), "", ""])

    r = results
    add(
        "fsync of a 4 KiB write in the state dir, p50",
        _get(r, "disk", "fsync_ms", "median"),
        "ms",
        2,
    )
    add("sensor path, per reading, p99", _get(r, "sensor_path", "latency_us", "p99"), "µs")
    add("sensor path, CPU per reading", _get(r, "sensor_path", "cpu_per_tick_us"), "µs")
    for rate in ("1Hz", "12.5Hz"):
        share = _get(r, "sensor_path", "cpu_share_percent", rate)
        add(f"sensor path, CPU share at {rate[:-2]} Hz", share, "% of a core", 4)
    add(
        "interpreter baseline (python -c pass)",
        _get(r, "cold_start", "interpreter", "process_ms"),
        "ms",
    )
    add("interpreter baseline peak RSS", _get(r, "cold_start", "interpreter", "peak_rss_mb"), "MB")
    for fn in ("sensor", "anomaly"):
        add(f"{fn} function: import", _get(r, "cold_start", fn, "import_ms"), "ms")
        add(f"{fn} function: create_app()", _get(r, "cold_start", fn, "create_app_ms"), "ms")
        add(
            f"{fn} function: process CPU to first work",
            _get(r, "cold_start", fn, "process_cpu_ms"),
            "ms",
        )
    add(
        "anomaly function: spawn to create_app() done",
        _get(r, "cold_start", "anomaly", "cold_start_ms"),
        "ms",
    )
    add(
        "anomaly function: spawn to first incident (201)",
        _get(r, "cold_start", "anomaly", "first_work_ms"),
        "ms",
    )
    add("anomaly function peak RSS", _get(r, "cold_start", "anomaly", "peak_rss_mb"), "MB")
    for name, path in (
        ("sensor function: heavy modules loaded", ("sensor", "heavy_modules_loaded")),
        (
            "anomaly function: heavy modules at create_app()",
            ("anomaly", "heavy_modules_at_create_app"),
        ),
    ):
        heavy = _get(r, "cold_start", *path)
        if heavy is not None:
            rows.append([name, ", ".join(heavy) or "none", "", ""])
    add("breach-to-incident, p99", _get(r, "breach", "to_201_ms", "p99"), "ms", 2)
    add(
        "breach-to-incident, p50, pumped in-thread",
        _get(r, "breach_direct", "to_201_ms", "median"),
        "ms",
        2,
    )
    add(
        "confirming tick (judge, publish, enqueue), p50",
        _get(r, "breach", "tick_ms", "median"),
        "ms",
        2,
    )
    add("outbox: enqueue per action (handler)", _get(r, "drain", "enqueue_us_per_action"), "µs")
    add("outbox drain: CPU per action", _get(r, "drain", "cpu_ms_per_action"), "ms", 2)
    add("routing, readings topic (cloud)", _get(r, "routing", "readings", "per_second"), "msg/s", 0)
    add(
        "routing, anomaly topic (function + cloud)",
        _get(r, "routing", "anomaly", "per_second"),
        "msg/s",
        0,
    )
    status_rows(r, add)
    return rows


def status_rows(r: Dict[str, Any], add: Callable[..., None]) -> None:
    """The status service's context figures (benchmarks/status.py)."""
    for key, name in (("median_us", "median"), ("cpu_us", "CPU per reading")):
        for side, text in (
            ("off", "status off"),
            ("on", "status on"),
            ("on_same_process", "status on, its thread in the same process"),
        ):
            add(
                f"sensor path, {name}, {text}",
                _get(r, "status", "sensor_path", key, side),
                "µs",
                2,
            )
    add(
        "sensor path CPU, status on (+%), same process",
        _get(r, "status", "sensor_path", "cpu_us", "overhead_percent_same_process"),
        "%",
    )
    add(
        "status function: CPU per reading it takes",
        _get(r, "status", "handle", "cpu_us_per_reading"),
        "µs",
        2,
    )
    for label in ("this", "3.8"):
        python = "Python 3.8" if label == "3.8" else "this Python"
        add(
            f"status function peak RSS ({python})",
            _get(r, "status", "memory", label, "peak_rss_mb"),
            "MB",
        )
        add(
            f"  of which above a bare interpreter ({python})",
            _get(r, "status", "memory", label, "above_interpreter_mb"),
            "MB",
        )
    add(
        "edge-agent run peak RSS, status off",
        _get(r, "status", "run_mode", "peak_rss_mb_off"),
        "MB",
    )
    add("edge-agent run peak RSS, status on", _get(r, "status", "run_mode", "peak_rss_mb_on"), "MB")


SCENARIO_COLUMNS = (
    "episodes",
    "incidents_opened",
    "incidents_resolved",
    "GET",
    "POST",
    "PATCH",
    "secret_fetches",
    "calls_per_episode",
)


def scenario_rows(results: Dict[str, Any]) -> List[List[str]]:
    rows = []
    for name, figures in (results.get("scenarios") or {}).items():
        rows.append([name] + [_fmt(figures.get(column), 2) for column in SCENARIO_COLUMNS])
    return rows


def markdown_table(header: Sequence[str], rows: List[List[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(header, widths)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    return "\n".join(lines)


def render(report: Dict[str, Any]) -> str:
    meta = report["meta"]
    out = [
        "edge-agent benchmarks ({}), {}".format("quick" if meta["quick"] else "full", meta["date"]),
        "CPU: {} ({} logical), Python {} on Linux {}, state dir on {}".format(
            meta["cpu"], meta["cpus"], meta["python"], meta["kernel"], meta["state_dir_filesystem"]
        ),
        "load average before/after: {} / {}".format(meta["load_before"], meta["load_after"]),
        "",
        markdown_table(["figure", "value", "target", "result"], figure_rows(report["results"])),
    ]
    rows = scenario_rows(report["results"])
    if rows:
        out += [
            "",
            "ServiceNow calls per scenario (simulate --fast, default settings):",
            "",
            markdown_table(["scenario", *SCENARIO_COLUMNS], rows),
        ]
    for section, error in report["errors"].items():
        out += ["", f"ERROR in {section}: {error.strip().splitlines()[-1]}"]
    return "\n".join(out)


def _load() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    counts = _counts(args)
    if counts.actions % 2:
        print("--actions must be even (an open and a resolve per episode)", file=sys.stderr)
        return 2
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    if args.agent_log_level:
        handler = logging.FileHandler(os.devnull)
        agent_log = logging.getLogger("agent")
        agent_log.addHandler(handler)
        agent_log.setLevel(args.agent_log_level.upper())

    meta: Dict[str, Any] = machine_info(tempfile.gettempdir())
    meta.update(
        quick=args.quick,
        counts=counts.__dict__,
        standin=args.standin,
        agent_log_level=args.agent_log_level,
        load_before=_load(),
        command=" ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)]),
    )
    results: Dict[str, Any] = {}
    errors: Dict[str, str] = {}
    seconds: Dict[str, float] = {}
    chosen = args.only or list(SECTIONS)
    for name, section in _sections(counts, args.standin).items():
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
    meta["load_after"] = _load()
    meta["section_seconds"] = seconds

    report = {
        "meta": meta,
        "results": results,
        "targets": [
            {
                "name": t.name,
                "value": t.value(results),
                "unit": t.unit,
                "op": t.op,
                "limit": t.limit,
                "result": t.verdict(t.value(results)),
            }
            for t in TARGETS
        ],
        "errors": errors,
    }
    print(render(report))
    if args.json_out and args.json_out != "-":
        directory = os.path.dirname(os.path.abspath(args.json_out))
        os.makedirs(directory, exist_ok=True)
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True, ensure_ascii=False)
            handle.write("\n")
        print(f"\nwrote {args.json_out}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
