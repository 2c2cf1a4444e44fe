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
from .rows import Row, comparison_rows, get, row_keys

# A row whose figure (its ratio where it has one) differs more than this between two runs
# says so: it does not reproduce to the precision it shows.
SPREAD_LIMIT_PERCENT = 15.0

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
        + (
            " Run {} times: the figures are the first run's, the spread column compares the runs"
            " (VARIES: more than ±{:g} %).".format(
                len(report.get("repeat_results", [])) + 1, SPREAD_LIMIT_PERCENT
            )
            if "spread" in report
            else ""
        )
    )


def spread(reports: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Per row (:func:`row_keys`), its figures in each run and their spread: ± half the range
    as a percentage of the middle, of the ratio where the row has one, else of the project's
    figure; ``varies`` when that is more than :data:`SPREAD_LIMIT_PERCENT`."""
    runs = [dict(zip(row_keys(rs), rs)) for rs in (comparison_rows(r) for r in reports)]
    out: Dict[str, Any] = {}
    for key, first in runs[0].items():
        rows = [run[key] for run in runs if key in run]
        judged = [r.ratio if first.seed is not None else r.project for r in rows]
        values = [v for v in judged if v is not None]
        if len(values) < 2:
            continue
        low, high = min(values), max(values)
        percent = 0.0 if high + low == 0 else 100.0 * (high - low) / abs(high + low)
        out[key] = {
            "project": [r.project for r in rows],
            "seed": [r.seed for r in rows],
            "ratio": [r.ratio for r in rows],
            "spread_percent": round(percent, 1),
            "varies": percent > SPREAD_LIMIT_PERCENT,
        }
    return out


def _spread_cell(figures: Optional[Dict[str, Any]]) -> str:
    if figures is None:
        return "-"
    text = f"±{figures['spread_percent']:.0f} %"
    return text + " VARIES" if figures["varies"] else text


def comparison_table(report: Dict[str, Any]) -> str:
    header = ["figure", "project", "seed", "project ÷ seed", "server", "target", "measures"]
    spreads = report.get("spread")
    if spreads is not None:
        header.insert(4, f"spread ({len(report.get('repeat_results', [])) + 1} runs)")
    all_rows = comparison_rows(report)
    rows = []
    for key, row in zip(row_keys(all_rows), all_rows):
        if row.project is None and row.seed is None:
            continue
        cells = [
            row.figure,
            _fmt(row.project, row.unit, row.digits),
            _fmt(row.seed, row.unit, row.digits),
            _ratio(row),
            row.server,
            row.verdict(),
            row.measures + (f". Pays: {row.pays}" if row.pays else ""),
        ]
        if spreads is not None:
            cells.insert(4, _spread_cell(spreads.get(key)))
        rows.append(cells)
    return markdown_table(header, rows)


SUMMARY = (
    "sensor cold start to first publish, no .pyc (a V1 device)",
    "sensor cold start to first publish",
    "sensor loop at 12.5 Hz: CPU per reading",
    "sensor loop at 200 Hz: CPU per reading",
    "sensor function peak RSS, real backends",
    "anomaly cold start to first 201",
    "10-minute humid spell: ServiceNow calls",
    "10-minute humid spell: secret fetches",
    "breach → incident 201, p50",
)


def summary_table(report: Dict[str, Any]) -> str:
    """The README's short version: the rows of the same table that compare with the seed,
    each with what both sides pay in it and what only the project pays."""
    rows = []
    primary = get(report, "meta", "primary_server") or "-"
    for row in comparison_rows(report):
        if row.figure not in SUMMARY or row.ratio is None:
            continue
        if row.server not in ("none", primary):
            continue  # the primary server's figures only
        rows.append(
            [
                row.figure,
                _fmt(row.project, row.unit, row.digits),
                _fmt(row.seed, row.unit, row.digits),
                _ratio(row),
                row.pays or row.measures,
            ]
        )
    return markdown_table(
        ["what", "project", "seed blog", "project ÷ seed", "what both pay; what only one pays"],
        rows,
    )


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
    # The difference the status service makes to the same loop in the same run (CPU, not one
    # tick's latency, which drifts more between rounds than the difference it would show).
    ("sensor path CPU, status on − off", ("sensor_path", "cpu_us", "overhead_percent"), "%", 1),
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
