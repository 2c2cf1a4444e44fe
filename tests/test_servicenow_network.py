"""ServiceNow as a site's network delivers it: servers that trickle, answers of megabytes,
proxies and sign-on gateways answering HTML or redirects, names that do not resolve,
certificates for another host or out of date.

Every server is real and in its own process (the stand-in with its faults, an HTTPS
server with a certificate made here); the trickle and the huge answers are met by a
real anomaly-function process, whose peak memory is read from ``ru_maxrss``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SNOW_USER, new_secret, secret_json
from faults import AnomalyProcess
from helpers import anomaly, wait_until
from mqtt_pki import TestPKI

from agent.clock import VirtualClock
from agent.credentials import Credentials
from agent.greengrass.local import LocalCore
from agent.servicenow.answers import Answer, is_no_record, json_document, not_json_cause
from agent.servicenow.client import TableClient, Unavailable
from agent.status.health import ServiceNowCalls
from agent.status.store import OUTBOX_FILE, OutboxReader
from agent.topology import ANOMALY_FUNCTION_ID
from devtools.servicenow_standin import StandInProcess
from functions import anomaly_function

T0 = 1_790_000_000
TLS_SERVER = str(Path(__file__).with_name("tls_server.py"))


def _episode(device, i=0, metric="humidity"):
    return "{}:{}:upper:{}".format(device, metric, T0 + 600 * i)


def _breach(device, i=0):
    start = T0 + 600 * i
    return anomaly("breach", 0, _episode(device, i), ts=start + 15.0, started_at=float(start))


def _recovered(device, i=0):
    start = T0 + 600 * i
    return anomaly(
        "recovered", 1, _episode(device, i), value=40.0, ts=start + 300.0, started_at=float(start)
    )


def _app(snow_url, tmp_path, password, **variables):
    core = LocalCore()
    core.add_secret("greengrass-snow-creds", secret_json(password))
    environ = {
        "snowUrl": snow_url,
        "stateDir": str(tmp_path / "state"),
        "snowTimeout": "2",
        "retryBaseSeconds": "0.1",
        "retryMaxSeconds": "0.3",
        "snowMaxRequestsPerSecond": "0",
    }
    environ.update(variables)
    return anomaly_function.create_app(
        environ=environ, runtime=core.runtime_for(ANOMALY_FUNCTION_ID)
    )


def _pump(service, seconds, until):
    """Deliver in real time until ``until()``, at most ``seconds``; whether it came."""

    def delivered_enough():
        if until():
            return True
        service.pump()
        return until()

    return wait_until(delivered_enough, seconds, interval=0.05)


def _drained(service):
    return service.next_attempt_at() is None


def _queue(service):
    """(pending, dead-lettered) in the outbox."""
    counts = service.outbox.counts()
    return counts["pending"], counts["dead_letter"]


@pytest.fixture(scope="module")
def _standin():
    """One stand-in process for the module (starting one costs seconds); faults reset per test."""
    password = new_secret()
    with StandInProcess(users={SNOW_USER: password}) as process:
        yield process, password


@pytest.fixture
def password(_standin):
    return _standin[1]


@pytest.fixture
def snow(_standin):
    process = _standin[0]
    process.faults.reset()
    process.reset_stats()
    yield process
    process.faults.reset()


def _incidents(snow, device):
    """The stand-in's incidents of one device (tests share the stand-in, each its own device)."""
    return [i for i in snow.incidents() if ":{}:".format(device) in i["correlation_id"]]


# -- what an answer is -------------------------------------------------------------------------


def _answer(status, body=b"", url="https://dev1.service-now.com/api/now/table/incident", **headers):
    return Answer(status, {k.replace("_", "-"): v for k, v in headers.items()}, body, url)


