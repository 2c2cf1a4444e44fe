"""A small mutation runner: do the tests notice when the code is wrong?

``./dev mutate [module...]`` (default: the core delivery and judging modules;
``--all``: every module of ``agent/`` and ``functions/``; ``--sample N``: a
reproducible sample of N mutants, for a run that must fit in CI).
Each mutant is one small change to one module, made on the AST:

* comparisons ``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``==`` ↔ ``!=``;
* arithmetic ``+`` ↔ ``-`` (also ``+=`` ↔ ``-=``);
* boolean ``and`` ↔ ``or``; constants ``True`` ↔ ``False``;
* a number ``n`` → ``n + 1``;
* ``not x`` → ``x``;
* a call on its own line → ``pass`` (calls on the module logger are not
  removed: log lines are checked by the tests that care about them, and
  removing every one would bury the mutants that matter).

Docstrings, ``__repr__`` and code under ``if TYPE_CHECKING`` are not mutated.
The mutated module is written (``ast.unparse``) into a private copy of the
repository, one copy per worker, and the module's tests (``TESTS`` below) run
there with ``-x -q -p no:cacheprovider -m "not slow"`` and a per-mutant
timeout. A mutant is *killed* when the tests fail, *survived* when they pass,
*timeout* when they hang (counted as detected). The working tree is never
modified.

Mutants known to be equivalent (no observable difference) are listed in
``devtools/mutate_skip.txt`` as ``path: `source line`: change  # reason``, keyed
by the text of the line they change rather than its number, so editing other
lines of the module does not make the list drift; they are reported as skipped,
not killed. A module with no entry in ``TESTS`` is tested by the test files that
import it (found by their source), which is what a maintainer would run.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import os
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from devtools import mutate_report, mutate_select

ROOT = Path(__file__).resolve().parent.parent
SKIP_FILE = ROOT / "devtools" / "mutate_skip.txt"

# module → the test files that cover it (non-slow tests only are run). Kept
# small on purpose: every mutant runs these, so they must take seconds.
TESTS: Dict[str, List[str]] = {
    # The judge is on the sensor function's start path: the cold-start test sees a
    # module-level typing import there (the rule in agent/record.py).
    "agent/judge.py": ["tests/test_judge.py", "tests/test_cold_start_imports.py"],
    "agent/credentials.py": [
        "tests/test_credentials.py",
        "tests/test_secret_hygiene.py",
        "tests/test_password_rotation.py",
    ],
    "agent/servicenow/incidents.py": ["tests/test_incidents.py", "tests/test_query_safety.py"],
    "agent/servicenow/outbox.py": [
        "tests/test_outbox.py",
        "tests/test_disk_full.py",
        "tests/test_delivery_records.py",
        "tests/test_outbox_guard.py",
    ],
    "agent/servicenow/delivery.py": [
        "tests/test_delivery.py",
        "tests/test_disk_full.py",
        "tests/test_pacing.py",
        "tests/test_password_rotation.py",
        "tests/test_rate_budget.py",
    ],
    "agent/servicenow/actions.py": [
        "tests/test_actions.py",
        "tests/test_delivery.py",
        "tests/test_query_safety.py",
        "tests/test_human_closure.py",
        "tests/test_hung_servicenow.py",
        "tests/test_delivery_records.py",
        "tests/test_slow_create_crash.py",
        "tests/test_event_sink.py",
    ],
    "agent/servicenow/auth_recovery.py": [
        "tests/test_auth_recovery.py",
        "tests/test_password_rotation.py",
        "tests/test_delivery.py",
    ],
    # Modules no test imports by name, reached through the ones that use them.
    "agent/sensors/st_chips.py": ["tests/test_i2c_sensor.py", "tests/test_sense_hat_chips.py"],
    "agent/sensors/heat.py": [
        "tests/test_i2c_sensor.py",
        "tests/test_sensors.py",
        "tests/test_cold_start_imports.py",
    ],
    "agent/servicenow/pacing.py": ["tests/test_pacing.py", "tests/test_rate_budget.py"],
    "agent/variables.py": ["tests/test_config.py", "tests/test_cli_errors.py"],
    "agent/state_file.py": ["tests/test_state_dir.py", "tests/test_sensor_service.py"],
    "agent/standalone/arguments.py": ["tests/test_mqtt_runs.py", "tests/test_cli_errors.py"],
}
# The default run: the modules whose figures the testing docs keep (the first seven).
DEFAULT_MODULES = list(TESTS)[:7]
DEVICE_PACKAGES = ("agent", "functions")


def all_modules() -> List[str]:
    """Every module of the device code (``agent/``, ``functions/``), with code to mutate."""
    found = []
    for package in DEVICE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if mutants_of(rel):
                found.append(rel)
    return found


def tests_for(module: str) -> List[str]:
    """The test files for ``module``: ``TESTS`` if it names them, else those importing it."""
    if module in TESTS:
        return TESTS[module]
    dotted = module[: -len(".py")].replace("/", ".")
    if dotted.endswith(".__init__"):
        dotted = dotted[: -len(".__init__")]
    parent, _, leaf = dotted.rpartition(".")
    patterns = [
        re.compile(r"^\s*(from|import)\s+{}\b".format(re.escape(dotted)), re.M),
        re.compile(r"^\s*from\s+{}\s+import\s+[^\n]*\b{}\b".format(re.escape(parent), leaf), re.M),
    ]
    tests = sorted((ROOT / "tests").glob("test_*.py"))
    found = [p for p in tests if any(x.search(p.read_text(encoding="utf-8")) for x in patterns)]
    # A module reached only through another (a bridge's session, a chip's formulas) is
    # tested where its name, or its package's, is in the test file's name.
    for name in (leaf, parent.rpartition(".")[2]):
        if not found and name not in ("agent", "functions", "__init__"):
            found = [p for p in tests if name.strip("_") in p.stem]
    return [p.relative_to(ROOT).as_posix() for p in found]


SWAP_COMPARE = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
}
SWAP_BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add}
SWAP_BOOL = {ast.And: ast.Or, ast.Or: ast.And}
SYMBOL = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Add: "+",
    ast.Sub: "-",
    ast.And: "and",
    ast.Or: "or",
}
LOGGER_NAMES = ("log", "logger", "logging")


@dataclass(frozen=True)
class Mutant:
    path: str  # relative to the repository
    line: int
    change: str
    index: int  # which mutation point, in walk order
    variant: int  # which change at that point (a Compare may hold several operators)
    source: str = ""  # the text of the line it changes, stripped (its key in the skip list)
    occurrence: int = 1  # the same change to the same text, counted from the top of the module
    end_line: int = 0  # the last line of the changed code (a call may span several)

    @property
    def span(self) -> List[int]:
        """The lines the change touches: the tests that run any of them are the ones to run."""
        return list(range(self.line, max(self.line, self.end_line) + 1))

    @property
    def where(self) -> str:
        return "{}:{}".format(self.path, self.line)

    @property
    def key(self) -> Tuple[str, str, str]:
        """What names this mutant across edits of other lines: module, line text, change."""
        return (self.path, self.source, self.change + _nth(self.occurrence))

    def skip_entry(self) -> str:
        """The line the skip list holds for this mutant (without the reason)."""
        return "{}: `{}`: {}".format(*self.key)


def _nth(occurrence: int) -> str:
    """How the skip list tells apart the same change to identical lines of one module."""
    return "" if occurrence == 1 else " (occurrence {})".format(occurrence)


# A mutation point: (node, variant) → description, and a function that mutates
# the node in a deep copy of the tree.
Point = Tuple[ast.AST, int, str, Callable[[ast.AST], None]]


def _excluded_nodes(tree: ast.Module) -> set:
    """Ids of nodes that are never mutated: docstrings, ``__repr__``, TYPE_CHECKING blocks."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            skip.add(id(body[0]))
        is_repr = isinstance(node, ast.FunctionDef) and node.name == "__repr__"
        is_type_checking = (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        )
        if is_repr or is_type_checking:
            for inner in ast.walk(node):
                skip.add(id(inner))
    return skip


