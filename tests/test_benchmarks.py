"""The benchmark harness measures what it says: the seed baseline behaves as the blog's
functions do, the project runs on the device path, the servers are what the docs say,
and every ratio in the report comes from the figures of one run.

No timing is asserted here: benchmarks print figures, tests check the harness.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
from urllib.parse import urlsplit

import pytest
import requests
from conftest import new_secret, secret_json

from agent.clock import VirtualClock
from benchmarks import children, cold_start, incidents, quickack, realtime, report, run
from benchmarks.common import SNOW_USER as BENCH_USER
from benchmarks.pipelines import ProjectPipeline, SeedPipeline
from benchmarks.plain_table_server import Handler
from benchmarks.servers import Server, outside_server, start_server

DOCS_JSON = report.DOCS_JSON


@pytest.fixture
def server(standin, password):
    """The suite's stand-in (in a thread, inspectable) as a benchmark server."""
    return Server("standin-thread", standin.url, secret_json(password), {}, lambda: None)


@pytest.fixture
def plain(monkeypatch):
    monkeypatch.setattr("benchmarks.servers.new_password", new_secret)
    with start_server("plain") as server:
        yield server


# -- the seed baseline -----------------------------------------------------------------
def test_seed_posts_and_fetches_the_secret_once_per_breaching_sample(server, standin):
    pipe = SeedPipeline(server)
    pattern = [True] * 5 + [False] * 3 + [True] * 2  # hot, cool, hot again
    for hot in pattern:
        pipe.set_hot(hot)
        pipe.sample()
    breaching = sum(pattern)
    assert pipe.log.statuses() == [201] * breaching
    assert pipe.secret_fetches == breaching
    # Counted by the server too: one incident per breaching sample, no episodes.
    created = standin.incidents()
    assert len(created) == breaching
    assert {i["short_description"] for i in created} == {"Sensor Threshold - Temperature breach"}


def test_seed_sleeps_between_reading_and_publishing(server):
    order = []

    def sleep(seconds):
        order.append(("sleep", seconds, pipe.chip.reads, len(pipe.sensor_core.published)))

    pipe = SeedPipeline(server, sleep=sleep)
    reads_before = pipe.chip.reads
    pipe.sample()
    # Two chip reads (temperature, humidity) before the sleep, nothing published yet.
    assert order == [("sleep", 5, reads_before + 2, 0)]
    assert list(pipe.sensor_core.published) == ["IoTBlog/sensorData"]


def test_seed_breach_measure_counts_one_post_per_sample(server):
    figures = incidents.measure_seed_breach(server, samples=4, warmup=1)
    assert figures["posts_per_breaching_sample"] == 1.0
    assert figures["secret_fetches_per_breaching_sample"] == 1.0
    assert figures["to_201_ms"]["n"] == 4


# -- the project on the device path ------------------------------------------------------
def test_project_pipeline_is_the_v1_device_path_and_opens_one_incident(server, standin, tmp_path):
    clock = VirtualClock(start=1_790_000_000.0)
    pipe = ProjectPipeline(str(tmp_path), server, clock)
    try:
        assert type(pipe.sensor.runtime).__name__ == "GreengrassV1Runtime"
        assert type(pipe.anomaly.runtime).__name__ == "GreengrassV1Runtime"
        assert type(pipe.sensor.sensor).__name__ == "SenseHatSensor"
        pipe.set_hot(True)
        for _ in range(6):
            clock.advance(5.0)
            pipe.sensor.tick()
            pipe.anomaly.pump()
    finally:
        pipe.close()
    assert pipe.sensor.counts["breach"] == 1
    (incident,) = standin.incidents()
    assert pipe.device_id in incident["correlation_id"]
    assert pipe.secret_fetches == 1
    # Every reading went through the installed SDK to the core stand-in.
    assert len(pipe.sensor_core.published["IoTBlog/sensorData"]) == 6


