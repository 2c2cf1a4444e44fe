"""``simulate --serve``, ``run --status`` and ``edge-agent status`` as a person runs them:
real processes, real signals, the metrics read by Prometheus' own parser."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest
import requests
from helpers import wait_until
from prometheus_client.parser import text_string_to_metric_families

from agent.standalone.exit_codes import meaning
from devtools.simulate import SimulationOptions, run
from devtools.status_cmd import main as status_main

EDGE_AGENT = [sys.executable, "-m", "devtools.cli"]
URL = re.compile(r"(http://127\.0\.0\.1:\d+/)")


class Served:
    """A command that prints its status URL; the test reads its output as it comes."""

    def __init__(self, args, url_stream="stderr", **kwargs):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("EDGE_AGENT_RUNTIME", None)
        self.proc = subprocess.Popen(
            EDGE_AGENT + args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            **kwargs,
        )
        self.lines = {"stdout": [], "stderr": []}
        self._url = threading.Event()
        self.url = None
        for name in ("stdout", "stderr"):
            threading.Thread(target=self._read, args=(name,), daemon=True).start()
        self.url_stream = url_stream
        if not self._url.wait(30):
            self.stop()
            raise AssertionError("no status URL printed: {}".format(self.lines))

    def _read(self, name):
        for line in getattr(self.proc, name):
            self.lines[name].append(line)
            match = URL.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                self._url.set()

    def text(self, name):
        return "".join(self.lines[name])

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


def _summary(served):
    """The --json summary, printed on stdout when the run ends (before serving on)."""
    assert wait_until(lambda: served.text("stdout").rstrip().endswith("}"), 30), served.lines
    return json.loads(served.text("stdout"))


def _metrics(url):
    families = text_string_to_metric_families(requests.get(url + "metrics", timeout=5).text)
    values = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name,) + tuple(sorted(sample.labels.items()))
            values[key] = sample.value
    return values


def _sum(values, name, **labels):
    return sum(
        v
        for key, v in values.items()
        if key[0] == name and all((k, want) in key[1:] for k, want in labels.items())
    )


def test_simulate_serve_fast_serves_on_and_its_metrics_equal_the_summary(tmp_path):
    served = Served(
        ["simulate", "--fast", "--json", "--serve", "127.0.0.1:0", "--state-dir", str(tmp_path)]
    )
    try:
        summary = _summary(served)
        assert summary["incidents_opened"] == 1 and summary["drained"]
        assert served.proc.poll() is None  # still serving after the run
        assert "still serving {}".format(served.url) in served.text("stderr")
        m = _metrics(served.url)
        assert m[("edge_agent_readings_total",)] == summary["readings_published"]
        assert m[("edge_agent_sensor_samples_total",)] == summary["samples"]
        assert m[("edge_agent_sensor_errors_total",)] == summary["sensor"]["errors"]
        assert m[("edge_agent_publish_errors_total",)] == summary["publish_errors"]
        for event, count in summary["episodes"].items():
            assert _sum(m, "edge_agent_episode_events_total", event=event) == count
        for action in ("opened", "reused", "updated", "resolved"):
            total = m[("edge_agent_incidents_total", ("action", action))]
            assert total == summary["incidents_" + action]
        assert m[("edge_agent_outbox_pending",)] == summary["actions_pending"]
        assert m[("edge_agent_outbox_dead_letters",)] == summary["actions_dead_lettered"]
        assert m[("edge_agent_secret_fetches_total",)] == summary["secret_fetches"]
        assert m[("edge_agent_delivery_retries_total",)] == summary["retries"]
        for method, calls in summary["servicenow_calls"].items():
            assert _sum(m, "edge_agent_servicenow_requests_total", method=method) == calls
        count = m[("edge_agent_servicenow_request_duration_seconds_count",)]
        assert count == sum(summary["servicenow_calls"].values())
        # The run is over: the page serves what it left, and says the run ended.
        assert m[("edge_agent_healthy",)] == 0
        assert m[("edge_agent_function_up", ("function", "sensor"))] == 0
        healthz = requests.get(served.url + "healthz", timeout=5)
        assert healthz.status_code == 503
        assert healthz.text.startswith(
            "unhealthy: the run has ended (exit 0: {}): nothing is read or delivered any "
            "more\n".format(meaning(0))
        )
        state = requests.get(served.url + "api/state", timeout=5).json()
        assert (
            state["run"]["exit_code"] == 0
            and state["run"]["ended_at"] >= state["readings"]["ts"][-1]
        )
    finally:
        code = served.stop(signal.SIGTERM)
    assert code == 0  # the run drained; SIGTERM only ends the serving
    assert "stopped serving (SIGTERM)" in served.text("stderr")


@pytest.mark.slow
def test_simulate_serve_in_real_time_serves_only_during_the_run(tmp_path):
    served = Served(
        [
            "simulate",
            "--period",
            "0.2",
            "--duration",
            "3",
            "--scenario",
            "steady",
            "--serve",
            "0",
            "--state-dir",
            str(tmp_path),
        ]
    )
    try:
        assert wait_until(
            lambda: requests.get(served.url + "api/state", timeout=5).json()["readings"]["ts"], 30
        )
        assert served.proc.wait(30) == 0
    finally:
        served.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(served.url + "healthz", timeout=2)


def test_a_bad_serve_address_is_a_usage_error():
    done = subprocess.run(
        EDGE_AGENT + ["simulate", "--fast", "--serve", "nowhere:port"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--serve takes [HOST:]PORT" in done.stderr and "Traceback" not in done.stderr


def test_run_status_serves_the_page_while_the_agent_runs(tmp_path):
    served = Served(
        [
            "run",
            "--sensor",
            "fake",
            "--set",
            "period=0.1",
            "--state-dir",
            str(tmp_path),
            "--duration",
            "60",
            "--status",
            "127.0.0.1:0",
        ]
    )
    try:
        assert wait_until(
            lambda: (
                len(requests.get(served.url + "api/state", timeout=5).json()["readings"]["ts"])
                >= 10
            ),
            30,
        )
        state = requests.get(served.url + "api/state", timeout=5).json()
        assert state["functions"]["sensor"]["final"] is False  # its first report, at start
    finally:
        code = served.stop(signal.SIGTERM)
    assert code == 0


# -- edge-agent status ---------------------------------------------------------------------


def test_status_command_summarises_a_state_dir_with_the_functions_down(tmp_path, capsys):
    # ServiceNow down for the whole run of a ramp (which ends still breaching).
    run(
        SimulationOptions(
            scenario="ramp",
            fast=True,
            state_dir=str(tmp_path),
            outages=[(0.0, 1e9)],
            drain_timeout=120.0,
        )
    )
    capsys.readouterr()
    assert status_main(["--state-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "device        sim-pi" in text
    assert re.search(r"open episodes 1\n  temperature above since .* no incident yet;", text)
    assert re.search(
        r"outbox        1 pending \(oldest .*, up to \d+ tries\); 0 dead-lettered", text
    )
    assert "pending open edge-agent:sim-pi:temperature:upper:" in text
    assert "ServiceNow unreachable at http://127.0.0.1:" in text
    (locks_line,) = [line for line in text.splitlines() if line.startswith("locks ")]
    # The functions are down: their lock files are there, free, naming who held them last.
    assert "outbox.lock free (last held by pid" in locks_line and "held by pid" not in (
        locks_line.replace("last held by pid", "")
    )
    assert len(text.splitlines()) <= 24  # one screen

    assert status_main(["--state-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["outbox"]["pending"] == 1 and len(report["open_episodes"]) == 1
    assert report["open_episodes"][0]["metric"] == "temperature"


def test_status_command_on_a_missing_state_dir_says_so(tmp_path, capsys):
    assert status_main(["--state-dir", str(tmp_path / "nope")]) == 2
    assert "no state directory at" in capsys.readouterr().err


@pytest.mark.slow
def test_healthz_turns_503_during_an_outage_and_200_after(tmp_path):
    """Real time: ServiceNow down for the first 6 s, while the first breach waits to be sent."""
    served = Served(
        [
            "simulate",
            "--period",
            "0.2",
            "--duration",
            "20",
            "--outage",
            "0:6",
            "--set",
            "humidLimit=20",
            "--set",
            "statusStuckSeconds=1.5",
            "--set",
            "retryBaseSeconds=0.2",
            "--set",
            "retryMaxSeconds=0.5",
            "--serve",
            "0",
            "--state-dir",
            str(tmp_path),
        ],
    )
    seen = []

    def healthz():
        answer = requests.get(served.url + "healthz", timeout=5)
        seen.append((answer.status_code, answer.text))
        return answer

    try:
        assert wait_until(lambda: healthz().status_code == 503 and "stuck" in seen[-1][1], 30)
        code, text = seen[-1]
        assert text.startswith("unhealthy: delivery stuck: 1 action pending, the oldest for ")
        assert "last error: ServiceNow unreachable at http://127.0.0.1:" in text
        assert wait_until(lambda: "ServiceNow is back" in served.text("stdout"), timeout=30)
        assert wait_until(lambda: healthz().status_code == 200, timeout=15)
        assert seen[-1][1] == "ok\n"
        assert "opened incident INC0010001" in served.text("stdout")
    finally:
        served.stop()


def test_the_mqtt_bridge_counters_reach_the_metrics(tmp_path):
    """With a broker (``--mqtt``), what the bridge published, spooled and lost is on /metrics."""
    import io

    from mosquitto import Mosquitto

    broker = Mosquitto(tmp_path / "broker").start()
    out, seen = io.StringIO(), {}

    def on_finished(summary):  # the run is over, the page still up
        seen["metrics"] = _metrics(URL.search(out.getvalue()).group(1))
        seen["summary"] = summary

    try:
        run(
            SimulationOptions(
                scenario="steady",
                period=0.1,
                duration=1.5,
                state_dir=str(tmp_path / "state"),
                serve="0",
                mqtt_url=broker.url,
            ),
            out=out,
            on_finished=on_finished,
        )
    finally:
        broker.stop()
    m, summary = seen["metrics"], seen["summary"]
    published = m[("edge_agent_mqtt_published_total",)]
    assert 0 < published <= summary["messages_to_cloud"]
    assert m[("edge_agent_mqtt_lost_total",)] == m[("edge_agent_mqtt_dropped_total",)] == 0
    assert ("edge_agent_mqtt_spooled_total",) in m and ("edge_agent_mqtt_connected",) in m