def _is_log_call(call: ast.Call) -> bool:
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in LOGGER_NAMES
    )


def _points(tree: ast.Module) -> Iterator[Tuple[ast.AST, int, str]]:
    """Every (node, variant, description) that can be mutated, in a stable order."""
    skip = _excluded_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in SWAP_COMPARE:
                    new = SWAP_COMPARE[type(op)]
                    yield node, i, "{} -> {}".format(SYMBOL[type(op)], SYMBOL[new])
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAP_BINOP:
            new = SWAP_BINOP[type(node.op)]
            suffix = "=" if isinstance(node, ast.AugAssign) else ""
            yield node, 0, "{}{} -> {}{}".format(SYMBOL[type(node.op)], suffix, SYMBOL[new], suffix)
        elif isinstance(node, ast.BoolOp):
            new = SWAP_BOOL[type(node.op)]
            yield node, 0, "{} -> {}".format(SYMBOL[type(node.op)], SYMBOL[new])
        elif isinstance(node, ast.Constant):
            if node.value is True or node.value is False:
                yield node, 0, "{} -> {}".format(node.value, not node.value)
            elif isinstance(node.value, (int, float)):
                yield node, 0, "{!r} -> {!r}".format(node.value, node.value + 1)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, 0, "not x -> x"
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and not _is_log_call(node.value)
        ):
            yield node, 0, "{} -> pass".format(ast.unparse(node.value)[:60])