@pytest.mark.parametrize(
    "answer, cause",
    [
        (
            _answer(404, b"<html><head><title>404 Not Found</title></head></html>"),
            "an HTML page titled '404 Not Found'",
        ),
        (
            _answer(
                200,
                b"<!DOCTYPE html><TITLE>\n  Instance\n hibernating </TITLE>",
                Content_Type="text/html",
            ),
            "an HTML page titled 'Instance hibernating'",
        ),
        (
            _answer(200, b"<html><title>Fish &amp; chips</title>"),
            "an HTML page titled 'Fish & chips'",
        ),
        (_answer(503, b"<html><body>down</body></html>"), "an HTML page without a title"),
        (
            _answer(302, Location="https://sso.example.com/login.do?SAMLRequest=secret-ish"),
            "redirected to sso.example.com/login.do (a login page?)",
        ),
        (
            _answer(301, Location="/login.do"),
            "redirected to dev1.service-now.com/login.do (a login page?)",
        ),
        (
            _answer(307, Location="https://dev2.service-now.com/api/now/table/incident"),
            "redirected to dev2.service-now.com/api/now/table/incident "
            "(is snowUrl the instance's own address?)",
        ),
        (_answer(302), "a redirect (302) without a Location"),
        (_answer(200, b"OK", Content_Type="text/plain"), "an answer that is not JSON (text/plain)"),
        (_answer(404, b""), "an empty answer"),
        (
            _answer(200, b"[]", Content_Type="application/json"),
            "a body that is not a JSON object (application/json)",
        ),
    ],
)
def test_an_answer_that_is_not_the_table_api_is_named_by_its_cause(answer, cause):
    assert json_document(answer) is None
    assert not_json_cause(answer) == cause


def test_a_page_title_is_cut_and_cleaned_for_a_log_line():
    title = "<b>Down</b>\x1b for\r\n\u202emaintenance " + "x" * 200
    answer = _answer(200, "<title>{}</title>".format(title).encode(), Content_Type="text/html")
    cause = not_json_cause(answer)
    assert cause.startswith("an HTML page titled 'Down for maintenance xxx")
    assert not {"\x1b", "\r", "\n", "\u202e", "<", ">"} & set(cause)
    assert len(cause) <= len("an HTML page titled ''") + 80


def test_only_the_table_apis_own_404_means_no_such_record():
    own = b'{"error": {"message": "No Record found", "detail": "Records matching query not found"}, "status": "failure"}'
    assert is_no_record(json_document(_answer(404, own)))
    other = b'{"error": {"message": "Requested URI does not represent any resource"}, "status": "failure"}'
    assert not is_no_record(json_document(_answer(404, other)))
    assert not is_no_record(
        json_document(_answer(404, b'{"error": {"message": "No Record found"}}'))
    )
    assert json_document(_answer(404, own, Content_Type="text/html")) is None  # HTML is never it


# -- a trickling server, huge answers ------------------------------------------------------------


def test_a_trickling_answer_is_given_up_at_the_deadline_and_the_other_actions_go_on(
    snow, tmp_path, password
):
    """One byte every 3 s, status line and headers included: the worker gives up at
    snowTimeout (4 s), says so, and the next action is delivered right after."""
    secret = tmp_path / "secret.json"
    secret.write_text(secret_json(password))
    snow.faults.trickle_next(1, interval=3.0)
    worker = AnomalyProcess(
        snow.url,
        str(tmp_path / "state"),
        str(secret),
        "--set",
        "snowTimeout=4",
        "--set",
        "retryBaseSeconds=0.5",
        "--set",
        "retryMaxSeconds=1",
    )
    try:
        started = time.monotonic()
        worker.send(_breach("pi-slow", 0))
        worker.send(_breach("pi-slow", 1))
        line = worker.wait_for_log("no complete answer within 4 s", timeout=30)
        gave_up = time.monotonic() - started
        assert worker.ask("drain 20") == "DRAINED", worker.log_text()
        drained = time.monotonic() - started
        summary = worker.summary()
        code = worker.quit()
    finally:
        worker.kill()
    incidents = _incidents(snow, "pi-slow")
    print("trickle: gave up after {:.2f} s, all delivered after {:.2f} s".format(gave_up, drained))
    assert (
        "GET /api/now/table/incident: no complete answer within 4 s (snowTimeout); gave up" in line
    )
    assert 4.0 <= gave_up < 8.0, gave_up  # the deadline, not 3 s per byte of the answer
    assert drained < gave_up + 8.0, (gave_up, drained)  # then a back-off of 0.5-1 s, not minutes
    assert code == 0 and summary["actions_dead_lettered"] == 0
    assert sorted(i["correlation_id"] for i in incidents) == [
        "edge-agent:" + _episode("pi-slow", 0),
        "edge-agent:" + _episode("pi-slow", 1),
    ]


