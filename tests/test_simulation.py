"""The whole pipeline on a laptop: `edge-agent simulate`, with the default settings."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys

import pytest

from agent.standalone.exit_codes import OUTBOX_DEAD_LETTERS, OUTBOX_PENDING
from devtools.console import clock_time
from devtools.simulate import SimulationOptions, run
from tests.conftest import secret_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def simulate(**kwargs):
    return run(SimulationOptions(fast=True, **kwargs))


def standin_records(summary):
    from devtools.servicenow_standin import ServiceNowStandIn

    path = "{}/servicenow-standin.sqlite3".format(summary["state_dir"])
    server = ServiceNowStandIn(db_path=path)  # read the stand-in's store after the run
    try:
        return server.incidents()
    finally:
        server.stop()


def test_cli_humid_spell_fast_opens_an_incident_that_says_what_breached(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.cli",
            "simulate",
            "--scenario",
            "humid-spell",
            "--fast",
            "--json",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["incidents_opened"] >= 1
    for key in (
        "samples",
        "readings_published",
        "anomalies_published",
        "incidents_opened",
        "incidents_updated",
        "incidents_resolved",
        "actions_queued",
        "actions_dead_lettered",
        "actions_pending",
        "publish_errors",
    ):
        assert key in summary
    incident = standin_records(summary)[0]
    assert "Humidity above limit on sim-pi" in incident["short_description"]
    assert "Metric: humidity" in incident["description"]
    assert "above the limit" in incident["description"]  # by how much
    assert "Device: sim-pi" in incident["description"]
    # The console was live and readable.
    assert "BREACH" in result.stderr and "opened incident INC" in result.stderr


def test_a_ten_minute_humid_spell_is_exactly_one_incident_resolved_after(tmp_path):
    summary = simulate(scenario="humid-spell", state_dir=str(tmp_path))
    assert summary["samples"] == 180  # 15 minutes at 5 s
    assert summary["incidents_opened"] == 1
    assert summary["incidents_resolved"] == 1
    calls = summary["servicenow_calls"]
    writes = calls["POST"] + calls["PATCH"] - summary["incidents_updated"]
    assert writes <= 3
    (incident,) = standin_records(summary)
    assert incident["state"] == "6"
    assert summary["secret_fetches"] == 1


def test_flapping_inside_the_hysteresis_band_opens_nothing(tmp_path):
    summary = simulate(scenario="flapping", state_dir=str(tmp_path))
    assert summary["anomalies_published"] == 0
    assert summary["incidents_opened"] == 0
    assert standin_records(summary) == []


def test_steady_conditions_open_nothing_and_publish_every_reading(tmp_path):
    summary = simulate(scenario="steady", state_dir=str(tmp_path), duration=300)
    assert summary["readings_published"] == summary["samples"] == 60
    assert summary["messages_to_cloud"] == 60
    assert summary["incidents_opened"] == 0


def _two_episode_csv(path):
    """Humidity: normal, 4 minutes high, normal, 4 minutes high, normal (5 s samples)."""
    rows = []
    t = 1_790_000_000
    profile = [40.0] * 12 + [65.0] * 48 + [40.0] * 24 + [66.0] * 48 + [40.0] * 60
    for i, humidity in enumerate(profile):
        rows.append((t + 5 * i, 22.0, humidity))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "temperature", "humidity"])
        writer.writerows(rows)
    return len(rows)


def test_servicenow_down_for_ten_minutes_across_two_episodes_delivers_both_once(tmp_path):
    replay = tmp_path / "two-episodes.csv"
    _two_episode_csv(replay)
    # Down from before the first breach until after the second recovery.
    summary = simulate(
        replay=str(replay), outages=[(30.0, 630.0)], state_dir=str(tmp_path / "state")
    )
    assert summary["drained"] is True
    assert summary["actions_pending"] == 0
    records = standin_records(summary)
    assert len(records) == 2
    assert len({r["correlation_id"] for r in records}) == 2
    assert all(r["state"] == "6" for r in records)
    assert summary["retries"] > 0


def test_replay_of_a_csv_drives_the_pipeline(tmp_path):
    replay = tmp_path / "r.csv"
    n = _two_episode_csv(replay)
    summary = simulate(replay=str(replay), state_dir=str(tmp_path / "s"))
    assert summary["samples"] == n
    assert summary["incidents_opened"] == 2


@pytest.mark.parametrize("scenario", ["io-errors", "invalid-zeros", "stuck", "noisy"])
def test_sensor_faults_never_crash_the_pipeline(scenario, tmp_path):
    summary = simulate(scenario=scenario, state_dir=str(tmp_path), duration=300)
    assert summary["samples"] == 60
    # Faults and noise around normal values are never taken for a breach.
    assert summary["anomalies_published"] == 0
    if scenario == "io-errors":
        assert summary["sensor"]["errors"] > 0
        assert summary["readings_published"] == 60 - summary["sensor"]["errors"]


def test_a_bad_variable_gives_a_clear_error_and_exit_code(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.cli",
            "simulate",
            "--fast",
            "--set",
            "humidLimit=wet",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "humidLimit must be a finite number, got 'wet'" in result.stderr


def test_the_outbox_command_shows_what_was_delivered(tmp_path):
    simulate(scenario="heat-spike", state_dir=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "devtools.cli", "outbox", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"]["pending"] == 0 and report["counts"]["incidents"] == 1


def test_real_time_mode_runs_the_delivery_worker_thread(tmp_path):
    # Not --fast: a real clock, the anomaly function's own worker thread. A breaching
    # replay, its rows 20 ms apart, makes it deliver something within a fraction of a second.
    replay = tmp_path / "hot.csv"
    replay.write_text(
        "timestamp,temperature,humidity\n"
        + "".join("{:.2f},35.0,40.0\n".format(1_790_000_000 + 0.02 * i) for i in range(8))
    )
    summary = run(SimulationOptions(replay=str(replay), state_dir=str(tmp_path / "s")))
    assert summary["samples"] == 8
    assert summary["drained"] is True
    assert summary["incidents_opened"] == 1


# --- no silent failure ----------------------------------------------------------------------


def cli(*args, cwd=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "devtools.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=_env_with_project_path(),
    )


def _env_with_project_path():
    import os

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def simulate_with_console(**kwargs):
    out = io.StringIO()
    summary = run(SimulationOptions(fast=True, **kwargs), out=out)
    return summary, out.getvalue()


def test_every_servicenow_write_refused_with_403_exits_3(standin, password, tmp_path):
    standin.faults.fail_rate = 1.0
    standin.faults.fail_status = 403
    secret = tmp_path / "snow.json"
    secret.write_text(secret_json(password))
    result = cli(
        "simulate", "--fast", "--scenario", "heat-spike", "--json",
        "--snow-url", standin.url, "--secret-file", str(secret),
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 3
    assert summary["actions_dead_lettered"] == 2 and summary["incidents_opened"] == 0
    assert "moved to the dead-letter table" in result.stderr
    assert "exit      3 (incident actions were refused for good" in result.stderr
    # `edge-agent outbox` says so too, as its status and its exit code (not "ok").
    state = str(tmp_path / "state")
    shown = cli("outbox", "--state-dir", state)
    assert shown.returncode == OUTBOX_DEAD_LETTERS == 4, shown.stderr
    assert json.loads(shown.stdout)["status"] == "dead_letters"
    assert "2 actions dead-lettered (ServiceNow refused them for good)" in shown.stderr
    requeued = cli("outbox", "--state-dir", state, "--requeue-dead")
    assert requeued.returncode == OUTBOX_PENDING == 5, requeued.stderr
    assert json.loads(requeued.stdout)["status"] == "pending"
    assert "2 actions pending: the anomaly function delivers them" in requeued.stderr


def test_actions_left_pending_exit_1_and_keep_the_temporary_folder():
    # ServiceNow down from before the breach to the end: nothing can be delivered.
    summary, console = simulate_with_console(
        scenario="heat-spike", outages=[(60.0, 10_000.0)], drain_timeout=600.0
    )
    assert summary["exit_code"] == 1 and summary["actions_pending"] == 2
    assert summary["state_dir_removed"] is False
    folder = summary["state_dir"]
    try:
        assert f"kept {folder}: it still holds incident actions" in console
        assert f"--state-dir {folder}" in console
        shown = cli("outbox", "--state-dir", folder)
        assert shown.returncode == OUTBOX_PENDING, shown.stderr
        assert json.loads(shown.stdout)["status"] == "pending"
    finally:
        import shutil

        shutil.rmtree(folder)


def test_the_temporary_state_folder_is_named_then_removed():
    summary, console = simulate_with_console(scenario="heat-spike")
    folder = summary["state_dir"]
    assert console.splitlines()[0].split("state", 1)[1].strip().startswith(folder)
    assert "(temporary: removed after the run" in console.splitlines()[0]
    assert f"removed the temporary folder {folder}" in console
    assert summary["state_dir_removed"] is True
    import os

    assert not os.path.exists(folder)


def test_a_given_state_folder_is_kept(tmp_path):
    summary, console = simulate_with_console(scenario="heat-spike", state_dir=str(tmp_path))
    assert summary["state_dir_removed"] is False
    assert (tmp_path / "outbox.sqlite3").exists()
    assert "removed" not in console


def test_a_secret_file_alone_makes_the_standin_accept_its_credentials(tmp_path):
    from tests.conftest import new_secret

    secret = tmp_path / "snow.json"
    secret.write_text(json.dumps({"username": "edge-integration", "password": new_secret()}))
    summary, console = simulate_with_console(
        scenario="heat-spike", secret_file=str(secret), state_dir=str(tmp_path / "s")
    )
    assert summary["auth_failures"] == 0
    assert summary["incidents_opened"] == 1 and summary["exit_code"] == 0
    assert "accepting the secret file's basic credentials (user edge-integration)" in console


def test_a_secret_file_for_oauth_works_with_the_standin_too(tmp_path):
    from tests.conftest import new_secret

    secret = tmp_path / "snow.json"
    secret.write_text(json.dumps({"client_id": "edge-agent", "client_secret": new_secret()}))
    summary, _ = simulate_with_console(
        scenario="heat-spike", secret_file=str(secret), state_dir=str(tmp_path / "s")
    )
    assert summary["incidents_opened"] == 1 and summary["auth_failures"] == 0
    assert summary["servicenow_calls"]["TOKEN"] >= 1


def test_a_newest_first_replay_gives_the_same_incidents_with_a_warning(tmp_path):
    ordered = tmp_path / "ordered.csv"
    _two_episode_csv(ordered)
    header, *rows = ordered.read_text().splitlines()
    reversed_log = tmp_path / "newest-first.csv"
    reversed_log.write_text("\n".join([header, *reversed(rows)]) + "\n")
    summary, console = simulate_with_console(
        replay=str(reversed_log), state_dir=str(tmp_path / "s")
    )
    assert summary["incidents_opened"] == 2 and summary["incidents_resolved"] == 2
    assert summary["replay"]["in_time_order"] is False
    assert "not in time order" in console and "rows played sorted by timestamp" in console


def test_a_replay_runs_on_the_files_clock_for_the_files_span(tmp_path):
    log = tmp_path / "iso.csv"
    rows = ["timestamp,temperature,humidity"]
    for i in range(100):  # 99 intervals of 10 s: a span of 16:30
        rows.append(
            "2026-09-21T03:{:02d}:{:02d}Z,22.0,{}".format(i * 10 // 60, i * 10 % 60, 40 + i % 2)
        )
    log.write_text("\n".join(rows) + "\n")
    summary, console = simulate_with_console(replay=str(log), state_dir=str(tmp_path / "s"))
    assert summary["samples"] == 100
    assert summary["duration_seconds"] == 990.0
    assert summary["replay"]["span_seconds"] == 990.0
    assert "for 16:30 (the file's span)" in console
    assert "2026-09-21 03:00:00 to 2026-09-21 03:16:30 UTC" in console
    reading_lines = [line for line in console.splitlines() if "reading " in line]
    # The file's own times, not the wall clock's.
    assert reading_lines[0].startswith("03:00:00") and reading_lines[-1].startswith("03:16:")


def test_a_replay_counts_what_it_skipped_in_the_json_summary(tmp_path):
    log = tmp_path / "messy.csv"
    log.write_text(
        "timestamp,temperature,humidity\n"
        "1790000000,22,40\n1790000005,abc,40\n1790000010,22,nan\n1790000015,22,-3\n"
        "1790000020,inf,40\nlater,22,40\n1790000030,22\n1790000035,22,41\n"
    )
    result = cli(
        "simulate", "--replay", str(log), "--fast", "--json", "--state-dir", str(tmp_path / "s")
    )
    assert result.returncode == 0, result.stderr
    # The file's missing cells are counted on the last line, not taken for sensor failures.
    assert result.stderr.rstrip().endswith(
        "(every sensor read gave a reading, and every reading and every incident action was "
        "delivered; also 0 of 6 sensor reads failed, 4 values invalid)"
    )
    replay = json.loads(result.stdout)["replay"]
    assert replay["rows"] == 8 and replay["rows_played"] == 6
    assert replay["rows_skipped"] == {"unreadable_timestamp": 1, "short_row": 1}
    assert replay["cells_missing"] == {
        "empty": 0, "non_numeric": 1, "nan": 1, "inf": 1, "out_of_range": 1,
    }  # fmt: skip
    assert (
        "6 of 8 rows played; 2 rows skipped (1 unreadable timestamp (line 7), "
        "1 short row (line 8))" in result.stderr
    )


def test_period_is_refused_for_a_replay(tmp_path):
    from agent.errors import ConfigError

    log = tmp_path / "r.csv"
    _two_episode_csv(log)
    for kwargs in ({"period": 10.0}, {"environment": {"period": "10"}}):
        with pytest.raises(ConfigError, match="do not apply to --replay"):
            simulate(replay=str(log), state_dir=str(tmp_path / "s"), **kwargs)


def test_set_period_is_honoured_by_simulate(tmp_path):
    from agent.errors import ConfigError

    summary = simulate(
        scenario="humid-spell", environment={"period": "60"}, state_dir=str(tmp_path)
    )
    assert summary["samples"] == 15 and summary["period_seconds"] == 60.0  # 900 s at 60 s
    summary = simulate(scenario="humid-spell", period=60.0, state_dir=str(tmp_path / "b"))
    assert summary["samples"] == 15
    with pytest.raises(ConfigError, match="not both"):
        simulate(period=30.0, environment={"period": "60"}, state_dir=str(tmp_path / "c"))


def test_fault_scenarios_show_their_faults_on_the_console(tmp_path):
    consoles = {}
    summaries = {}
    for scenario in ("steady", "stuck", "invalid-zeros", "io-errors"):
        summaries[scenario], consoles[scenario] = simulate_with_console(
            scenario=scenario, state_dir=str(tmp_path / scenario)
        )
    steady = consoles["steady"]
    assert "SENSOR" not in steady and "invalid" not in steady and "WARNING" not in steady
    assert summaries["steady"]["sensor"] == {
        "errors": 0,
        "invalid_values": 0,
        "unchanged_streaks": 0,
    }

    assert "is the sensor stuck?" in consoles["stuck"]
    assert "readings change again after" in consoles["stuck"]
    assert summaries["stuck"]["sensor"]["unchanged_streaks"] == 1

    invalid = summaries["invalid-zeros"]["sensor"]["invalid_values"]
    assert invalid > 0
    assert "invalid value" in consoles["invalid-zeros"]
    assert f"{invalid} invalid values" in consoles["invalid-zeros"]  # the closing sensor line

    errors = summaries["io-errors"]["sensor"]["errors"]
    assert errors > 0
    assert consoles["io-errors"].count("WARNING   sensor read failed") == errors
    assert "sensor error" in consoles["io-errors"]


def test_real_time_runs_print_progress_lines(tmp_path):
    from devtools.console import PROGRESS_EVERY

    assert PROGRESS_EVERY + 0.5 <= 10  # sleeps are sliced in 0.5 s: a line at least every 10 s
    out = io.StringIO()
    summary = run(
        SimulationOptions(
            scenario="heat-spike",
            duration=1.2,
            period=0.1,
            progress_every=0.25,
            state_dir=str(tmp_path),
        ),
        out=out,
    )
    lines = [line for line in out.getvalue().splitlines() if "progress" in line]
    assert len(lines) >= 3, out.getvalue()
    assert " of 0:01 simulated (" in lines[0] and "readings, 0 open episodes" in lines[0]
    assert "to go" in lines[0]
    assert summary["samples"] == 12


def test_ctrl_c_prints_the_summary_and_exits_130(tmp_path):
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.cli", "simulate", "--scenario", "heat-spike", "--json",
         "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env_with_project_path(),
        # A test run in the background starts with SIGINT ignored; the child must not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while "reading " not in seen and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            seen += process.stderr.readline()
        assert "reading " in seen
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "interrupted (Ctrl-C)" in err and "done " in err
    summary = json.loads(out)
    assert summary["interrupted"] is True and summary["exit_code"] == 130
    assert "Traceback" not in err


def test_a_resolved_incident_found_again_is_not_called_open():
    from agent.clock import VirtualClock
    from agent.servicenow.actions import Outcome
    from agent.servicenow.incidents import Action
    from agent.servicenow.outbox import Incident
    from devtools.console import Console

    out = io.StringIO()
    console = Console(out, VirtualClock())
    corr = "edge-agent:pi:humidity:upper:1790000000-0badc0de"
    action = Action("open", corr + "#0:breach", corr, {"short_description": "Humidity"})
    console.outcome(Outcome("reused", action, Incident(corr, "a" * 32, "INC0010001", "6"), ""))
    console.outcome(Outcome("reused", action, Incident(corr, "b" * 32, "INC0010002", "2"), ""))
    text = out.getvalue()
    assert "found incident INC0010001 for {} again; it was resolved earlier".format(corr) in text
    assert "incident INC0010002 already open for {}".format(corr) in text


def test_a_replay_played_again_in_a_fresh_folder_opens_its_own_incidents(
    standin, password, tmp_path
):
    # Episode ids have a random part (a Pi rebooting at 1970 must never reuse one), so the
    # second play of the same log meets none of the first play's incidents.
    log = tmp_path / "r.csv"
    _two_episode_csv(log)
    secret = tmp_path / "snow.json"
    secret.write_text(secret_json(password))
    consoles = []
    for attempt in ("first", "second"):  # a second state folder: the outbox knows nothing
        _, console = simulate_with_console(
            replay=str(log), snow_url=standin.url, secret_file=str(secret),
            state_dir=str(tmp_path / attempt),
        )  # fmt: skip
        consoles.append(console)
    assert consoles[0].count("opened incident") == 2
    assert "already open" not in consoles[1]
    assert consoles[1].count("opened incident") == 2
    assert len(standin.incidents()) == 4


def test_the_console_is_told_outcomes_it_does_not_read_them_from_the_log(tmp_path):
    import logging

    logging.disable(logging.INFO)  # no INFO record reaches any handler
    try:
        summary, console = simulate_with_console(scenario="humid-spell", state_dir=str(tmp_path))
    finally:
        logging.disable(logging.NOTSET)
    assert summary["incidents_opened"] == 1
    assert "SNOW      opened incident INC0010001: Humidity above limit" in console
    assert "SNOW      resolved incident INC0010001" in console


def test_the_json_summary_carries_the_exit_code_and_the_faults(tmp_path):
    result = cli(
        "simulate", "--fast", "--scenario", "io-errors", "--json", "--state-dir", str(tmp_path)
    )
    # Readings were missing: not "exit 0 (every reading ... delivered)", and the count is said.
    assert result.returncode == 5, result.stderr
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 5 and summary["interrupted"] is False
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.endswith(
        "exit      5 ({} of {} sensor reads failed, 0 values invalid; everything read was "
        "delivered)".format(summary["sensor"]["errors"], summary["samples"])
    )
    assert summary["sensor"]["errors"] > 0


def _fields(summary, prefix=""):
    """The summary's field names, "a.b" inside the objects the list spells out."""
    from devtools.summary_fields import FIELDS

    nested = {f.name.split(".")[0] for f in FIELDS if "." in f.name}
    names = set()
    for key, value in summary.items():
        if key in nested and not prefix:
            names |= _fields(value, key + ".")
        else:
            names.add(prefix + key)
    return names


