"""Whole runs against ServiceNow behind a site's network: the commands a person runs
(``edge-agent run``, ``simulate``, ``status``), real servers in other processes.

* a proxy answering 404 ``text/html`` for 30 s while an incident is resolved and the
  next one opened: nothing is dropped or dead-lettered, and the run exits 0;
* each cause of a fault (a hibernating instance, a login redirect, an expired
  certificate) reads the same on the console, in ``edge-agent status`` and on the
  status page.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import pytest
import requests
from conftest import SNOW_USER, secret_json
from helpers import wait_until
from mqtt_pki import TestPKI
from test_servicenow_network import _tls_server
from test_status_commands import Served, _summary

from devtools.servicenow_standin import StandInProcess
from devtools.status_cmd import main as status_main

EDGE_AGENT = [sys.executable, "-m", "devtools.cli"]
PROXY_SECONDS = 30.0


def _replay_file(path, phases, period):
    """A replay CSV from ``phases``: (seconds, humidity) each, rows ``period`` apart from now."""
    start = time.time()
    rows = ["timestamp,temperature,humidity"]
    for seconds, humidity in phases:
        for _ in range(int(seconds / period)):
            rows.append("{:.3f},21.0,{}".format(start + period * (len(rows) - 1), humidity))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_a_proxy_answering_404_html_for_30_s_loses_nothing_and_the_run_exits_0(tmp_path):
    """edge-agent run: a humid spell opens INC1; then, while a proxy answers every call
    with 404 text/html for 30 s, the spell ends (resolve INC1) and a second one begins and
    ends (open and resolve INC2). Before, the resolve was dropped as "the incident no
    longer exists" and the create dead-lettered (exit 3)."""
    password = secrets.token_hex(12)  # checked in the run's own output below
    period = 0.5
    replay = _replay_file(
        tmp_path / "readings.csv",
        [(8, 60.0), (6, 40.0), (6, 60.0), (28, 40.0)],  # 48 s: the fault ends at about 32 s
        period,
    )
    secret = tmp_path / "secret.json"
    secret.write_text(secret_json(password))
    with StandInProcess(users={SNOW_USER: password}) as snow:
        args = ["run", "--sensor", "replay", "--thing", "pi-proxy", "--secret-file", str(secret)]
        args += ["--state-dir", str(tmp_path / "state")]
        for setting in (
            "period={}".format(period),
            "snowUrl=" + snow.url,
            "retryBaseSeconds=0.5",
            "retryMaxSeconds=2",
        ):
            args += ["--set", setting]
        env = dict(os.environ, EDGE_AGENT_REPLAY=str(replay), PYTHONUNBUFFERED="1")
        env.pop("EDGE_AGENT_RUNTIME", None)
        with open(tmp_path / "run.log", "w+") as log:
            proc = subprocess.Popen(
                EDGE_AGENT + args, stdout=log, stderr=subprocess.STDOUT, env=env
            )
            try:
                assert wait_until(snow.incidents, 30), "no incident opened before the proxy fault"
                snow.faults.html_title = "404 Not Found"
                snow.faults.html_status = 404
                time.sleep(PROXY_SECONDS)
                snow.faults.html_status = 0
                code = proc.wait(60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            log.seek(0)
            output = log.read()
        incidents = snow.incidents()
        during = [e for e in snow.request_log if e[2] == 404]
    print("proxy: {} answers of 404 text/html; exit {}".format(len(during), code))
    assert code == 0, output
    assert len(incidents) == 2 and all(i["state"] == "6" for i in incidents), incidents
    # The read before the resolve met the proxy, again and again; the create queued behind it.
    sys_id = incidents[0]["sys_id"]
    met = "GET /api/now/table/incident/{} answered 404: an HTML page titled '404 Not Found'"
    assert met.format(sys_id) in output
    assert len(during) >= 6
    assert "dead-letter" not in output and "no longer exists" not in output
    assert password not in output


@pytest.fixture
def pki(tmp_path):
    return TestPKI(tmp_path / "pki")


@pytest.mark.parametrize("fault", ["hibernating", "login", "expired"])
def test_a_cause_reads_the_same_on_the_console_in_status_and_on_the_page(
    tmp_path, password, pki, fault, capsys
):
    """simulate --fast --serve with ServiceNow behind a fault for the whole run (exit 1:
    actions left), then the status page it keeps serving, then edge-agent status."""
    secret = tmp_path / "secret.json"
    secret.write_text(secret_json(password))
    state = tmp_path / "state"
    args = ["simulate", "--fast", "--json", "--serve", "127.0.0.1:0", "--state-dir", str(state)]
    args += ["--secret-file", str(secret)]
    with StandInProcess(users={SNOW_USER: password}) as snow:
        tls = None
        url = snow.url
        if fault == "hibernating":
            snow.faults.html_status = 200
            cause = "an HTML page titled 'Instance hibernating'"
        elif fault == "login":
            snow.faults.redirect_to = snow.url + "/login.do?sysparm_goto_url=x"
            cause = "redirected to {}/login.do (a login page?)".format(snow.url.split("//")[1])
        else:
            cert, key = pki.issue(
                "snow", "snow", server=True, ips=["127.0.0.1"], valid_days=(-9, -2)
            )
            tls, url = _tls_server(cert, key)
            args += ["--set", "snowVerifyTls={}".format(pki.ca_path)]
            cause = "the certificate has expired"
        served = Served(args + ["--snow-url", url])
        try:
            summary = _summary(served)
            state_doc = requests.get(served.url + "api/state", timeout=5).json()
        finally:
            code = served.stop(signal.SIGTERM)
            if tls is not None:
                tls.terminate()
                tls.wait(10)
    assert summary["exit_code"] == 1 and code == 1 and summary["actions_pending"] >= 1
    console = served.text("stderr")
    assert cause in console, console[-2000:]
    delivery = state_doc["delivery"]
    head = delivery["outbox"]["pending_actions"][0]
    assert head["kind"] == "open"
    assert head["last_error"].endswith(cause), head
    assert delivery["servicenow"]["last_error"]["cause"].startswith(cause)
    capsys.readouterr()
    assert status_main(["--state-dir", str(state)]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("  pending open")]
    assert line.split(": ", 1)[1].split(" (try ")[0] == head["last_error"], line
