"""Secrets stay out of logs, reprs and exception texts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import new_secret

from agent.credentials import Credentials, CredentialsProvider
from agent.errors import SecretError

HERE = os.path.dirname(os.path.abspath(__file__))


def test_credentials_repr_hides_the_values():
    password = new_secret()
    creds = Credentials.from_secret_string('{"username": "u", "password": "%s"}' % password)
    assert password not in repr(creds) and password not in str(creds)
    assert "username='u'" in repr(creds)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"username": "u"}', "needs 'username' and 'password'"),
        ('{"client_id": "c"}', "needs 'client_id' and 'client_secret'"),
        ('{"username": "u", "password": 7}', "must be a non-empty string"),
        ("[1, 2]", "is not a JSON object"),
        ("{broken", "is not a JSON object"),
        ('{"auth": "kerberos", "username": "u", "password": "SECRETVALUE"}', "'auth' must be"),
    ],
)
def test_bad_secrets_give_clear_errors_without_values(text, message):
    with pytest.raises(SecretError, match=message) as info:
        Credentials.from_secret_string(text, "greengrass-snow-creds")
    assert "SECRETVALUE" not in str(info.value)
    assert "greengrass-snow-creds" in str(info.value)


def test_the_provider_caches_until_the_ttl_and_refetches_when_forced(clock):
    password = new_secret()
    fetched = []

    def fetch(secret_id):
        fetched.append(secret_id)
        return '{"username": "u", "password": "%s"}' % password

    provider = CredentialsProvider(fetch, "greengrass-snow-creds", ttl=600, clock=clock)
    provider.get()
    provider.get()
    clock.advance(599)
    provider.get()
    assert len(fetched) == 1
    clock.advance(2)
    provider.get()
    provider.get(force_fetch=True)
    assert len(fetched) == 3


def test_the_log_guard_fails_a_run_that_leaks_a_secret(tmp_path):
    # Run a tiny suite that logs a registered secret, with this suite's conftest.
    shutil.copy(os.path.join(HERE, "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_leak.py").write_text(
        "import logging\n"
        "from conftest import new_secret\n"
        "def test_leak():\n"
        "    logging.getLogger('agent').warning('oops %s', new_secret())\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=120,
    )
    assert result.returncode != 0
    assert "secret values appeared in log lines" in result.stdout
