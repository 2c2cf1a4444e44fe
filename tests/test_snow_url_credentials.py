"""Credentials written into snowUrl are refused at configuration time and never echoed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from conftest import new_secret

from agent.config import AnomalySettings, parse_snow_url
from agent.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "template",
    [
        "https://edge-user:{pw}@dev1.service-now.com",
        "https://edge-user:{pw}@dev1.service-now.com/api/now/table/incident",
        "https://{pw}@dev1.service-now.com",
        "https://edge%40corp:{pw}@dev1.service-now.com:443/",
        "http://edge-user:{pw}@localhost:8080",
        "ftp://edge-user:{pw}@dev1.service-now.com",
    ],
)
def test_a_url_with_credentials_is_refused_without_repeating_them(template, caplog):
    caplog.set_level(logging.DEBUG)
    password = new_secret()
    url = template.format(pw=password)
    with pytest.raises(ConfigError) as info:
        AnomalySettings.from_mapping({"snowUrl": url})
    message = str(info.value)
    assert "snowUrl must not contain a user name or password" in message
    assert "snowSecretId" in message  # where the credentials belong
    assert password not in message and "edge-user" not in message
    logging.getLogger("agent").error("configuration refused: %s", message)  # as a function logs it


def test_the_bare_url_is_still_accepted():
    assert parse_snow_url("https://dev1.service-now.com/") == "https://dev1.service-now.com"


def _run_cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-m", "devtools.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )


def test_simulate_refuses_it_before_printing_anything_with_it(tmp_path):
    password = new_secret()
    secret_file = tmp_path / "snow.json"
    secret_file.write_text(json.dumps({"username": "edge-user", "password": "other"}))
    result = _run_cli(
        "simulate",
        "--fast",
        "--state-dir",
        str(tmp_path / "state"),
        "--secret-file",
        str(secret_file),
        "--snow-url",
        "https://edge-user:{}@dev1.service-now.com".format(password),
    )
    assert result.returncode == 2
    assert "--snow-url must not contain a user name or password" in result.stderr
    assert password not in result.stdout + result.stderr


def test_run_refuses_it_as_a_function_variable(tmp_path):
    password = new_secret()
    result = _run_cli(
        "run",
        "--sensor",
        "fake",
        "--max-ticks",
        "1",
        "--state-dir",
        str(tmp_path),
        "--set",
        "snowUrl=https://edge-user:{}@dev1.service-now.com".format(password),
    )
    assert result.returncode == 2, result.stderr
    assert "snowUrl must not contain a user name or password" in result.stderr
    assert password not in result.stdout + result.stderr


def test_the_client_never_takes_one_either():
    from agent.servicenow.client import TableClient

    with pytest.raises(ValueError) as info:
        TableClient("https://u:pw-in-url@host", lambda: None)
    assert "pw-in-url" not in str(info.value)