def test_huge_answers_to_the_lookup_leave_peak_memory_where_it_was(snow, tmp_path, password):
    """10, 50 and 100 MB answers to the lookup (chunked, and one with a Content-Length):
    at most snowMaxAnswerBytes is read; the process's peak RSS stays where one delivery
    left it (48 MB here). Before, the whole answer was read and parsed: 72, 234 and
    498 MB."""
    secret = tmp_path / "secret.json"
    secret.write_text(secret_json(password))
    worker = AnomalyProcess(snow.url, str(tmp_path / "state"), str(secret))
    try:
        worker.send(_breach("pi-huge", 0))
        assert worker.ask("drain 20") == "DRAINED", worker.log_text()
        normal = _rss(worker)
        peaks = {}
        for i, (megabytes, chunked) in enumerate(((10, True), (50, False), (100, True)), 1):
            snow.faults.huge_next(1, megabytes * 1024 * 1024, chunked=chunked)
            worker.send(_breach("pi-huge", i))
            assert worker.ask("drain 60") == "DRAINED", worker.log_text()
            peaks[megabytes] = _rss(worker)
        summary = worker.summary()
        assert worker.quit() == 0
    finally:
        worker.kill()
    incidents = _incidents(snow, "pi-huge")
    served = [e for e in snow.request_log if e[0] == "GET"]
    print("peak RSS: normal {} kB; after 10/50/100 MB answers {}".format(normal, peaks))
    for megabytes, peak in peaks.items():
        assert peak - normal < 8 * 1024, (megabytes, normal, peak)  # kB
    assert "an answer larger than 262144 bytes (snowMaxAnswerBytes)" in worker.log_text()
    assert len(incidents) == 4 and summary["actions_dead_lettered"] == 0
    assert len(served) >= 7  # each huge lookup was answered, then asked again


def _rss(worker):
    line = worker.ask("rss")
    assert line.startswith("RSS "), line + worker.log_text()
    return int(line.split()[1])


# -- what stands in front of the instance -------------------------------------------------------


def test_a_proxy_answering_404_html_neither_drops_the_resolve_nor_dead_letters_the_next_create(
    snow, tmp_path, password, caplog
):
    caplog.set_level(logging.WARNING)
    service = _app(snow.url, tmp_path, password)
    service.handle(_breach("pi-proxy", 0))
    assert _pump(service, 10, lambda: _drained(service))
    (first,) = _incidents(snow, "pi-proxy")

    snow.faults.html_title = "404 Not Found"
    snow.faults.html_status = 404  # a load balancer in front lost its route to the instance
    service.handle(_recovered("pi-proxy", 0))
    service.handle(_breach("pi-proxy", 1))
    assert _pump(service, 10, lambda: service.deliverer.stats.retries >= 3)
    assert _queue(service) == (2, 0)
    assert service.deliverer.stats.skipped == 0  # the incident was not taken for gone

    snow.faults.html_status = 0
    assert _pump(service, 10, lambda: _drained(service)), service.summary()
    summary = service.summary()
    service.close()
    incidents = {i["correlation_id"]: i for i in _incidents(snow, "pi-proxy")}
    assert incidents[first["correlation_id"]]["state"] == "6"  # resolved after all
    assert incidents["edge-agent:" + _episode("pi-proxy", 1)]["state"] == "1"
    assert len(incidents) == 2
    assert summary["actions_dead_lettered"] == 0 and summary["incidents_resolved"] == 1
    assert "answered 404: an HTML page titled '404 Not Found'" in caplog.text


