"""Which tests run which line of a module: the map behind ``./dev mutate``'s test selection.

Once per module the module's test files run under ``coverage`` with a context per test
(pytest-cov's ``--cov-context=test``), measuring that module only; the map says, for each
line, the node ids of the tests that ran it. A mutant then runs only the tests that reach
its line. Two kinds of lines are not left to the map, and run the module's whole test files:

* lines run when the module is imported (module level, class bodies, a function's defaults
  and decorators): every test that imports the module sees them, whichever test imported it
  first is the only one the map would name;
* lines the map saw outside any test: at import, or in a child process (``coverage``'s
  ``patch = subprocess`` measures Python children started with the test's environment,
  and they carry no test's context).

A line no process ran is *not covered*: its mutants survive without running anything.
A child that the test kills with SIGKILL, or starts with an environment of its own, or from
another copy of the code, is not measured; its lines look not covered (the runner's
``--no-select`` runs every mutant on the whole files, to compare).

The map is cached under ``.mutate-cache/``, keyed by a hash of the module, its test files
and every other file the tests may run (device code, devtools, the tests' helpers).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

CACHE_DIRNAME = ".mutate-cache"
OUTSIDE = ""  # the context of lines run outside any test: at import, or in a child process
VERSION = "1"  # bump when the map's format or meaning changes
PYTEST = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "--no-header"]
PYTEST += ["-o", "addopts="]

ORDER_ENV = "EDGE_AGENT_MUTATE_TIMES"  # where this module, as a pytest plugin, writes its times

# The map's entry for line 0 (no line has it) holds the tests that fail under measurement:
# those that check what a child process imports see coverage's own modules. They pass
# without it (the runner checks), their map is not to be trusted, so every mutant runs them.
UNMEASURED = 0

LineMap = Dict[int, FrozenSet[str]]
Times = Dict[str, float]  # node id → seconds (setup, call, teardown), in the order they ran


class Plugin:
    """Loaded with ``-p devtools.mutate_select`` in the measuring run: keeps each test's time
    in run order, so a selection runs in the order the files have and gets a fitting timeout."""

    def __init__(self) -> None:
        self.times: Times = {}
        self.failed: List[str] = []

    def pytest_runtest_logreport(self, report: object) -> None:
        node = getattr(report, "nodeid", "")
        self.times[node] = self.times.get(node, 0.0) + float(getattr(report, "duration", 0.0))
        if getattr(report, "failed", False) and node not in self.failed:
            self.failed.append(node)

    def pytest_sessionfinish(self) -> None:
        stored = {"times": self.times, "failed": self.failed}
        Path(os.environ[ORDER_ENV]).write_text(json.dumps(stored))


def pytest_configure(config: object) -> None:
    """The plugin's entry: only in the measuring run (which sets the variable)."""
    if os.environ.get(ORDER_ENV):
        config.pluginmanager.register(Plugin(), "mutate-times")  # type: ignore[attr-defined]


def cache_key(root: Path, module: str, tests: Sequence[str]) -> str:
    """A hash of everything the map depends on: the module, its tests, the code they run."""
    files: Set[str] = {module, *tests}
    for package in ("agent", "functions", "devtools"):
        files.update(p.relative_to(root).as_posix() for p in (root / package).rglob("*.py"))
    files.update(
        p.relative_to(root).as_posix()
        for p in (root / "tests").rglob("*.py")
        if not p.name.startswith("test_")
    )
    digest = hashlib.sha256(VERSION.encode())
    for rel in sorted(files):
        path = root / rel
        if path.is_file():
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def import_time_lines(source: str) -> Set[int]:
    """Lines that run when the module is imported: every line outside the functions' bodies
    (module level, class bodies, a function's signature with its defaults, decorators)."""
    inside: Set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for statement in node.body:
                inside.update(range(statement.lineno, (statement.end_lineno or 0) + 1))
        elif isinstance(node, ast.Lambda):
            inside.update(range(node.body.lineno, (node.body.end_lineno or 0) + 1))
    return set(range(1, len(source.splitlines()) + 1)) - inside


def _read_map(data_file: Path, filename: Path) -> LineMap:
    import coverage  # a dev tool; only the mutation runner needs it

    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    found: LineMap = {}
    for line, contexts in data.contexts_by_lineno(str(filename)).items():
        # "tests/test_x.py::test_y[1]|run" (also |setup, |teardown): the node id.
        found[line] = frozenset(c.rpartition("|")[0] if "|" in c else c for c in contexts)
    return found


def _of(node: str, files: Set[str]) -> bool:
    """Whether a context belongs to a test of ``files`` (or to no test: import, a child)."""
    return node == OUTSIDE or node.partition("::")[0] in files


