"""The status function serving over real sockets, fed by the group's own functions.

The group is wired as ``simulate --serve`` wires it (the status function on the
local core, queued delivery, health reports), in virtual time, against the
ServiceNow stand-in over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from conftest import SNOW_USER, secret_json
from helpers import wait_until

from agent.clock import VirtualClock
from agent.sensors import open_sensor
from agent.standalone.group import LocalGroup, function_environments
from agent.standalone.status import status_topology
from agent.status import server as status_server
from agent.status.health import HEALTH_INTERVAL
from agent.topology import STATUS_FUNCTION_ID, default_topology

T0 = 1_790_000_000.0


class Group:
    """Sensor, anomaly and status functions on one local core, in virtual time."""

    def __init__(self, state_dir, standin, password, scenario="humid-spell", **variables):
        self.clock = VirtualClock(T0)
        self.standin = standin
        common = {"stateDir": str(state_dir), "deviceId": "pi-status", "snowUrl": standin.url}
        common.update(variables)
        topology, status_env = status_topology(default_topology(), "127.0.0.1:0", common)
        sensor_env, anomaly_env = function_environments(topology, common)
        sensor = open_sensor("fake", clock=self.clock, scenario=scenario, seed=1)
        self.group = LocalGroup(
            sensor_env,
            anomaly_env,
            self.clock,
            topology=topology,
            sensor=sensor,
            secret_value=secret_json(password),
            environ_status=status_env,
            fast=True,
            line=lambda *a: None,
        ).open()
        self.core, self.sensor, self.anomaly = (
            self.group.core,
            self.group.sensor,
            self.group.anomaly,
        )
        self.status = self.group.status
        self.url = self.status.url

    def run(self, ticks):
        for _ in range(ticks):
            self.sensor.tick()
            self.anomaly.pump()
            self.clock.advance(self.sensor.settings.period)
        self.core.wait_idle(STATUS_FUNCTION_ID)

    def finish(self):
        """Stop the functions as a run ends; the page goes on serving what they left."""
        self.group.stop()

    def close(self):
        self.group.close()


@pytest.fixture
def group(tmp_path, standin, password):
    made = []

    def make(**kwargs):
        made.append(Group(tmp_path, standin, password, **kwargs))
        return made[-1]

    yield make
    for g in made:
        g.close()


def test_the_page_and_its_assets_come_from_the_package_under_a_strict_policy(group):
    g = group()
    page = requests.get(g.url, timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assets = ["/static/app.js", "/static/app.css", "/static/uPlot.iife.min.js"]
    assets.append("/static/uPlot.min.css")
    for asset in assets:
        assert asset in page.text
    total = len(page.content)
    for asset in assets:
        answer = requests.get(g.url.rstrip("/") + asset, timeout=5)
        assert answer.status_code == 200
        total += len(answer.content)
    assert total <= 150 * 1024, total  # the whole page, no CDN
    assert "http" not in page.text.replace('href="/', "")  # nothing from another origin
    licence = requests.get(g.url + "static/uPlot.LICENSE.txt", timeout=5).text
    assert "MIT License" in licence and "Leon Sorokin" in licence
    assert requests.get(g.url + "static/../service.py", timeout=5).status_code == 404


def test_api_state_tells_readings_episodes_incidents_and_delivery(group, password):
    g = group()
    g.run(180)  # the 15-minute humid spell: one episode, one incident, resolved
    g.finish()
    state = requests.get(g.url + "api/state?readings=all", timeout=5).json()
    assert state["schema"] == "edge-agent/status/1" and state["device"] == "pi-status"
    assert len(state["readings"]["ts"]) == 180 == state["sensor"]["counters"]["readings"]
    assert state["sensor"]["limits"]["humidity"] == {
        "upper": 50.0,
        "lower": None,
        "hysteresis": 1.0,
    }
    (episode,) = state["episodes"]
    assert episode["metric"] == "humidity" and not episode["open"]
    assert episode["started_at"] < episode["breach_at"] < episode["recovered_at"]
    (number,) = {i["number"] for i in state["incidents"]}
    assert episode["incident"]["number"] == number
    sys_id = g.standin.incidents()[0]["sys_id"]
    assert episode["incident"]["url"] == (
        g.standin.url + "/nav_to.do?uri=incident.do%3Fsys_id%3D" + sys_id
    )
    assert [i["action"] for i in state["incidents"]] == ["resolved", "opened"]
    delivery = state["delivery"]
    assert delivery["outbox"]["pending"] == 0 and delivery["credentials"]["cached"]
    # GET (none yet), POST; GET (the incident's state before resolving it), PATCH.
    assert delivery["servicenow"]["requests"] == {
        "GET 404": 1,
        "POST 201": 1,
        "GET 200": 1,
        "PATCH 200": 1,
    }
    # The functions stopped with the run: the page says so, it does not say "healthy".
    assert state["health"] == {
        "ok": False,
        "reasons": ["the anomaly function and the sensor function stopped (final report sent)"],
    }
    assert {f["state"] for f in state["functions"].values()} == {"stopped"}
    # Nothing secret in any answer.
    for path in ("api/state?readings=all", "metrics", "healthz", ""):
        body = requests.get(g.url + path, timeout=5).text
        assert password not in body and SNOW_USER not in body


def test_endpoints_are_read_only(group):
    g = group()
    g.run(30)
    before = requests.get(g.url + "api/state", timeout=5).json()["readings"]["total"]
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        answer = requests.request(method, g.url + "api/state", data=b"{}", timeout=5)
        assert answer.status_code == 405 and answer.headers["Allow"] == "GET, HEAD"
    head = requests.head(g.url + "healthz", timeout=5)
    assert head.status_code == 200 and head.content == b""
    after = requests.get(g.url + "api/state", timeout=5).json()["readings"]["total"]
    assert after == before == 30


def test_healthz_fails_with_the_reason_when_readings_stop_or_delivery_is_stuck(group):
    g = group(scenario="heat-spike", tempLimit="20", statusStuckSeconds="60", retryMaxSeconds="20")
    g.run(2)
    assert requests.get(g.url + "healthz", timeout=5).status_code == 200
    g.standin.faults.down = True
    g.run(20)  # the breach's incident cannot be delivered for 100 s
    answer = requests.get(g.url + "healthz", timeout=5)
    assert answer.status_code == 503
    assert answer.text.startswith("unhealthy: delivery stuck: 1 action pending, the oldest for")
    assert "(limit 1 min 00 s); last error: ServiceNow unreachable" in answer.text
    g.standin.faults.down = False
    g.run(6)
    assert requests.get(g.url + "healthz", timeout=5).text == "ok\n"
    g.clock.advance(60)  # no readings for a minute (3 periods is the limit, at least 15 s)
    answer = requests.get(g.url + "healthz", timeout=5)
    assert answer.status_code == 503
    assert answer.text == "unhealthy: readings stale: the last one is 1 min 05 s old (limit 15 s)\n"


def _health(g):
    """(/healthz status, its text, edge_agent_healthy, edge_agent_function_up by function)."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = requests.get(g.url + "healthz", timeout=5)
    metrics = requests.get(g.url + "metrics", timeout=5).text
    samples = [s for f in text_string_to_metric_families(metrics) for s in f.samples]
    healthy = [s.value for s in samples if s.name == "edge_agent_healthy"]
    up = {s.labels["function"]: s.value for s in samples if s.name == "edge_agent_function_up"}
    return answer.status_code, answer.text, healthy, up


