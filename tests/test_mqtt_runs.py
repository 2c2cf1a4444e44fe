"""``edge-agent simulate`` and ``run`` with a broker that fails them: the console, --json, the exit code."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest
from mosquitto import Mosquitto, free_port
from mqtt_helpers import READINGS, ROOT, Watcher

from agent.standalone.exit_codes import MQTT_LOST
from devtools.simulate import SimulationOptions, run


def simulate(tmp_path, url: str, **options) -> tuple:
    out = io.StringIO()
    summary = run(
        SimulationOptions(
            scenario="humid-spell",
            fast=True,
            duration=60,
            mqtt_url=url,
            state_dir=str(tmp_path / "state"),
            **options,
        ),
        out=out,
    )
    return summary, out.getvalue().splitlines()


def test_simulate_with_no_broker_says_so_counts_every_message_and_exits_4(tmp_path):
    url = f"mqtt://127.0.0.1:{free_port()}"
    summary, console = simulate(tmp_path, url, mqtt_close_timeout=0.5)
    sent = summary["messages_to_cloud"]
    assert sent >= 12
    assert summary["mqtt"]["lost"] == sent and summary["mqtt"]["published"] == 0
    assert summary["mqtt"]["broker"] == url
    assert "connection refused" in summary["mqtt"]["last_error"]
    assert summary["exit_code"] == MQTT_LOST == 4
    failures = [line for line in console if f"WARNING   cannot connect to {url}: " in line]
    assert len(failures) == 1, console  # on the console without -v, once
    assert "connection refused" in failures[0]
    assert any(f"{sent} message(s) for {url} unsent" in line for line in console), console
    assert any(f"0 published, 0 rejected, 0 dropped, {sent} lost" in line for line in console)


def test_simulate_with_a_broker_publishes_everything_and_exits_0(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        watcher = Watcher(broker.port).start()
        try:
            summary, console = simulate(tmp_path, broker.url)
            assert watcher.wait_for(summary["readings_published"], READINGS)
        finally:
            watcher.stop()
    sent = summary["messages_to_cloud"]
    assert summary["mqtt"]["published"] == sent
    assert (summary["mqtt"]["lost"], summary["mqtt"]["dropped"]) == (0, 0)
    assert summary["exit_code"] == 0
    assert not [line for line in console if "WARNING" in line or "ERROR" in line], console


def test_run_exits_4_when_the_broker_refuses_the_readings(tmp_path, caplog):
    from agent.standalone.run import main

    caplog.set_level(logging.WARNING)
    acl = tmp_path / "acl"
    acl.write_text("topic write IoTBlog/anomaly\ntopic read IoTBlog/#\n")  # readings denied
    with Mosquitto(tmp_path / "broker", listener_settings=[f"acl_file {acl}"]) as broker:
        status = main(
            [
                "--mqtt",
                broker.url,
                "--sensor",
                "fake",
                "--max-ticks",
                "3",
                "--set",
                "period=0.1",
                "--state-dir",
                str(tmp_path / "state"),
            ]
        )
    assert status == 4
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"refused a message on {READINGS}: Not authorized" in e for e in errors), errors
    assert any(f"3 message(s) for {broker.url} were not delivered" in e for e in errors), errors


@pytest.mark.slow
@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="the edge-agent command is tooling: Python 3.11 only"
)
def test_the_simulate_command_with_no_broker_exits_4_with_the_counts_in_json(tmp_path):
    url = f"mqtt://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "edge-agent"),
            "simulate",
            "--fast",
            "--duration",
            "60",
            "--mqtt",
            url,
            "--state-dir",
            str(tmp_path / "state"),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4, done.stderr
    summary = json.loads(done.stdout)
    assert summary["mqtt"]["lost"] == summary["messages_to_cloud"] > 0
    console = done.stderr.splitlines()  # with --json the console goes to stderr
    assert len([line for line in console if f"WARNING   cannot connect to {url}" in line]) == 1
    assert "Traceback" not in done.stderr