def test_drain_counts_calls_and_actions(server, standin):
    figures = incidents.measure_drain(server, actions=6)
    # An open: GET (left by a crash?) + POST; a resolve: GET (closed by a person?) + PATCH.
    assert figures["calls"] == 12 and figures["calls_per_action"] == 2.0
    assert figures["incidents_opened"] == 3 and figures["incidents_resolved"] == 3
    assert len(standin.incidents()) == 3


# -- spawned children ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["project_sensor", "seed_sensor_bare"])
def test_cold_start_child_publishes_through_the_sdk(kind, tmp_path):
    code, env = cold_start.child_kinds(None, "")[kind](str(tmp_path), 1)
    run_ = children.spawn(children.PREAMBLE + code, children.child_env(env))
    stamps = run_["ms"]
    assert 0 < stamps["start"] <= stamps["core_ready"] <= stamps["first_work"]
    assert "greengrasssdk" in run_["modules"] and "sense_hat" in run_["modules"]
    if kind == "project_sensor":
        # The sensor function loads no HTTP client, database or AWS SDK.
        assert not {"requests", "sqlite3", "boto3", "botocore"} & set(run_["modules"])


@pytest.fixture(scope="module")
def code_copy(tmp_path_factory):
    return cold_start.copy_without_pyc(str(tmp_path_factory.mktemp("code") / "code"))


@pytest.mark.parametrize("kind", ["project_sensor_nopyc", "seed_sensor_bare_nopyc"])
def test_cold_start_without_pyc_compiles_and_writes_none(kind, code_copy, tmp_path):
    code, env = cold_start.child_kinds(None, "")[kind](str(tmp_path), 1)
    run_ = cold_start.spawn_kind(code, env, code_copy)
    assert run_["ms"]["first_work"] > run_["ms"]["core_ready"]
    written = [d for d, _, _ in os.walk(code_copy) if d.endswith("__pycache__")]
    assert written == [], "a V1 device cannot write .pyc next to the code"


def test_peak_rss_children_load_each_real_backend(code_copy, tmp_path):
    kinds = cold_start.child_kinds(None, "")
    code, env = kinds["project_sensor_i2c"](str(tmp_path / "i2c"), 1)
    project = cold_start.spawn_kind(code, env, code_copy)
    code, env = kinds["seed_sensor_library"](str(tmp_path / "seed"), 1)
    seed = cold_start.spawn_kind(code, env, code_copy)
    assert not {"sense_hat", "numpy"} & set(project["modules"])  # read over I2C, no library
    assert "numpy" in seed["modules"]
    assert project["ms"]["first_work"] > 0 and seed["ms"]["first_work"] > 0


def test_cold_start_anomaly_children_reach_the_server(server, standin, tmp_path):
    secret_file = tmp_path / "secret.json"
    secret_file.write_text(server.secret)
    kinds = cold_start.child_kinds(server, str(secret_file))
    for kind in ("project_anomaly", "seed_anomaly"):
        code, env = kinds[kind](str(tmp_path / kind), 7)
        os.makedirs(tmp_path / kind)
        run_ = children.spawn(children.PREAMBLE + code, children.child_env(env))
        assert run_["ms"]["first_work"] > run_["ms"]["core_ready"]
    methods = [method for method, _, _ in standin.request_log]
    assert methods.count("POST") == 2 and methods.count("GET") == 1  # the project looks up first


def test_realtime_child_reports_its_own_cpu_and_readings():
    figures = realtime._run("project", 12.5, held=False, window=1.0, warmup=0.3)
    assert figures["readings"] >= 1
    assert figures["cpu_ms"] > 0
    assert figures["published"]["IoTBlog/sensorData"] >= figures["readings"]


# -- the servers -----------------------------------------------------------------------------
def _request(conn, method, path, body=None, headers=None, auth=True, password=""):
    all_headers = dict(headers or {})
    if auth:
        token = base64.b64encode(f"{BENCH_USER}:{password}".encode()).decode()
        all_headers["Authorization"] = "Basic " + token
    conn.request(
        method, path, body=json.dumps(body) if body is not None else None, headers=all_headers
    )
    response = conn.getresponse()
    return response.status, response.getheaders(), json.loads(response.read() or b"null")