def test_health_tells_a_dead_letter_a_silent_function_and_stopped_ones(group):
    g = group(scenario="heat-spike", tempLimit="20")
    g.run(2)
    assert _health(g) == (200, "ok\n", [1.0], {"sensor": 1.0, "anomaly": 1.0})
    g.standin.faults.fail_next(3, status=403)  # ServiceNow refuses the incident for good
    g.run(4)
    code, text, healthy, _ = _health(g)
    assert (code, healthy) == (503, [0.0])
    assert text == (
        "unhealthy: 1 action dead-lettered: ServiceNow refused it for good; fix the cause, "
        "then edge-agent outbox --requeue-dead\n"
    )
    state = requests.get(g.url + "api/state", timeout=5).json()
    assert state["delivery"]["outbox"]["dead_letters"] == 1 and not state["health"]["ok"]
    # A function that dies without its final report (a crash, SIGKILL) falls silent.
    g.clock.advance(200)  # nothing reports for 200 s: readings stale, both functions silent
    code, text, healthy, up = _health(g)
    assert (code, healthy, up) == (503, [0.0], {"sensor": 0.0, "anomaly": 0.0})
    assert "the sensor function is silent: no report for 3 min" in text
    assert "the anomaly function is silent: no report for " in text
    assert "(limit 2 min 00 s)" in text and "readings stale" in text
    g.finish()  # their final reports: stopped, not silent
    code, text, healthy, up = _health(g)
    assert (code, healthy, up) == (503, [0.0], {"sensor": 0.0, "anomaly": 0.0})
    assert "the anomaly function and the sensor function stopped (final report sent)" in text
    assert "silent" not in text


