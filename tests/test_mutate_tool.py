"""The mutation runner's bookkeeping: a skip list that follows the code, and runs that fit CI.

A maintainer edits a module; the equivalent mutants listed for it must stay skipped when
lines above them move, and an entry whose line changed must be reported, not silently
kept. ``--all`` must cover every module of the device code, each with tests to run.
"""

from __future__ import annotations

import json

import pytest

from devtools import mutate, mutate_report, mutate_select

MODULE = "pkg/limits.py"
SOURCE = '''"""A module to mutate."""


def over(value, limit):
    return value > limit


def clamp(value):
    count = 0
    count = 0
    return max(0, value)
'''


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / MODULE).write_text(SOURCE)
    monkeypatch.setattr(mutate, "ROOT", tmp_path)
    return tmp_path


def _skipped(skip_text):
    skips = mutate.load_skips(skip_text)
    return [m for m in mutate.mutants_of(MODULE) if m.key in skips]


def test_a_skip_entry_follows_its_line_when_lines_above_it_move(repo):
    entry = "pkg/limits.py: `return value > limit`: > -> >=  # the bound is inclusive either way\n"
    before = _skipped(entry)
    assert [(m.line, m.change) for m in before] == [(5, "> -> >=")]
    # A maintainer adds a docstring and an import above it: the line number moves.
    (repo / MODULE).write_text(
        SOURCE.replace('"""A module to mutate."""', '"""One.\n\nTwo."""\nimport os')
    )
    after = _skipped(entry)
    assert [(m.line, m.change) for m in after] == [(8, "> -> >=")]


def test_identical_lines_are_told_apart_by_their_occurrence(repo):
    entry = "pkg/limits.py: `count = 0`: 0 -> 1 (occurrence 2)  # the second assignment wins\n"
    skipped = _skipped(entry)
    assert [m.line for m in skipped] == [10]
    keys = [m.skip_entry() for m in mutate.mutants_of(MODULE) if m.source == "count = 0"]
    assert keys == [
        "pkg/limits.py: `count = 0`: 0 -> 1",
        "pkg/limits.py: `count = 0`: 0 -> 1 (occurrence 2)",
    ]


def test_an_entry_whose_line_changed_is_reported_as_stale(repo):
    skips = mutate.load_skips("pkg/limits.py: `return value > limit`: > -> >=  # inclusive\n")
    assert mutate.stale_skips(skips, [MODULE]) == []
    (repo / MODULE).write_text(SOURCE.replace("value > limit", "value > limit + 0"))
    assert mutate.stale_skips(skips, [MODULE]) == ["pkg/limits.py: `return value > limit`: > -> >="]


def test_a_malformed_skip_line_is_an_error_naming_the_line():
    with pytest.raises(ValueError, match=r"mutate_skip.txt:2: not 'path: `source line`"):
        mutate.load_skips("# comment\nagent/judge.py:106: 0 -> 1  # the old format\n")


def test_the_samples_are_reproducible_and_of_the_size_asked(repo):
    plan = mutate.mutants_of(MODULE)
    assert len(plan) == 4
    first = mutate.sample(plan, 3, seed=7)
    assert len(first) == 3 and first == mutate.sample(plan, 3, seed=7)
    assert set(first) <= set(plan)
    assert mutate.sample(plan, 0, seed=7) == plan


def test_every_device_module_is_covered_and_has_tests_to_run():
    modules = mutate.all_modules()
    assert "agent/servicenow/query_safe.py" in modules and "functions/sensor_function.py" in modules
    assert not [m for m in modules if not (m.startswith("agent/") or m.startswith("functions/"))]
    untested = [m for m in modules if not mutate.tests_for(m)]
    assert untested == []
    missing = [t for m in modules for t in mutate.tests_for(m) if not (mutate.ROOT / t).is_file()]
    assert missing == []


def test_the_committed_skip_list_parses_and_names_only_live_mutants():
    skips = mutate.load_skips()
    assert skips, "the skip list is empty"
    modules = sorted({key[0] for key in skips})
    assert mutate.stale_skips(skips, modules) == []


# -- test selection: each mutant runs the tests that reach its line ------------------------
SELECTED = '''"""A module whose lines are reached in different ways."""

LIMIT = 10


def over(value):
    return value > LIMIT


def unused(value):
    return value + 1


def in_a_child(value):
    return value - 1
'''
SELECTED_TESTS = """import subprocess
import sys

from pkg.limits import over


def test_over():
    assert over(11) and not over(10)


def test_nothing_of_the_module():
    assert sorted([2, 1]) == [1, 2]


def test_in_a_child():
    code = "from pkg.limits import in_a_child; print(in_a_child(3))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2"
"""