def _apply(node: ast.AST, variant: int) -> ast.AST:
    """Mutate ``node`` in place (a node of a copied tree); return its replacement."""
    if isinstance(node, ast.Compare):
        node.ops[variant] = SWAP_COMPARE[type(node.ops[variant])]()
    elif isinstance(node, (ast.BinOp, ast.AugAssign)):
        node.op = SWAP_BINOP[type(node.op)]()
    elif isinstance(node, ast.BoolOp):
        node.op = SWAP_BOOL[type(node.op)]()
    elif isinstance(node, ast.Constant):
        if node.value is True or node.value is False:
            node.value = not node.value
        else:
            node.value = node.value + 1
    elif isinstance(node, ast.UnaryOp):
        return node.operand
    elif isinstance(node, ast.Expr):
        return ast.Pass()
    return node


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, variant: int) -> None:
        self.target, self.variant = target, variant

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return _apply(node, self.variant)
        return self.generic_visit(node)


def mutants_of(path: str) -> List[Mutant]:
    """Every mutant of the module at ``path`` (relative to the repository)."""
    text = (ROOT / path).read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    found = []
    seen: Dict[Tuple[str, str], int] = {}
    points = sorted(enumerate(_points(tree)), key=lambda p: getattr(p[1][0], "lineno", 0))
    for index, (node, variant, change) in points:
        line = getattr(node, "lineno", 0)
        end_line = getattr(node, "end_lineno", None) or line
        source = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        occurrence = seen[(source, change)] = seen.get((source, change), 0) + 1
        found.append(Mutant(path, line, change, index, variant, source, occurrence, end_line))
    return sorted(found, key=lambda m: m.index)


def mutated_source(mutant: Mutant) -> str:
    """The module's source with ``mutant`` applied."""
    tree = ast.parse((ROOT / mutant.path).read_text())
    points = list(_points(tree))
    node, variant, _ = points[mutant.index]
    tree = _Replace(node, variant).visit(tree)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n"


SKIP_LINE = re.compile(r"^(?P<path>[^:]+): `(?P<source>.*)`: (?P<change>.+?)  # (?P<reason>.+)$")


def load_skips(text: Optional[str] = None) -> Dict[Tuple[str, str, str], str]:
    """(path, line text, change) → reason, from the skip file; a malformed line is an error."""
    skips: Dict[Tuple[str, str, str], str] = {}
    if text is None:
        text = SKIP_FILE.read_text() if SKIP_FILE.exists() else ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = SKIP_LINE.match(line)
        if match is None:
            raise ValueError(
                "{}:{}: not 'path: `source line`: change  # reason': {}".format(
                    SKIP_FILE.name, number, line
                )
            )
        skips[(match["path"], match["source"], match["change"])] = match["reason"]
    return skips