def measure(
    repo: Path, module: str, tests: Sequence[str], timeout: float
) -> Tuple[str, float, LineMap, Times]:
    """Run ``tests`` in ``repo`` under coverage: ``survived`` (they pass) or why not, the
    seconds taken, the line → node ids map of ``module`` and each test's time."""
    result, took, found = measure_many(repo, {module: list(tests)}, timeout)
    lines, times = found.get(module, ({}, {}))
    return result, took, lines, times


def measure_many(
    repo: Path, modules: Dict[str, List[str]], timeout: float
) -> Tuple[str, float, Dict[str, Tuple[LineMap, Times]]]:
    """One run under coverage for several modules (module → its test files) over all their
    test files; each module's map keeps only the tests of its own files, as its own run
    would have. ``survived`` (the tests pass) or why not, the seconds taken, the maps."""
    work = Path(tempfile.mkdtemp(prefix="mutate-cov-"))
    try:
        rcfile = work / "coveragerc"
        rcfile.write_text(
            "[run]\ndata_file = {}\ninclude =\n    {}\nparallel = true\npatch = subprocess\n"
            "sigterm = true\n".format(
                work / ".coverage", "\n    ".join(str(repo / m) for m in modules)
            )
        )
        env = dict(os.environ, PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1")
        env.pop("COVERAGE_PROCESS_START", None)
        env[ORDER_ENV] = str(work / "times.json")
        # Not -x: a test that fails only under measurement is noted, and the rest go on.
        command = [sys.executable, *PYTEST, "--rootdir", str(repo)]
        command += ["-p", "devtools.mutate_select"]
        command += ["--cov", "--cov-config", str(rcfile)]
        command += ["--cov-context=test", "--cov-report="]
        files = sorted({t for tests in modules.values() for t in tests if (repo / t).exists()})
        command += files
        returncode, took = run_pytest(command, repo, env, timeout)
        if returncode is None:
            return "timeout", took, {}
        if returncode not in (0, 1):
            return "failed (exit {})".format(returncode), took, {}
        stored = json.loads((work / "times.json").read_text())
        times: Times = stored["times"]
        found: Dict[str, Tuple[LineMap, Times]] = {}
        for module, tests in modules.items():
            mine = set(tests)
            lines = _read_map(work / ".coverage", repo / module)
            lines[UNMEASURED] = frozenset(stored["failed"])
            kept = {n: frozenset(i for i in ids if _of(i, mine)) for n, ids in lines.items()}
            found[module] = (
                {n: ids for n, ids in kept.items() if ids},
                {node: t for node, t in times.items() if _of(node, mine)},
            )
        return "survived", took, found
    finally:
        shutil.rmtree(work, ignore_errors=True)


def load(root: Path, key: str) -> Optional[Tuple[float, LineMap, Times]]:
    """The cached (seconds, map, times) under ``key``, if any."""
    path = root / CACHE_DIRNAME / (key + ".json")
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ids = stored["ids"]
    lines = {int(line): frozenset(ids[i] for i in which) for line, which in stored["lines"].items()}
    return float(stored["seconds"]), lines, dict(zip(stored["order"], stored["times"]))


def save(root: Path, key: str, seconds: float, lines: LineMap, times: Times) -> None:
    """Keep the map for the next run (written whole, then renamed)."""
    ids = sorted({i for found in lines.values() for i in found})
    index = {node: n for n, node in enumerate(ids)}
    stored = {
        "seconds": seconds,
        "order": list(times),
        "times": list(times.values()),
        "ids": ids,
        "lines": {str(line): sorted(index[i] for i in found) for line, found in lines.items()},
    }
    folder = root / CACHE_DIRNAME
    folder.mkdir(exist_ok=True)
    partial = folder / (key + ".part")
    partial.write_text(json.dumps(stored))
    partial.replace(folder / (key + ".json"))


def select(
    lines: LineMap, span: Sequence[int], at_import: Set[int], times: Times
) -> Optional[List[str]]:
    """The node ids to run for a mutant on the lines ``span``, in the order they ran: ``None``
    for the whole test files (a line run at import or in a child), ``[]`` when no test
    reaches it."""
    always = lines.get(UNMEASURED, frozenset())
    chosen: Set[str] = set()
    for line in span:
        if line in at_import:
            return None
        found = lines.get(line, frozenset())
        if OUTSIDE in found:
            return None
        chosen.update(found)
    # Where no measured test reaches the line, the unmeasured ones still may.
    chosen.update(always)
    order = {node: n for n, node in enumerate(times)}
    return sorted(chosen, key=lambda node: (order.get(node, len(order)), node))


def run_pytest(
    command: Sequence[str], repo: Path, env: Dict[str, str], timeout: float
) -> Tuple[Optional[int], float]:
    """Run a pytest ``command`` in ``repo``, quiet, in its own session (so a hung test's
    children go with it); its exit status (``None`` past ``timeout``) and the seconds taken."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            list(command),
            cwd=str(repo),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started
    return proc.returncode, time.monotonic() - started
