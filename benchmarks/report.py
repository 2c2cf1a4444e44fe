"""The benchmark report: one table of measured figures, project beside seed, from one JSON.

Every ratio is ``project ÷ seed`` of two figures from the same run (the same
JSON); nothing in the table is derived from another figure. ``edge-agent bench
--markdown out/benchmarks.json`` prints the table, ``--write-docs`` puts it (and
the README's summary) into the documents between their markers, so figures are
never copied by hand.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from .common import REPO_ROOT

TABLE_MARKERS = ("<!-- bench:table:start -->", "<!-- bench:table:end -->")
SUMMARY_MARKERS = ("<!-- bench:summary:start -->", "<!-- bench:summary:end -->")
DOCS = os.path.join(REPO_ROOT, "docs", "benchmarks.md")
DOCS_JSON = os.path.join(REPO_ROOT, "docs", "benchmarks.json")  # the run the docs show
README = os.path.join(REPO_ROOT, "README.md")


def get(node: Any, *path: str) -> Any:
    """The figure at ``path`` in nested results, or ``None`` where a section did not run."""
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


@dataclass(frozen=True)
class Row:
    figure: str
    measures: str
    server: str
    unit: str
    project: Optional[float]
    seed: Optional[float] = None
    digits: int = 1
    # A target on the ratio ("ratio") or on the project's figure ("project"): (op, limit).
    target_on: str = ""
    target: Optional[tuple] = None

    @property
    def ratio(self) -> Optional[float]:
        if self.project is None or self.seed in (None, 0):
            return None
        return self.project / self.seed  # type: ignore[operator]

    def verdict(self) -> str:
        if self.target is None:
            return ""
        value = self.ratio if self.target_on == "ratio" else self.project
        op, limit = self.target
        shown = f"{'≤' if op == '<=' else '≥'} {limit:g}{'×' if self.target_on == 'ratio' else ''}"
        if value is None:
            return f"{shown}: n/a"
        ok = value <= limit if op == "<=" else value >= limit
        return f"{shown}: {'pass' if ok else 'MISS'}"


def _fmt(value: Optional[float], unit: str, digits: int) -> str:
    if value is None:
        return "-"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".strip()


def _ratio(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return "-"
    return f"{ratio:.3g}×" if ratio < 0.01 else f"{ratio:.2f}×"


def comparison_rows(report: Dict[str, Any]) -> List[Row]:
    """Every row of the table, from one run's ``report`` (``meta`` and ``results``)."""
    r = report["results"]
    rt, cs, sp = r.get("realtime"), r.get("cold_start"), r.get("sensor_path")
    primary = get(report, "meta", "primary_server") or "-"
    rows: List[Row] = []
    add = rows.append

    # -- per reading -----------------------------------------------------------------
    for rate, label in (("12.5 Hz", "12.5 Hz"), ("12.5 Hz held", "12.5 Hz, breach held")):
        add(
            Row(
                f"sensor loop at {label}: CPU per reading",
                "process CPU time over a real-time run ÷ readings published (device path)",
                "none",
                "µs",
                get(rt, f"project {rate}", "cpu_per_reading_us"),
                get(rt, f"seed {rate}", "cpu_per_reading_us"),
            )
        )
        add(
            Row(
                f"sensor loop at {label}: share of a core",
                "process CPU time ÷ wall time of the same run",
                "none",
                "%",
                get(rt, f"project {rate}", "cpu_share_percent"),
                get(rt, f"seed {rate}", "cpu_share_percent"),
                digits=3,
            )
        )
    add(
        Row(
            "sensor loop at 1 Hz: share of a core",
            "as above, project only (the seed's loop is 0.2 Hz)",
            "none",
            "%",
            get(rt, "project 1 Hz", "cpu_share_percent"),
            digits=4,
        )
    )
    add(
        Row(
            "sensor loop at 0.2 Hz (every 5 s): share of a core",
            "as above; the seed with its own 5 s sleep",
            "none",
            "%",
            get(rt, "project 0.2 Hz", "cpu_share_percent"),
            get(rt, "seed 0.2 Hz", "cpu_share_percent"),
            digits=4,
        )
    )
    for reading, label in (("normal", "within limits"), ("held", "breach held")):
        add(
            Row(
                f"one reading, hot loop, {label}: median",
                "read, judge, publish through the SDK, timed per reading (device path)",
                "none",
                "µs",
                get(sp, "device", reading, "latency_us", "median"),
                get(sp, "seed", reading, "latency_us", "median"),
                target_on="project" if reading == "normal" else "",
                target=("<=", 50) if reading == "normal" else None,
            )
        )
        add(
            Row(
                f"one reading, hot loop, {label}: CPU",
                "thread CPU of a block of readings ÷ readings",
                "none",
                "µs",
                get(sp, "device", reading, "cpu_per_tick_us"),
                get(sp, "seed", reading, "cpu_per_tick_us"),
            )
        )
    add(
        Row(
            "one reading, laptop emulation: median",
            "fake sensor + LocalCore (encode, route, decoded copy); not the device path",
            "none",
            "µs",
            get(sp, "emulation", "latency_us", "median"),
        )
    )

    # -- cold start and memory ---------------------------------------------------------
    add(
        Row(
            "sensor cold start to first publish",
            "spawn → first reading at the core (interpreter, core runtime, function)",
            "none",
            "ms",
            get(cs, "project_sensor", "to_first_work_ms"),
            get(cs, "seed_sensor_bare", "to_first_work_ms"),
            target_on="ratio",
            target=("<=", 1.5),
        )
    )
    add(
        Row(
            "  … against the seed as written (imports boto3)",
            "the same; the seed's unused boto3 import included",
            "none",
            "ms",
            get(cs, "project_sensor", "to_first_work_ms"),
            get(cs, "seed_sensor", "to_first_work_ms"),
        )
    )
    add(
        Row(
            "  … the function's own share",
            "core runtime loaded → first publish",
            "none",
            "ms",
            get(cs, "project_sensor", "function_ms"),
            get(cs, "seed_sensor_bare", "function_ms"),
        )
    )
    add(
        Row(
            "  … process CPU time",
            "the child's user + system CPU (steadier than wall time on a busy machine)",
            "none",
            "ms",
            get(cs, "project_sensor", "process_cpu_ms"),
            get(cs, "seed_sensor_bare", "process_cpu_ms"),
        )
    )
    add(
        Row(
            "anomaly cold start to first 201",
            "spawn → the first incident's 201 read (secret, requests, GET+POST / POST)",
            primary,
            "ms",
            get(cs, "project_anomaly", "to_first_work_ms"),
            get(cs, "seed_anomaly", "to_first_work_ms"),
            target_on="ratio",
            target=("<=", 1.3),
        )
    )
    add(
        Row(
            "  … the function's own share",
            "core runtime loaded → first 201",
            primary,
            "ms",
            get(cs, "project_anomaly", "function_ms"),
            get(cs, "seed_anomaly", "function_ms"),
        )
    )
    add(
        Row(
            "  … process CPU time",
            "the child's user + system CPU",
            primary,
            "ms",
            get(cs, "project_anomaly", "process_cpu_ms"),
            get(cs, "seed_anomaly", "process_cpu_ms"),
        )
    )
    add(
        Row(
            "sensor function peak RSS",
            "VmHWM of the cold-start child (seed: bare)",
            "none",
            "MB",
            get(cs, "project_sensor", "peak_rss_mb"),
            get(cs, "seed_sensor_bare", "peak_rss_mb"),
            target_on="project",
            target=("<=", 30),
        )
    )
    add(
        Row(
            "anomaly function peak RSS",
            "VmHWM of the cold-start child, after the first 201",
            primary,
            "MB",
            get(cs, "project_anomaly", "peak_rss_mb"),
            get(cs, "seed_anomaly", "peak_rss_mb"),
        )
    )

    # -- per episode -----------------------------------------------------------------------
    sc = r.get("scenarios")
    sc_server = get(sc, "server") or primary
    for field, label in (
        ("calls", "ServiceNow calls"),
        ("secret_fetches", "secret fetches"),
        ("incidents_opened", "incidents opened"),
    ):
        add(
            Row(
                f"10-minute humid spell: {label}",
                "scenario humid-spell at 5 s, in virtual time, both functions",
                sc_server,
                "",
                get(sc, "humid-spell", "project", field),
                get(sc, "humid-spell", "seed", field),
                digits=0,
            )
        )
    add(
        Row(
            "value flapping around the limit: ServiceNow calls",
            "scenario flapping (inside the hysteresis band), 10 minutes",
            sc_server,
            "",
            get(sc, "flapping", "project", "calls"),
            get(sc, "flapping", "seed", "calls"),
            digits=0,
        )
    )

    # -- breach to incident, drain: per server -----------------------------------------------
    for server, figures in _primary_first(r.get("breach"), primary):
        for stat in ("median", "p99"):
            has_target = server.startswith("standin") and stat == "median"
            add(
                Row(
                    f"breach → incident 201, {'p50' if stat == 'median' else 'p99'}",
                    "confirming tick (seed: breaching read, 5 s sleep virtual) → 201 read",
                    server,
                    "ms",
                    get(figures, "project", "to_201_ms", stat),
                    get(figures, "seed", "to_201_ms", stat),
                    digits=2,
                    target_on="project" if has_target else "",
                    target=("<=", 20) if has_target else None,
                )
            )
        if get(figures, "project_quickack") is not None:
            add(
                Row(
                    "  … with the client fix (what-if), p50",
                    "the same, TCP_QUICKACK set before each response (benchmarks/quickack.py)",
                    server,
                    "ms",
                    get(figures, "project_quickack", "to_201_ms", "median"),
                    get(figures, "seed", "to_201_ms", "median"),
                    digits=2,
                )
            )
        if get(figures, "seed_with_sleep") is not None:
            add(
                Row(
                    "  … the seed with its real 5 s sleep, p50",
                    "breaching read → 201 with the blog's sleep (project: as above)",
                    server,
                    "ms",
                    get(figures, "project", "to_201_ms", "median"),
                    get(figures, "seed_with_sleep", "to_201_ms", "median"),
                    digits=2,
                )
            )
    for server, figures in _primary_first(r.get("drain"), primary):
        for key, label in (("project", ""), ("project_quickack", " (client fix, what-if)")):
            if get(figures, key) is None:
                continue
            has_target = key == "project" and server.startswith("standin")
            add(
                Row(
                    f"outbox drain{label}: actions/s",
                    f"{get(figures, key, 'actions'):,} queued actions (open, resolve) ÷ drain time",
                    server,
                    "/s",
                    get(figures, key, "actions_per_second"),
                    target_on="project" if has_target else "",
                    target=(">=", 200) if has_target else None,
                )
            )
            add(
                Row(
                    f"outbox drain{label}: ServiceNow calls/s",
                    f"calls ÷ drain time ({get(figures, key, 'calls_per_action')} calls per action)",
                    server,
                    "/s",
                    get(figures, key, "calls_per_second"),
                )
            )
    return rows


