"""The repository's plan: its floors (who may import whom) and its rooms (what is where).

:data:`FLOORS`, lowest first: a module may import modules on its own floor or
below, never above, and no import circle is allowed anywhere
(``tests/test_layout.py`` checks both on the import graph of ``agent/``,
``functions/``, ``devtools/``, ``deploy/`` and ``benchmarks/``: every import
counts, also one inside a function or an ``if TYPE_CHECKING`` block).

:data:`ROOMS` is docs/architecture.md's "Where things are" table (:func:`markdown_table`);
every module of ``agent/``, ``functions/``, ``devtools/``, ``deploy/`` and
``benchmarks/`` must be in one of its rooms, so a new module is placed when it is
added.
"""

from __future__ import annotations

import ast
import os
import re
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("agent", "functions", "devtools", "deploy", "benchmarks")

# Floors, lowest first; a module is on the floor of the longest prefix that names it.
FLOORS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    (
        "foundation: names, errors, clock, value classes, messages, variables, settings, state files",
        (
            "agent",
            "agent.names",
            "agent.errors",
            "agent.clock",
            "agent.record",
            "agent.schema",
            "agent.variables",
            "agent.config",
            "agent.topology",
            "agent.credentials",
            "agent.live_settings",
            "agent.state_file",
            "agent.state_dir",
            "agent.startup",
        ),
    ),
    (
        "parts: the runtimes, sensors, judging, ServiceNow, the status page",
        (
            "agent.greengrass",
            "agent.sensors",
            "agent.judge",
            "agent.servicenow",
            "agent.status",
            "agent.site",
        ),
    ),
    (
        "services: what each function does",
        ("agent.sensor_service", "agent.anomaly_service", "agent.live_config"),
    ),
    ("functions: the entry points a core loads", ("functions",)),
    ("without Greengrass: the group in one process", ("agent.standalone",)),
    ("tooling: simulation, stand-ins, deploy, benchmarks", ("devtools", "deploy", "benchmarks")),
    ("the command line", ("devtools.cli",)),
)


class Room(NamedTuple):
    question: str
    where: str  # markdown; every path in backticks must exist