def test_plain_server_is_strict_and_keeps_the_connection(plain):
    password = json.loads(plain.secret)["password"]
    url = urlsplit(plain.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    json_headers = {"Content-Type": "application/json", "Accept": "application/json"}
    table = "/api/now/table/incident"
    try:
        assert _request(conn, "GET", table, auth=False)[0] == 401
        assert _request(conn, "POST", table, {"a": 1}, password=password)[0] == 400
        status, headers, body = _request(
            conn,
            "POST",
            table,
            {"short_description": "x", "impact": 2, "urgency": 2, "correlation_id": "c1"},
            json_headers,
            password=password,
        )
        sock = conn.sock
        assert status == 201 and dict(headers)["Location"].endswith(body["result"]["sys_id"])
        record = body["result"]
        assert record["impact"] == "2" and record["priority"] == "3" and record["state"] == "1"
        query = table + "?sysparm_query=correlation_id=c2&sysparm_limit=1"
        assert _request(conn, "GET", query, password=password)[0] == 404
        status, _, found = _request(
            conn, "GET", query.replace("c2", "c1") + "&sysparm_fields=sys_id", password=password
        )
        assert status == 200 and found["result"] == [{"sys_id": record["sys_id"]}]
        path = f"{table}/{record['sys_id']}"
        assert (
            _request(conn, "PATCH", path, {"state": "6"}, json_headers, password=password)[0] == 403
        )
        resolve = {"state": "6", "close_code": "Solved", "close_notes": "ok"}
        assert _request(conn, "PATCH", path, resolve, json_headers, password=password)[0] == 200
        assert conn.sock is sock, "the server closed a kept-alive connection"
    finally:
        conn.close()
    assert Handler.disable_nagle_algorithm is False  # what the docs say it is


def test_quick_ack_session_works_against_the_plain_server(plain):
    credentials = json.loads(plain.secret)
    session = quickack.apply(requests.Session())
    session.auth = (credentials["username"], credentials["password"])
    session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
    for i in range(3):  # on one kept-alive connection
        created = session.post(plain.table_url, json={"correlation_id": f"q{i}"})
        assert created.status_code == 201
        found = session.get(plain.table_url, params={"sysparm_query": f"correlation_id=q{i}"})
        assert found.json()["result"][0]["sys_id"] == created.json()["result"]["sys_id"]
    adapter = session.get_adapter(plain.table_url)
    pool = adapter.poolmanager.connection_from_url(plain.table_url)
    assert pool.ConnectionCls.__name__ == "QuickAckHTTPConnection"


def test_outside_server_needs_a_readable_json_secret(tmp_path):
    with pytest.raises(ValueError, match="cannot read --secret-file"):
        outside_server("https://example.service-now.com", str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("username=x")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        outside_server("https://example.service-now.com", str(bad))


def test_snow_url_runs_the_server_figures_against_that_server(monkeypatch, tmp_path):
    """--snow-url with --secret-file: any server; here the stand-in in its own process."""
    monkeypatch.setattr("benchmarks.servers.new_password", new_secret)
    out = tmp_path / "figures.json"
    with start_server("standin", "process") as elsewhere:
        secret_file = tmp_path / "creds.json"
        secret_file.write_text(elsewhere.secret)
        argv = ["--snow-url", elsewhere.url, "--secret-file", str(secret_file)]
        argv += ["--only", "breach", "--only", "drain", "--episodes", "2", "--actions", "4"]
        argv += ["--quick", "--no-plain-server", "--json-out", str(out)]
        assert run.main(argv) == 0
    figures = json.loads(out.read_text())
    assert figures["meta"]["primary_server"] == "outside"
    assert set(figures["results"]["breach"]) == {"outside"}
    breach = figures["results"]["breach"]["outside"]
    assert breach["project"]["episodes"] == 2 and breach["seed"]["posts_per_breaching_sample"] == 1
    assert figures["results"]["drain"]["outside"]["project"]["calls"] == 8
    assert "--snow-url" in figures["meta"]["servers"]["outside"]["server"]


def test_snow_url_without_secret_file_is_refused(capsys):
    assert run.main(["--snow-url", "https://example.service-now.com", "--json-out", "-"]) == 2
    assert "--snow-url and --secret-file go together" in capsys.readouterr().err


# -- the report --------------------------------------------------------------------------------
def _committed_report():
    with open(DOCS_JSON, encoding="utf-8") as handle:
        return json.load(handle)


def test_every_ratio_is_project_over_seed_from_the_same_report():
    base = _committed_report()
    rows = [r for r in report.comparison_rows(base) if r.ratio is not None]
    assert len(rows) >= 10
    for row in rows:
        assert row.ratio == pytest.approx(row.project / row.seed)
    # Change the seed's figure in the report: the ratio follows, nothing else is read.
    changed = copy.deepcopy(base)
    cold = changed["results"]["cold_start"]["seed_sensor_bare"]
    cold["to_first_work_ms"] *= 2
    headline = "sensor cold start to first publish"
    (row,) = [r for r in report.comparison_rows(changed) if r.figure == headline]
    (old,) = [r for r in rows if r.figure == headline]
    assert row.ratio == pytest.approx(old.ratio / 2)


def test_a_row_that_differs_more_than_15_percent_between_two_runs_says_so():
    first = _committed_report()
    second = copy.deepcopy(first)
    second["results"]["cold_start"]["seed_sensor_bare"]["to_first_work_ms"] *= 1.4
    second["results"]["cold_start"]["seed_anomaly"]["to_first_work_ms"] *= 1.1
    combined = dict(first, spread=report.spread([first, second]), repeat_results=[{}])
    spreads = combined["spread"]
    sensor = spreads["sensor cold start to first publish [none]"]
    assert sensor["varies"] and sensor["ratio"][1] == pytest.approx(sensor["ratio"][0] / 1.4)
    anomaly = [v for k, v in spreads.items() if k.startswith("anomaly cold start to first 201")]
    assert anomaly and not anomaly[0]["varies"]  # ±5 %: within the limit
    table = report.comparison_table(combined)
    (line,) = [
        x for x in table.splitlines() if x.startswith("| sensor cold start to first publish ")
    ]
    assert "VARIES" in line and "spread (2 runs)" in table
    assert "VARIES" not in [x for x in table.splitlines() if "anomaly cold start" in x][0]


def test_repeat_must_be_at_least_one(capsys):
    assert run.main(["--repeat", "0", "--only", "disk", "--json-out", "-"]) == 2
    assert "--repeat" in capsys.readouterr().err


def test_targets_are_judged_on_what_they_name():
    row = report.Row("x", "", "none", "ms", 150.0, 100.0, target_on="ratio", target=("<=", 1.3))
    assert row.verdict() == "≤ 1.3×: MISS"
    row = report.Row("x", "", "none", "ms", 120.0, 100.0, target_on="ratio", target=("<=", 1.3))
    assert row.verdict() == "≤ 1.3×: pass"
    row = report.Row("x", "", "none", "/s", 150.0, target_on="project", target=(">=", 200))
    assert row.verdict() == "≥ 200: MISS"


def test_docs_show_the_table_generated_from_the_committed_json():
    committed = _committed_report()
    with open(report.DOCS, encoding="utf-8") as handle:
        docs = handle.read()
    with open(report.README, encoding="utf-8") as handle:
        readme = handle.read()
    assert report.docs_block(committed) in docs, "regenerate: edge-agent bench --write-docs"
    assert report.summary_table(committed) in readme, "regenerate: edge-agent bench --write-docs"


def test_markdown_command_prints_the_table_and_names_a_bad_file(tmp_path, capsys):
    assert run.main(["--markdown", DOCS_JSON]) == 0
    assert "| figure" in capsys.readouterr().out
    assert run.main(["--markdown", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err
