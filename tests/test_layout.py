"""The house plan holds: no import circle, no import up a floor, every module has its room.

The floors and rooms are :mod:`devtools.layout`; the README's "Where things are"
table is generated from it.
"""

from __future__ import annotations

import importlib
import os

import pytest

from devtools import cli, layout

REPO = layout.REPO


@pytest.fixture(scope="module")
def graph():
    """The import graph of the packages and the tests' shared modules (built once)."""
    graph = layout.import_graph()
    # The command table imports its handlers by name, when a command runs.
    for command in cli.COMMANDS:
        for target in (command.handler, command.arguments):
            if target:
                graph["devtools.cli"].add(target.partition(":")[0])
    graph.update(_test_helpers_graph())
    return graph


def _test_helpers_graph():
    """The tests' shared modules (``helpers``, ``faults``, ...) import each other too."""
    tests = os.path.join(REPO, "tests")
    known = {
        name[:-3]: os.path.join(tests, name)
        for name in os.listdir(tests)
        if name.endswith(".py") and not name.startswith("test_")
    }
    return {name: layout.imports(name, path, known) for name, path in known.items()}


def test_there_is_no_import_circle_anywhere(graph):
    assert layout.cycles(graph) == []


def test_no_module_imports_from_a_floor_above_its_own(graph):
    assert layout.upward_imports(graph) == []


def test_every_module_is_on_a_floor():
    assert [m for m in layout.modules() if layout.floor_of(m) is None] == []


def test_the_command_tables_handlers_exist():
    for command in cli.COMMANDS:
        for target in (command.handler, command.arguments):
            if target:
                module, _, name = target.partition(":")
                assert callable(getattr(importlib.import_module(module), name)), target


def test_every_module_has_a_room_and_every_room_names_real_files():
    named = layout.named_paths()
    missing = [p for p in named if not os.path.exists(os.path.join(REPO, p))]
    assert missing == [], "the rooms name files that do not exist"

    def placed(path):
        rel = os.path.relpath(path, REPO).replace(os.sep, "/")
        if rel.endswith("/__init__.py"):  # a package is placed by what it holds
            rel = rel[: -len("__init__.py")]
            return any(p.startswith(rel) or rel.startswith(p) for p in named if "/" in p)
        return any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in named)

    unplaced = [m for m, path in layout.modules().items() if not placed(path)]
    assert unplaced == [], "add these modules to a room in devtools/layout.py"


def test_the_where_things_are_table_is_generated_from_the_plan():
    with open(os.path.join(REPO, "docs", "architecture.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert layout.markdown_table() in readme, "regenerate: devtools.layout.markdown_table()"


def test_the_checks_catch_a_circle_and_an_import_up_a_floor():
    graph = {"agent.judge": {"agent.sensor_service"}, "agent.sensor_service": {"agent.judge"}}
    assert layout.cycles(graph) == [["agent.judge", "agent.sensor_service"]]
    assert layout.upward_imports(graph) == [
        "agent.judge (parts) -> agent.sensor_service (services)"
    ]


def test_the_project_states_its_licence_and_ships_its_text():
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    assert "License :: OSI Approved :: Apache Software License" in project["classifiers"]
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as handle:
        text = handle.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole licence, not a pointer to it