@pytest.fixture
def measured_repo(tmp_path, monkeypatch):
    """A repository with one module, its tests (one of them runs it in a child process), and
    the runner's coverage plugin, as the runner's private copies have."""
    for folder in ("pkg", "tests", "devtools", "docs"):
        (tmp_path / folder).mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / MODULE).write_text(SELECTED)
    (tmp_path / "tests" / "test_limits.py").write_text(SELECTED_TESTS)
    (tmp_path / "devtools" / "__init__.py").write_text("")
    plugin = mutate.ROOT / "devtools" / "mutate_select.py"
    (tmp_path / "devtools" / "mutate_select.py").write_text(plugin.read_text())
    monkeypatch.setattr(mutate, "ROOT", tmp_path)
    monkeypatch.setattr(mutate_report, "ROOT", tmp_path)
    return tmp_path


def _mutant(source, change):
    (found,) = [m for m in mutate.mutants_of(MODULE) if m.source == source and m.change == change]
    return found


def test_a_mutant_runs_only_the_tests_that_reach_its_line(measured_repo):
    tests = ["tests/test_limits.py"]
    result, _, lines, times = mutate_select.measure(measured_repo, MODULE, tests, 120)
    assert result == "survived"
    assert list(times) == [
        "tests/test_limits.py::test_over",
        "tests/test_limits.py::test_nothing_of_the_module",
        "tests/test_limits.py::test_in_a_child",
    ]
    at_import = mutate_select.import_time_lines(SELECTED)

    def chosen(source, change):
        return mutate_select.select(lines, _mutant(source, change).span, at_import, times)

    assert chosen("return value > LIMIT", "> -> >=") == ["tests/test_limits.py::test_over"]
    # Nothing runs `unused`: its mutants survive without a run.
    assert chosen("return value + 1", "+ -> -") == []
    # A constant is read by every test that imports the module; a line that only a child
    # process runs carries no test's name: both run the whole files.
    assert chosen("LIMIT = 10", "10 -> 11") is None
    assert chosen("return value - 1", "- -> +") is None


