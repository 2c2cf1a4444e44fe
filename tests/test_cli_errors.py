"""User errors on the command line: a clear message, the documented exit code, never a traceback.

Every command runs as its own process, as a user runs it. The README's exit-code
and troubleshooting tables are checked against the code here too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from agent.standalone.exit_codes import EXIT_CODES, OUTBOX_EXIT_CODES, exit_code_for
from agent.standalone.exit_codes import markdown_table as exit_code_table
from devtools.troubleshooting import TROUBLES
from devtools.troubleshooting import markdown_table as troubleshooting_table
from tests.conftest import secret_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HIDE_BOTO3 = (
    "import sys\n"
    "for name in ('boto3', 'botocore', 's3transfer'):\n"
    "    sys.modules[name] = None  # as if the deploy extra were not installed\n"
    "from devtools.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


def edge_agent(*args, cwd=None, prelude=None, timeout=120, path=(), **environ):
    """``edge-agent ARGS`` as its own process; ``prelude`` runs first (to hide a package);
    ``path`` goes first on its PYTHONPATH (a stand-in), ``environ`` into its environment."""
    env = dict(os.environ, **environ)
    env["PYTHONPATH"] = os.pathsep.join([*path, ROOT, env.get("PYTHONPATH", "")])
    command = [sys.executable, "-c", prelude, *args] if prelude else [
        sys.executable, "-m", "devtools.cli", *args
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


# --- --set ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "assignment, expected",
    [
        ("humidLimt=55", "unknown variable 'humidLimt' in --set humidLimt=55; did you mean humidLimit?"),
        ("humidlimit=55", "unknown variable 'humidlimit' in --set humidlimit=55; did you mean humidLimit?"),
        ("humidLimit=", "--set humidLimit= has no value; give one, or leave it out to use the default (50)"),
        ("=55", "--set =55 has no variable name"),
    ],
)  # fmt: skip
def test_unknown_or_empty_set_names_and_values_exit_2(assignment, expected, tmp_path):
    result = edge_agent("simulate", "--fast", "--set", assignment, "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert expected in result.stderr
    # One line that says what is wrong, not a usage dump before it.
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-agent simulate: error: "), lines


def test_a_limit_the_anomaly_function_would_refuse_stops_the_run_before_it_starts(tmp_path):
    result = edge_agent(
        "simulate", "--fast", "--set", "humidLimit=-5", "--state-dir", str(tmp_path)
    )
    assert result.returncode == 2
    assert (
        "humidLimit must be between 0 and 100 %RH (what a humidity reading can be), got -5"
        in result.stderr
    )
    assert result.stdout == ""  # nothing started: no stand-in, no readings
    assert not (tmp_path / "outbox.sqlite3").exists()


def test_deploy_plan_runs_the_same_validation(tmp_path):
    result = edge_agent(
        "deploy", "v2", "plan", "--env", "sensor:humidLimit=-5", "--out", str(tmp_path)
    )
    assert result.returncode == 2
    assert "function sensor: humidLimit must be between 0 and 100 %RH" in result.stderr
    result = edge_agent(
        "deploy", "v1", "plan", "--env", "anomaly:retryBaseSecond=5", "--out", str(tmp_path)
    )
    assert result.returncode == 2
    assert "did you mean retryBaseSeconds?" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


# --- the secret file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"username": "edge"}, "needs 'username' and 'password' for basic auth"),
        (["edge", "pw"], "is not a JSON object"),
        ({"client_id": "edge-agent"}, "needs 'client_id' and 'client_secret' for OAuth"),
        ({"client_id": "edge-agent", "client_secret": "s", "username": "u"},
         "the OAuth password grant needs both 'username' and 'password'"),
        ({"username": "edge", "password": 7}, "field 'password' must be a non-empty string"),
    ],
)  # fmt: skip
def test_a_malformed_secret_file_exits_2_at_once_naming_file_and_field(content, expected, tmp_path):
    secret = tmp_path / "snow.json"
    secret.write_text(json.dumps(content))
    started = time.monotonic()
    result = edge_agent("simulate", "--fast", "--secret-file", str(secret))
    assert result.returncode == 2
    assert f"secret file {secret}" in result.stderr and expected in result.stderr
    assert result.stdout == ""  # before the run: no delivery was ever tried
    assert time.monotonic() - started < 30


def test_run_checks_the_secret_file_before_it_starts(tmp_path):
    secret = tmp_path / "snow.json"
    secret.write_text(json.dumps({"username": "edge"}))
    result = edge_agent(
        "run", "--sensor", "fake", "--max-ticks", "1", "--secret-file", str(secret),
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert result.returncode == 2
    assert f"secret file {secret} needs 'username' and 'password'" in result.stderr
    assert not (tmp_path / "state").exists()


def test_snow_url_without_a_secret_file_says_to_pass_one():
    result = edge_agent("simulate", "--fast", "--snow-url", "https://dev1.service-now.com")
    assert result.returncode == 2
    assert "--snow-url needs --secret-file FILE" in result.stderr
    assert "secret resource" not in result.stderr


# --- outages and durations ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--outage", "60:-600"], "--outage DURATION must be positive, got 60:-600"),
        (["--outage", "nan:inf"], "--outage takes a finite START:DURATION in seconds, got 'nan:inf'"),
        (["--outage", "-60:600"], "--outage START must not be negative (seconds into the run), got -60"),
        (["--outage=-60:600"], "--outage START must not be negative"),
        (["--outage", "5000:60"], "--outage 5000:60 starts after the run ends (900 s)"),
        (["--duration", "-10"], "--duration must be a positive number of seconds, got -10"),
        (["--duration", "nan"], "--duration must be a positive number of seconds, got nan"),
        (["--period", "0"], "--period must be a positive number of seconds, got 0"),
    ],
)  # fmt: skip
def test_impossible_outages_and_durations_exit_2_with_a_reason(args, expected):
    result = edge_agent("simulate", "--fast", *args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "expected one argument" not in result.stderr


# --- no traceback for a user error ----------------------------------------------------------


@pytest.mark.parametrize("name", ["outbox.sqlite3", "servicenow-standin.sqlite3"])
def test_simulate_on_a_corrupt_state_folder_names_the_file(name, tmp_path):
    damaged = tmp_path / name
    damaged.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    result = edge_agent("simulate", "--fast", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert f"{damaged} (" in result.stderr and "is not a readable SQLite database" in result.stderr
    assert "choose another --state-dir" in result.stderr


@pytest.mark.parametrize("command", ["v2 plan", "v2 package", "v1 plan", "v1 package"])
def test_deploy_to_an_unusable_out_folder_says_so(command, tmp_path):
    (tmp_path / "notes.txt").write_text("not a folder")
    result = edge_agent("deploy", *command.split(), "--out", "notes.txt/plan", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "error: cannot use notes.txt/plan" in result.stderr and "Not a directory" in result.stderr
    )


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here: {}".format(mounted.stderr.decode()))
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_deploy_plan_to_a_read_only_file_system_says_so(read_only_folder):
    result = edge_agent("deploy", "v2", "plan", "--out", str(read_only_folder / "plan"))
    assert result.returncode == 1
    assert f"error: cannot use {read_only_folder / 'plan'}" in result.stderr
    assert "Read-only file system" in result.stderr


@pytest.mark.parametrize("command", [["v2", "plan"], ["v1", "up", "--dry-run"]])
def test_deploy_without_boto3_says_to_install_the_extra(command, tmp_path):
    result = edge_agent("deploy", *command, "--out" if command[1] == "plan" else "--state",
                        str(tmp_path / "x"), prelude=HIDE_BOTO3, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert "install the deploy extra: pip install 'edge-agent[deploy]'" in result.stderr
    assert "ModuleNotFoundError" not in result.stderr


# --- output into a closed pipe --------------------------------------------------------------


def test_simulate_piped_into_head_prints_no_broken_pipe(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        "{} -m devtools.cli simulate --fast --state-dir {} | head -3".format(
            sys.executable, tmp_path
        ),
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert len(result.stdout.splitlines()) == 3
    assert "Broken pipe" not in result.stderr and "Traceback" not in result.stderr
    assert result.stderr == ""
    # The run went on to the end: the temporary stand-in's incident was delivered.
    assert (tmp_path / "outbox.sqlite3").exists()


def test_a_command_whose_reader_is_gone_exits_quietly():
    env = dict(os.environ, PYTHONPATH=ROOT)
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: the first write fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "devtools.cli", "config-table"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 1


# --- names and usage ------------------------------------------------------------------------


def test_usage_lines_name_the_real_command():
    assert edge_agent("bench", "--help").stdout.startswith("usage: edge-agent bench")
    assert edge_agent("simulate", "--help").stdout.startswith("usage: edge-agent simulate")
    assert edge_agent("run", "--help").stdout.startswith("usage: edge-agent run")


def test_an_option_argparse_cannot_read_is_one_line_pointing_to_the_commands_help():
    for args, prog in (
        (("simulate", "--fats"), "edge-agent simulate"),
        (("run", "--protocol", "4"), "edge-agent run"),
        (("outbox", "--state-dir"), "edge-agent outbox"),
    ):
        result = edge_agent(*args)
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), lines
        assert lines[0].endswith(f"({prog} --help lists the options)")


def test_version_exits_0_with_the_installed_packages_version():
    from importlib import metadata

    result = edge_agent("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "edge-agent {}\n".format(metadata.version("edge-agent"))


def test_no_help_screen_shows_raw_restructuredtext():
    screens = [(), ("simulate",), ("run",), ("outbox",), ("status",), ("config-table",)]
    screens += [("standin",), ("deploy",), ("bench",), ("deploy", "v2"), ("deploy", "v1")]
    for words in screens:
        result = edge_agent(*words, "--help")
        assert result.returncode == 0, (words, result.stderr)
        for markup in ("``", ":class:", ":func:", ":mod:", ":data:", ".. "):
            assert markup not in result.stdout, (words, markup, result.stdout)


def test_dev_with_an_unknown_command_prints_help_and_exits_2():
    result = subprocess.run(
        [os.path.join(ROOT, "dev"), "foo"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown command 'foo'" in result.stderr and "./dev simulate" in result.stderr
    helped = subprocess.run(
        [os.path.join(ROOT, "dev"), "help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "./dev test" in helped.stdout
    assert "set -euo" not in helped.stdout


# --- the exit-code table --------------------------------------------------------------------


def test_exit_codes_follow_the_table():
    clean = {"actions_pending": 0, "actions_dead_lettered": 0, "drained": True}
    assert exit_code_for(clean) == 0
    assert exit_code_for({**clean, "actions_pending": 1, "drained": False}) == 1
    assert exit_code_for({**clean, "actions_dead_lettered": 1, "actions_pending": 1}) == 3
    assert exit_code_for({**clean, "messages_rejected": 1}) == 3
    assert exit_code_for({**clean, "mqtt": {"lost": 2}, "actions_pending": 1}) == 4
    assert exit_code_for({**clean, "actions_dead_lettered": 1, "interrupted": True}) == 130
    failed = {**clean, "sensor": {"errors": 2, "invalid_values": 0}}
    assert exit_code_for(failed) == 5
    assert exit_code_for({**clean, "sensor": {"errors": 0, "invalid_values": 1}}) == 0
    assert exit_code_for({**failed, "actions_pending": 1}) == 1
    assert [e.code for e in EXIT_CODES] == [0, 1, 2, 3, 4, 5, 130]


def _cli_doc() -> str:
    with open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8") as handle:
        return handle.read()


def test_the_docs_carry_the_exit_code_and_troubleshooting_tables():
    readme = _cli_doc()
    assert exit_code_table() in readme, "regenerate: agent.standalone.exit_codes.markdown_table()"
    assert exit_code_table(OUTBOX_EXIT_CODES) in readme, (
        "regenerate: agent.standalone.exit_codes.markdown_table(OUTBOX_EXIT_CODES)"
    )
    assert troubleshooting_table() in readme, (
        "regenerate: devtools.troubleshooting.markdown_table()"
    )


# --- every troubleshooting entry, provoked --------------------------------------------------


def _provoke(key, tmp_path, standin, password):
    """Make the situation of one troubleshooting entry happen; return the finished process."""
    if key == "misspelt-variable":
        return edge_agent("simulate", "--fast", "--set", "humidLimt=55")
    if key == "limit-out-of-range":
        return edge_agent("simulate", "--fast", "--set", "humidLimit=-5")
    if key == "secret-shape":
        (tmp_path / "snow.json").write_text(json.dumps({"username": "edge"}))
        return edge_agent("simulate", "--fast", "--secret-file", "snow.json", cwd=tmp_path)
    if key == "snow-url-without-secret":
        return edge_agent("simulate", "--fast", "--snow-url", "https://dev1.service-now.com")
    if key == "negative-outage":
        return edge_agent("simulate", "--fast", "--outage", "-60:600")
    if key == "replay-timestamps":
        (tmp_path / "log.csv").write_text(
            "timestamp,temperature,humidity\nnow,1,2\nsoon,1,2\nlater,1,2\n"
        )
        return edge_agent("simulate", "--fast", "--replay", "log.csv", cwd=tmp_path)
    if key == "replay-out-of-order":
        (tmp_path / "log.csv").write_text(
            "timestamp,temperature,humidity\n1790000010,22,40\n1790000005,22,40\n1790000000,22,40\n"
        )
        return edge_agent("simulate", "--fast", "--replay", "log.csv", cwd=tmp_path)
    if key == "corrupt-state":
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "outbox.sqlite3").write_bytes(os.urandom(2048))
        return edge_agent("simulate", "--fast", "--state-dir", "state", cwd=tmp_path)
    if key == "dead-lettered":
        standin.faults.fail_rate, standin.faults.fail_status = 1.0, 403
        (tmp_path / "snow.json").write_text(secret_json(password))
        return edge_agent(
            "simulate",
            "--fast",
            "--scenario",
            "heat-spike",
            "--snow-url",
            standin.url,
            "--secret-file",
            "snow.json",
            "--state-dir",
            "s",
            cwd=tmp_path,
        )
    if key == "actions-pending":
        return edge_agent(
            "simulate",
            "--fast",
            "--scenario",
            "heat-spike",
            "--outage",
            "60:10000",
            "--state-dir",
            str(tmp_path),
        )
    if key == "i2c-no-bus":  # this machine has no /dev/i2c-1: the real smbus2 finds none
        assert not os.path.exists("/dev/i2c-1")
        return edge_agent(
            "run", "--sensor", "i2c", "--max-ticks", "1", "--state-dir", "s", cwd=tmp_path
        )
    if key == "i2c-no-chip":  # a bus where nothing answers: the chip model, both chips absent
        (tmp_path / "dev").mkdir()
        (tmp_path / "dev" / "i2c-1").write_bytes(b"")
        board = {"dev": str(tmp_path / "dev"), "hts221": {"present": False}}
        return edge_agent(
            "run", "--sensor", "i2c", "--max-ticks", "1", "--state-dir", "s",
            cwd=tmp_path,
            path=[os.path.join(ROOT, "tests", "stand_ins", "i2c_bus")],
            EDGE_AGENT_TEST_I2C=json.dumps(board),
        )  # fmt: skip
    if key == "config-file-typo":
        (tmp_path / "config.ini").write_text(
            "[run]\nsensor = fake\n\n[variables]\nhumidLimt = 55\n"
        )
        return edge_agent("run", "--config", "config.ini", "--max-ticks", "1", cwd=tmp_path)
    if key == "deploy-without-boto3":
        return edge_agent("deploy", "v2", "plan", prelude=HIDE_BOTO3, cwd=tmp_path)
    if key == "deploy-out-unusable":
        (tmp_path / "notes.txt").write_text("")
        return edge_agent("deploy", "v2", "plan", "--out", "notes.txt/plan", cwd=tmp_path)
    raise AssertionError(f"no test provokes troubleshooting entry {key!r}: add one here")


@pytest.mark.parametrize("trouble", TROUBLES, ids=lambda t: t.key)
def test_every_troubleshooting_entry_is_what_the_tools_print(trouble, tmp_path, standin, password):
    result = _provoke(trouble.key, tmp_path, standin, password)
    assert trouble.message in result.stdout + result.stderr
    assert result.returncode == trouble.exit_code
