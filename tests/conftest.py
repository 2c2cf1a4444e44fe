"""Shared fixtures, and the suite-wide guard that no secret value reaches a log line."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from typing import List, Set

import pytest

from agent.clock import VirtualClock
from agent.config import AnomalySettings
from agent.greengrass.local import LocalCore
from agent.topology import default_topology

# Test modules of the tooling (deploy, the ServiceNow stand-in, the simulation,
# benchmarks) need Python 3.11. Every other module exercises device code and is
# marked `device`: `./dev test` runs those again under Python 3.8, the newest
# Python a Greengrass V1 core runs, and ignores the tooling modules there.
TOOLING_TEST_PREFIXES = (
    "test_deploy",
    "test_servicenow_standin",
    "test_simulation",
    "test_bench",
    "test_cli_errors",  # the edge-agent command line (simulate, deploy, outbox)
    "test_cli_wording",  # what the edge-agent commands print for a person
    "test_dev_script",
    "test_mutate",  # the mutation runner (devtools/mutate.py)
    "test_layout",  # the import graph and the table of where things are in docs/architecture.md
    "test_status_browser",  # a browser against simulate --serve
    "test_status_commands",  # simulate --serve, run --status, edge-agent status
    "test_network_trials",  # edge-agent run and simulate against ServiceNow behind faults
    "test_systemd_service",  # the unit and its install script, on a system image
    "test_clock_trials",  # edge-agent run with its wall clock stepped (an LD_PRELOAD shim)
    "test_pi_trials",  # edge-agent run with a Pi's long ids and torn files
)


def is_tooling_test(path: object) -> bool:
    return os.path.basename(str(path)).startswith(TOOLING_TEST_PREFIXES)


class _NotOnThisPython(pytest.Module):
    """A tooling test module seen from Python 3.8: not imported, no tests."""

    def collect(self):  # noqa: ANN201 (pytest hook)
        return []


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path, parent):  # noqa: ANN001 (pytest hook)
    # Also for modules named on the command line, which pytest_ignore_collect never sees.
    if sys.version_info < (3, 11) and is_tooling_test(module_path):
        return _NotOnThisPython.from_parent(parent, path=module_path)
    return None


def pytest_sessionstart(session):  # noqa: ANN001 (pytest hook)
    # The processes the tests start load the project from bytecode (tests/project_bytecode.py);
    # absent where this file runs alone (test_secret_hygiene copies it into a folder of its own).
    try:
        from project_bytecode import compile_project
    except ImportError:
        return
    compile_project()


def pytest_collection_modifyitems(config, items):  # noqa: ANN001 (pytest hook)
    for item in items:
        if not is_tooling_test(item.path):
            item.add_marker(pytest.mark.device)


# Every secret value a test hands the agent is registered here; the guard
# below fails the run if any of them appears in any log record of any test.
KNOWN_SECRETS: Set[str] = set()
SNOW_USER = "edge-integration"


def new_secret(prefix: str = "pw") -> str:
    value = "{}-{}".format(prefix, secrets.token_hex(8))
    KNOWN_SECRETS.add(value)
    return value


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append("{} {}".format(record.name, text))


_RECORDER = _Recorder()


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log_line():
    root = logging.getLogger()
    root.addHandler(_RECORDER)
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(_RECORDER)
    root.setLevel(previous)
    leaks = [line for line in _RECORDER.lines for s in KNOWN_SECRETS if s in line]
    assert not leaks, "secret values appeared in log lines: {}".format(leaks[:3])
    if KNOWN_SECRETS:
        assert _RECORDER.lines, "the guard saw no log lines: is it attached?"


@pytest.fixture
def password() -> str:
    return new_secret()


@pytest.fixture
def standin(password):
    from devtools.servicenow_standin import ServiceNowStandIn

    server = ServiceNowStandIn(users={SNOW_USER: password}).start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> VirtualClock:
    """The agent's virtual clock, shared with :func:`snow`."""
    return VirtualClock(start=1_790_000_000.0)


def secret_json(password: str, user: str = SNOW_USER) -> str:
    return json.dumps({"username": user, "password": password})


@pytest.fixture
def core(password) -> LocalCore:
    topology = default_topology()
    core = LocalCore(topology)
    core.add_secret(topology.secrets[0].secret_name, secret_json(password))
    return core


@pytest.fixture
def anomaly_settings(standin, tmp_path) -> AnomalySettings:
    return AnomalySettings.from_mapping(
        {"snowUrl": standin.url, "stateDir": str(tmp_path), "deviceId": "pi-test"}
    )


@pytest.fixture
def v1_env(monkeypatch, tmp_path):
    """The environment a Greengrass V1 core gives a function (its ARN), state in ``tmp_path``."""
    monkeypatch.setenv("MY_FUNCTION_ARN", "arn:aws:lambda:us-east-1:123456789012:function:x:1")
    monkeypatch.delenv("EDGE_AGENT_RUNTIME", raising=False)
    monkeypatch.setenv("stateDir", str(tmp_path))
    monkeypatch.setenv("deviceId", "pi-v1")


@pytest.fixture
def snow(password, clock):
    """The stand-in, stamping each request with the agent's virtual time."""
    from devtools.servicenow_standin import ServiceNowStandIn

    server = ServiceNowStandIn(users={SNOW_USER: password}, clock=clock.time).start()
    yield server
    server.stop()
