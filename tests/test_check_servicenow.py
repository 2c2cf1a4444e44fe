"""``edge-agent check-servicenow`` against the stand-in (a real server on a real socket) and a
TLS server in its own process: each failure stops the check with one line naming it and the
fix, and the exit code the table gives (1 unreachable, 2 usage, 3 refused)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import SNOW_USER, new_secret, secret_json
from mqtt_pki import TestPKI
from test_servicenow_network import _tls_server

from agent.standalone.check_cmd import DESCRIPTION
from agent.standalone.exit_codes import check_markdown_table

ROOT = Path(__file__).resolve().parents[1]


def check(tmp_path, *args, secret=None, env=None):
    """Run the command as a user would; return (exit code, stdout lines, stderr)."""
    argv = [sys.executable, "-m", "devtools.cli", "check-servicenow", *args]
    if secret is not None:
        path = tmp_path / "snow-secret.json"
        path.write_text(secret)
        argv += ["--secret-file", str(path)]
    environment = {k: v for k, v in os.environ.items() if not k[:1].islower()}
    environment.pop("EDGE_AGENT_SECRET_FILE", None)
    environment.update(env or {})
    done = subprocess.run(
        argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout.splitlines(), done.stderr


def failure(lines):
    fails = [line for line in lines if line.startswith("FAIL")]
    assert len(fails) == 1, lines
    return fails[0]


def test_a_port_nobody_listens_on_is_unreachable_at_once(tmp_path, password):
    code, lines, _ = check(
        tmp_path, "--snow-url", "http://127.0.0.1:9", secret=secret_json(password)
    )
    assert code == 1
    assert lines[-1] == failure(lines)
    assert "FAIL connection: 127.0.0.1:9 refused the connection" in lines[-1]
    assert "Fix: check the port in snowUrl" in lines[-1]


def test_a_name_that_does_not_resolve_is_named(tmp_path, password):
    code, lines, _ = check(
        tmp_path, "--snow-url", "https://no-such-instance.invalid", secret=secret_json(password)
    )
    assert code == 1
    assert failure(lines).startswith("FAIL name: no-such-instance.invalid ")
    assert "check snowUrl" in failure(lines)


def test_an_expired_certificate_is_named(tmp_path, password):
    pki = TestPKI(tmp_path / "pki")
    cert, key = pki.issue("snow", "snow", server=True, valid_days=(-30, -1), ips=["127.0.0.1"])
    proc, url = _tls_server(cert, key)
    try:
        code, lines, _ = check(
            tmp_path,
            "--snow-url",
            url,
            "--set",
            "snowVerifyTls={}".format(pki.ca_path),
            secret=secret_json(password),
        )
    finally:
        proc.terminate()
        proc.wait(10)
    assert code == 1
    assert any(line.startswith("ok   connection") is False for line in lines)
    assert failure(lines).startswith("FAIL TLS: the certificate has expired")
    assert "snowVerifyTls" in failure(lines)


def test_a_hibernating_instance_is_not_a_table_api(tmp_path, standin, password):
    standin.faults.configure({"html_status": 200})
    code, lines, _ = check(tmp_path, "--snow-url", standin.url, secret=secret_json(password))
    assert code == 1
    line = failure(lines)
    assert line.startswith("FAIL Table API:") and "'Instance hibernating'" in line, line
    assert "wake the instance" in line
    assert not standin.incidents()


def test_refused_credentials_exit_3_and_say_so(tmp_path, standin):
    code, lines, _ = check(
        tmp_path, "--snow-url", standin.url, secret=secret_json(new_secret("wrong"))
    )
    assert code == 3
    assert "ok   Table API: {} answers as ServiceNow's Table API".format(standin.url) in lines
    assert failure(lines).startswith(
        "FAIL credentials: ServiceNow refused the basic credentials of {}".format(SNOW_USER)
    )


def test_refused_oauth_client_exits_3(tmp_path, standin):
    secret = '{"client_id": "edge", "client_secret": "%s"}' % new_secret("cs")
    code, lines, _ = check(tmp_path, "--snow-url", standin.url, secret=secret)
    assert code == 3
    assert failure(lines).startswith("FAIL credentials: ServiceNow refused the OAuth credentials")


def test_a_user_without_a_role_on_incident_is_told_which_role(tmp_path, standin, password):
    standin.set_roles(SNOW_USER, ["snc_platform_rest_api_access"])
    code, lines, _ = check(tmp_path, "--snow-url", standin.url, secret=secret_json(password))
    assert code == 3
    assert "ok   credentials: {} (basic auth) authenticates".format(SNOW_USER) in lines
    line = failure(lines)
    assert line.startswith("FAIL read incident:") and "403" in line
    assert "itil" in line


def test_the_configured_ci_is_looked_up_by_the_device_name(tmp_path, standin, password):
    standin.set_roles(SNOW_USER, ["itil"])
    standin.cmdb.add("pi-hall")
    found = ["--set", "snowCmdbCi=rack-{device}", "--set", "deviceId=pi-hall"]
    code, lines, _ = check(
        tmp_path, "--snow-url", standin.url, *found, secret=secret_json(password)
    )
    assert code == 3
    assert failure(lines) == (
        "FAIL CI: no configuration item named 'rack-pi-hall' in cmdb_ci. Fix: correct snowCmdbCi "
        "(a sys_id or a CI name; {device} is the device id), or create the CI (incidents open "
        "without a CI meanwhile)"
    )
    standin.cmdb.add("rack-pi-hall")
    code, lines, _ = check(
        tmp_path, "--snow-url", standin.url, *found, secret=secret_json(password)
    )
    assert code == 0, lines
    assert "ok   CI: rack-pi-hall is in cmdb_ci" in lines


def test_a_user_who_cannot_read_cmdb_ci_is_told(tmp_path, standin, password):
    standin.set_roles(SNOW_USER, ["sn_incident_write"])
    standin.cmdb.add("pi-hall")
    code, lines, _ = check(
        tmp_path,
        "--snow-url",
        standin.url,
        "--set",
        "snowCmdbCi=pi-hall",
        secret=secret_json(password),
    )
    assert code == 3
    assert failure(lines).startswith("FAIL read cmdb_ci:") and "cmdb_read" in failure(lines)


def test_the_event_sink_needs_evt_mgmt_integration(tmp_path, standin, password):
    standin.set_roles(SNOW_USER, ["itil"])
    event_sink = ["--set", "snowSink=event", "--set", "deviceId=pi-hall"]
    code, lines, _ = check(
        tmp_path, "--snow-url", standin.url, *event_sink, secret=secret_json(password)
    )
    assert code == 3
    assert failure(lines).startswith("FAIL events: Event Management refused the test event")
    assert "evt_mgmt_integration" in failure(lines)
    assert not standin.events.events

    standin.set_roles(SNOW_USER, ["itil", "evt_mgmt_integration"])
    code, lines, _ = check(
        tmp_path, "--snow-url", standin.url, *event_sink, secret=secret_json(password)
    )
    assert code == 0, lines
    sent = standin.events.events
    assert [e["severity"] for e in sent] == ["5", "0"]
    assert sent[0]["message_key"] == sent[1]["message_key"] and sent[0]["node"] == "pi-hall"
    assert standin.alerts() == []  # an OK and its clear leave no alert behind


def test_a_test_incident_is_opened_noted_resolved_and_its_number_printed(
    tmp_path, standin, password
):
    standin.set_roles(SNOW_USER, ["itil"])
    code, lines, _ = check(
        tmp_path,
        "--snow-url",
        standin.url,
        "--create-test-incident",
        secret=secret_json(password),
    )
    assert code == 0, lines
    (incident,) = standin.incidents()
    assert "ok   test incident: {} opened, noted and resolved".format(incident["number"]) in lines
    assert incident["short_description"].startswith("[TEST] edge-agent check-servicenow")
    assert incident["state"] == "6"
    assert [j["field"] for j in incident["_journal"]] == ["work_notes"]


def test_help_says_what_is_checked(tmp_path):
    code, lines, _ = check(tmp_path, "--help")
    assert code == 0
    assert " ".join(" ".join(lines).split()).count(" ".join(DESCRIPTION.split())) == 1


def test_no_instance_is_a_usage_error(tmp_path, password):
    code, lines, err = check(tmp_path, secret=secret_json(password))
    assert code == 2 and not lines
    assert "--snow-url" in err


def test_the_exit_codes_are_in_the_docs():
    docs = (ROOT / "docs" / "servicenow.md").read_text(encoding="utf-8")
    assert check_markdown_table() in docs, "regenerate: exit_codes.check_markdown_table()"


def test_the_first_start_on_a_device_says_to_run_the_check(anomaly_settings, core, caplog):
    from agent.anomaly_service import AnomalyService
    from agent.topology import ANOMALY_FUNCTION_ID

    service = AnomalyService(anomaly_settings, core.runtime_for(ANOMALY_FUNCTION_ID))
    try:
        with caplog.at_level("INFO", logger="agent.anomaly_service"):
            service.start()
    finally:
        service.stop()
        service.close()
    hints = [r.getMessage() for r in caplog.records if "check-servicenow" in r.getMessage()]
    assert hints == [
        "first start: check ServiceNow (incident) before the first breach with  edge-agent "
        "check-servicenow --snow-url {} --secret-file FILE".format(anomaly_settings.snow_url)
    ]


def test_an_oauth_client_that_authenticates_passes(tmp_path):
    from devtools.servicenow_standin import ServiceNowStandIn

    client_secret = new_secret("cs")
    user_password = new_secret("pw")
    with ServiceNowStandIn(
        users={SNOW_USER: user_password}, oauth_clients={"edge": client_secret}
    ) as server:
        secret = (
            '{"client_id": "edge", "client_secret": "%s", "username": "%s", "password": "%s"}'
            % (client_secret, SNOW_USER, user_password)
        )
        code, lines, _ = check(tmp_path, "--snow-url", server.url, secret=secret)
        assert code == 0, lines
        assert "ok   credentials: {} (OAuth auth) authenticates".format(SNOW_USER) in lines
        assert server.counters["tokens_issued"] == 1


def test_a_nearly_spent_rate_limit_stops_the_check_with_one_line(tmp_path, standin, password):
    standin.rate_rule.limit = 2
    code, lines, err = check(
        tmp_path,
        "--snow-url",
        standin.url,
        "--create-test-incident",
        secret=secret_json(password),
    )
    assert code == 1 and "Traceback" not in err
    assert failure(lines).startswith(
        "FAIL rate limit: 1 of 2 requests left in ServiceNow's hourly rate limit"
    )
    assert not standin.incidents()