def _primary_first(by_server: Optional[Dict[str, Any]], primary: str) -> List[Any]:
    """Per-server figures, the primary server's first (JSON keeps keys sorted)."""
    items = list((by_server or {}).items())
    return sorted(items, key=lambda item: (item[0] != primary, item[0]))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(header, widths)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    lines += [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in rows
    ]
    return "\n".join(lines)


def run_line(report: Dict[str, Any]) -> str:
    meta = report["meta"]
    return (
        "{kind} run of {date}, git {rev}: {cpu} ({cpus} logical CPUs), Python {python}, "
        "Linux {kernel}, state dir on {fs}; load average {before} before, {after} after.".format(
            kind="Quick" if meta.get("quick") else "Full",
            date=meta.get("date"),
            rev=meta.get("git_revision") or "?",
            cpu=meta.get("cpu"),
            cpus=meta.get("cpus"),
            python=meta.get("python"),
            kernel=meta.get("kernel"),
            fs=meta.get("state_dir_filesystem"),
            before=meta.get("load_before"),
            after=meta.get("load_after"),
        )
    )


def comparison_table(report: Dict[str, Any]) -> str:
    header = ["figure", "project", "seed", "project ÷ seed", "server", "target", "measures"]
    rows = [
        [
            row.figure,
            _fmt(row.project, row.unit, row.digits),
            _fmt(row.seed, row.unit, row.digits),
            _ratio(row),
            row.server,
            row.verdict(),
            row.measures,
        ]
        for row in comparison_rows(report)
        if row.project is not None or row.seed is not None
    ]
    return markdown_table(header, rows)