ROOMS: Tuple[Room, ...] = (
    Room(
        "where is the Greengrass group described (functions, environment, resources, subscriptions)?",
        "`agent/topology.py`, read by the local core, the V2 backend, the simulation and "
        "`deploy/`; `agent/names.py` has the names the functions need (a module of constants, "
        "so a function never loads the topology at start)",
    ),
    Room(
        "the three functions",
        "`functions/sensor_function.py`, `functions/anomaly_function.py`, "
        "`functions/status_function.py` (thin: `create_app`, `function_handler`, `main` for V2), "
        "started on a core by `agent/startup.py`",
    ),
    Room(
        "what does each function do?",
        "`agent/sensor_service.py` (read, publish, judge, publish events), "
        "`agent/anomaly_service.py` (validate, queue, deliver)",
    ),
    Room(
        "where are readings judged?",
        "`agent/judge.py` (limits, hysteresis, debounce, episodes)",
    ),
    Room(
        "where are incidents decided?",
        "`agent/servicenow/incidents.py` (pure: event → open / note / resolve), with "
        "`agent/servicenow/text.py` (device text made clean) and "
        "`agent/servicenow/query_safe.py` (inert correlation ids); "
        "`agent/servicenow/events.py` (pure: event → Event Management event, `snowSink=event`) "
        "and `agent/servicenow/cmdb.py` (the CI an incident links to, looked up once)",
    ),
    Room(
        "is ServiceNow ready (`edge-agent check-servicenow`)?",
        "`agent/servicenow/check.py` (the checks, in order), `agent/standalone/check_cmd.py` "
        "(the command line)",
    ),
    Room(
        "where are a site's episodes grouped (one incident per site event)?",
        "`agent/site/` (`grouping.py`: pure, events and time → a group's actions, with "
        "`group.py`, a group's state; "
        "`group_text.py`: what a group's incident says; `silence.py`: pure, devices that stop "
        "reporting; `gateway.py`: their actions and state written to the outbox in one "
        "transaction; `topology.py`: the site's group, read by `simulate --fleet`)",
    ),
    Room(
        "where are incidents sent?",
        "`agent/servicenow/delivery.py` (retries, pacing, the local-fault pause), "
        "`agent/servicenow/actions.py` (what is checked before each write), "
        "`agent/servicenow/auth_recovery.py` and `agent/servicenow/pacing.py` (the rate cap "
        "and the budget `X-RateLimit-*` announces), `agent/servicenow/notices.py` (what "
        "`edge-agent status` shows of ServiceNow beyond the outbox), over "
        "`agent/servicenow/client.py` (Table API), `agent/servicenow/transport.py` (the "
        "deadline and size cap of every call) and `agent/servicenow/answers.py` (what an "
        "answer or a failed connection means, named by its cause)",
    ),
    Room(
        "where do actions wait, and who guards that file?",
        "`agent/servicenow/outbox.py` (SQLite, WAL), `agent/servicenow/outbox_guard.py` "
        "(lock, marker, integrity at start, moving aside), `agent/servicenow/outbox_salvage.py`, "
        "`agent/servicenow/outbox_check.py` (SQLite's integrity check), "
        "`agent/servicenow/outbox_inspect.py` (what `edge-agent outbox` reads), "
        "`agent/servicenow/open_episodes.py` (the incidents it holds open, for a sensor whose "
        "state file was lost) and "
        "`devtools/outbox_wal.py` (what `edge-agent outbox --check` reads in the write-ahead log)",
    ),
    Room("where are credentials cached?", "`agent/credentials.py`"),
    Room(
        "where is configuration read?",
        "`agent/variables.py` (every variable; the table in docs/configuration.md is generated from it) and "
        "`agent/config.py` (the one validation, the settings each function runs with)",
    ),
    Room(
        "where do limits change while it runs?",
        "`agent/live_settings.py` (layers, precedence, the one check), `agent/live_config.py` "
        "(the shadow and the V2 configuration, applied at the next reading), "
        "`agent/greengrass/shadow_document.py` (AWS IoT's shadow semantics) and "
        "`agent/greengrass/local_shadow.py` (the local core's shadow service)",
    ),
    Room(
        "how does the same code run on V1, V2 and a laptop?",
        "`agent/greengrass/` (`base.py`: what a function needs of its runtime; `v1.py`, "
        "`v2.py`; `local.py`: an in-process V1 core routing by `agent/greengrass/routing.py`)",
    ),
    Room(
        "where are the sensors?",
        "`agent/sensors/` (`i2c.py` with `st_chips.py`: the HTS221 and LPS25H over `smbus2`; "
        "`sensehat.py` with `sensehat_devices.py`, `emulator.py`, `fake.py`, `replay.py`; "
        "`heat.py`: CPU-heat compensation; `base.py`: the reading and the sensor's contract)",
    ),
    Room(
        "what do messages look like?",
        "`agent/schema.py`",
    ),
    Room(
        "small shared pieces",
        "`agent/errors.py`, `agent/clock.py` (real and virtual time), `agent/record.py` (value "
        "classes without dataclasses: the cold-start rule is in its docstring), "
        "`agent/state_dir.py` (checked, locked state directory), `agent/state_file.py`",
    ),
    Room(
        "the agent without Greengrass (`edge-agent run`), and the one runtime of the group that "
        "`run`, `simulate` and the tests share",
        "`agent/standalone/` (`group.py`: `LocalGroup`; `run.py`; `config_file.py`: "
        "`run --config`; `arguments.py`: what the command line is checked for; `words.py`; "
        "`mqtt_bridge/`: paho-mqtt, TLS, spool; `exit_codes.py`, which docs/cli.md's exit-code "
        "table comes from)",
    ),
    Room(
        "`edge-agent run` as a service on a Pi without Greengrass",
        "`deploy/systemd/` (`edge-agent.service`, `install.sh`, the `config.ini` template)",
    ),
    Room(
        "the status page, `/metrics`, `/healthz`",
        "`agent/status/` (model, documents, server, page assets), `functions/status_function.py`, "
        "`devtools/status_cmd.py` (`edge-agent status`)",
    ),
    Room(
        "the `edge-agent` command",
        "`devtools/cli.py` (the table of commands), `devtools/simulate_cmd.py`, "
        "`devtools/outbox_cmd.py`, `devtools/status_cmd.py`; `agent/standalone/run.py`",
    ),
    Room(
        "laptop tooling",
        "`devtools/` (`simulate.py` with `simulation_options.py`, `simulation_checks.py`, "
        "`simulation_loop.py`, `simulation_changes.py`, `console.py` and `summary_fields.py`, "
        "which docs/cli.md's list of the `--json` summary's fields comes from; a site of many "
        "Pis: `fleet.py` with `fleet_stories.py` and `fleet_replay.py`; "
        "`servicenow_standin/`; `troubleshooting.py`, which docs/cli.md's troubleshooting table "
        "comes from; `mutate.py`; `layout.py`, this table and the import floors)",
    ),
    Room(
        "deploying",
        "`deploy/` (V1 group versions and V2 deployments; `package.py` with `bytecode.py`: "
        "the zips and the bytecode compiled for the device's Python), `certs-example/`",
    ),
    Room(
        "benchmarks",
        "`benchmarks/` (`./dev bench`, beside the seed blog's code; see `docs/benchmarks.md`)",
    ),
)