def test_a_run_reports_each_mutant_and_writes_the_results(measured_repo, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("out") / "results.json"
    code = mutate.main([MODULE, "-j", "1", "--min-score", "0", "--json-out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "return value + 1`: + -> - (no test runs this line)" in printed
    results = json.loads(out.read_text())
    assert results["runs"][0]["selection"] is True
    figures = results["modules"][MODULE]
    assert (figures["mutants"], figures["skipped"]) == (6, 0)
    assert (figures["killed"], figures["survived"]) == (4, 2)
    assert figures["survivors"] == [
        {"line": 11, "source": "return value + 1", "change": "+ -> -", "covered": False},
        {"line": 11, "source": "return value + 1", "change": "1 -> 2", "covered": False},
    ]
    # A second run takes the map from the cache.
    assert mutate.main([MODULE, "-j", "1", "--min-score", "0", "--sample", "1"]) == 0
    assert "(cached)" in capsys.readouterr().out


def _results(path, modules, sample=0):
    run = {"commit": "abc1234", "date": "2026-12-07", "seconds": 60, "jobs": 2}
    run.update(sample=sample, selection=True)
    path.write_text(json.dumps({"runs": [run], "modules": modules}))
    return str(path)


FIGURES = {
    "mutants": 5,
    "skipped": 1,
    "killed": 2,
    "timeout": 1,
    "survived": 1,
    "survivors": [
        {"line": 7, "source": "return value > LIMIT", "change": "> -> >=", "covered": True}
    ],
}


def test_write_docs_rewrites_the_table_from_the_results(tmp_path):
    docs = tmp_path / "testing.md"
    start, end = mutate_report.MARKERS
    docs.write_text("# Testing\n\n{}\nold table\n{}\n\nafter\n".format(start, end))
    first = _results(tmp_path / "a.json", {"agent/a.py": FIGURES, "agent/b.py": FIGURES})
    second = _results(
        tmp_path / "b.json", {"agent/b.py": dict(FIGURES, killed=3, survived=0, survivors=[])}
    )
    written = mutate_report.write_docs([first, second], docs, tmp_path / "mutation.json")
    text = docs.read_text()
    assert written == [str(tmp_path / "mutation.json"), str(docs)]
    assert "old table" not in text and text.endswith("{}\n\nafter\n".format(end))
    assert "| `agent/a.py` | 5 (1) | 3 of 4 (75 %) | 1 |" in text
    # The later file wins for a module measured twice.
    assert "| `agent/b.py` | 5 (1) | 4 of 4 (100 %) | — |" in text
    assert "- 7: `return value > LIMIT`: > -> >=" in text
    assert mutate_report.docs_block(mutate_report.load(tmp_path / "mutation.json")) in text


def test_write_docs_refuses_a_sample_and_a_docs_file_without_the_block(tmp_path):
    docs = tmp_path / "testing.md"
    docs.write_text("# Testing\n")
    whole = _results(tmp_path / "a.json", {"agent/a.py": FIGURES})
    with pytest.raises(ValueError, match="no <!-- mutation table"):
        mutate_report.write_docs([whole], docs, tmp_path / "mutation.json")
    sampled = _results(tmp_path / "s.json", {"agent/a.py": FIGURES}, sample=24)
    with pytest.raises(ValueError, match="s.json holds a sample run"):
        mutate_report.write_docs([sampled], docs, tmp_path / "mutation.json")
    assert mutate.main(["--write-docs", str(tmp_path / "none.json")]) == 2


def test_the_docs_show_the_table_generated_from_the_committed_results():
    committed = mutate_report.load()
    assert mutate_report.DOCS.read_text(encoding="utf-8").count(mutate_report.MARKERS[0]) == 1
    block = mutate_report.docs_block(committed)
    assert block in mutate_report.DOCS.read_text(encoding="utf-8"), (
        "regenerate: ./dev mutate --write-docs docs/mutation.json"
    )


def test_modules_mapped_in_one_run_keep_only_their_own_tests(measured_repo):
    (measured_repo / "pkg" / "other.py").write_text("def twice(value):\n    return 2 * value\n")
    (measured_repo / "tests" / "test_other.py").write_text(
        "from pkg.limits import over\nfrom pkg.other import twice\n\n\n"
        "def test_twice():\n    assert twice(3) == 6 and over(12)\n"
    )
    # A test that looks at what a child process imports sees coverage's own modules there:
    # it fails under measurement only, and is then run with every mutant of the module.
    (measured_repo / "tests" / "test_child_imports.py").write_text(
        "import subprocess, sys\n\n\ndef test_a_child_loads_no_coverage():\n"
        "    code = 'import sys; print(\"coverage\" in sys.modules)'\n"
        "    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)\n"
        "    assert out.stdout.strip() == 'False'\n"
    )
    other_tests = ["tests/test_other.py", "tests/test_child_imports.py"]
    modules = {MODULE: ["tests/test_limits.py"], "pkg/other.py": other_tests}
    result, _, found = mutate_select.measure_many(measured_repo, modules, 120)
    assert result == "survived"
    lines, times = found[MODULE]
    # test_other runs `over` too, but it is not one of this module's test files.
    assert lines[7] == {"tests/test_limits.py::test_over"}
    assert "tests/test_other.py::test_twice" not in times
    other_lines, other_times = found["pkg/other.py"]
    assert other_lines[2] == {"tests/test_other.py::test_twice"}
    assert list(other_times) == [
        "tests/test_child_imports.py::test_a_child_loads_no_coverage",
        "tests/test_other.py::test_twice",
    ]
    unmeasured = "tests/test_child_imports.py::test_a_child_loads_no_coverage"
    assert other_lines[mutate_select.UNMEASURED] == {unmeasured}
    assert mutate_select.UNMEASURED not in lines
    at_import = mutate_select.import_time_lines("def twice(value):\n    return 2 * value\n")
    assert mutate_select.select(other_lines, [2], at_import, other_times) == [
        unmeasured,
        "tests/test_other.py::test_twice",
    ]


def test_a_module_whose_tests_fail_unmutated_is_named_and_not_measured(measured_repo, capsys):
    (measured_repo / "pkg" / "broken.py").write_text("def one():\n    return 1\n")
    (measured_repo / "tests" / "test_broken.py").write_text(
        "from pkg.broken import one\n\n\ndef test_one():\n    assert one() == 2\n"
    )
    assert mutate.main(["pkg/broken.py", "-j", "1"]) == 2
    assert "the tests of pkg/broken.py fail without any mutant" in capsys.readouterr().out