SUMMARY = (
    "sensor loop at 12.5 Hz: CPU per reading",
    "sensor loop at 12.5 Hz: share of a core",
    "sensor cold start to first publish",
    "anomaly cold start to first 201",
    "sensor function peak RSS",
    "10-minute humid spell: ServiceNow calls",
    "10-minute humid spell: secret fetches",
    "breach → incident 201, p50",
    "outbox drain: actions/s",
    "outbox drain: ServiceNow calls/s",
)


def summary_table(report: Dict[str, Any]) -> str:
    """The README's short version: a few rows of the same table."""
    rows = []
    for row in comparison_rows(report):
        if row.figure in SUMMARY and (row.project is not None):
            rows.append(
                [
                    row.figure,
                    _fmt(row.project, row.unit, row.digits),
                    _fmt(row.seed, row.unit, row.digits),
                    _ratio(row),
                    row.server,
                ]
            )
    return markdown_table(["what", "project", "seed blog", "project ÷ seed", "server"], rows)


def servers_table(report: Dict[str, Any]) -> str:
    servers = get(report, "meta", "servers") or {}
    rows = [
        [
            name,
            d.get("server", ""),
            d.get("nagle", ""),
            d.get("threads", ""),
            d.get("persistence", ""),
        ]
        for name, d in servers.items()
    ]
    return markdown_table(["server", "what", "Nagle", "threads", "persistence"], rows)