def stale_skips(skips: Dict[Tuple[str, str, str], str], modules: Sequence[str]) -> List[str]:
    """Skip entries of ``modules`` that match no mutant any more (the code they named changed)."""
    live = {m.key for module in modules for m in mutants_of(module)}
    return ["{}: `{}`: {}".format(*key) for key in skips if key[0] in modules and key not in live]


def sample(plan: List[Mutant], size: int, seed: int) -> List[Mutant]:
    """A reproducible sample of ``size`` mutants, spread over the modules in the plan."""
    if size <= 0 or size >= len(plan):
        return plan
    chosen = random.Random(seed).sample(plan, size)
    return sorted(chosen, key=plan.index)


# -- running ----------------------------------------------------------------------
IGNORED = (
    ".git",
    ".mutate-cache",
    ".venv",
    ".venv38",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
)


def make_copy(base: str) -> Path:
    """A private copy of the repository to mutate, under ``base``."""
    target = Path(tempfile.mkdtemp(prefix="mutate-", dir=base))
    shutil.copytree(ROOT, target / "repo", ignore=shutil.ignore_patterns(*IGNORED, "*.egg-info"))
    return target / "repo"


def run_tests(repo: Path, tests: Sequence[str], timeout: float) -> Tuple[str, float]:
    """``killed``, ``survived`` or ``timeout`` for the tests in ``repo`` (test files or node
    ids); ``error`` when pytest ran none (an unknown node id, no tests); and the seconds taken."""
    env = dict(os.environ, PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, *mutate_select.PYTEST, "-x", "--rootdir", str(repo)]
    command += [t for t in tests if (repo / t.partition("::")[0]).exists()]
    returncode, took = mutate_select.run_pytest(command, repo, env, timeout)
    if returncode is None:
        return "timeout", took
    if returncode == 0:
        return "survived", took
    if returncode in (4, 5):
        return "error", took  # a usage error (a node id not found) or no tests ran
    return "killed", took


@dataclass
class Plan:
    """How one module's mutants are tested: its test files, and (with selection) which
    tests reach each line, with each test's time for the per-mutant timeout."""

    module: str
    files: List[str]
    timeout: float
    lines: Optional[mutate_select.LineMap] = None  # None: no selection, whole files
    times: Optional[mutate_select.Times] = None
    at_import: Optional[set] = None

    def tests_for(self, mutant: Mutant) -> Tuple[Optional[List[str]], float]:
        """The node ids to run (None: the whole files; []: none reaches the line), and the
        timeout for them."""
        if self.lines is None or self.times is None or self.at_import is None:
            return None, self.timeout
        chosen = mutate_select.select(self.lines, mutant.span, self.at_import, self.times)
        if not chosen:
            return chosen, self.timeout
        # Four times what the chosen tests took, plus pytest's start-up: a hang is told
        # from a slow run without waiting for the whole files' limit.
        took = sum(self.times.get(node, 0.0) for node in chosen)
        return chosen, min(self.timeout, max(20.0, 4 * took + 10.0))


class Worker:
    """One private copy of the repository; applies a mutant, runs its tests, restores."""

    def __init__(self, base: str) -> None:
        self.repo = make_copy(base)

    def try_mutant(self, mutant: Mutant, plan: Plan) -> Tuple[Mutant, str, float]:
        chosen, timeout = plan.tests_for(mutant)
        if chosen is not None and not chosen:
            return mutant, NOT_COVERED, 0.0
        target = self.repo / mutant.path
        original = (ROOT / mutant.path).read_text()
        target.write_text(mutated_source(mutant))
        try:
            result, took = run_tests(self.repo, chosen or plan.files, timeout)
            if chosen and result == "error":
                # A node id pytest does not find (an id it spells differently): the files.
                result, more = run_tests(self.repo, plan.files, plan.timeout)
                took += more
        finally:
            target.write_text(original)
        return mutant, result, took