def _lines(response):
    """One line iterator per stream (unbuffered, so no event is held back between reads)."""
    return response.iter_lines(chunk_size=1, decode_unicode=True)


def _events(lines, count, timeout=10.0):
    """The next ``count`` events of a text/event-stream, as (name, data, id)."""
    events, name, data, event_id = [], None, None, None
    deadline = time.monotonic() + timeout
    for line in lines:
        if time.monotonic() > deadline:
            break
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("id: "):
            event_id = float(line[4:])
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and name:
            events.append((name, data, event_id))
            name, data, event_id = None, None, None
            if len(events) >= count:
                break
    return events


def test_the_event_stream_sends_new_readings_and_the_state(group):
    g = group()
    g.run(5)
    last = requests.get(g.url + "api/state", timeout=5).json()["readings"]["ts"][-1]
    with requests.get(g.url + "events?since=" + repr(last), stream=True, timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        lines = _lines(stream)
        (state,) = _events(lines, 1)
        assert state[0] == "state" and "readings" not in state[1]
        g.run(3)
        # As they reach the status function: in one event or a few, each reading once.
        sent = []
        while not sent or sent[-1][2] != last + 15:
            (event,) = _events(lines, 1)
            assert event[0] == "readings"
            sent.append(event)
    assert [ts for event in sent for ts in event[1]["ts"]] == [last + 5, last + 10, last + 15]
    assert sent[-1][2] == last + 15  # the id a reconnecting page resumes from
    # A page that reconnects (Last-Event-ID) gets what it missed, once.
    headers = {"Last-Event-ID": repr(last + 5)}
    with requests.get(g.url + "events", headers=headers, stream=True, timeout=10) as stream:
        (missed,) = _events(_lines(stream), 1)
    assert missed[0] == "readings" and missed[1]["ts"] == [last + 10, last + 15]


def test_too_many_live_pages_are_refused_not_queued(group, monkeypatch):
    g = group()
    g.run(3)
    server = g.status.app.server
    monkeypatch.setattr(server, "streams", status_server.threading.BoundedSemaphore(1))
    with requests.get(g.url + "events", stream=True, timeout=10) as first:
        assert first.status_code == 200
        second = requests.get(g.url + "events", timeout=5)
        assert second.status_code == 503 and "too many" in second.text
        assert requests.get(g.url + "healthz", timeout=5).status_code == 200


def test_a_client_that_never_finishes_its_request_blocks_nobody(group):
    g = group()
    g.run(3)
    host, port = g.status.app.server.server_address[:2]
    slow = socket.create_connection((host, port))
    try:
        slow.sendall(b"GET /api/state HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        started = time.monotonic()
        assert requests.get(g.url + "healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 2
    finally:
        slow.close()


def test_a_taken_port_is_a_clear_error(group):
    g = group()
    port = g.status.app.server.port
    from functions import status_function

    with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1:{}".format(port)):
        status_function.create_app(environ={"statusPort": str(port), "stateDir": "/tmp"})


def test_health_reports_and_counters_survive_the_interval(group):
    g = group(scenario="io-errors")
    g.run(int(HEALTH_INTERVAL // 5) * 4)
    g.finish()
    counters = requests.get(g.url + "api/state", timeout=5).json()["sensor"]["counters"]
    assert counters["sensor_errors"] == g.sensor.counts["sensor_errors"] > 0
    assert counters["samples"] == g.sensor.counts["samples"]


# -- the state directory, read as it is -----------------------------------------------------


def test_a_missing_or_replaced_outbox_is_reported_and_reopened(group, tmp_path):
    g = group()
    g.run(40)
    path = tmp_path / "outbox.sqlite3"
    g.anomaly.outbox.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(str(path) + suffix):
            shutil.move(str(path) + suffix, str(tmp_path / ("aside" + suffix)))
    g.clock.advance(1.0)  # the state dir is read at most once a second (of either clock)
    answer = requests.get(g.url + "healthz", timeout=5)
    assert answer.status_code == 503
    assert "delivery unknown: no outbox at {}".format(path) in answer.text
    from agent.servicenow.outbox import Outbox

    Outbox(str(path)).close()  # the anomaly function starts again with a new file
    g.clock.advance(1.0)
    outbox = requests.get(g.url + "api/state", timeout=5).json()["delivery"]["outbox"]
    assert outbox["available"] and outbox["pending"] == 0


def _mount_read_only(source, target):
    try:
        subprocess.run(["mount", "--bind", source, target], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip("needs root to bind-mount a read-only volume: {}".format(exc))
    subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)


STATUS_ON_READ_ONLY_VOLUME = """
import json, sys, time, urllib.request
from agent.clock import Clock
from functions import status_function
app = status_function.create_app(environ={"statusPort": "0", "stateDir": sys.argv[1]})
app.start()
print(app.url, flush=True)
sys.stdin.readline()
app.stop()
"""


@pytest.mark.slow
def test_the_outbox_is_read_from_a_read_only_volume_while_the_writer_writes(
    tmp_path, standin, password
):
    """A V1 volume with "ro" permission: the status function cannot write -shm or -wal."""
    writable = tmp_path / "state"
    read_only = tmp_path / "mounted"
    writable.mkdir()
    read_only.mkdir()
    g = Group(writable, standin, password, scenario="heat-spike", tempLimit="20")
    standin.faults.down = True  # actions stay pending: the writer keeps writing retries
    g.run(6)
    _mount_read_only(str(writable), str(read_only))
    child = subprocess.Popen(
        [sys.executable, "-c", STATUS_ON_READ_ONLY_VOLUME, str(read_only)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, EDGE_AGENT_RUNTIME="local"),
    )
    try:
        url = child.stdout.readline().strip()
        first = requests.get(url + "api/state", timeout=5).json()["delivery"]["outbox"]
        assert first["available"] and first["pending"] == 1, first
        g.run(6)  # the anomaly function keeps writing retries while the reader reads

        def outbox():  # the reader looks at the state dir at most once a second
            return requests.get(url + "api/state", timeout=5).json()["delivery"]["outbox"]

        assert wait_until(lambda: outbox()["most_attempts"] > first["most_attempts"])
        with pytest.raises(OSError, match="Read-only file system"):
            (read_only / "probe").write_text("x")  # really read-only, even for root
    finally:
        child.stdin.write("\n")
        child.stdin.close()
        child.wait(10)
        g.close()
        subprocess.run(["umount", str(read_only)], check=False)


HOLD_LOCK = """
import fcntl, os, sys, time
handle = open(sys.argv[1], "w")
handle.write(str(os.getpid()))
handle.flush()
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_the_lock_holder_is_named_and_a_dead_one_is_not(group, tmp_path):
    g = group()
    lock = tmp_path / "anomaly.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        g.clock.advance(1.0)
        (entry,) = _lock_entries(g, lock)
        assert entry["holders"] == [{"pid": holder.pid, "kind": "FLOCK WRITE", "alive": True}]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(5)
    g.clock.advance(1.0)
    (entry,) = _lock_entries(g, lock)
    assert entry["holders"] == [] and entry["recorded"] == str(holder.pid)


def _lock_entries(g, lock):
    """The status document's entries for ``lock`` (the functions hold their own lock files too)."""
    entries = requests.get(g.url + "api/state", timeout=5).json()["locks"]
    return [e for e in entries if os.path.basename(e["path"]) == lock.name]