@pytest.mark.parametrize(
    "status, unconfirmed", [(404, False), (302, False), (200, True), (502, True)]
)
def test_a_write_answered_by_a_page_is_retried_and_one_that_may_have_landed_says_so(
    snow, password, status, unconfirmed
):
    """Never dead-lettered; a 2xx or 5xx page after a POST may hide a commit (the delivery
    then waits before it looks again), a redirect or a 4xx page was not processed."""
    creds = Credentials("basic", username=SNOW_USER, password=password)
    client = TableClient(snow.url, lambda: creds, timeout=5.0)
    if status == 302:
        snow.faults.redirect_to = snow.url + "/login.do"
    else:
        snow.faults.html_status = status
    with pytest.raises(Unavailable) as failure:
        client.create({"short_description": "x", "correlation_id": "edge-agent:pi-w:humidity"})
    assert failure.value.ambiguous is unconfirmed
    assert failure.value.status == status and failure.value.cause
    assert not _incidents(snow, "pi-w")


def test_a_redirect_to_a_login_page_is_named_retried_and_never_followed(
    snow, tmp_path, password, caplog
):
    caplog.set_level(logging.WARNING)
    snow.faults.redirect_to = snow.url + "/login.do?sysparm_goto_url=api"
    service = _app(snow.url, tmp_path, password)
    service.handle(_breach("pi-sso", 0))
    assert _pump(service, 10, lambda: service.deliverer.stats.retries >= 2)
    assert _queue(service) == (1, 0)
    host = snow.url.split("://", 1)[1]
    assert "answered 302: redirected to {}/login.do (a login page?)".format(host) in caplog.text
    # The credentials never went to the login page: the redirect was not followed.
    assert not [e for e in snow.request_log if "/login.do" in e[1]]

    snow.faults.redirect_to = ""
    assert _pump(service, 10, lambda: _drained(service))
    service.close()
    assert len(_incidents(snow, "pi-sso")) == 1


def test_a_hibernating_instance_is_named_by_its_page_and_delivered_once_it_wakes(
    snow, tmp_path, password, caplog
):
    caplog.set_level(logging.WARNING)
    snow.faults.html_title = "Instance hibernating"
    snow.faults.html_status = 200
    service = _app(snow.url, tmp_path, password)
    service.handle(_breach("pi-dev", 0))
    assert _pump(service, 10, lambda: service.deliverer.stats.retries >= 2)
    assert _queue(service) == (1, 0)
    assert "answered 200: an HTML page titled 'Instance hibernating'" in caplog.text
    # What edge-agent status and the status page read: the outbox, read-only.
    reader = OutboxReader(str(tmp_path / "state" / OUTBOX_FILE))
    try:
        (head,) = reader.view()["pending_actions"]
    finally:
        reader.close()
    assert head["last_error"] == (
        "GET /api/now/table/incident answered 200: an HTML page titled 'Instance hibernating'"
    )

    snow.faults.html_status = 0
    assert _pump(service, 10, lambda: _drained(service))
    service.close()
    assert len(_incidents(snow, "pi-dev")) == 1


def test_a_name_that_does_not_resolve_is_said_so_and_the_action_kept(tmp_path, password, caplog):
    caplog.set_level(logging.WARNING)
    service = _app("https://snow.edge-agent.invalid", tmp_path, password)
    service.handle(_breach("pi-dns", 0))
    service.pump()
    queue = _queue(service)
    service.close()
    assert queue == (1, 0)
    assert (
        "ServiceNow unreachable at https://snow.edge-agent.invalid: the host name does not resolve"
        in caplog.text
    )


# -- certificates --------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path):
    return TestPKI(tmp_path / "pki")


