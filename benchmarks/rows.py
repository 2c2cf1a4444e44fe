"""The rows of the benchmark table: which figures of a run are compared, and how.

Each :class:`Row` holds the project's figure and the seed's from the same run
(the same JSON), what it measures and against which server, and what both
sides pay in it beside what only the project pays; the ratio is ``project ÷
seed`` of exactly those two numbers. Targets are ratios to the seed in the same
run (a machine's absolute rate does not carry to another machine); a few
project-only figures have a target on a count (calls per event), never on a rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional


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
    # What both sides pay in the figure, and what only the project pays.
    pays: str = ""

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


def comparison_rows(report: Dict[str, Any]) -> List[Row]:
    """Every row of the table, from one run's ``report`` (``meta`` and ``results``)."""
    r = report["results"]
    rt, cs, sp = r.get("realtime"), r.get("cold_start"), r.get("sensor_path")
    primary = get(report, "meta", "primary_server") or "-"
    rows: List[Row] = []
    add = rows.append

    # -- per reading -----------------------------------------------------------------
    for rate, label in (
        ("12.5 Hz", "12.5 Hz"),
        ("200 Hz", "200 Hz"),
        ("12.5 Hz held", "12.5 Hz, breach held"),
    ):
        add(
            Row(
                f"sensor loop at {label}: CPU per reading",
                "process CPU time over a real-time run ÷ readings published (device path)",
                "none",
                "µs",
                get(rt, f"project {rate}", "cpu_per_reading_us"),
                get(rt, f"seed {rate}", "cpu_per_reading_us"),
                target_on="ratio" if rate != "12.5 Hz held" else "",
                target=("<=", 1.0) if rate != "12.5 Hz held" else None,
                pays="both: the wait and wake-up, reading the chips, the SDK's publish to the core;"
                " project only: pressure, the judge, the wall-clock check, seq and schema fields",
            )
        )
        if rate == "200 Hz":
            continue
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
                # Each publish is the SDK's HTTP request to the core (as on a real V1 core),
                # the same for both designs: the target is on what the project adds.
                target_on="ratio" if reading == "normal" else "",
                target=("<=", 1.2) if reading == "normal" else None,
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
            "sensor cold start to first publish, no .pyc (a V1 device)",
            "spawn → first reading at the core, code without __pycache__, PYTHONDONTWRITEBYTECODE",
            "none",
            "ms",
            get(cs, "project_sensor_nopyc", "to_first_work_ms"),
            get(cs, "seed_sensor_bare_nopyc", "to_first_work_ms"),
            target_on="ratio",
            target=("<=", 1.2),
            pays="both: interpreter, core runtime, compiling the function's modules, SDK, first read"
            " and publish; project only: its modules (config, judge, state dir lock, V1 runtime)",
        )
    )
    add(
        Row(
            "  … the function's own share, no .pyc",
            "core runtime loaded → first publish (what the function itself costs)",
            "none",
            "ms",
            get(cs, "project_sensor_nopyc", "function_ms"),
            get(cs, "seed_sensor_bare_nopyc", "function_ms"),
            pays="both: compiling and running the function's module, SDK client, first read and"
            " publish; project only: ~15 more modules to compile, the state directory",
        )
    )
    add(
        Row(
            "  … process CPU time, no .pyc",
            "the child's user + system CPU",
            "none",
            "ms",
            get(cs, "project_sensor_nopyc", "process_cpu_ms"),
            get(cs, "seed_sensor_bare_nopyc", "process_cpu_ms"),
        )
    )
    add(
        Row(
            "sensor cold start to first publish",
            "the same with .pyc cached (a V2 artifact, or a zip built by deploy with .pyc)",
            "none",
            "ms",
            get(cs, "project_sensor", "to_first_work_ms"),
            get(cs, "seed_sensor_bare", "to_first_work_ms"),
            target_on="ratio",
            target=("<=", 1.2),
            pays="both: interpreter, core runtime, loading the function, SDK, first read and"
            " publish; project only: its modules, the state directory's check and lock",
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
            pays="both: interpreter, core runtime, requests, the secret, the POST; project only:"
            " the outbox (SQLite), its worker, the lookup GET",
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
            "sensor function peak RSS, real backends",
            "VmHWM at first publish: project i2c (smbus2), seed with sense_hat's numpy + Pillow",
            "none",
            "MB",
            get(cs, "project_sensor_i2c", "peak_rss_mb"),
            get(cs, "seed_sensor_library", "peak_rss_mb"),
            target_on="ratio",
            target=("<=", 0.5),
            pays="both: interpreter and core runtime (the 'core runtime stand-in loaded' row's"
            " process); project only: its modules; seed only: numpy and Pillow",
        )
    )
    add(
        Row(
            "  … of which the core runtime both start from",
            "VmHWM of a child that loads the core runtime stand-in and no function",
            "none",
            "MB",
            get(cs, "runtime", "peak_rss_mb"),
            get(cs, "runtime", "peak_rss_mb"),
        )
    )
    add(
        Row(
            "sensor function peak RSS, same sense_hat stand-in",
            "VmHWM of the cold-start child, both over the stand-in (seed: bare)",
            "none",
            "MB",
            get(cs, "project_sensor", "peak_rss_mb"),
            get(cs, "seed_sensor_bare", "peak_rss_mb"),
        )
    )
    add(
        Row(
            "  … against the seed as written (imports boto3)",
            "the same",
            "none",
            "MB",
            get(cs, "project_sensor", "peak_rss_mb"),
            get(cs, "seed_sensor", "peak_rss_mb"),
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
                pays="the seed: one per breaching reading; the project: one episode (debounced)",
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
            add(
                Row(
                    f"breach → incident 201, {'p50' if stat == 'median' else 'p99'}",
                    "confirming tick (seed: breaching read, 5 s sleep virtual) → 201 read",
                    server,
                    "ms",
                    get(figures, "project", "to_201_ms", stat),
                    get(figures, "seed", "to_201_ms", stat),
                    digits=2,
                    pays="both: the POST and its 201; project only: the lookup GET, two synced"
                    " state writes, the outbox's synced enqueue",
                )
            )
        add(
            Row(
                "  … of which the confirming tick, p50",
                "judge, two synced state-file writes, publish, the handler's synced enqueue",
                server,
                "ms",
                get(figures, "project", "tick_ms", "median"),
                digits=2,
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
            # No target: an absolute rate holds on one machine only (its fsync, its CPU),
            # and the seed has no outbox to be a ratio's baseline.
            add(
                Row(
                    f"outbox drain{label}: actions/s",
                    f"{get(figures, key, 'actions'):,} queued actions (open, resolve) ÷ drain time",
                    server,
                    "/s",
                    get(figures, key, "actions_per_second"),
                    pays="project only (the seed has no outbox): a synced SQLite write per"
                    " action, the HTTP calls",
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

    # -- a site of many Pis ------------------------------------------------------------------
    fl = r.get("fleet")
    for n, figures in sorted((get(fl, "calls") or {}).items(), key=lambda item: int(item[0])):
        add(
            Row(
                f"site humid spell, {n} Pi{'s' if n != '1' else ''}: ServiceNow calls per site event",
                "simulate --fleet N: calls ÷ incidents (seed: 2 calls per breaching reading)",
                primary,
                "calls",
                get(figures, "calls_per_site_event"),
                get(figures, "seed_calls"),
                digits=0,
                target_on="project",
                target=("<=", 12),
            )
        )
    add(
        Row(
            "site gateway, 1000 Pis at 5 s: CPU per incoming reading",
            "thread CPU of the anomaly function's handler ÷ readings (episodes included)",
            "none",
            "µs",
            get(fl, "gateway", "cpu_per_reading_us"),
        )
    )
    add(
        Row(
            "site gateway, 1000 Pis at 5 s: peak RSS",
            "VmHWM of the gateway's process after 20 min of the site's readings",
            "none",
            "MB",
            None
            if get(fl, "gateway", "peak_rss_kb") is None
            else get(fl, "gateway", "peak_rss_kb") / 1024,
        )
    )
    add(
        Row(
            "simulate --fleet 1000 --fast: wall time per simulated hour",
            "wall (and CPU) of the command, scaled to an hour of site time",
            "standin",
            "s",
            get(fl, "simulate", "wall_seconds_per_simulated_hour"),
        )
    )
    add(
        Row(
            "simulate --fleet 1000 --fast: CPU time per simulated hour",
            "user + system CPU of the command, scaled to an hour of site time",
            "standin",
            "s",
            get(fl, "simulate", "cpu_seconds_per_simulated_hour"),
        )
    )

    # -- context: what every figure above stands on ------------------------------------------
    for figure, measures, value, unit, digits in (
        (
            "fsync of a 4 KiB write in the state directory, p50",
            "the floor under every synced write above",
            get(r, "disk", "fsync_ms", "median"),
            "ms",
            3,
        ),
        (
            "interpreter alone",
            "spawn → exit of python -c pass",
            get(r, "cold_start", "interpreter", "process_ms"),
            "ms",
            1,
        ),
        (
            "core runtime stand-in loaded",
            "spawn → the child's core IPC stand-in imported, before any function",
            get(r, "cold_start", "runtime", "runtime_ready_ms"),
            "ms",
            1,
        ),
        (
            "laptop emulation routing, readings",
            "LocalCore.publish of a reading to cloud",
            get(r, "routing", "readings", "per_second"),
            "msg/s",
            0,
        ),
    ):
        add(Row(figure, measures, "none", unit, value, digits=digits))
    return rows


def _primary_first(by_server: Optional[Dict[str, Any]], primary: str) -> List[Any]:
    """Per-server figures, the primary server's first (JSON keeps keys sorted)."""
    items = list((by_server or {}).items())
    return sorted(items, key=lambda item: (item[0] != primary, item[0]))


def row_keys(rows: List[Row]) -> List[str]:
    """A key per row, unique in one report: its figure and server (and a count if repeated)."""
    keys: List[str] = []
    seen: Dict[str, int] = {}
    for row in rows:
        key = f"{row.figure.strip()} [{row.server}]"
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key} #{seen[key]}")
    return keys
