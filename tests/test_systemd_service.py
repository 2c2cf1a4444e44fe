"""``edge-agent run`` as a systemd service: the unit and the install script, on a system image.

The install script runs against a temporary root (``--root``, DESTDIR-style): its
users and groups land in that root's ``etc/passwd`` and ``etc/group`` through the
real ``useradd``/``groupadd``, its files get their real owners and modes.
``systemd-analyze verify`` (systemd 252, Raspberry Pi OS Bookworm's) then checks
the unit as installed there.
"""

from __future__ import annotations

import configparser
import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from agent.names import DEVICE_STATE_DIR

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "deploy" / "systemd"
INSTALL = SYSTEMD / "install.sh"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="useradd and chown into a system image need root"
)


def system_image(root: Path) -> Path:
    """A minimal root file system: the accounts files, a nologin shell, an existing key."""
    (root / "etc" / "edge-agent").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\ni2c:x:998:pi\npi:x:1000:\n")
    (root / "usr" / "sbin").mkdir(parents=True)
    nologin = root / "usr" / "sbin" / "nologin"
    nologin.write_text("#!/bin/sh\nexit 1\n")
    nologin.chmod(0o755)
    key = root / "etc" / "edge-agent" / "private.pem.key"
    # Stand-in content made at test time: the script only sets the mode and owner of *.key.
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o644)
    return root


def install(root: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def accounts(root: Path, name: str) -> dict:
    entries = {}
    for line in (root / "etc" / name).read_text().splitlines():
        fields = line.split(":")
        entries[fields[0]] = fields
    return entries


def mode_and_owner(path: Path) -> tuple:
    info = path.stat()
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


@needs_root
def test_install_makes_a_system_user_in_i2c_and_files_only_it_can_read(tmp_path):
    root = system_image(tmp_path / "image")
    secret = tmp_path / "snow.json"
    secret.write_text('{"username": "svc", "password": "pw"}')
    install(root, "--secret-file", str(secret))

    user = accounts(root, "passwd")["edge-agent"]
    uid, gid = int(user[2]), int(user[3])
    assert 0 < uid < 1000  # a system user
    assert user[5:] == ["/opt/edge-agent", "/usr/sbin/nologin"]  # no login
    groups = accounts(root, "group")
    assert groups["i2c"][3].split(",") == ["pi", "edge-agent"]  # pi kept, the agent added
    assert int(groups["edge-agent"][2]) == gid

    state = root / DEVICE_STATE_DIR.lstrip("/")  # where the agent's default state dir is
    assert mode_and_owner(state) == (0o700, uid, gid)
    etc = root / "etc" / "edge-agent"
    assert mode_and_owner(etc) == (0o750, 0, gid)
    assert mode_and_owner(etc / "config.ini") == (0o640, 0, gid)
    assert mode_and_owner(etc / "servicenow.json") == (0o600, uid, gid)
    assert (etc / "servicenow.json").read_text() == secret.read_text()
    assert mode_and_owner(etc / "private.pem.key") == (0o600, uid, gid)
    unit = root / "etc" / "systemd" / "system" / "edge-agent.service"
    assert unit.read_text() == (SYSTEMD / "edge-agent.service").read_text()
    assert mode_and_owner(unit) == (0o644, 0, 0)


@needs_root
def test_install_again_keeps_the_config_and_the_secret_and_restores_modes(tmp_path):
    root = system_image(tmp_path / "image")
    secret = tmp_path / "snow.json"
    secret.write_text('{"username": "svc", "password": "pw"}')
    install(root, "--secret-file", str(secret))
    etc = root / "etc" / "edge-agent"
    (etc / "config.ini").write_text("[run]\nthing = pi-kitchen\n")
    (etc / "servicenow.json").chmod(0o644)

    again = install(root)
    assert (etc / "config.ini").read_text() == "[run]\nthing = pi-kitchen\n"
    assert (etc / "servicenow.json").read_text() == secret.read_text()
    uid = int(accounts(root, "passwd")["edge-agent"][2])
    assert mode_and_owner(etc / "servicenow.json")[:2] == (0o600, uid)
    assert list(accounts(root, "passwd")).count("edge-agent") == 1
    assert "wrote /etc/edge-agent/config.ini" not in again.stdout


def test_install_refuses_an_image_without_accounts_files(tmp_path):
    result = subprocess.run(
        ["bash", str(INSTALL), "--root", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "install.sh: " in result.stderr and len(result.stderr.splitlines()) == 1


def unit_settings() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment]
    unit.read(SYSTEMD / "edge-agent.service")
    return unit


def test_the_unit_runs_the_agent_as_its_user_with_the_config_file_and_restarts_on_failure():
    service = unit_settings()["Service"]
    assert service["User"] == "edge-agent"
    assert service["ExecStart"].endswith("edge-agent run --config /etc/edge-agent/config.ini")
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # bad configuration: a restart cannot help
    assert service["StandardOutput"] == service["StandardError"] == "journal"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == DEVICE_STATE_DIR  # the one folder it writes
    assert service["DeviceAllow"] == "/dev/i2c-1 rw"


@needs_root
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_systemd_analyze_verify_passes_on_the_installed_unit(tmp_path):
    root = system_image(tmp_path / "image")
    install(root)
    # What the unit refers to, as on the Pi: the command, and systemd's own units.
    command = root / "opt" / "edge-agent" / "venv" / "bin" / "edge-agent"
    command.parent.mkdir(parents=True)
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    shutil.copytree(
        "/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "edge-agent.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # not even an unknown key