def _tls_server(cert, key):
    proc = subprocess.Popen(
        [sys.executable, TLS_SERVER, str(cert), str(key)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline().split()
    assert line[:1] == ["LISTENING"], line
    return proc, "https://127.0.0.1:{}".format(line[1])


def _lookup(url, ca, password):
    creds = Credentials("basic", username=SNOW_USER, password=password)
    client = TableClient(url, lambda: creds, timeout=5.0, verify=str(ca))
    return client.find_by_correlation("edge-agent:pi-tls:humidity:upper:1")


@pytest.mark.parametrize(
    "names, valid_days, cause",
    [
        ({"ips": ["127.0.0.1"]}, (-1, 30), None),  # the control: a good certificate works
        ({"dns": ["snow.elsewhere.example"]}, (-1, 30), "the certificate is for another host"),
        ({"ips": ["127.0.0.1"]}, (-30, -1), "the certificate has expired"),
        ({"ips": ["127.0.0.1"]}, (2, 30), "the certificate is not valid yet"),
    ],
    ids=["valid", "another-host", "expired", "not-yet-valid"],
)
def test_a_certificate_that_does_not_fit_is_named(pki, password, names, valid_days, cause):
    cert, key = pki.issue("snow", "snow", server=True, valid_days=valid_days, **names)
    proc, url = _tls_server(cert, key)
    try:
        if cause is None:
            assert _lookup(url, pki.ca_path, password) is None  # an empty list: no such incident
            return
        with pytest.raises(Unavailable) as failure:
            _lookup(url, pki.ca_path, password)
    finally:
        proc.terminate()
        proc.wait(10)
    error = failure.value
    assert str(error).startswith("ServiceNow unreachable at {}: {}".format(url, cause)), error
    assert error.never_sent and not error.ambiguous and error.cause.startswith(cause)


def test_a_certificate_from_a_ca_this_device_does_not_trust_is_named(tmp_path, pki, password):
    cert, key = pki.issue("snow", "snow", server=True, ips=["127.0.0.1"])
    other = TestPKI(tmp_path / "other", name="another CA")
    proc, url = _tls_server(cert, key)
    try:
        with pytest.raises(
            Unavailable, match="the certificate is not from a CA this device trusts"
        ):
            _lookup(url, other.ca_path, password)
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_size_cap_is_a_function_variable(tmp_path):
    from agent.config import AnomalySettings
    from agent.errors import ConfigError

    base = {"snowUrl": "https://dev1.service-now.com", "stateDir": str(tmp_path)}
    assert AnomalySettings.from_mapping(base).max_answer_bytes == 262144
    assert (
        AnomalySettings.from_mapping(dict(base, snowMaxAnswerBytes="65536")).max_answer_bytes
        == 65536
    )
    with pytest.raises(ConfigError, match="snowMaxAnswerBytes must be at least 4096"):
        AnomalySettings.from_mapping(dict(base, snowMaxAnswerBytes="100"))


def test_a_lookup_over_a_smaller_cap_is_a_fault_named_by_the_variable(snow, password):
    creds = Credentials("basic", username=SNOW_USER, password=password)
    client = TableClient(snow.url, lambda: creds, timeout=5.0, max_answer_bytes=4096)
    calls = ServiceNowCalls(VirtualClock(T0))
    client.on_call.append(calls.observe)
    snow.faults.huge_next(1, 5000, chunked=False)
    with pytest.raises(Unavailable) as failure:
        client.find_by_correlation("edge-agent:pi:humidity:upper:1")
    cause = "an answer larger than 4096 bytes (snowMaxAnswerBytes); not read further"
    assert str(failure.value) == "GET /api/now/table/incident answered 200: " + cause
    # The status page's "last error": the code and the same words.
    assert calls.last_error == {"at": T0, "method": "GET", "code": "200", "cause": cause}
    assert client.find_by_correlation("edge-agent:pi:humidity:upper:1") is None  # next one fine
    assert calls.snapshot()["requests"] == {"GET 200": 1, "GET 404": 1}
    assert calls.last_success_at == T0
