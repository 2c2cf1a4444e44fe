"""The mutation runner's bookkeeping: a skip list that follows the code, and runs that fit CI.

A maintainer edits a module; the equivalent mutants listed for it must stay skipped when
lines above them move, and an entry whose line changed must be reported, not silently
kept. ``--all`` must cover every module of the device code, each with tests to run.
"""

from __future__ import annotations

import pytest

from devtools import mutate

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