NOT_COVERED = "survived (not covered)"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev mutate", description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="paths such as agent/judge.py (default: core)")
    parser.add_argument("--all", action="store_true", help="every module of agent/ and functions/")
    parser.add_argument(
        "--package",
        action="append",
        default=[],
        metavar="DIR",
        help="every module under DIR (such as agent/servicenow), for --all in batches",
    )
    parser.add_argument(
        "--sample", type=int, default=0, metavar="N", help="run a reproducible sample of N mutants"
    )
    parser.add_argument("--seed", type=int, default=1, help="the sample's seed (default 1)")
    parser.add_argument(
        "--min-score",
        type=float,
        default=100.0,
        metavar="PCT",
        help="exit 1 when a module (with --sample: the sample) kills less than this "
        "(default: any survivor fails)",
    )
    parser.add_argument("-j", "--jobs", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="per mutant (default: 4× baseline)"
    )
    parser.add_argument(
        "--no-select",
        action="store_true",
        help="run every mutant on the module's whole test files (no coverage map)",
    )
    parser.add_argument("--json-out", metavar="PATH", help="write the figures and survivors here")
    parser.add_argument(
        "--write-docs",
        nargs="+",
        metavar="JSON",
        help="no run: rewrite the generated table of docs/testing.md from these results "
        "(later files win for a module measured twice) and keep them as docs/mutation.json",
    )
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)

    if args.write_docs:
        try:
            written = mutate_report.write_docs(args.write_docs)
        except (OSError, ValueError, KeyError) as error:
            print("cannot write the docs: {}".format(error), file=sys.stderr)
            return 2
        print("wrote " + ", ".join(written))
        return 0
    if args.all and (args.modules or args.package):
        parser.error("name modules or packages, or give --all, not both")
    modules = [m.lstrip("./") for m in args.modules]
    if args.all or args.package:
        everything = all_modules()
        prefixes = [p.strip("/").lstrip("./") + "/" for p in args.package]
        chosen = [m for m in everything if not prefixes or any(m.startswith(p) for p in prefixes)]
        if not chosen:
            parser.error("no module with mutants under {}".format(", ".join(args.package)))
        modules += chosen
    modules = modules or DEFAULT_MODULES
    for module in modules:
        if not (ROOT / module).is_file():
            parser.error("no such module: {}".format(module))
        if not tests_for(module):
            parser.error(
                "no test imports {} (map it in TESTS in devtools/mutate.py)".format(module)
            )
    try:
        skips = load_skips()
    except ValueError as error:
        parser.error(str(error))
    for entry in stale_skips(skips, modules):
        print("warning: the skip list names a mutant that no longer exists: " + entry)
    plan: List[Mutant] = []
    skipped: List[Tuple[Mutant, str]] = []
    for module in modules:
        for mutant in mutants_of(module):
            reason = skips.get(mutant.key)
            if reason is not None:
                skipped.append((mutant, reason))
            else:
                plan.append(mutant)
    plan = sample(plan, args.sample, args.seed)
    modules = [m for m in modules if any(p.path == m for p in plan)] or modules
    if args.list:
        for mutant in plan:
            print("{}: {}".format(mutant.where, mutant.change))
        return 0

    started = time.monotonic()
    at = mutate_report.commit()  # the copies are made now, from this commit
    base = tempfile.mkdtemp(prefix="edge-agent-mutate-")
    try:
        jobs = max(1, args.jobs)
        workers = [Worker(base) for _ in range(jobs)]
        plans: Dict[str, Plan] = {}
        if not args.no_select:
            _measure_together(workers[0].repo, modules)
        broken = []
        for module in modules:
            found = _plan(workers[0].repo, module, args)
            if isinstance(found, str):
                # Its figures would mean nothing; the other modules are still measured.
                print(
                    "the tests of {} fail without any mutant ({}): not measured".format(
                        module, found
                    )
                )
                broken.append(module)
            else:
                plans[module] = found
        if broken and len(broken) == len(modules):
            return 2
        modules = [m for m in modules if m not in broken]
        plan = [m for m in plan if m.path not in broken]

        def finished(results: List[Tuple[Mutant, str]]) -> None:
            # Each module's figures are written as soon as its last mutant is done: a long
            # run stopped early keeps the modules it finished.
            if args.json_out:
                done = [m for m in modules if count(results, m) == count(plan, m)]
                figures = mutate_report.figures(done, results, skipped)
                seconds = time.monotonic() - started
                mutate_report.save(args.json_out, figures, seconds, args, at)

        results = _run_all(workers, plan, plans, finished)
        finished(results)  # modules with every mutant skipped, too
    finally:
        shutil.rmtree(base, ignore_errors=True)
    code = mutate_report.report(modules, results, skipped, args.min_score, overall=args.sample > 0)
    if broken:
        print("not measured, their tests fail without any mutant: " + ", ".join(broken))
        return 2
    return code