def test_the_json_summary_has_a_schema_and_each_figure_once_as_documented(tmp_path):
    from devtools.summary_fields import FIELDS, markdown_table

    replay = tmp_path / "log.csv"
    replay.write_text("timestamp,temperature,humidity\n1790000000,22,40\n1790000005,22,41\n")
    documented = {f.name: f.only for f in FIELDS}
    for args in ([], ["--replay", str(replay)]):
        result = cli("simulate", "--fast", "--json", "--state-dir", str(tmp_path / "s"), *args)
        summary = json.loads(result.stdout)
        assert summary["schema"] == "edge-agent/summary/1"
        names = _fields(summary)
        assert names - set(documented) == set(), "not in docs/cli.md's list"
        always = {name for name, only in documented.items() if not only}
        assert always - names == set(), "listed, but not in the summary"
        assert ("replay" in names) == bool(args)
    # No figure twice: the sensor's errors and the rejected messages have one place each.
    assert "errors" not in summary and summary["sensor"]["errors"] == 0
    assert len(documented) == len(FIELDS)
    with open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8") as handle:
        assert markdown_table() in handle.read(), "regenerate: summary_fields.markdown_table()"


def test_an_outage_is_summed_up_not_printed_per_retry():
    # ServiceNow down for 10 minutes while the breach's incident waits: many retries.
    summary, console = simulate_with_console(scenario="humid-spell", outages=[(60.0, 600.0)])
    assert summary["exit_code"] == 0 and summary["retries"] >= 10
    warnings = [line for line in console.splitlines() if "  WARNING " in line]
    # One line when it starts, one every 5 simulated minutes while it lasts: not one per retry.
    assert 2 <= len(warnings) <= 3, warnings
    assert re.search(r"ServiceNow unreachable at \S+: .*; retrying, next at \d\d:\d\d:\d\d$",
                     warnings[0])  # fmt: skip
    assert re.search(
        r"ServiceNow unreachable at http://127\.0\.0\.1:\d+ since (\d\d:\d\d:\d\d), "
        r"\d+ failed tries, next at \d\d:\d\d:\d\d$",
        warnings[1],
    )
    (outage,) = summary["outages"]
    assert outage["tries"] == summary["retries"] and outage["until"] > outage["since"]
    assert outage["reason"].startswith("ServiceNow unreachable at http://127.0.0.1:")
    since, until = (clock_time(outage[k]) for k in ("since", "until"))
    took = r"\(\d+ min \d\d s(, \d+ failed tries)?\)"
    assert re.search(
        "SNOW      ServiceNow answers again: outage from {} to {} {}, {} failed tries\n".format(
            since, until, took, outage["tries"]
        ),
        console,
    )
    assert re.search(
        "outage    ServiceNow: 1 outage, {} retries in all: {} to {} {}\n".format(
            summary["retries"], since, until, took
        ),
        console,
    )


def test_fast_logs_carry_the_virtual_time_of_the_console(tmp_path):
    result = cli("simulate", "--fast", "-v", "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (breach,) = [line for line in result.stdout.splitlines() if "  BREACH " in line]
    (queued,) = [line for line in result.stderr.splitlines() if "queued open for" in line]
    # Minutes into the virtual run, not the wall clock's second or two after its start.
    assert queued[11:19] == breach[:8], (queued, breach)