def markdown_table() -> str:
    """docs/architecture.md's "Where things are" table."""
    rows = ["| question | where |", "| --- | --- |"]
    rows.extend("| {} | {} |".format(room.question, room.where) for room in ROOMS)
    return "\n".join(rows)


def named_paths() -> List[str]:
    """Every repository path the rooms name (a path in backticks, relative to its room's folder
    when it has no folder of its own)."""
    paths: List[str] = []
    for room in ROOMS:
        folder = ""
        for token in re.findall(r"`([^`]+)`", room.where):
            if not re.fullmatch(r"[\w./-]+", token) or not (
                token.endswith((".py", "/")) or "/" in token
            ):
                continue
            if token.startswith(PACKAGES + ("certs-example", "docs")):
                path = token
                folder = token if token.endswith("/") else os.path.dirname(token) + "/"
            else:
                path = folder + token
            paths.append(path)
    return paths


# -- the import graph -------------------------------------------------------------------
def modules(root: str = REPO, packages: Tuple[str, ...] = PACKAGES) -> Dict[str, str]:
    """Dotted module name -> file, for every module of ``packages``."""
    found: Dict[str, str] = {}
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    found[
                        dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted
                    ] = path
    return found


def imports(name: str, path: str, known: Dict[str, str]) -> Set[str]:
    """The modules of ``known`` that module ``name`` imports anywhere in its file."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                base = parent + ("." + node.module if node.module else "")
            # ``from package import module`` imports the module; a name, the package's.
            targets = [
                base + "." + alias.name if base + "." + alias.name in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            resolved = _known_prefix(target, known)
            if resolved is not None and resolved != name:
                found.add(resolved)
    return found


def _known_prefix(dotted: str, known: Dict[str, str]) -> Optional[str]:
    while dotted and dotted not in known:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def import_graph(root: str = REPO, packages: Tuple[str, ...] = PACKAGES) -> Dict[str, Set[str]]:
    known = modules(root, packages)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The import circles of ``graph``: its strongly connected parts of more than one module."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, without recursion
        work: List[Tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    part.append(member)
                    if member == node:
                        break
                if len(part) > 1:
                    found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def floor_of(module: str) -> Optional[int]:
    """The floor (0 lowest) of ``module``: the longest prefix named in :data:`FLOORS`."""
    best: Optional[Tuple[int, int]] = None
    for number, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            named = module == prefix or module.startswith(prefix + ".")
            if named and (best is None or len(prefix) > best[1]):
                best = (number, len(prefix))
    return None if best is None else best[0]


def upward_imports(graph: Dict[str, Set[str]]) -> List[str]:
    """Imports from a module to one on a higher floor, as ``a (floor) -> b (floor)``."""
    wrong = []
    for module in sorted(graph):
        own = floor_of(module)
        for target in sorted(graph[module]):
            other = floor_of(target)
            if own is not None and other is not None and other > own:
                wrong.append(
                    "{} ({}) -> {} ({})".format(
                        module, FLOORS[own][0].split(":")[0], target, FLOORS[other][0].split(":")[0]
                    )
                )
    return wrong