def _measure_together(repo: Path, modules: Sequence[str]) -> None:
    """Map the modules not in the cache in one run over all their test files (a package's
    modules share many); when that run fails, each module is measured on its own after."""
    keys = {m: mutate_select.cache_key(ROOT, m, tests_for(m)) for m in modules}
    missing = {m: tests_for(m) for m in modules if mutate_select.load(ROOT, keys[m]) is None}
    if len(missing) < 2:
        return
    print("mapping {} modules in one run under coverage".format(len(missing)), flush=True)
    result, took, found = mutate_select.measure_many(repo, missing, 3600)
    print("  {} in {:.0f}s".format(result, took), flush=True)
    if result != "survived":
        return
    for module, (lines, times) in found.items():
        # The module's own tests' time, and pytest's start-up: what its own run would take.
        own = sum(times.values()) + 10.0
        mutate_select.save(ROOT, keys[module], own, lines, times)


def _plan(repo: Path, module: str, args: argparse.Namespace) -> Plan | str:
    """The module's plan; the unmutated tests must pass (else why, as a string). With
    selection, the map comes from the cache or from one run under coverage."""
    files = tests_for(module)
    if args.no_select:
        result, took = run_tests(repo, files, 1800)
        if result != "survived":
            return result
        print("{}: tests take {:.1f}s".format(module, took))
        return Plan(module, files, args.timeout or max(20.0, 4 * took))
    key = mutate_select.cache_key(ROOT, module, files)
    cached = mutate_select.load(ROOT, key)
    if cached is None:
        result, took, lines, times = mutate_select.measure(repo, module, files, 1800)
        if result != "survived":
            return result
        mutate_select.save(ROOT, key, took, lines, times)
        how = "measured"
    else:
        took, lines, times = cached
        how = "cached"
    print(
        "{}: tests take {:.1f}s under coverage ({}), {} tests".format(module, took, how, len(times))
    )
    unmeasured = sorted(lines.get(mutate_select.UNMEASURED, ()))
    if unmeasured:
        # They fail under coverage only (they look at what a child imports): they must
        # pass without it (the others passed under it), and then run with every mutant.
        print("  failing under coverage only, run with every mutant: " + ", ".join(unmeasured))
        result, _ = run_tests(repo, unmeasured, 1800)
        if result != "survived":
            return result
    at_import = mutate_select.import_time_lines((ROOT / module).read_text())
    return Plan(module, files, args.timeout or max(20.0, 4 * took), lines, times, at_import)


def count(mutants: Sequence, module: str) -> int:
    """How many of ``mutants`` (or (mutant, result) pairs) are of ``module``."""
    return sum(1 for m in mutants if (m[0] if isinstance(m, tuple) else m).path == module)


def _run_all(
    workers: List[Worker],
    plan: List[Mutant],
    plans: Dict[str, Plan],
    finished: Callable[[List[Tuple[Mutant, str]]], None],
) -> List[Tuple[Mutant, str]]:
    results: List[Tuple[Mutant, str]] = []
    queue = list(plan)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
        free = list(workers)
        running: Dict[concurrent.futures.Future, Worker] = {}
        while queue or running:
            while queue and free:
                worker, mutant = free.pop(), queue.pop(0)
                running[pool.submit(worker.try_mutant, mutant, plans[mutant.path])] = worker
            done, _ = concurrent.futures.wait(
                running, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                free.append(running.pop(future))
                mutant, result, took = future.result()
                results.append((mutant, result))
                if count(results, mutant.path) == count(plan, mutant.path):
                    finished(results)
                print(
                    "[{:3d}/{}] {:8s} {:5.1f}s {}: {}".format(
                        len(results), len(plan), result, took, mutant.where, mutant.change
                    ),
                    flush=True,
                )
    print("{} mutants in {:.0f}s".format(len(plan), time.monotonic() - started))
    return results


if __name__ == "__main__":
    sys.exit(main())
