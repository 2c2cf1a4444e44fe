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
from typing import Any, Dict, List, Optional, Sequence

from .common import REPO_ROOT
from .rows import Row, comparison_rows, get

TABLE_MARKERS = ("<!-- bench:table:start -->", "<!-- bench:table:end -->")
SUMMARY_MARKERS = ("<!-- bench:summary:start -->", "<!-- bench:summary:end -->")
DOCS = os.path.join(REPO_ROOT, "docs", "benchmarks.md")
DOCS_JSON = os.path.join(REPO_ROOT, "docs", "benchmarks.json")  # the run the docs show
README = os.path.join(REPO_ROOT, "README.md")


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


STATUS_ROWS = (
    # (figure, path under results.status, unit, digits)
    ("sensor path per reading, status off, median", ("sensor_path", "median_us", "off"), "µs", 2),
    ("sensor path per reading, status on, median", ("sensor_path", "median_us", "on"), "µs", 2),
    ("sensor path slower with status on", ("sensor_path", "median_us", "overhead_percent"), "%", 1),
    ("sensor path CPU per reading, status off", ("sensor_path", "cpu_us", "off"), "µs", 2),
    ("sensor path CPU per reading, status on", ("sensor_path", "cpu_us", "on"), "µs", 2),
    ("status function CPU per reading it takes", ("handle", "cpu_us_per_reading"), "µs", 2),
    ("status function peak RSS, Python 3.8", ("memory", "3.8", "peak_rss_mb"), "MB", 1),
    ("  of which above a bare Python 3.8", ("memory", "3.8", "above_interpreter_mb"), "MB", 1),
    ("RSS it adds to edge-agent run", ("run_mode", "added_mb"), "MB", 1),
)


def status_table(report: Dict[str, Any]) -> str:
    """The status service's cost (its target: the sensor path within 5 %, at most 15 MB added)."""
    status = report["results"].get("status")
    if not isinstance(status, dict):
        return ""
    rows = [
        [figure, _fmt(get(status, *path), unit, digits)]
        for figure, path, unit, digits in STATUS_ROWS
    ]
    return markdown_table(["status service", "measured"], rows)


def docs_block(report: Dict[str, Any]) -> str:
    parts = [run_line(report), comparison_table(report), servers_table(report)]
    status = status_table(report)
    if status:
        parts.append(status)
    return "\n\n".join(parts)


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
    status = status_table(report)
    if status:
        out += ["", status]
    for section, error in report.get("errors", {}).items():
        out += ["", f"ERROR in {section}: {error.strip().splitlines()[-1]}"]
    return "\n".join(out)