def docs_block(report: Dict[str, Any]) -> str:
    return "\n\n".join([run_line(report), comparison_table(report), servers_table(report)])


def replace_between(text: str, markers: Sequence[str], body: str, where: str) -> str:
    start, end = markers
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{where} has no {start} … {end} block to replace")
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text, count=1)


def write_docs(
    report: Dict[str, Any], docs: str = DOCS, readme: str = README, figures: str = DOCS_JSON
) -> List[str]:
    """Rewrite the generated blocks of docs/benchmarks.md and README.md, and keep the run
    they show as docs/benchmarks.json; returns the paths written."""
    with open(figures, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    written = [figures]
    for path, markers, body in (
        (docs, TABLE_MARKERS, docs_block(report)),
        (readme, SUMMARY_MARKERS, run_line(report) + "\n\n" + summary_table(report)),
    ):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        updated = replace_between(text, markers, body, path)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(updated)
        written.append(path)
    return written


SCENARIO_COLUMNS = ("samples", "episodes", "calls", "secret_fetches", "incidents_opened")


def scenario_table(report: Dict[str, Any]) -> str:
    """Per scenario: the project's calls and fetches beside the seed's."""
    scenarios = report["results"].get("scenarios") or {}
    rows = []
    for name, figures in scenarios.items():
        if not isinstance(figures, dict):
            continue
        project, seed = figures["project"], figures["seed"]
        rows.append(
            [
                name,
                str(project["samples"]),
                str(project["episodes"]),
                f"{project['calls']} / {seed['calls']}",
                f"{project['secret_fetches']} / {seed['secret_fetches']}",
                f"{project['incidents_opened']} / {seed['incidents_opened']}",
            ]
        )
    header = ["scenario", "samples", "episodes", "calls", "secret fetches", "incidents opened"]
    return markdown_table(header, rows) if rows else ""


def render_console(report: Dict[str, Any]) -> str:
    """What ``./dev bench`` prints: the run, the table, the scenarios, any errors."""
    out = [run_line(report), "", comparison_table(report)]
    scenarios = scenario_table(report)
    if scenarios:
        out += ["", "Per scenario, project / seed (virtual time, 5 s period):", "", scenarios]
    extra = extra_rows(report)
    if extra:
        out += ["", markdown_table(["context", "value"], extra)]
    for section, error in report.get("errors", {}).items():
        out += ["", f"ERROR in {section}: {error.strip().splitlines()[-1]}"]
    return "\n".join(out)


def extra_rows(report: Dict[str, Any]) -> List[List[str]]:
    """Figures without a seed counterpart, kept out of the comparison table."""
    r = report["results"]
    rows = []
    for label, value, unit, digits in (
        (
            "interpreter alone (python -c pass)",
            get(r, "cold_start", "interpreter", "process_ms"),
            "ms",
            1,
        ),
        (
            "core runtime stand-in loaded",
            get(r, "cold_start", "runtime", "runtime_ready_ms"),
            "ms",
            1,
        ),
        ("core runtime stand-in peak RSS", get(r, "cold_start", "runtime", "peak_rss_mb"), "MB", 1),
        ("fsync of a 4 KiB write, p50", get(r, "disk", "fsync_ms", "median"), "ms", 3),
        ("routing (emulation), readings", get(r, "routing", "readings", "per_second"), "msg/s", 0),
        (
            "routing (emulation), anomaly topic",
            get(r, "routing", "anomaly", "per_second"),
            "msg/s",
            0,
        ),
    ):
        if value is not None:
            rows.append([label, _fmt(value, unit, digits)])
    return rows
